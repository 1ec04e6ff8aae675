//! The `loadbalancing` exporter over real gRPC: three collector-core `otlp`
//! receivers on loopback ports behind a static resolver. Each trace reaches
//! the receiver the ring names; when one receiver stops, its share goes to
//! the others and nothing is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use collector_core::component::{
    ComponentId, CreateContext, Exporter, ExporterFactory, Factory, Host, Receiver,
    ReceiverConsumers, ReceiverFactory,
};
use collector_core::consumer::{ConsumeError, Consumer};
use collector_core::pdata::{Batch, Payload, Signal, Telemetry};
use collector_core::receiver::otlp::OtlpReceiverFactory;
use exporters::loadbalancing::{HashRing, LoadBalancingConfig, LoadBalancingExporterFactory};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Span ID -> (receiver endpoint, trace ID), for every span received.
type Received = Arc<Mutex<BTreeMap<Vec<u8>, (String, Vec<u8>)>>>;

struct Capture {
    endpoint: Arc<Mutex<String>>,
    received: Received,
}

#[async_trait]
impl Consumer for Capture {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let Payload::Traces(batch) = telemetry.payload else {
            return Ok(());
        };
        let endpoint = self.endpoint.lock().clone();
        let mut received = self.received.lock();
        for span in batch
            .resources()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let previous = received.insert(
                span.span_id.clone(),
                (endpoint.clone(), span.trace_id.clone()),
            );
            assert!(previous.is_none(), "a span arrived twice");
        }
        Ok(())
    }
}

struct Peer {
    endpoint: String,
    receiver: Box<dyn Receiver>,
}

async fn receiver(received: &Received) -> Peer {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlp", None),
        host: host.clone(),
    };
    let config: <OtlpReceiverFactory as Factory>::Config =
        serde_yaml_ng::from_str("protocols: {grpc: {endpoint: '127.0.0.1:0'}}").unwrap();
    let name = Arc::new(Mutex::new(String::new()));
    let mut consumers = ReceiverConsumers::default();
    consumers.set(
        Signal::Traces,
        Arc::new(Capture {
            endpoint: name.clone(),
            received: received.clone(),
        }),
    );
    let receiver = OtlpReceiverFactory
        .create(&ctx, &config, consumers)
        .unwrap();
    receiver.start().await.unwrap();
    let endpoint = host
        .listeners
        .local_addr("otlp/grpc", "127.0.0.1:0")
        .unwrap()
        .to_string();
    *name.lock() = endpoint.clone();
    Peer { endpoint, receiver }
}

/// Trace IDs from a fixed sequence.
fn trace_ids(seed: u64, n: usize) -> Vec<[u8; 16]> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            for half in id.chunks_mut(8) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                half.copy_from_slice(&(state ^ (state >> 29)).to_be_bytes());
            }
            id
        })
        .collect()
}

/// A batch with 3 spans of each trace, span IDs from `next`.
fn batch(traces: &[[u8; 16]], next: &mut u64) -> Payload {
    let mut spans = Vec::new();
    for s in 0..3 {
        for t in traces {
            *next += 1;
            spans.push(Span {
                trace_id: t.to_vec(),
                span_id: next.to_be_bytes().to_vec(),
                name: format!("op-{s}"),
                ..Default::default()
            });
        }
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Payload::Traces(Batch::decode(request.encode_to_vec().into()).unwrap())
}

async fn wait_for(received: &Received, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} spans arrived",
            received.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_on_owner(received: &Received, traces: &[[u8; 16]], endpoints: &[&str]) {
    let ring = HashRing::new(endpoints);
    let mut at: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for (endpoint, trace) in received.lock().values() {
        at.entry(trace.clone())
            .or_default()
            .insert(endpoint.clone());
    }
    for t in traces {
        assert_eq!(
            at.get(t.as_slice()).cloned().unwrap_or_default(),
            BTreeSet::from([ring.endpoint_for(t).unwrap().to_string()])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_their_ring_owner_and_a_stopped_receivers_share_moves() {
    let received: Received = Arc::default();
    let peers = [
        receiver(&received).await,
        receiver(&received).await,
        receiver(&received).await,
    ];
    let endpoints: Vec<&str> = peers.iter().map(|p| p.endpoint.as_str()).collect();
    let host = Host::new();
    let ctx = CreateContext {
        id: "loadbalancing/gateway".parse().unwrap(),
        host: host.clone(),
    };
    let config: LoadBalancingConfig = serde_yaml_ng::from_str(&format!(
        "resolver: {{static: {{hostnames: [{}]}}}}\n\
         protocol: {{otlp: {{tls: {{insecure: true}}, timeout: 2s, \
         retry_on_failure: {{initial_interval: 20ms, max_interval: 100ms}}}}}}",
        endpoints.join(", ")
    ))
    .unwrap();
    LoadBalancingExporterFactory.validate(&config).unwrap();
    let exporter: Arc<dyn Exporter> = LoadBalancingExporterFactory.create(&ctx, &config).unwrap();
    exporter.start().await.unwrap();

    let mut next = 0;
    let first = trace_ids(1, 300);
    for chunk in first.chunks(30) {
        exporter
            .consume(Telemetry::new(batch(chunk, &mut next)))
            .await
            .unwrap();
    }
    wait_for(&received, 900).await;
    assert_on_owner(&received, &first, &endpoints);

    // One receiver stops; the resolver still lists it.
    let [a, b, c] = peers;
    b.receiver
        .shutdown(std::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    let second = trace_ids(2, 300);
    for chunk in second.chunks(30) {
        exporter
            .consume(Telemetry::new(batch(chunk, &mut next)))
            .await
            .unwrap();
    }
    wait_for(&received, 1800).await;
    assert_on_owner(&received, &second, &[&a.endpoint, &c.endpoint]);
    // A receiver holds a request before its answer reaches the exporter,
    // which counts the spans sent only then: wait for the last answers.
    let sent = || {
        host.metrics.sum(
            "otelcol_exporter_sent_spans",
            &[("exporter", "loadbalancing/gateway")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent() < 1800.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sent(), 1800.0);
    assert_eq!(
        host.metrics.sum(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "loadbalancing/gateway")]
        ),
        0.0
    );
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    drop((a, c));
}
