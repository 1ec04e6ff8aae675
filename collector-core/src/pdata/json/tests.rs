#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;

// --- fixtures ---------------------------------------------------------------

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any(v)),
        key_strindex: 0,
    }
}

/// Attributes covering every AnyValue variant, nesting, and values that
/// hold their type's default (which must still round-trip as present).
fn attrs() -> Vec<KeyValue> {
    vec![
        kv(
            "str",
            Value::StringValue("héllo \"quoted\" \\ \n\t\u{1}".into()),
        ),
        kv("empty-str", Value::StringValue(String::new())),
        kv("bool", Value::BoolValue(true)),
        kv("false", Value::BoolValue(false)),
        kv("int", Value::IntValue(-9_007_199_254_740_993)),
        kv("zero", Value::IntValue(0)),
        kv("double", Value::DoubleValue(3.25)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2, 250, 255])),
        kv("strindex", Value::StringValueStrindex(7)),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    any(Value::IntValue(1)),
                    AnyValue { value: None },
                    any(Value::KvlistValue(KeyValueList {
                        values: vec![kv("deep", Value::DoubleValue(-0.5))],
                    })),
                ],
            }),
        ),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("a", Value::ArrayValue(ArrayValue { values: vec![] })),
                    KeyValue {
                        key: "no-value".into(),
                        value: None,
                        key_strindex: 3,
                    },
                ],
            }),
        ),
        KeyValue {
            key: "empty-any".into(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
    ]
}

fn resource() -> Resource {
    Resource {
        attributes: attrs(),
        dropped_attributes_count: 2,
        entity_refs: vec![EntityRef {
            schema_url: "https://schema/entity".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into(), "service.instance.id".into()],
            description_keys: vec!["service.version".into()],
        }],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "my.library".into(),
        version: "1.2.3".into(),
        attributes: vec![kv("scope.attr", Value::StringValue("x".into()))],
        dropped_attributes_count: 4,
    }
}

fn full_traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (0xA0..=0xA7).collect(),
        trace_state: "rojo=00f067aa0ba902b7".into(),
        parent_span_id: vec![0xff; 8],
        flags: 0x301,
        name: "GET /api".into(),
        kind: 2,
        start_time_unix_nano: 1_544_712_660_000_000_000,
        end_time_unix_nano: u64::MAX,
        attributes: attrs(),
        dropped_attributes_count: 1,
        events: vec![
            Event {
                time_unix_nano: 1_544_712_660_500_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", Value::StringValue("boom".into()))],
                dropped_attributes_count: 3,
            },
            Event::default(),
        ],
        dropped_events_count: 5,
        links: vec![Link {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: "congo=t61rcWkgMzE".into(),
            attributes: vec![kv("link.attr", Value::BoolValue(true))],
            dropped_attributes_count: 6,
            flags: 0x101,
        }],
        dropped_links_count: 7,
        status: Some(Status {
            message: "it failed".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource()),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(scope()),
                        spans: vec![span, Span::default()],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeSpans {
                        scope: Some(InstrumentationScope::default()),
                        spans: vec![],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
            },
            ResourceSpans::default(),
        ],
    }
}

fn exemplars() -> Vec<Exemplar> {
    vec![
        Exemplar {
            filtered_attributes: attrs(),
            time_unix_nano: 42,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(exemplar::Value::AsDouble(0.0)),
        },
        Exemplar {
            filtered_attributes: vec![],
            time_unix_nano: 0,
            span_id: vec![],
            trace_id: vec![],
            value: Some(exemplar::Value::AsInt(i64::MIN)),
        },
        Exemplar::default(),
    ]
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "ms".into(),
        metadata: vec![kv("meta", Value::StringValue("m".into()))],
        data: Some(data),
    }
}

fn number_point(value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(),
        start_time_unix_nano: 1,
        time_unix_nano: u64::MAX - 1,
        exemplars: exemplars(),
        flags: 1,
        value: Some(value),
    }
}

fn full_metrics() -> ExportMetricsServiceRequest {
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![
                    number_point(number_data_point::Value::AsDouble(12.5)),
                    number_point(number_data_point::Value::AsDouble(f64::NAN)),
                    number_point(number_data_point::Value::AsInt(0)),
                    NumberDataPoint::default(),
                ],
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: vec![number_point(number_data_point::Value::AsInt(i64::MAX))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: attrs(),
                        start_time_unix_nano: 10,
                        time_unix_nano: 20,
                        count: 30,
                        sum: Some(0.0),
                        bucket_counts: vec![0, 10, u64::MAX, 0],
                        explicit_bounds: vec![-1.5, 0.0, 1e300],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(-2.0),
                        max: Some(f64::NEG_INFINITY),
                    },
                    HistogramDataPoint::default(),
                ],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exp_histogram",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: attrs(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(4.5),
                        scale: -3,
                        zero_count: 5,
                        positive: Some(Buckets {
                            offset: -7,
                            bucket_counts: vec![1, 0, 3],
                        }),
                        negative: Some(Buckets::default()),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(0.0),
                        max: Some(9.75),
                        zero_threshold: 1e-9,
                    },
                    ExponentialHistogramDataPoint::default(),
                ],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs(),
                    start_time_unix_nano: 100,
                    time_unix_nano: 200,
                    count: 300,
                    sum: 1234.5678,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.0,
                            value: 1.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 250.0,
                        },
                        ValueAtQuantile::default(),
                    ],
                    flags: 1,
                }],
            }),
        ),
        Metric {
            name: "no-data".into(),
            ..Metric::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: "https://scope/schema".into(),
            }],
            schema_url: "https://resource/schema".into(),
        }],
    }
}

fn full_logs() -> ExportLogsServiceRequest {
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_000_000_001,
        observed_time_unix_nano: 1_700_000_000_000_000_002,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(any(Value::KvlistValue(KeyValueList { values: attrs() }))),
        attributes: attrs(),
        dropped_attributes_count: 8,
        flags: 1,
        trace_id: vec![0x5b; 16],
        span_id: vec![0xee; 8],
        event_name: "browser.page_view".into(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: vec![
                    record,
                    LogRecord {
                        body: Some(AnyValue { value: None }),
                        ..LogRecord::default()
                    },
                    LogRecord::default(),
                ],
                schema_url: "https://scope/schema".into(),
            }],
            schema_url: "https://resource/schema".into(),
        }],
    }
}

// --- round trips ------------------------------------------------------------

#[test]
fn traces_round_trip() {
    let req = full_traces();
    let json = encode_traces(&req);
    assert_eq!(decode_traces(&json).unwrap(), req);
    // The output is plain JSON that any parser accepts.
    let _: serde_json::Value = serde_json::from_slice(&json).unwrap();
}

#[test]
fn metrics_round_trip() {
    let mut req = full_metrics();
    let json = encode_metrics(&req);
    let decoded = decode_metrics(&json).unwrap();
    // NaN != NaN, so compare that one data point separately.
    let nan_at = |r: &mut ExportMetricsServiceRequest| {
        let Some(Data::Gauge(g)) = &mut r.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("gauge expected");
        };
        std::mem::take(&mut g.data_points[1].value)
    };
    let mut decoded = decoded;
    let Some(number_data_point::Value::AsDouble(v)) = nan_at(&mut decoded) else {
        panic!("double expected");
    };
    assert!(v.is_nan());
    nan_at(&mut req);
    assert_eq!(decoded, req);
}

#[test]
fn logs_round_trip() {
    let req = full_logs();
    let json = encode_logs(&req);
    assert_eq!(decode_logs(&json).unwrap(), req);
}

#[test]
fn empty_requests_encode_as_empty_objects() {
    assert_eq!(
        encode_traces(&ExportTraceServiceRequest::default()),
        b"{}".to_vec()
    );
    assert_eq!(
        decode_metrics(b"{}").unwrap(),
        ExportMetricsServiceRequest::default()
    );
}

#[test]
fn encode_format() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0xAB, 0x01],
                    name: "s".into(),
                    kind: 3,
                    start_time_unix_nano: 5,
                    attributes: vec![
                        kv("n", Value::IntValue(-2)),
                        kv("d", Value::DoubleValue(1.0)),
                    ],
                    status: Some(Status::default()),
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let json = String::from_utf8(encode_traces(&req)).unwrap();
    assert_eq!(
        json,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab01","name":"s","kind":3,"startTimeUnixNano":"5","attributes":[{"key":"n","value":{"intValue":"-2"}},{"key":"d","value":{"doubleValue":1.0}}],"status":{}}]}]}]}"#
    );
}

#[test]
fn non_finite_doubles_are_strings() {
    let mut out = String::new();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, 2.5e-10] {
        super::enc::write_f64(&mut out, v);
        out.push(' ');
    }
    assert_eq!(out, r#""NaN" "Infinity" "-Infinity" 1e300 2.5e-10 "#);
}

/// Doubles needing all 17 significant digits round-trip only if serde_json
/// parses floats exactly (its `float_roundtrip` feature). Skipped otherwise,
/// since that is a property of the parser, not of this codec.
#[test]
fn hard_doubles_round_trip_when_parser_is_exact() {
    let values = [
        0.1 + 0.2,
        1.0 / 3.0,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        123_456.789_012_345_68,
    ];
    let exact = values
        .iter()
        .all(|v| serde_json::from_str::<f64>(&format!("{v:?}")).ok() == Some(*v));
    if !exact {
        eprintln!("serde_json built without float_roundtrip: skipping");
        return;
    }
    for v in values {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(any(Value::DoubleValue(v))),
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        assert_eq!(decode_logs(&encode_logs(&req)).unwrap(), req, "{v:?}");
    }
}

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

fn one_span(span_json: &str) -> Result<Span, JsonError> {
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

// --- errors -----------------------------------------------------------------

#[test]
fn error_non_hex_trace_id() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{},{"spans":[{},{},{},{"traceId":"zz"}]}]}]}"#;
    let err = decode_traces(body.as_bytes()).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[1].spans[3].traceId"
    );
    assert!(err.message().contains("hex"), "{err}");
    assert!(
        err.to_string()
            .contains("resourceSpans[0].scopeSpans[1].spans[3].traceId")
    );

    let err = one_span(r#"{"spanId":"abc"}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].spanId");
    let err = one_span(r#"{"parent_span_id":12}"#).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[0].spans[0].parentSpanId"
    );
}

#[test]
fn error_wrong_type_for_spans() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":{"name":"x"}}]}]}"#;
    let err = decode_traces(body.as_bytes()).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans");
    assert!(err.message().contains("expected an array"), "{err}");

    let err =
        decode_traces(br#"{"resourceSpans":[{"scopeSpans":[{"spans":["x"]}]}]}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0]");

    let err = one_span(r#"{"name":5}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].name");
}

#[test]
fn error_bad_base64() {
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[
        {"key":"ok","value":{"bytesValue":"AAAA"}},
        {"key":"bad","value":{"arrayValue":{"values":[{"bytesValue":"A*B="}]}}}]}]}]}]}"#;
    let err = decode_logs(body.as_bytes()).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[1].value.arrayValue.values[0].bytesValue"
    );
    assert!(err.message().contains("base64"), "{err}");
}

#[test]
fn error_top_level_and_syntax() {
    for body in [
        &b"[]"[..],
        b"null",
        b"42",
        b"\"x\"",
        b"",
        b"{",
        b"{} x",
        b"{\"resourceSpans\":[}",
    ] {
        assert!(
            decode_traces(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(decode_traces(b"[]").unwrap_err().path(), "");
    assert_eq!(
        decode_traces(b" {} \n").unwrap(),
        ExportTraceServiceRequest::default()
    );
}

#[test]
fn error_invalid_utf8() {
    // Inside a known string, and inside an unknown (skipped) field.
    let err = decode_traces(b"{\"resourceSpans\":[{\"schemaUrl\":\"\xff\xfe\"}]}").unwrap_err();
    assert!(err.message().contains("UTF-8"), "{err}");
    assert!(decode_logs(b"{\"ignored\":\"\xc3\x28\"}").is_err());
}

#[test]
fn error_out_of_range() {
    let err = one_span(r#"{"droppedAttributesCount":4294967296}"#).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[0].spans[0].droppedAttributesCount"
    );
    assert!(one_span(r#"{"startTimeUnixNano":-1}"#).is_err());
    assert!(one_span(r#"{"startTimeUnixNano":"-1"}"#).is_err());
}

/// Runs `f` on a thread with a small stack: a recursion proportional to
/// the input depth would overflow it (and abort the test process).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(
            std::env::var("STK")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(256)
                * 1024,
        )
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deep_nesting_is_rejected_without_deep_recursion() {
    const DEPTH: usize = 10_000;
    let kvlist = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}"x"{}}}]}}]}}]}}"#,
        r#"{"kvlistValue":{"values":[{"key":"k","value":"#.repeat(DEPTH),
        "}]}}".repeat(DEPTH)
    );
    let array = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}1{}}}]}}]}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(DEPTH),
        "]}}".repeat(DEPTH)
    );
    let unknown = format!(r#"{{"x":{}{}}}"#, "[".repeat(DEPTH), "]".repeat(DEPTH));
    let results = on_small_stack(move || {
        [
            decode_logs(kvlist.as_bytes()).map(drop),
            decode_logs(array.as_bytes()).map(drop),
            decode_logs(unknown.as_bytes()).map(drop),
        ]
    });
    let [kvlist, array, unknown] = results;
    for r in [kvlist, array] {
        let err = r.unwrap_err();
        assert!(err.message().contains("recursion limit"), "{err}");
    }
    // serde_json skips unknown values iteratively, whatever their depth.
    unknown.unwrap();
}

#[test]
fn moderate_nesting_is_accepted() {
    // Depth well within serde_json's limit decodes fine and round-trips.
    let mut v = any(Value::StringValue("leaf".into()));
    for _ in 0..20 {
        v = any(Value::ArrayValue(ArrayValue { values: vec![v] }));
    }
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(v),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let decoded = on_small_stack(move || decode_logs(&encode_logs(&req)).map(|d| d == req));
    assert!(decoded.unwrap());
}

// --- responses --------------------------------------------------------------

#[test]
fn partial_success_and_status_bodies() {
    assert_eq!(
        encode_partial_success(0, "", "rejectedSpans"),
        b"{}".to_vec()
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(3, "bad \"ids\"", "rejectedSpans")).unwrap(),
        r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad \"ids\""}}"#
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(0, "warning", "rejectedLogRecords")).unwrap(),
        r#"{"partialSuccess":{"errorMessage":"warning"}}"#
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(7, "", "rejectedDataPoints")).unwrap(),
        r#"{"partialSuccess":{"rejectedDataPoints":"7"}}"#
    );
    assert_eq!(
        String::from_utf8(encode_status(3, "invalid\njson")).unwrap(),
        r#"{"code":3,"message":"invalid\njson"}"#
    );
    assert_eq!(
        String::from_utf8(encode_status(0, "")).unwrap(),
        r#"{"code":0}"#
    );
}

#[test]
fn string_escaping() {
    let mut out = String::new();
    super::enc::write_str(&mut out, "a\"b\\c\u{0}\u{1f}\u{7f}é€😀\r\n\t\u{8}\u{c}");
    assert_eq!(
        out,
        "\"a\\\"b\\\\c\\u0000\\u001f\u{7f}é€😀\\r\\n\\t\\b\\f\""
    );
    let back: String = serde_json::from_str(&out).unwrap();
    assert_eq!(back, "a\"b\\c\u{0}\u{1f}\u{7f}é€😀\r\n\t\u{8}\u{c}");
}
