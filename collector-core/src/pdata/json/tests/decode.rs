use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use super::super::*;
use super::fixtures::*;

// --- decoding spec-style input ----------------------------------------------

/// Shaped after the trace example in the OTLP specification repository.
const CAMEL_TRACES: &str = r#"{
  "resourceSpans": [{
    "resource": {
      "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
    },
    "scopeSpans": [{
      "scope": {
        "name": "my.library", "version": "1.0.0",
        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]
      },
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          {"key": "my.span.attr", "value": {"stringValue": "some value"}},
          {"key": "n", "value": {"intValue": "42"}},
          {"key": "b", "value": {"boolValue": true}},
          {"key": "d", "value": {"doubleValue": 1.5}},
          {"key": "bytes", "value": {"bytesValue": "AAH/"}},
          {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "x"}]}}}
        ],
        "status": {"code": 2, "message": "boom"}
      }]
    }]
  }]
}"#;

fn expected_spec_span() -> Span {
    Span {
        trace_id: hex::decode("5b8efff798038103d269b633813fc60c").unwrap(),
        span_id: hex::decode("eee19b7ec3c1b174").unwrap(),
        parent_span_id: hex::decode("eee19b7ec3c1b173").unwrap(),
        name: "I'm a server span".into(),
        start_time_unix_nano: 1_544_712_660_000_000_000,
        end_time_unix_nano: 1_544_712_661_000_000_000,
        kind: 2,
        attributes: vec![
            kv("my.span.attr", Value::StringValue("some value".into())),
            kv("n", Value::IntValue(42)),
            kv("b", Value::BoolValue(true)),
            kv("d", Value::DoubleValue(1.5)),
            kv("bytes", Value::BytesValue(vec![0, 1, 255])),
            kv(
                "arr",
                Value::ArrayValue(ArrayValue {
                    values: vec![any(Value::IntValue(1)), any(Value::StringValue("x".into()))],
                }),
            ),
        ],
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
        ..Span::default()
    }
}

fn check_spec_traces(req: &ExportTraceServiceRequest) {
    let rs = &req.resource_spans[0];
    assert_eq!(
        rs.resource.as_ref().unwrap().attributes,
        vec![kv("service.name", Value::StringValue("my.service".into()))]
    );
    let ss = &rs.scope_spans[0];
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    assert_eq!(scope.attributes.len(), 1);
    assert_eq!(ss.spans, vec![expected_spec_span()]);
}

#[test]
fn decodes_camel_case_spec_example() {
    check_spec_traces(&decode_traces(CAMEL_TRACES.as_bytes()).unwrap());
}

#[test]
fn decodes_snake_case_names() {
    let snake = CAMEL_TRACES
        .replace("resourceSpans", "resource_spans")
        .replace("scopeSpans", "scope_spans")
        .replace("traceId", "trace_id")
        .replace("parentSpanId", "parent_span_id")
        .replace("spanId", "span_id")
        .replace("startTimeUnixNano", "start_time_unix_nano")
        .replace("endTimeUnixNano", "end_time_unix_nano")
        .replace("stringValue", "string_value")
        .replace("intValue", "int_value")
        .replace("boolValue", "bool_value")
        .replace("doubleValue", "double_value")
        .replace("bytesValue", "bytes_value")
        .replace("arrayValue", "array_value");
    assert!(!snake.contains("Value\""));
    check_spec_traces(&decode_traces(snake.as_bytes()).unwrap());
}

#[test]
fn decodes_snake_case_metrics_and_logs() {
    let metrics = r#"{"resource_metrics":[{"scope_metrics":[{"metrics":[{"name":"h",
        "exponential_histogram":{"aggregation_temporality":"AGGREGATION_TEMPORALITY_DELTA",
        "data_points":[{"zero_count":"3","zero_threshold":0.5,"time_unix_nano":7,
        "positive":{"offset":-1,"bucket_counts":["1",2]}}]}}]}]}]}"#;
    let req = decode_metrics(metrics.as_bytes()).unwrap();
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(Data::ExponentialHistogram(h)) = &m.data else {
        panic!("exponential histogram expected");
    };
    assert_eq!(h.aggregation_temporality, 1);
    let p = &h.data_points[0];
    assert_eq!(
        (p.zero_count, p.zero_threshold, p.time_unix_nano),
        (3, 0.5, 7)
    );
    assert_eq!(
        p.positive,
        Some(Buckets {
            offset: -1,
            bucket_counts: vec![1, 2]
        })
    );

    let logs = r#"{"resource_logs":[{"scope_logs":[{"log_records":[{
        "observed_time_unix_nano":"9","severity_number":"SEVERITY_NUMBER_WARN",
        "severity_text":"WARN","event_name":"e","trace_id":"","body":{"string_value":"hi"}}]}]}]}"#;
    let req = decode_logs(logs.as_bytes()).unwrap();
    let r = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(r.observed_time_unix_nano, 9);
    assert_eq!(r.severity_number, 13);
    assert_eq!(r.severity_text, "WARN");
    assert_eq!(r.event_name, "e");
    assert!(r.trace_id.is_empty());
    assert_eq!(r.body, Some(any(Value::StringValue("hi".into()))));
}

pub(super) fn one_span(span_json: &str) -> Result<Span, JsonError> {
    let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span_json}]}}]}}]}}"#);
    decode_traces(body.as_bytes()).map(|mut r| r.resource_spans[0].scope_spans[0].spans.remove(0))
}

#[test]
fn integers_as_strings_or_numbers() {
    let a = one_span(
        r#"{"startTimeUnixNano":"18446744073709551615","droppedEventsCount":"3","flags":"257"}"#,
    )
    .unwrap();
    let b = one_span(
        r#"{"startTimeUnixNano":18446744073709551615,"droppedEventsCount":3,"flags":257}"#,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.start_time_unix_nano, u64::MAX);
    assert_eq!((a.dropped_events_count, a.flags), (3, 257));
    // Integral floats are accepted, as protobuf JSON parsers do.
    assert_eq!(
        one_span(r#"{"endTimeUnixNano":1e3}"#)
            .unwrap()
            .end_time_unix_nano,
        1000
    );

    let gauge = |v: &str| {
        let body = format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"gauge":{{"dataPoints":[{{"asInt":{v}}}]}}}}]}}]}}]}}"#
        );
        let req = decode_metrics(body.as_bytes())?;
        let Some(Data::Gauge(g)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
            panic!("gauge expected");
        };
        Ok::<_, JsonError>(g.data_points[0].value)
    };
    let min = Some(number_data_point::Value::AsInt(i64::MIN));
    assert_eq!(gauge("\"-9223372036854775808\"").unwrap(), min);
    assert_eq!(gauge("-9223372036854775808").unwrap(), min);
    assert!(gauge("9223372036854775808").is_err());
    assert!(gauge("\"12abc\"").is_err());
    assert!(gauge("1.5").is_err());
}

#[test]
fn doubles_from_strings() {
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[
        {"sum":"NaN","min":"-Infinity","max":"Infinity","explicitBounds":["1.5",2,"-3e2"]}]}}]}]}]}"#;
    let req = decode_metrics(body.as_bytes()).unwrap();
    let Some(Data::Histogram(h)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("histogram expected");
    };
    let p = &h.data_points[0];
    assert!(p.sum.unwrap().is_nan());
    assert_eq!(
        (p.min, p.max),
        (Some(f64::NEG_INFINITY), Some(f64::INFINITY))
    );
    assert_eq!(p.explicit_bounds, vec![1.5, 2.0, -300.0]);
}

#[test]
fn enums_by_name_or_number() {
    let span =
        one_span(r#"{"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}}"#).unwrap();
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.unwrap().code, 2);
    // Unknown numeric values are kept (proto3 enums are open).
    assert_eq!(one_span(r#"{"kind":99}"#).unwrap().kind, 99);
    let err = one_span(r#"{"kind":"SPAN_KIND_NOPE"}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].kind");
}

#[test]
fn unknown_fields_are_ignored() {
    let span = one_span(
        r#"{"futureField":{"a":[1,2,{"b":null}]},"name":"n","anotherOne":"x",
            "status":{"code":1,"extra":[[]]},"attributes":[{"key":"k","unknown":1,"value":{"mystery":{}, "intValue":"5"}}]}"#,
    )
    .unwrap();
    assert_eq!(span.name, "n");
    assert_eq!(span.status.unwrap().code, 1);
    assert_eq!(span.attributes, vec![kv("k", Value::IntValue(5))]);
}

#[test]
fn null_means_default() {
    let span = one_span(
        r#"{"traceId":null,"name":null,"kind":null,"attributes":null,"status":null,"startTimeUnixNano":null,
            "events":[null],"links":[{"traceId":"01"}]}"#,
    )
    .unwrap();
    assert_eq!(
        span,
        Span {
            events: vec![Event::default()],
            links: vec![Link {
                trace_id: vec![1],
                ..Link::default()
            }],
            ..Span::default()
        }
    );
    // A null oneof member leaves the oneof unset.
    let body =
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":null}}]}]}]}"#;
    let req = decode_logs(body.as_bytes()).unwrap();
    assert_eq!(
        req.resource_logs[0].scope_logs[0].log_records[0].body,
        Some(AnyValue { value: None })
    );
}

#[test]
fn wrong_id_length_is_kept_for_later_validation() {
    let span = one_span(r#"{"traceId":"000102030405060708090a0b0c0d0e","spanId":"aBcD"}"#).unwrap();
    assert_eq!(span.trace_id.len(), 15);
    assert_eq!(span.span_id, vec![0xab, 0xcd]);
}

#[test]
fn base64_variants() {
    let bytes = |b64: &str| {
        let body = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"bytesValue":"{b64}"}}}}]}}]}}]}}"#
        );
        decode_logs(body.as_bytes()).map(|r| {
            r.resource_logs[0].scope_logs[0].log_records[0]
                .body
                .clone()
                .unwrap()
        })
    };
    let expected = any(Value::BytesValue(vec![0xfb, 0xff, 0xbf]));
    assert_eq!(bytes("+/+/").unwrap(), expected);
    assert_eq!(bytes("-_-_").unwrap(), expected);
    assert_eq!(bytes("AAE=").unwrap(), any(Value::BytesValue(vec![0, 1])));
    assert_eq!(bytes("AAE").unwrap(), any(Value::BytesValue(vec![0, 1])));
}
