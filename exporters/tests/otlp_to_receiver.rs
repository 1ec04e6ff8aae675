//! The `otlp` exporter against collector-core's `otlp` receiver on a
//! loopback port: bytes pass through unchanged, and a refusal downstream of
//! the receiver comes back as a retryable gRPC status that the exporter retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use collector_core::component::{
    ComponentId, CreateContext, ExporterFactory, Factory, Host, ReceiverConsumers, ReceiverFactory,
};
use collector_core::consumer::{ConsumeError, Consumer};
use collector_core::pdata::{Batch, Payload, Signal, Telemetry};
use collector_core::receiver::otlp::OtlpReceiverFactory;
use exporters::otlp::{OtlpConfig, OtlpExporterFactory};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records what reaches the pipeline; refuses the first `refuse` batches.
struct Capture {
    refuse: Mutex<usize>,
    got: mpsc::UnboundedSender<Payload>,
}

#[async_trait]
impl Consumer for Capture {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        {
            let mut refuse = self.refuse.lock();
            if *refuse > 0 {
                *refuse -= 1;
                return Err(ConsumeError::resource_exhausted(
                    "pipeline full",
                    Some(Duration::from_millis(200)),
                ));
            }
        }
        let _ = self.got.send(telemetry.payload);
        Ok(())
    }
}

fn spans(n: usize) -> Payload {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("op-{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Payload::Traces(Batch::decode(request.encode_to_vec().into()).unwrap())
}

struct Peer {
    endpoint: String,
    got: mpsc::UnboundedReceiver<Payload>,
    receiver: Box<dyn collector_core::component::Receiver>,
}

async fn receiver(refuse: usize) -> Peer {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlp", None),
        host: host.clone(),
    };
    let config: <OtlpReceiverFactory as Factory>::Config =
        serde_yaml_ng::from_str("protocols: {grpc: {endpoint: '127.0.0.1:0'}}").unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut consumers = ReceiverConsumers::default();
    consumers.set(
        Signal::Traces,
        Arc::new(Capture {
            refuse: Mutex::new(refuse),
            got: tx,
        }),
    );
    let receiver = OtlpReceiverFactory
        .create(&ctx, &config, consumers)
        .unwrap();
    receiver.start().await.unwrap();
    let addr = host
        .listeners
        .local_addr("otlp/grpc", "127.0.0.1:0")
        .unwrap();
    Peer {
        endpoint: addr.to_string(),
        got: rx,
        receiver,
    }
}

fn exporter(endpoint: &str) -> (Arc<dyn collector_core::component::Exporter>, Arc<Host>) {
    exporter_with(endpoint, "")
}

fn exporter_with(
    endpoint: &str,
    extra: &str,
) -> (Arc<dyn collector_core::component::Exporter>, Arc<Host>) {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlp", None),
        host: host.clone(),
    };
    let config: OtlpConfig = serde_yaml_ng::from_str(&format!(
        "endpoint: {endpoint}\ntls: {{insecure: true}}\nsending_queue: {{enabled: false}}\n\
         retry_on_failure: {{initial_interval: 10ms, randomization_factor: 0}}\n{extra}"
    ))
    .unwrap();
    OtlpExporterFactory.validate(&config).unwrap();
    (OtlpExporterFactory.create(&ctx, &config).unwrap(), host)
}

#[tokio::test]
async fn bytes_pass_through_to_the_receiver_unchanged() {
    let mut peer = receiver(0).await;
    let (exporter, host) = exporter(&peer.endpoint);
    let payload = spans(4);
    let original = payload.to_protobuf();
    exporter.consume(Telemetry::new(payload)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), peer.got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.item_count(), 4);
    assert_eq!(got.to_protobuf(), original);
    assert_eq!(
        host.metrics
            .value("otelcol_exporter_sent_spans", &[("exporter", "otlp")]),
        Some(4.0)
    );
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn downstream_backpressure_is_retried() {
    let mut peer = receiver(1).await;
    let (exporter, host) = exporter(&peer.endpoint);
    let start = Instant::now();
    exporter.consume(Telemetry::new(spans(2))).await.unwrap();
    // The receiver passed the pipeline's retry delay on as RetryInfo.
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    let got = tokio::time::timeout(Duration::from_secs(10), peer.got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.item_count(), 2);
    assert_eq!(
        host.metrics.value(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "otlp")]
        ),
        Some(0.0)
    );
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn every_compression_and_level_decodes_at_the_receiver() {
    let mut peer = receiver(0).await;
    for extra in [
        "",
        "compression_params: {level: 1}",
        "compression_params: {level: 9}",
        "compression_params: {level: -1}",
        "compression: zstd",
        "compression: zstd\ncompression_params: {level: 19}",
        "compression: none",
    ] {
        let (exporter, host) = exporter_with(&peer.endpoint, extra);
        let payload = spans(500);
        let original = payload.to_protobuf();
        exporter.consume(Telemetry::new(payload)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), peer.got.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.to_protobuf(), original, "{extra:?}");
        assert_eq!(
            host.metrics
                .value("otelcol_exporter_sent_spans", &[("exporter", "otlp")]),
            Some(500.0),
            "{extra:?}"
        );
    }
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}
