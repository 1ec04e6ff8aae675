#![allow(clippy::unwrap_used, clippy::expect_used)]

mod decode;
mod errors;
mod fixtures;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use fixtures::*;

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
        0.411_333_333_333_333_33,
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
