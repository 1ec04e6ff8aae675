//! Tests of routing and of the engine with in-memory backends whose
//! behaviour each test scripts (accept, refuse the connection, hold, ...).

use super::balancer::Connector;
use super::routing::Routes;
use super::*;
use crate::helper::{SendOutcome, Sender};
use crate::test_support::{ctx, kv};
use collector_core::consumer::ErrorKind;
use collector_core::pdata::{Logs, Metrics, Payload, Traces};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::pin;
use tokio::sync::Notify;

mod coalesce;
mod k8s_resolver;

// ---------------------------------------------------------------- data

/// Trace IDs from a fixed pseudo-random sequence.
fn ids(seed: u64, n: usize) -> Vec<[u8; 16]> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&next().to_be_bytes());
            id[8..].copy_from_slice(&next().to_be_bytes());
            id
        })
        .collect()
}

fn span(trace: &[u8; 16], n: usize) -> Span {
    let mut span_id = [0u8; 8];
    span_id[..4].copy_from_slice(&trace[..4]);
    span_id[4..].copy_from_slice(&(n as u32).to_be_bytes());
    Span {
        trace_id: trace.to_vec(),
        span_id: span_id.to_vec(),
        name: format!("span-{n}"),
        kind: 2,
        attributes: vec![kv(
            "http.route",
            if n.is_multiple_of(2) { "/a" } else { "/b" },
        )],
        ..Default::default()
    }
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1".into(),
        ..Default::default()
    })
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("host.name", "node-1")],
        ..Default::default()
    })
}

/// Two resources of two scopes each; the spans of every trace (`spans`
/// each) are spread over all four, interleaved.
fn trace_request(traces: &[[u8; 16]], spans: usize) -> ExportTraceServiceRequest {
    let mut scopes: Vec<Vec<Span>> = vec![Vec::new(); 4];
    let mut n = 0;
    for s in 0..spans {
        for t in traces {
            scopes[n % 4].push(span(t, s));
            n += 1;
        }
    }
    let mut scopes = scopes.into_iter();
    let mut resource_spans = Vec::new();
    for service in ["checkout", "cart"] {
        let mut scope_spans = Vec::new();
        for name in ["lib-a", "lib-b"] {
            scope_spans.push(ScopeSpans {
                scope: scope(name),
                spans: scopes.next().unwrap_or_default(),
                ..Default::default()
            });
        }
        resource_spans.push(ResourceSpans {
            resource: resource(service),
            scope_spans,
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans }
}

/// As received from the wire: the batch keeps its bytes.
fn traces_payload(traces: &[[u8; 16]], spans: usize) -> Payload {
    let bytes = trace_request(traces, spans).encode_to_vec();
    Payload::Traces(Traces::decode(bytes.into()).unwrap())
}

/// (service, scope, span) of every span of a traces payload.
fn placed_spans(payload: &Payload) -> Vec<(String, String, Span)> {
    let Payload::Traces(batch) = payload else {
        panic!("not traces")
    };
    let mut out = Vec::new();
    for rs in batch.resources() {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.first())
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for s in &ss.spans {
                out.push((service.clone(), scope.clone(), s.clone()));
            }
        }
    }
    out
}

fn endpoints(keys: &[&str]) -> Vec<Endpoint> {
    keys.iter().map(|k| Endpoint::new(*k)).collect()
}

// ---------------------------------------------------------------- routing

#[test]
fn split_keeps_traces_whole_and_resources_and_scopes() {
    let traces = ids(1, 60);
    let payload = traces_payload(&traces, 5);
    let original = placed_spans(&payload);
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let (routes, _) = Routes::new(None, Vec::new());
    let parts = routes.split(payload, &ring);
    assert_eq!(parts.len(), 3, "60 traces reach all three backends");
    let mut seen = Vec::new();
    for (owner, part) in &parts {
        for (service, scope, span) in placed_spans(part) {
            assert_eq!(ring.index_for(&span.trace_id), Some(*owner));
            seen.push((service, scope, span));
        }
    }
    // Every span once, under its own resource and scope, in its original
    // order within each part.
    assert_eq!(seen.len(), original.len());
    let mut sorted_seen = seen.clone();
    let mut sorted_original = original.clone();
    let key = |t: &(String, String, Span)| (t.2.span_id.clone(), t.0.clone(), t.1.clone());
    sorted_seen.sort_by_key(key);
    sorted_original.sort_by_key(key);
    assert_eq!(sorted_seen, sorted_original);
    for (_, part) in &parts {
        let spans = placed_spans(part);
        let positions: Vec<usize> = spans
            .iter()
            .map(|s| original.iter().position(|o| o == s).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "order kept");
    }
}

#[test]
fn splitting_the_received_bytes_and_the_decoded_batch_agree() {
    let traces = ids(6, 80);
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317", "d:4317"]);
    for key in [None, Some(RoutingKey::Service), Some(RoutingKey::Resource)] {
        let (routes, _) = Routes::new(key, Vec::new());
        let encoded = traces_payload(&traces, 3);
        assert!(matches!(&encoded, Payload::Traces(b) if b.has_original_encoding()));
        let decoded = Payload::Traces(Traces::new(trace_request(&traces, 3)));
        let mut a = routes.split(encoded, &ring);
        let mut b = routes.split(decoded, &ring);
        a.sort_by_key(|(o, _)| *o);
        b.sort_by_key(|(o, _)| *o);
        assert_eq!(a.len(), b.len(), "{key:?}");
        for ((oa, pa), (ob, pb)) in a.iter().zip(&b) {
            assert_eq!(oa, ob);
            assert_eq!(placed_spans(pa), placed_spans(pb), "{key:?}");
        }
    }
}

#[test]
fn an_unsplit_batch_keeps_its_received_bytes() {
    let traces = ids(2, 10);
    let payload = traces_payload(&traces, 3);
    let bytes = payload.to_protobuf();
    let ring = HashRing::new(&["only:4317"]);
    let (routes, _) = Routes::new(None, Vec::new());
    let parts = routes.split(payload, &ring);
    assert_eq!(parts.len(), 1);
    let Payload::Traces(batch) = &parts[0].1 else {
        panic!()
    };
    assert!(batch.has_original_encoding());
    assert_eq!(parts[0].1.to_protobuf(), bytes);
}

#[test]
fn service_routing_sends_each_resource_whole() {
    let traces = ids(3, 40);
    let payload = traces_payload(&traces, 2);
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317", "d:4317"]);
    let (routes, _) = Routes::new(Some(RoutingKey::Service), Vec::new());
    let parts = routes.split(payload, &ring);
    for (owner, part) in &parts {
        let Payload::Traces(batch) = part else {
            panic!()
        };
        for rs in batch.resources() {
            let service = rs.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .map(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => s.clone(),
                    _ => String::new(),
                })
                .unwrap();
            assert_eq!(ring.index_for(service.as_bytes()), Some(*owner));
            assert_eq!(rs.scope_spans.len(), 2, "both scopes travel together");
        }
    }
    let total: usize = parts.iter().map(|(_, p)| p.item_count()).sum();
    assert_eq!(total, 80);
}

#[test]
fn attribute_routing_uses_the_listed_attributes_and_span_pseudo_attributes() {
    let traces = ids(4, 30);
    let payload = traces_payload(&traces, 4);
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let (routes, _) = Routes::new(
        Some(RoutingKey::Attributes),
        vec!["http.route".into(), "span.kind".into()],
    );
    let parts = routes.split(payload, &ring);
    for (owner, part) in &parts {
        for (_, _, s) in placed_spans(part) {
            let route = if s.name.ends_with(['0', '2']) {
                "/a"
            } else {
                "/b"
            };
            let key = format!("{route}\0SPAN_KIND_SERVER\0");
            assert_eq!(ring.index_for(key.as_bytes()), Some(*owner), "{}", s.name);
        }
    }
}

fn metrics_payload() -> Payload {
    let point = |cpu: &str, v: f64| NumberDataPoint {
        attributes: vec![kv("cpu", cpu)],
        value: Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let gauge = |name: &str| Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: (0..8)
                .map(|i| point(&i.to_string(), f64::from(i)))
                .collect(),
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: ["checkout", "cart", "search"]
            .iter()
            .map(|service| ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope("meter"),
                    metrics: ["cpu.usage", "mem.usage", "disk.io", "net.io"]
                        .iter()
                        .map(|n| gauge(n))
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    Payload::Metrics(Metrics::new(request))
}

#[test]
fn metric_routing_keys() {
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    // Default for metrics: service; each resource whole.
    let (routes, fallbacks) = Routes::new(None, Vec::new());
    assert!(fallbacks.is_empty());
    assert_eq!(routes.key(Signal::Metrics), RoutingKey::Service);
    let parts = routes.split(metrics_payload(), &ring);
    let total: usize = parts.iter().map(|(_, p)| p.item_count()).sum();
    assert_eq!(total, 3 * 4 * 8);
    // metric: by name.
    let (routes, _) = Routes::new(Some(RoutingKey::Metric), Vec::new());
    for (owner, part) in routes.split(metrics_payload(), &ring) {
        let Payload::Metrics(batch) = part else {
            panic!()
        };
        for m in batch
            .resources()
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            assert_eq!(ring.index_for(m.name.as_bytes()), Some(owner));
        }
    }
    // streamID: by point; metrics are cut, points kept once each.
    let (routes, _) = Routes::new(Some(RoutingKey::StreamId), Vec::new());
    let parts = routes.split(metrics_payload(), &ring);
    assert!(parts.len() > 1);
    let mut points = BTreeSet::new();
    let mut owners_of_stream: HashMap<(String, String, String), usize> = HashMap::new();
    for (owner, part) in &parts {
        let Payload::Metrics(batch) = part else {
            panic!()
        };
        for r in batch.resources() {
            let service = format!("{:?}", r.resource.as_ref().unwrap().attributes[0].value);
            for s in &r.scope_metrics {
                for m in &s.metrics {
                    let Some(metric::Data::Gauge(g)) = &m.data else {
                        panic!()
                    };
                    assert!(!g.data_points.is_empty());
                    for p in &g.data_points {
                        let cpu = format!("{:?}", p.attributes[0].value);
                        let stream = (service.clone(), m.name.clone(), cpu);
                        assert!(points.insert(stream.clone()), "a point twice");
                        assert_eq!(*owners_of_stream.entry(stream).or_insert(*owner), *owner);
                    }
                }
            }
        }
    }
    assert_eq!(points.len(), 3 * 4 * 8);
    // traceID does not apply to metrics: service instead.
    let (routes, fallbacks) = Routes::new(Some(RoutingKey::TraceId), Vec::new());
    assert_eq!(fallbacks, vec![Signal::Metrics]);
    assert_eq!(routes.key(Signal::Metrics), RoutingKey::Service);
    assert_eq!(routes.key(Signal::Logs), RoutingKey::TraceId);
}

#[test]
fn logs_route_by_trace_id_or_service() {
    let traces = ids(5, 20);
    let records: Vec<LogRecord> = traces
        .iter()
        .map(|t| LogRecord {
            trace_id: t.to_vec(),
            body: None,
            ..Default::default()
        })
        .chain(std::iter::once(LogRecord::default()))
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                scope: scope("logger"),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let ring = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let (routes, _) = Routes::new(Some(RoutingKey::TraceId), Vec::new());
    let parts = routes.split(Payload::Logs(Logs::new(request.clone())), &ring);
    let mut total = 0;
    for (owner, part) in &parts {
        let Payload::Logs(batch) = part else { panic!() };
        for r in batch
            .resources()
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            total += 1;
            let key: &[u8] = if r.trace_id.is_empty() {
                b"checkout"
            } else {
                &r.trace_id
            };
            assert_eq!(ring.index_for(key), Some(*owner));
        }
    }
    assert_eq!(total, 21);
    // Default for logs: service, so one part.
    let (routes, _) = Routes::new(None, Vec::new());
    assert_eq!(
        routes.split(Payload::Logs(Logs::new(request)), &ring).len(),
        1
    );
}

// ---------------------------------------------------------------- engine

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Accept,
    /// The connection is refused.
    Refuse,
    /// The server answers Unavailable.
    Busy,
    /// The server rejects the data as invalid.
    Invalid,
    /// The send does not finish until the mode changes.
    Hold,
}

/// In-memory backends: what each one does, and what each one got.
#[derive(Default)]
struct Fleet {
    modes: Mutex<HashMap<String, Mode>>,
    received: Mutex<Vec<(String, Payload)>>,
    attempts: Mutex<HashMap<String, usize>>,
    /// Transports made for each endpoint.
    connects: Mutex<HashMap<String, usize>>,
    changed: Notify,
}

impl Fleet {
    fn set(&self, endpoint: &str, mode: Mode) {
        self.modes.lock().insert(endpoint.to_string(), mode);
        self.changed.notify_waiters();
    }

    fn mode(&self, endpoint: &str) -> Mode {
        self.modes
            .lock()
            .get(endpoint)
            .copied()
            .unwrap_or(Mode::Accept)
    }

    fn attempts(&self, endpoint: &str) -> usize {
        self.attempts.lock().get(endpoint).copied().unwrap_or(0)
    }

    fn connects(&self, endpoint: &str) -> usize {
        self.connects.lock().get(endpoint).copied().unwrap_or(0)
    }

    /// Endpoint of every received span, by span ID; panics on a duplicate.
    fn spans(&self) -> BTreeMap<Vec<u8>, (String, Vec<u8>)> {
        let mut out = BTreeMap::new();
        for (endpoint, payload) in self.received.lock().iter() {
            for (_, _, s) in placed_spans(payload) {
                let previous =
                    out.insert(s.span_id.clone(), (endpoint.clone(), s.trace_id.clone()));
                assert!(previous.is_none(), "span delivered twice");
            }
        }
        out
    }

    fn span_count(&self) -> usize {
        self.received
            .lock()
            .iter()
            .map(|(_, p)| p.item_count())
            .sum()
    }
}

struct FakeSender {
    endpoint: String,
    fleet: Arc<Fleet>,
}

#[async_trait]
impl Sender for FakeSender {
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        *self
            .fleet
            .attempts
            .lock()
            .entry(self.endpoint.clone())
            .or_default() += 1;
        loop {
            let mut changed = pin!(self.fleet.changed.notified());
            changed.as_mut().enable();
            match self.fleet.mode(&self.endpoint) {
                Mode::Accept => {
                    self.fleet
                        .received
                        .lock()
                        .push((self.endpoint.clone(), payload.clone()));
                    return Ok(SendOutcome::accepted());
                }
                Mode::Refuse => {
                    return Err(ConsumeError::unavailable(format!(
                        "cannot connect to {}: transport error: tcp connect error: Connection refused (os error 111)",
                        self.endpoint
                    )));
                }
                Mode::Busy => return Err(ConsumeError::unavailable("Unavailable: busy")),
                Mode::Invalid => return Err(ConsumeError::invalid("InvalidArgument: bad data")),
                Mode::Hold => changed.await,
            }
        }
    }
}

fn exporter(id: &str, yaml: &str, fleet: &Arc<Fleet>) -> (LoadBalancingExporter, CreateContext) {
    let config: LoadBalancingConfig = serde_yaml_ng::from_str(yaml).unwrap();
    config.validate().unwrap();
    let ctx = ctx(id);
    let f = fleet.clone();
    let connect: Connector = Arc::new(move |e: &Endpoint| {
        *f.connects.lock().entry(e.key.clone()).or_default() += 1;
        Ok(Arc::new(FakeSender {
            endpoint: e.key.clone(),
            fleet: f.clone(),
        }) as Arc<dyn Sender>)
    });
    (
        LoadBalancingExporter::new(&ctx, &config, connect).unwrap(),
        ctx,
    )
}

/// Lets time pass (paused clock) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

const THREE: &str = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317, c:4317]
protocol:
  otlp:
    timeout: 1s
    retry_on_failure: {initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 5s}
"#;

async fn send(exporter: &LoadBalancingExporter, traces: &[[u8; 16]], spans: usize) {
    exporter
        .consume(Telemetry::new(traces_payload(traces, spans)))
        .await
        .unwrap();
}

fn assert_placed(fleet: &Fleet, traces: &[[u8; 16]], ring: &HashRing) {
    let spans = fleet.spans();
    let mut at: HashMap<Vec<u8>, BTreeSet<String>> = HashMap::new();
    for (endpoint, trace) in spans.values() {
        at.entry(trace.clone())
            .or_default()
            .insert(endpoint.clone());
    }
    for t in traces {
        let places = at.get(t.as_slice()).cloned().unwrap_or_default();
        let expected = ring.endpoint_for(t).unwrap().to_string();
        assert_eq!(
            places,
            BTreeSet::from([expected]),
            "trace {}",
            hex::encode(t)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn each_trace_goes_to_its_ring_owner() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/t", THREE, &fleet);
    exporter.start().await.unwrap();
    let all = ids(10, 500);
    for chunk in all.chunks(25) {
        send(&exporter, chunk, 4).await;
    }
    until("all delivered", || fleet.span_count() == 2000).await;
    assert_placed(
        &fleet,
        &all,
        &HashRing::new(&["a:4317", "b:4317", "c:4317"]),
    );
    let m = &ctx.host.metrics;
    assert_eq!(
        m.value(
            "otelcol_exporter_sent_spans",
            &[("exporter", "loadbalancing/t")]
        ),
        Some(2000.0)
    );
    assert_eq!(
        m.value(
            "otelcol_loadbalancer_num_backends",
            &[("exporter", "loadbalancing/t"), ("resolver", "static")]
        ),
        Some(3.0)
    );
    assert!(
        m.sum(
            "otelcol_loadbalancer_backend_outcome",
            &[("endpoint", "a:4317"), ("success", "true")]
        ) > 0.0
    );
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(exporter.balancer.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_removed_backends_queued_and_in_flight_data_is_rerouted() {
    let fleet = Arc::new(Fleet::default());
    let yaml = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317, c:4317]
protocol:
  otlp:
    timeout: 0s
    sending_queue: {num_consumers: 1, queue_size: 100}
"#;
    let (exporter, ctx) = exporter("loadbalancing/r", yaml, &fleet);
    fleet.set("c:4317", Mode::Hold);
    exporter.start().await.unwrap();
    let all = ids(20, 300);
    // c's first part goes out (and hangs) before the rest is queued, so
    // that c holds a request in flight and the rest (coalesced) queued.
    let mut chunks = all.chunks(10);
    send(&exporter, chunks.next().unwrap(), 3).await;
    until("c holds a request", || fleet.attempts("c:4317") == 1).await;
    for chunk in chunks {
        send(&exporter, chunk, 3).await;
    }
    let three = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let for_c = all
        .iter()
        .filter(|t| three.endpoint_for(*t) == Some("c:4317"))
        .count();
    assert!(for_c > 0);
    until("a and b got theirs", || {
        fleet.span_count() == (all.len() - for_c) * 3
    })
    .await;
    // c holds one request in flight and the rest in its queue.
    assert!(exporter.balancer.queued()["c:4317"] > 0);
    // c leaves: its queue is routed over the new ring; the request in
    // flight fails (its connection is gone) and follows.
    exporter
        .balancer
        .set_endpoints(endpoints(&["a:4317", "b:4317"]));
    fleet.set("c:4317", Mode::Refuse);
    until("everything delivered", || {
        fleet.span_count() == all.len() * 3
    })
    .await;
    let two = HashRing::new(&["a:4317", "b:4317"]);
    assert_placed(&fleet, &all, &two);
    // Traces that stayed put are where they were; only c's moved.
    for t in &all {
        if three.endpoint_for(t) != Some("c:4317") {
            assert_eq!(three.endpoint_for(t), two.endpoint_for(t));
        }
    }
    let m = &ctx.host.metrics;
    assert_eq!(
        m.sum(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "loadbalancing/r")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "otelcol_loadbalancer_num_backends",
            &[("exporter", "loadbalancing/r"), ("resolver", "static")]
        ),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_joining_backend_takes_only_the_traces_that_move_to_it() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/j", THREE, &fleet);
    exporter.start().await.unwrap();
    exporter
        .balancer
        .set_endpoints(endpoints(&["a:4317", "b:4317", "c:4317", "d:4317"]));
    let all = ids(30, 2000);
    for chunk in all.chunks(100) {
        send(&exporter, chunk, 1).await;
    }
    until("all delivered", || fleet.span_count() == 2000).await;
    let four = HashRing::new(&["a:4317", "b:4317", "c:4317", "d:4317"]);
    assert_placed(&fleet, &all, &four);
    let three = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let moved: Vec<_> = all
        .iter()
        .filter(|t| three.endpoint_for(*t) != four.endpoint_for(*t))
        .collect();
    assert!(
        moved
            .iter()
            .all(|t| four.endpoint_for(*t) == Some("d:4317"))
    );
    let share = moved.len() as f64 / all.len() as f64;
    assert!((0.15..0.35).contains(&share), "{share}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_quarantines_the_backend_and_reroutes_its_share() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/q", THREE, &fleet);
    fleet.set("b:4317", Mode::Refuse);
    exporter.start().await.unwrap();
    let first = ids(40, 200);
    for chunk in first.chunks(20) {
        send(&exporter, chunk, 2).await;
    }
    until("all delivered", || fleet.span_count() == 400).await;
    assert!(fleet.attempts("b:4317") > 0);
    let spans = fleet.spans();
    assert!(spans.values().all(|(e, _)| e != "b:4317"));
    let two = HashRing::new(&["a:4317", "c:4317"]);
    assert_placed(&fleet, &first, &two);
    assert_eq!(
        ctx.host
            .metrics
            .sum("otelcol_exporter_send_failed_spans", &[]),
        0.0
    );
    assert!(
        ctx.host.metrics.sum(
            "otelcol_loadbalancer_backend_outcome",
            &[("endpoint", "b:4317"), ("success", "false")]
        ) > 0.0
    );
    // b recovers: after its quarantine it is back in the ring.
    fleet.set("b:4317", Mode::Accept);
    until("b back in the ring", || {
        exporter.ring_endpoints().len() == 3
    })
    .await;
    fleet.received.lock().clear();
    let second = ids(41, 200);
    for chunk in second.chunks(20) {
        send(&exporter, chunk, 2).await;
    }
    until("all delivered", || fleet.span_count() == 400).await;
    assert_placed(
        &fleet,
        &second,
        &HashRing::new(&["a:4317", "b:4317", "c:4317"]),
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_attempt_gives_the_backend_a_new_connection() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/h", THREE, &fleet);
    // a never answers (a blackhole); b refuses connections.
    fleet.set("a:4317", Mode::Hold);
    fleet.set("b:4317", Mode::Refuse);
    exporter.start().await.unwrap();
    let first = ids(42, 100);
    for chunk in first.chunks(20) {
        send(&exporter, chunk, 2).await;
    }
    until("all delivered at c", || fleet.span_count() == 200).await;
    // a's attempts timed out: its transport was replaced (once per dead
    // one, however many attempts were on it). A refused connection is
    // redialled by the transport itself: b keeps its own.
    assert!(fleet.attempts("a:4317") > 0);
    assert!(fleet.connects("a:4317") >= 2, "{:?}", fleet.connects);
    assert_eq!(fleet.connects("b:4317"), 1);
    assert_eq!(fleet.connects("c:4317"), 1);
    // Once a answers, it is back in the ring after its quarantine.
    fleet.set("a:4317", Mode::Accept);
    fleet.set("b:4317", Mode::Accept);
    until("a and b back in the ring", || {
        exporter.ring_endpoints().len() == 3
    })
    .await;
    fleet.received.lock().clear();
    let second = ids(43, 100);
    for chunk in second.chunks(20) {
        send(&exporter, chunk, 2).await;
    }
    until("all delivered", || fleet.span_count() == 200).await;
    assert_placed(
        &fleet,
        &second,
        &HashRing::new(&["a:4317", "b:4317", "c:4317"]),
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stay_on_the_owner_until_they_run_out() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/b", THREE, &fleet);
    fleet.set("a:4317", Mode::Busy);
    exporter.start().await.unwrap();
    let all = ids(50, 100);
    send(&exporter, &all, 1).await;
    let three = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    let for_a = all
        .iter()
        .filter(|t| three.endpoint_for(*t) == Some("a:4317"))
        .count();
    until("b and c got theirs", || {
        fleet.span_count() == all.len() - for_a
    })
    .await;
    // a answers Unavailable: retried on a (the trace's owner)...
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fleet.attempts("a:4317") > 1);
    assert_eq!(fleet.span_count(), all.len() - for_a);
    // ...until a recovers within the retry budget.
    fleet.set("a:4317", Mode::Accept);
    until("all delivered", || fleet.span_count() == all.len()).await;
    assert_placed(&fleet, &all, &three);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_quarantine_and_reroute() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/x", THREE, &fleet);
    fleet.set("a:4317", Mode::Busy);
    exporter.start().await.unwrap();
    let all = ids(51, 100);
    send(&exporter, &all, 1).await;
    until("all delivered elsewhere", || {
        fleet.span_count() == all.len()
    })
    .await;
    assert!(fleet.spans().values().all(|(e, _)| e != "a:4317"));
}

#[tokio::test(start_paused = true)]
async fn a_full_backend_queue_refuses_the_whole_batch() {
    let fleet = Arc::new(Fleet::default());
    let yaml = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317, c:4317]
protocol:
  otlp:
    timeout: 0s
    sending_queue: {num_consumers: 1, queue_size: 1}
"#;
    let (exporter, ctx) = exporter("loadbalancing/f", yaml, &fleet);
    fleet.set("c:4317", Mode::Hold);
    exporter.start().await.unwrap();
    let three = HashRing::new(&["a:4317", "b:4317", "c:4317"]);
    // Batches that reach all three backends.
    let batches: Vec<Vec<[u8; 16]>> = (0..3).map(|i| ids(60 + i, 30)).collect();
    for b in &batches {
        assert!(b.iter().any(|t| three.endpoint_for(t) == Some("c:4317")));
    }
    send(&exporter, &batches[0], 1).await;
    until("c took its part in flight", || {
        fleet.attempts("c:4317") == 1
    })
    .await;
    send(&exporter, &batches[1], 1).await;
    until("a and b delivered", || {
        fleet.span_count()
            == batches[..2]
                .iter()
                .flatten()
                .filter(|t| three.endpoint_for(*t) != Some("c:4317"))
                .count()
    })
    .await;
    let before = fleet.span_count();
    let error = exporter
        .consume(Telemetry::new(traces_payload(&batches[2], 1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        fleet.span_count(),
        before,
        "no part of a refused batch is sent"
    );
    assert_eq!(
        ctx.host.metrics.sum(
            "otelcol_exporter_enqueue_failed_spans",
            &[("exporter", "loadbalancing/f")]
        ),
        30.0
    );
    // Once c drains, everything accepted arrives.
    fleet.set("c:4317", Mode::Accept);
    until("all accepted delivered", || fleet.span_count() == 60).await;
}

#[tokio::test(start_paused = true)]
async fn without_queues_consume_waits_for_delivery_and_reports_failures() {
    let fleet = Arc::new(Fleet::default());
    let yaml = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317]
protocol:
  otlp:
    sending_queue: {enabled: false}
"#;
    let (exporter, ctx) = exporter("loadbalancing/s", yaml, &fleet);
    exporter.start().await.unwrap();
    let all = ids(70, 50);
    send(&exporter, &all, 2).await;
    assert_eq!(fleet.span_count(), 100, "delivered before consume returned");
    fleet.set("a:4317", Mode::Invalid);
    fleet.set("b:4317", Mode::Invalid);
    let error = exporter
        .consume(Telemetry::new(traces_payload(&ids(71, 10), 1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        ctx.host.metrics.sum(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "loadbalancing/s")]
        ),
        10.0
    );
}

#[tokio::test(start_paused = true)]
async fn when_every_backend_fails_data_waits_and_is_dropped_only_past_the_limit() {
    let fleet = Arc::new(Fleet::default());
    let yaml = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317]
retry_on_failure: {enabled: true, initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 20s}
"#;
    let (exporter, ctx) = exporter("loadbalancing/o", yaml, &fleet);
    fleet.set("a:4317", Mode::Refuse);
    fleet.set("b:4317", Mode::Refuse);
    exporter.start().await.unwrap();
    send(&exporter, &ids(80, 20), 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fleet.span_count(), 0);
    assert_eq!(
        ctx.host
            .metrics
            .sum("otelcol_exporter_send_failed_spans", &[]),
        0.0,
        "still being retried"
    );
    // One recovers in time: everything arrives there.
    fleet.set("b:4317", Mode::Accept);
    until("delivered to b", || fleet.span_count() == 20).await;
    // Neither recovers: dropped after max_elapsed_time, counted.
    fleet.set("b:4317", Mode::Refuse);
    send(&exporter, &ids(81, 20), 1).await;
    until("dropped and counted", || {
        ctx.host
            .metrics
            .sum("otelcol_exporter_send_failed_spans", &[])
            == 20.0
    })
    .await;
    assert_eq!(exporter.balancer.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_counts_what_it_could_not_deliver() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/d", THREE, &fleet);
    for e in ["a:4317", "b:4317", "c:4317"] {
        fleet.set(e, Mode::Hold);
    }
    exporter.start().await.unwrap();
    send(&exporter, &ids(90, 30), 2).await;
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        ctx.host.metrics.sum(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "loadbalancing/d")]
        ),
        60.0
    );
    assert_eq!(exporter.balancer.held(), 0);
    let error = exporter
        .consume(Telemetry::new(traces_payload(&ids(91, 1), 1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn dns_lookup_gives_ring_keys_and_dial_addresses() {
    let with_port = resolver::lookup("localhost", Some(4317), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        with_port
            .iter()
            .any(|e| e.key == "127.0.0.1:4317" && e.dial == "127.0.0.1:4317"),
        "{with_port:?}"
    );
    let bare = resolver::lookup("localhost", None, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        bare.iter()
            .any(|e| e.key == "127.0.0.1" && e.dial == "127.0.0.1:4317"),
        "{bare:?}"
    );
    assert!(
        resolver::lookup("no-such-host.invalid", None, Duration::from_secs(5))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connection_failure() {
    let mut config = crate::otlp::OtlpConfig::default();
    config.tls.insecure = true;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let sender = crate::otlp::GrpcSender::new(&config, &address).unwrap();
    let error = sender
        .send(&traces_payload(&ids(1, 1), 1))
        .await
        .unwrap_err();
    assert!(
        delivery::is_connection_failure(&error),
        "{error:?} should read as a connection failure"
    );
    assert!(!delivery::is_connection_failure(
        &ConsumeError::unavailable("Unavailable: memory limiter refused")
    ));
}

#[tokio::test]
async fn a_connection_reset_mid_request_is_a_connection_failure() {
    use std::os::fd::AsRawFd;
    let mut config = crate::otlp::OtlpConfig::default();
    config.tls.insecure = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Accepts, reads nothing, and resets the connection (as a killed peer's
    // kernel does when unread data is pending).
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stream = stream.into_std().unwrap();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a valid linger struct.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(stream);
    });
    let sender = crate::otlp::GrpcSender::new(&config, &address).unwrap();
    let error = sender
        .send(&traces_payload(&ids(1, 1), 1))
        .await
        .unwrap_err();
    assert!(
        delivery::is_connection_failure(&error),
        "{error:?} should read as a connection failure"
    );
}
