//! Builds the encoded request bodies the load generator sends.

use crate::{Args, Protocol, SignalArg};
use bytes::Bytes;
use collector_core::pdata::json;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, status::StatusCode,
};
use prost::Message;
use std::time::{SystemTime, UNIX_EPOCH};

/// splitmix64: a tiny, good-enough PRNG for IDs (no crypto needed).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn attributes(args: &Args, salt: u64) -> Vec<KeyValue> {
    (0..args.attributes)
        .map(|i| {
            let mut value = format!("{:016x}", mix(salt ^ i as u64));
            value.truncate(args.attribute_size);
            while value.len() < args.attribute_size {
                value.push('x');
            }
            string_kv(&format!("attr.{i}"), value)
        })
        .collect()
}

fn resource(args: &Args, n: u64) -> Resource {
    let service = &args.services[(n as usize) % args.services.len()];
    Resource {
        attributes: vec![string_kv("service.name", service.clone())],
        ..Default::default()
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "otel-loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

/// Request number `n`, encoded for the chosen protocol.
pub(crate) fn request(args: &Args, n: u64) -> Bytes {
    let seed = mix(n ^ now_nanos().rotate_left(17));
    let now = now_nanos();
    let encoded = match args.signal {
        SignalArg::Traces => {
            let per_trace = args.spans_per_trace.max(1);
            let mut spans = Vec::with_capacity(args.items_per_request);
            let mut trace_id = Vec::new();
            let mut root_id = Vec::new();
            let mut error = false;
            for i in 0..args.items_per_request {
                if i % per_trace == 0 {
                    let t = mix(seed ^ (i as u64) << 1);
                    trace_id = [t.to_be_bytes(), mix(t).to_be_bytes()].concat();
                    root_id.clear();
                    error = (mix(t ^ 7) as f64 / u64::MAX as f64) < args.error_ratio;
                }
                let span_id = mix(seed ^ (i as u64).wrapping_mul(31) ^ 0xABCD)
                    .max(1)
                    .to_be_bytes()
                    .to_vec();
                let parent = root_id.clone();
                if root_id.is_empty() {
                    root_id = span_id.clone();
                }
                spans.push(Span {
                    trace_id: trace_id.clone(),
                    span_id,
                    parent_span_id: parent,
                    name: format!("operation-{}", i % per_trace),
                    kind: if i % per_trace == 0 { 2 } else { 3 },
                    start_time_unix_nano: now - 1_000_000,
                    end_time_unix_nano: now,
                    attributes: attributes(args, seed ^ i as u64),
                    status: error.then(|| Status {
                        code: StatusCode::Error as i32,
                        message: "loadgen error".into(),
                    }),
                    ..Default::default()
                });
            }
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(args, n)),
                    scope_spans: vec![ScopeSpans {
                        scope: scope(),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            if args.protocol == Protocol::HttpJson {
                json::encode_traces(&request)
            } else {
                request.encode_to_vec()
            }
        }
        SignalArg::Metrics => {
            let data_points = (0..args.items_per_request)
                .map(|i| NumberDataPoint {
                    attributes: attributes(args, seed ^ i as u64),
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(i as f64)),
                    ..Default::default()
                })
                .collect();
            let request = ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(resource(args, n)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: scope(),
                        metrics: vec![Metric {
                            name: "loadgen.gauge".into(),
                            data: Some(metric::Data::Gauge(Gauge { data_points })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            if args.protocol == Protocol::HttpJson {
                json::encode_metrics(&request)
            } else {
                request.encode_to_vec()
            }
        }
        SignalArg::Logs => {
            let log_records = (0..args.items_per_request)
                .map(|i| LogRecord {
                    time_unix_nano: now,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(Value::StringValue(format!("loadgen log line {i}"))),
                    }),
                    attributes: attributes(args, seed ^ i as u64),
                    ..Default::default()
                })
                .collect();
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource(args, n)),
                    scope_logs: vec![ScopeLogs {
                        scope: scope(),
                        log_records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            if args.protocol == Protocol::HttpJson {
                json::encode_logs(&request)
            } else {
                request.encode_to_vec()
            }
        }
    };
    Bytes::from(encoded)
}

/// `args.pool` distinct requests.
pub(crate) fn pool(args: &Args) -> Vec<Bytes> {
    (0..args.pool as u64).map(|n| request(args, n)).collect()
}
