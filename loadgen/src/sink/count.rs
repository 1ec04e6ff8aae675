//! Counts the items of an encoded OTLP export request by walking the
//! protobuf wire format, without building the message: the sink only needs
//! "how many spans", and allocating every string of every span would make it
//! compete harder for the CPU with the collector under test.
//!
//! The walk follows a path of field numbers from the request down to the
//! items (for traces: `resource_spans` (1) -> `scope_spans` (2) ->
//! `spans` (2)) and counts the length-delimited fields at the last level.
//! Any malformed input is an error, never a panic.

use prost::encoding::decode_varint;

/// Which export request a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `ExportTraceServiceRequest`: counts spans.
    Traces,
    /// `ExportMetricsServiceRequest`: counts data points.
    Metrics,
    /// `ExportLogsServiceRequest`: counts log records.
    Logs,
}

/// `ExportTraceServiceRequest.resource_spans` -> `ResourceSpans.scope_spans` -> `ScopeSpans.spans`.
const TRACES_PATH: &[&[u32]] = &[&[1], &[2], &[2]];
/// `ExportLogsServiceRequest.resource_logs` -> `ResourceLogs.scope_logs` -> `ScopeLogs.log_records`.
const LOGS_PATH: &[&[u32]] = &[&[1], &[2], &[2]];
/// `resource_metrics` -> `scope_metrics` -> `metrics` -> one of `gauge` (5), `sum` (7),
/// `histogram` (9), `exponential_histogram` (10), `summary` (11) -> `data_points` (1).
const METRICS_PATH: &[&[u32]] = &[&[1], &[2], &[2], &[5, 7, 9, 10, 11], &[1]];

/// Why a body could not be counted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed protobuf: {}", self.0)
    }
}

/// The number of items (spans, data points, log records) in `body`.
pub(crate) fn items(signal: Signal, body: &[u8]) -> Result<u64, Malformed> {
    let path = match signal {
        Signal::Traces => TRACES_PATH,
        Signal::Metrics => METRICS_PATH,
        Signal::Logs => LOGS_PATH,
    };
    count_along(body, path)
}

/// Counts the length-delimited fields reached by following `path` (one set of
/// accepted field numbers per nesting level) from the message `body`.
fn count_along(mut body: &[u8], path: &[&[u32]]) -> Result<u64, Malformed> {
    let Some((wanted, rest)) = path.split_first() else {
        return Ok(0);
    };
    let mut total = 0u64;
    while !body.is_empty() {
        let key = decode_varint(&mut body).map_err(|_| Malformed("bad field key"))?;
        let field = u32::try_from(key >> 3).map_err(|_| Malformed("field number out of range"))?;
        match key & 7 {
            // varint
            0 => {
                decode_varint(&mut body).map_err(|_| Malformed("bad varint"))?;
            }
            // 64-bit
            1 => body = body.get(8..).ok_or(Malformed("truncated fixed64"))?,
            // length-delimited
            2 => {
                let len = decode_varint(&mut body).map_err(|_| Malformed("bad length"))?;
                let len = usize::try_from(len).map_err(|_| Malformed("length out of range"))?;
                if len > body.len() {
                    return Err(Malformed("length beyond the end of the message"));
                }
                let (inner, after) = body.split_at(len);
                body = after;
                if wanted.contains(&field) {
                    total += if rest.is_empty() {
                        1
                    } else {
                        count_along(inner, rest)?
                    };
                }
            }
            // 32-bit
            5 => body = body.get(4..).ok_or(Malformed("truncated fixed32"))?,
            _ => return Err(Malformed("unsupported wire type")),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn span(n: u8) -> Span {
        Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: format!("span-{n}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            attributes: vec![KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(-5)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("svc".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn counts_spans_across_resources_and_scopes() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: resource(),
                    scope_spans: vec![
                        ScopeSpans {
                            spans: (0..3).map(span).collect(),
                            ..Default::default()
                        },
                        ScopeSpans {
                            spans: vec![span(9)],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: (0..5).map(span).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(items(Signal::Traces, &request.encode_to_vec()), Ok(9));
    }

    #[test]
    fn empty_request_has_no_items() {
        assert_eq!(items(Signal::Traces, &[]), Ok(0));
        assert_eq!(items(Signal::Metrics, &[]), Ok(0));
        assert_eq!(items(Signal::Logs, &[]), Ok(0));
    }

    #[test]
    fn counts_data_points_of_every_metric_kind() {
        let number = |v: f64| NumberDataPoint {
            value: Some(
                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v),
            ),
            ..Default::default()
        };
        let metrics = vec![
            Metric {
                name: "g".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![number(1.0), number(2.0)],
                })),
                ..Default::default()
            },
            Metric {
                name: "s".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![number(3.0)],
                    is_monotonic: true,
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "h".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![
                        HistogramDataPoint {
                            count: 4,
                            bucket_counts: vec![1, 3],
                            explicit_bounds: vec![1.0],
                            ..Default::default()
                        };
                        3
                    ],
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            },
        ];
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(items(Signal::Metrics, &request.encode_to_vec()), Ok(6));
    }

    #[test]
    fn counts_log_records() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            severity_number: 9,
                            time_unix_nano: 7,
                            ..Default::default()
                        };
                        4
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(items(Signal::Logs, &request.encode_to_vec()), Ok(4));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1), span(2)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        // Every truncation either counts fewer spans or fails; none panics.
        for end in 0..good.len() {
            if let Ok(n) = items(Signal::Traces, &good[..end]) {
                assert!(n <= 2);
            }
        }
        assert!(items(Signal::Traces, &[0x0a, 0xff]).is_err());
        assert!(
            items(Signal::Traces, &[0x0b]).is_err(),
            "start-group wire type"
        );
        assert!(
            items(Signal::Traces, &[0x0a, 0x05, 0x00]).is_err(),
            "length past the end"
        );
    }
}
