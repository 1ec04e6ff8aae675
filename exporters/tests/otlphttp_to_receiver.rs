//! The `otlphttp` exporter against collector-core's `otlp` receiver (HTTP)
//! on a loopback port: protobuf and JSON bodies, every compression, headers,
//! `partial_success`, and the status handling of the OTLP/HTTP spec (503 with
//! `Retry-After` is retried after the delay, 400 is not retried).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use collector_core::component::{
    ComponentId, CreateContext, Exporter, ExporterFactory, Factory, Host, Receiver,
    ReceiverConsumers, ReceiverFactory,
};
use collector_core::consumer::{ConsumeError, Consumer, ErrorKind};
use collector_core::pdata::{Batch, Payload, Signal, Telemetry};
use collector_core::receiver::otlp::OtlpReceiverFactory;
use exporters::otlphttp::{OtlpHttpConfig, OtlpHttpExporterFactory};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records what reaches the pipeline; answers from a script first.
struct Capture {
    script: Mutex<VecDeque<ConsumeError>>,
    calls: AtomicUsize,
    got: mpsc::UnboundedSender<Telemetry>,
}

#[async_trait]
impl Consumer for Capture {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self.script.lock().pop_front() {
            return Err(error);
        }
        let _ = self.got.send(telemetry);
        Ok(())
    }
}

struct Peer {
    url: String,
    got: mpsc::UnboundedReceiver<Telemetry>,
    capture: Arc<Capture>,
    receiver: Box<dyn Receiver>,
}

impl Peer {
    async fn start(script: Vec<ConsumeError>) -> Peer {
        let host = Host::new();
        let ctx = CreateContext {
            id: ComponentId::new("otlp", None),
            host: host.clone(),
        };
        let config: <OtlpReceiverFactory as Factory>::Config = serde_yaml_ng::from_str(
            "protocols: {http: {endpoint: '127.0.0.1:0', include_metadata: true}}",
        )
        .unwrap();
        OtlpReceiverFactory.validate(&config).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let capture = Arc::new(Capture {
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            got: tx,
        });
        let mut consumers = ReceiverConsumers::default();
        for signal in Signal::ALL {
            consumers.set(signal, capture.clone());
        }
        let receiver = OtlpReceiverFactory
            .create(&ctx, &config, consumers)
            .unwrap();
        receiver.start().await.unwrap();
        let addr = host
            .listeners
            .local_addr("otlp/http", "127.0.0.1:0")
            .unwrap();
        Peer {
            url: format!("http://{addr}"),
            got: rx,
            capture,
            receiver,
        }
    }

    async fn next(&mut self) -> Telemetry {
        tokio::time::timeout(Duration::from_secs(10), self.got.recv())
            .await
            .expect("data within 10s")
            .expect("channel open")
    }

    async fn stop(self) {
        self.receiver
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
    }
}

fn exporter(extra: &str) -> (Arc<dyn Exporter>, Arc<Host>) {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlphttp", None),
        host: host.clone(),
    };
    let retry = if extra.contains("retry_on_failure") {
        ""
    } else {
        "retry_on_failure: {initial_interval: 10ms, max_interval: 10ms, randomization_factor: 0}\n"
    };
    let config: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
        "sending_queue: {{enabled: false}}\n{retry}{extra}"
    ))
    .unwrap();
    OtlpHttpExporterFactory.validate(&config).unwrap();
    (OtlpHttpExporterFactory.create(&ctx, &config).unwrap(), host)
}

fn metric(host: &Host, name: &str) -> f64 {
    host.metrics
        .value(name, &[("exporter", "otlphttp")])
        .unwrap_or(0.0)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn trace_request(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("op-{i}"),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_000_001_000,
                        attributes: vec![kv("http.route", "/pay")],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn spans(n: usize) -> Payload {
    Payload::Traces(Batch::decode(trace_request(n).encode_to_vec().into()).unwrap())
}

fn metrics_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "cpu".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..3)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsDouble(i as f64 + 0.25)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..2)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("hello {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn protobuf_with_every_compression_arrives_unchanged_with_headers() {
    let mut peer = Peer::start(vec![]).await;
    for compression in ["gzip", "zstd", "deflate", "snappy", "none"] {
        let (exporter, host) = exporter(&format!(
            "endpoint: {}\ncompression: {compression}\nheaders: {{x-tenant: acme, X-Compression: {compression}}}",
            peer.url
        ));
        let payload = spans(4);
        let original = payload.to_protobuf();
        exporter.consume(Telemetry::new(payload)).await.unwrap();
        let got = peer.next().await;
        assert_eq!(got.payload.to_protobuf(), original, "{compression}");
        assert_eq!(got.client.get("x-tenant"), ["acme"], "{compression}");
        assert_eq!(got.client.get("x-compression"), [compression]);
        assert_eq!(got.client.get("content-type"), ["application/x-protobuf"]);
        assert_eq!(metric(&host, "otelcol_exporter_sent_spans"), 4.0);
    }
    peer.stop().await;
}

#[tokio::test]
async fn json_bodies_decode_to_the_same_data_for_every_signal() {
    let mut peer = Peer::start(vec![]).await;
    for compression in ["gzip", "zstd"] {
        let (exporter, host) = exporter(&format!(
            "endpoint: {}/\nencoding: json\ncompression: {compression}",
            peer.url
        ));
        exporter.consume(Telemetry::new(spans(3))).await.unwrap();
        let got = peer.next().await;
        assert_eq!(got.client.get("content-type"), ["application/json"]);
        let Payload::Traces(batch) = got.payload else {
            panic!("traces expected")
        };
        assert_eq!(batch.request(), &trace_request(3));

        exporter
            .consume(Telemetry::new(Payload::Metrics(Batch::new(
                metrics_request(),
            ))))
            .await
            .unwrap();
        let Payload::Metrics(batch) = peer.next().await.payload else {
            panic!("metrics expected")
        };
        assert_eq!(batch.request(), &metrics_request());

        exporter
            .consume(Telemetry::new(Payload::Logs(Batch::new(logs_request()))))
            .await
            .unwrap();
        let Payload::Logs(batch) = peer.next().await.payload else {
            panic!("logs expected")
        };
        assert_eq!(batch.request(), &logs_request());
        assert_eq!(metric(&host, "otelcol_exporter_sent_spans"), 3.0);
        assert_eq!(metric(&host, "otelcol_exporter_sent_metric_points"), 3.0);
        assert_eq!(metric(&host, "otelcol_exporter_sent_log_records"), 2.0);
    }
    peer.stop().await;
}

#[tokio::test]
async fn unavailable_with_retry_after_is_retried_after_the_delay() {
    let refusal =
        ConsumeError::unavailable("pipeline busy").with_retry_after(Duration::from_secs(1));
    let mut peer = Peer::start(vec![refusal]).await;
    let (exporter, host) = exporter(&format!("endpoint: {}", peer.url));
    let start = Instant::now();
    exporter.consume(Telemetry::new(spans(2))).await.unwrap();
    // The retry waited for Retry-After (1s), not the 10ms backoff.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(peer.next().await.payload.item_count(), 2);
    assert_eq!(peer.capture.calls.load(Ordering::SeqCst), 2);
    assert_eq!(metric(&host, "otelcol_exporter_sent_spans"), 2.0);
    assert_eq!(metric(&host, "otelcol_exporter_send_failed_spans"), 0.0);
    peer.stop().await;
}

#[tokio::test]
async fn resource_exhausted_is_retried_and_bad_request_is_not() {
    let peer = Peer::start(vec![
        ConsumeError::resource_exhausted("full", Some(Duration::from_millis(10))),
        ConsumeError::invalid("bad data"),
    ])
    .await;
    let (exporter, host) = exporter(&format!("endpoint: {}", peer.url));
    let error = exporter
        .consume(Telemetry::new(spans(5)))
        .await
        .unwrap_err();
    // 429 was retried; the 400 that followed ended it.
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    assert!(error.message().contains("400"), "{error}");
    assert!(error.message().contains("bad data"), "{error}");
    assert_eq!(peer.capture.calls.load(Ordering::SeqCst), 2);
    assert_eq!(metric(&host, "otelcol_exporter_send_failed_spans"), 5.0);
    assert_eq!(metric(&host, "otelcol_exporter_sent_spans"), 0.0);
    peer.stop().await;
}

#[tokio::test]
async fn partial_success_is_counted_in_both_encodings() {
    let mut peer = Peer::start(vec![]).await;
    for encoding in ["proto", "json"] {
        let (exporter, host) = exporter(&format!("endpoint: {}\nencoding: {encoding}", peer.url));
        let mut request = trace_request(3);
        // The receiver drops spans with an all-zero span id and says so.
        request.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
        exporter
            .consume(Telemetry::new(Payload::Traces(Batch::new(request))))
            .await
            .unwrap();
        assert_eq!(peer.next().await.payload.item_count(), 2);
        assert_eq!(
            metric(&host, "otelcol_exporter_sent_spans"),
            2.0,
            "{encoding}"
        );
        assert_eq!(
            metric(&host, "otelcol_exporter_send_failed_spans"),
            1.0,
            "{encoding}"
        );
    }
    peer.stop().await;
}

#[tokio::test]
async fn a_signal_endpoint_overrides_the_base() {
    let mut peer = Peer::start(vec![]).await;
    let (exporter, host) = exporter(&format!(
        "endpoint: http://127.0.0.1:9/unused\ntraces_endpoint: {}/v1/traces",
        peer.url
    ));
    exporter.consume(Telemetry::new(spans(1))).await.unwrap();
    assert_eq!(peer.next().await.payload.item_count(), 1);
    assert_eq!(metric(&host, "otelcol_exporter_sent_spans"), 1.0);
    peer.stop().await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_counted() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (exporter, host) = exporter(&format!(
        "endpoint: http://{addr}\nretry_on_failure: {{initial_interval: 10ms, max_interval: 10ms, max_elapsed_time: 100ms}}"
    ));
    let error = exporter
        .consume(Telemetry::new(spans(2)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(metric(&host, "otelcol_exporter_send_failed_spans"), 2.0);
}
