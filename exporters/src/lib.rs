//! Exporters of the ollyscale-otel collectors, reading otelcol-contrib's
//! config keys: [`otlp`] (gRPC), [`debug`], [`file`](mod@file), and the exporter
//! [`helper`] (sending queue, retry, timeout) the network exporters share.
//!
//! Data path: pipeline fanout -> exporter `consume` -> (network exporters)
//! sending queue -> workers -> retry/timeout -> transport.
//!
//! A binary offers them with [`register`].

#![warn(missing_docs, missing_debug_implementations)]
// Tests may unwrap; the library itself may not (checked on the non-test build).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod civil;
pub mod debug;
pub mod file;
pub mod helper;
pub mod loadbalancing;
pub mod otlp;
pub mod otlphttp;

use collector_core::component::{Factories, FactoryError};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A factory could not be registered (a type name is taken).
    #[error(transparent)]
    Register(#[from] FactoryError),
}

/// Adds every exporter factory of this crate: `otlp` (alias `otlp_grpc`),
/// `debug` and `file`.
pub fn register(factories: &mut Factories) -> Result<(), Error> {
    factories
        .exporter(otlp::OtlpExporterFactory)?
        .exporter(otlphttp::OtlpHttpExporterFactory)?
        .exporter(debug::DebugExporterFactory)?
        .exporter(file::FileExporterFactory)?
        .exporter(loadbalancing::LoadBalancingExporterFactory)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Batches and contexts for tests.

    use collector_core::component::{ComponentId, CreateContext, Host};
    use collector_core::pdata::{Batch, Payload};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// A context for exporter `id` with a fresh host.
    pub(crate) fn ctx(id: &str) -> CreateContext {
        CreateContext {
            id: id.parse().unwrap_or_else(|_| ComponentId::new(id, None)),
            host: Host::new(),
        }
    }

    pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", "checkout")],
            ..Default::default()
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: "test-scope".into(),
            version: "1.0".into(),
            ..Default::default()
        })
    }

    /// A trace request with `n` spans, as received from the wire (it keeps
    /// its protobuf bytes).
    pub(crate) fn trace_request(n: usize) -> ExportTraceServiceRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![0x11; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("span-{i}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_500_000_000,
                attributes: vec![kv("http.route", "/pay")],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// A traces payload with `n` spans carrying its original encoding.
    pub(crate) fn traces(n: usize) -> Payload {
        let bytes = trace_request(n).encode_to_vec();
        Payload::Traces(Batch::decode(bytes.into()).unwrap_or_default())
    }

    /// A metrics payload with one gauge of `n` data points.
    pub(crate) fn metrics(n: usize) -> Payload {
        let points = (0..n)
            .map(|i| NumberDataPoint {
                attributes: vec![kv("cpu", &i.to_string())],
                time_unix_nano: 1_700_000_000_000_000_000,
                value: Some(number_data_point::Value::AsDouble(i as f64 + 0.5)),
                ..Default::default()
            })
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: vec![Metric {
                        name: "cpu.usage".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Payload::Metrics(Batch::new(request))
    }

    /// A logs payload with `n` records.
    pub(crate) fn logs(n: usize) -> Payload {
        let records = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("hello {i}"))),
                }),
                attributes: vec![kv("user", "ann")],
                ..Default::default()
            })
            .collect();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Payload::Logs(Batch::new(request))
    }
}
