//! Faults on the agent -> gateway hop, with the real binaries: an
//! `agent-collector` whose `loadbalancing` exporter (`routing_key: traceID`,
//! a `static` resolver) sends to `gateway-collector`s, each forwarding to
//! its own `testkit::faulty_sink` (answering OK). A gateway exports without
//! a sending queue, so it acknowledges the agent only once its sink took
//! the data: what a sink holds is exactly what got through, and nothing a
//! gateway acknowledged can die with it.
//!
//! The faults: a `testkit::fault_proxy` between the agent and a gateway
//! (added latency, resets, a blackhole, each for a bounded time while
//! traffic flows, then back to pass-through), every gateway unreachable
//! past the top-level `max_elapsed_time` or with the top-level queue full,
//! and a gateway killed with SIGKILL mid-stream and restarted on its port.
//!
//! Every span sent is tracked by its ID. Where the fault can cost an
//! acknowledgement (a reset or a blackhole hitting a request in flight, a
//! gateway killed after its sink took a request and before it answered),
//! the agent sends that request again, to the trace's next owner: such a
//! span may arrive twice, and the tests check that one of its copies is at
//! the faulted gateway (a duplicate anywhere else would be a bug).

mod support;

use exporters::loadbalancing::HashRing;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Collector, Rng, eventually, http_request, post_traces_until_accepted};
use testkit::fault_proxy::{FaultProxy, Mode};
use testkit::faulty_sink::{Answer, FaultySink};

const SPANS_PER_TRACE: usize = 5;
const TRACES_PER_REQUEST: usize = 4;
const SPANS_PER_REQUEST: usize = SPANS_PER_TRACE * TRACES_PER_REQUEST;
/// The exporter's id in the agent's config (and its metrics' label).
const EXPORTER: &str = "loadbalancing";

/// A gateway and the sink behind it. The sink outlives the gateway's
/// process, so a killed and restarted gateway keeps its record.
struct Gateway {
    sink: FaultySink,
    collector: Option<Collector>,
    address: SocketAddr,
}

impl Gateway {
    fn start() -> Gateway {
        let sink = FaultySink::start(Answer::Ok);
        let collector = Collector::start(
            support::binary("gateway-collector"),
            &gateway_config(0, sink.address),
        );
        let address = collector.address("otlp", "grpc");
        Gateway {
            sink,
            collector: Some(collector),
            address,
        }
    }

    /// SIGKILL, and waits until the process is gone.
    fn kill(&mut self) {
        let mut collector = self.collector.take().expect("a running gateway");
        collector.signal(libc::SIGKILL);
        collector.reap();
    }

    /// Starts it again on the port it had.
    fn restart(&mut self) {
        let collector = Collector::start(
            support::binary("gateway-collector"),
            &gateway_config(self.address.port(), self.sink.address),
        );
        assert_eq!(collector.address("otlp", "grpc"), self.address);
        self.collector = Some(collector);
    }

    fn delivered(&self) -> Vec<Vec<u8>> {
        self.sink.delivered()
    }
}

fn gateway_config(port: u16, sink: SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  otlp:
    endpoint: {sink}
    tls: {{insecure: true}}
    compression: none
    timeout: 2s
    retry_on_failure: {{initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 0}}
    sending_queue: {{enabled: false}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#
    )
}

/// The agent, sending to `backends` (`host:port`, the ring's keys).
/// `timeout` bounds one attempt; `top_level` is YAML added to the
/// exporter's own keys (indented by four spaces).
fn agent(backends: &[SocketAddr], timeout: &str, top_level: &str) -> Collector {
    let hostnames: Vec<String> = backends.iter().map(|b| format!("'{b}'")).collect();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  {EXPORTER}:
    routing_key: traceID
    resolver:
      static:
        hostnames: [{}]
    protocol:
      otlp:
        tls: {{insecure: true}}
        compression: none
        timeout: {timeout}
        # `keepalive` is left at its defaults (10s, no ping without a
        # stream), as the chart ships it: each attempt ends at `timeout`
        # before a ping is due, so only the exporter itself can give up on
        # a connection left dead by a blackhole.
        retry_on_failure: {{initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 5s}}
{top_level}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{EXPORTER}]
"#,
        hostnames.join(", ")
    );
    Collector::start(support::binary("agent-collector"), &config)
}

fn exporter_metric(agent: &Collector, name: &str) -> f64 {
    agent.metric(name, &[("exporter", EXPORTER)])
}

/// Failed attempts of the agent on one backend.
fn failed_attempts(agent: &Collector, backend: SocketAddr) -> f64 {
    agent.metric(
        "otelcol_loadbalancer_backend_outcome_total",
        &[("endpoint", &backend.to_string()), ("success", "false")],
    )
}

/// One span sent: its ID, its trace's ID and the request that carried it.
#[derive(Clone, Debug)]
struct Sent {
    span: Vec<u8>,
    trace: Vec<u8>,
    request: usize,
}

/// Builds requests of 4 random traces of 5 spans each, every span ID unique.
struct Requests {
    rng: Rng,
    next_span: u64,
    made: usize,
}

impl Requests {
    fn new(seed: u64) -> Requests {
        Requests {
            rng: Rng(seed),
            next_span: seed << 32,
            made: 0,
        }
    }

    fn next(&mut self) -> (ExportTraceServiceRequest, Vec<Sent>) {
        let mut spans = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..TRACES_PER_REQUEST {
            let mut trace = [0u8; 16];
            trace[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            trace[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            for s in 0..SPANS_PER_TRACE {
                self.next_span += 1;
                let span_id = self.next_span.to_be_bytes().to_vec();
                sent.push(Sent {
                    span: span_id.clone(),
                    trace: trace.to_vec(),
                    request: self.made,
                });
                spans.push(Span {
                    trace_id: trace.to_vec(),
                    span_id,
                    name: format!("op-{s}"),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_000_100_000,
                    ..Default::default()
                });
            }
        }
        self.made += 1;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("hop-faults".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        (request, sent)
    }
}

/// Steady traffic into the agent from a thread, until stopped: a request
/// every 10 ms (the send rate, not a wait for anything), each retried while
/// the agent pushes back. Only what the agent accepted is recorded as sent.
struct Traffic {
    sent: Arc<Mutex<Vec<Sent>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(agent: SocketAddr, seed: u64) -> Traffic {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sent, accepted, stop) = (sent.clone(), accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut requests = Requests::new(seed);
                while !stop.load(Ordering::Acquire) {
                    let (request, spans) = requests.next();
                    post_traces_until_accepted(agent, &request);
                    sent.lock().expect("sent").extend(spans);
                    accepted.fetch_add(1, Ordering::AcqRel);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Traffic {
            sent,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Requests accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// Waits until `more` requests beyond `from` were accepted.
    fn wait_past(&self, from: usize, more: usize) -> usize {
        eventually(
            &format!("{more} more requests accepted by the agent"),
            || self.accepted(),
            |n| *n >= from + more,
        )
    }

    /// Stops sending; every span the agent accepted.
    fn stop(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("sender")
            .join()
            .expect("the sender thread");
        self.sent.lock().expect("sent").clone()
    }
}

/// Where each delivered span landed: span ID -> indexes of the gateways
/// whose sink took it (twice the same index if one took it twice).
fn landed(gateways: &[&Gateway]) -> HashMap<Vec<u8>, Vec<usize>> {
    let mut out: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, gateway) in gateways.iter().enumerate() {
        for span in gateway.delivered() {
            out.entry(span).or_default().push(i);
        }
    }
    out
}

/// Waits until every span of `sent` landed somewhere; returns the landing
/// (of everything delivered so far: the tests compare its size with all
/// they sent, so a span nobody sent would show).
fn wait_all_delivered(gateways: &[&Gateway], sent: &[Sent]) -> HashMap<Vec<u8>, Vec<usize>> {
    eventually(
        "every span sent delivered",
        || landed(gateways),
        |l| sent.iter().all(|s| l.contains_key(&s.span)),
    )
}

/// The spans that arrived more than once: each must have been at the
/// faulted gateway once (the copy whose acknowledgement the fault ate) and
/// once elsewhere (the agent's second attempt, routed to the next owner).
fn assert_duplicates_only_from(landed: &HashMap<Vec<u8>, Vec<usize>>, faulted: usize) -> usize {
    let mut duplicates = 0;
    for (span, places) in landed {
        if places.len() < 2 {
            continue;
        }
        duplicates += 1;
        assert_eq!(
            places.len(),
            2,
            "span {span:?} arrived {} times",
            places.len()
        );
        assert_eq!(
            places.iter().filter(|p| **p == faulted).count(),
            1,
            "span {span:?} arrived twice, not once at the faulted gateway: {places:?}"
        );
    }
    duplicates
}

/// The index (into `keys`) of the ring owner of `trace`.
fn owner(ring: &HashRing, keys: &[String], trace: &[u8]) -> usize {
    let endpoint = ring.endpoint_for(trace).expect("an owner");
    keys.iter()
        .position(|k| k == endpoint)
        .expect("a listed endpoint")
}

/// Asserts that every trace of `sent` owned by one of `unaffected` (in the
/// ring of `keys`) landed only there: a fault elsewhere moved none of them.
fn assert_unaffected(
    sent: &[Sent],
    landed: &HashMap<Vec<u8>, Vec<usize>>,
    keys: &[String],
    unaffected: &[usize],
) -> usize {
    let ring = HashRing::new(keys);
    let mut checked = 0;
    for s in sent {
        let o = owner(&ring, keys, &s.trace);
        if !unaffected.contains(&o) {
            continue;
        }
        checked += 1;
        assert_eq!(
            landed[&s.span],
            vec![o],
            "span {:?} of a trace owned by the healthy {} landed elsewhere",
            s.span,
            keys[o]
        );
    }
    checked
}

/// Waits until a span of a request after `request` reached `gateway`.
fn wait_share_back(traffic: &Traffic, gateway: &Gateway, request: usize, what: &str) {
    eventually(
        what,
        || {
            let later: HashSet<Vec<u8>> = traffic
                .sent
                .lock()
                .expect("sent")
                .iter()
                .filter(|s| s.request > request)
                .map(|s| s.span.clone())
                .collect();
            gateway
                .delivered()
                .iter()
                .filter(|s| later.contains(*s))
                .count()
        },
        |n| *n > 0,
    );
}

/// Two gateways, each behind a pass-through proxy, and the agent sending
/// to the proxies. Returns them with the ring's keys.
fn behind_proxies(
    timeout: &str,
    top_level: &str,
) -> (Vec<Gateway>, Vec<FaultProxy>, Collector, Vec<String>) {
    let gateways = vec![Gateway::start(), Gateway::start()];
    let proxies: Vec<FaultProxy> = gateways
        .iter()
        .map(|g| FaultProxy::start(g.address))
        .collect();
    let addresses: Vec<SocketAddr> = proxies.iter().map(|p| p.address).collect();
    let agent = agent(&addresses, timeout, top_level);
    let keys = addresses.iter().map(|a| a.to_string()).collect();
    (gateways, proxies, agent, keys)
}

/// Runs traffic through a `fault` on the first gateway's proxy: starts it
/// once traffic flows, waits until `met` says the agent ran into it, keeps
/// it for 100 more requests (about a second), then clears it and waits
/// until the first gateway has its share of new traces again. Returns
/// everything sent, and how long after the fault cleared the first
/// gateway got new traces again.
fn through_a_fault(
    gateways: &[Gateway],
    proxies: &[FaultProxy],
    agent: &Collector,
    fault: Mode,
    seed: u64,
    met: impl Fn() -> bool,
) -> (Vec<Sent>, Duration) {
    let traffic = Traffic::start(agent.address("otlp", "http"), seed);
    let before = traffic.wait_past(0, 20);
    proxies[0].set(fault);
    eventually(&format!("the agent met {fault:?}"), &met, |m| *m);
    let during = traffic.wait_past(before, 100);
    proxies[0].set(Mode::PassThrough);
    let cleared = Instant::now();
    wait_share_back(
        &traffic,
        &gateways[0],
        during,
        &format!("the gateway behind the proxy back in use after {fault:?}"),
    );
    let recovery = cleared.elapsed();
    let after = traffic.accepted();
    traffic.wait_past(after, 10);
    (traffic.stop(), recovery)
}

#[test]
fn latency_slows_a_gateway_without_moving_or_losing_anything() {
    let (gateways, proxies, agent, keys) = behind_proxies("5s", "");
    let slow = Mode::Latency(Duration::from_millis(100));
    let (sent, _) = through_a_fault(&gateways, &proxies, &agent, slow, 1, || {
        proxies[0].stats().delayed_chunks >= 20
    });
    let all: Vec<&Gateway> = gateways.iter().collect();
    let landed = wait_all_delivered(&all, &sent);
    assert_eq!(landed.len(), sent.len(), "every span delivered");
    assert!(
        landed.values().all(|p| p.len() == 1),
        "nothing retried, so nothing arrives twice"
    );
    // A slow gateway is not a failing one: it keeps its traces (tail
    // sampling needs every span of a trace on one gateway), nothing is
    // counted as failed.
    assert_eq!(failed_attempts(&agent, proxies[0].address), 0.0);
    assert_eq!(
        assert_unaffected(&sent, &landed, &keys, &[0, 1]),
        sent.len()
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
    let counted_sent = eventually(
        "the agent got every answer",
        || exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        |n| *n >= sent.len() as f64,
    );
    assert_eq!(counted_sent, sent.len() as f64);
    // The agent saw the latency: attempts on the slow backend over 100 ms.
    let text = agent.metrics_text();
    let endpoint = proxies[0].address.to_string();
    let labels = [("endpoint", endpoint.as_str())];
    let count = support::metric_sum(&text, "otelcol_loadbalancer_backend_latency_count", &labels);
    let fast = support::metric_sum(
        &text,
        "otelcol_loadbalancer_backend_latency_bucket",
        &[("endpoint", endpoint.as_str()), ("le", "100")],
    );
    assert!(
        count - fast > 0.0,
        "no attempt over 100 ms ({fast} of {count} under):\n{text}"
    );
}

#[test]
fn resets_move_a_gateways_share_until_it_answers_again_and_lose_nothing() {
    let (gateways, proxies, agent, keys) = behind_proxies("1s", "");
    let (sent, _) = through_a_fault(&gateways, &proxies, &agent, Mode::Reset, 2, || {
        proxies[0].stats().resets > 0 && failed_attempts(&agent, proxies[0].address) > 0.0
    });
    let all: Vec<&Gateway> = gateways.iter().collect();
    let landed = wait_all_delivered(&all, &sent);
    assert_eq!(landed.len(), sent.len(), "every span delivered");
    let duplicates = assert_duplicates_only_from(&landed, 0);
    // The healthy gateway's traces never moved.
    assert!(assert_unaffected(&sent, &landed, &keys, &[1]) > 0);
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
        0.0
    );
    eprintln!(
        "reset: {} spans, {duplicates} delivered twice, {:?}",
        sent.len(),
        proxies[0].stats()
    );
}

/// Longest wait, once a blackhole of about a second is over, until the
/// gateway behind it gets traces again: what is left of its quarantine
/// (1s, doubling per strike; a fault this short costs two or three) and one
/// attempt over a new connection. Without a new connection, the dead one
/// would hold the share off the gateway until a keepalive ping (10s idle,
/// then 10s without an answer, and only sent while a request is open) or
/// TCP itself gave up.
const BLACKHOLE_RECOVERY: Duration = Duration::from_secs(10);

#[test]
fn a_blackhole_times_out_moves_the_share_and_a_new_connection_brings_it_back() {
    let (gateways, proxies, agent, keys) = behind_proxies("1s", "");
    let (sent, recovery) = through_a_fault(&gateways, &proxies, &agent, Mode::Blackhole, 3, || {
        proxies[0].stats().bytes_discarded > 0 && failed_attempts(&agent, proxies[0].address) > 0.0
    });
    let all: Vec<&Gateway> = gateways.iter().collect();
    let landed = wait_all_delivered(&all, &sent);
    assert_eq!(landed.len(), sent.len(), "every span delivered");
    let duplicates = assert_duplicates_only_from(&landed, 0);
    assert!(assert_unaffected(&sent, &landed, &keys, &[1]) > 0);
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
    // The blackholed connection stays dead after the fault (its bytes are
    // gone), and with the default keepalive no ping notices it. The share
    // came back over a new connection, soon after the path did: the agent
    // dropped the connection its timed-out attempts were on.
    assert!(
        proxies[0].stats().connections >= 2,
        "{:?}",
        proxies[0].stats()
    );
    assert!(
        recovery <= BLACKHOLE_RECOVERY,
        "the blackholed gateway got traces again only {recovery:?} after the path was back"
    );
    eprintln!(
        "blackhole: {} spans, {duplicates} delivered twice, back after {recovery:?}, {:?}",
        sent.len(),
        proxies[0].stats()
    );
}

/// Sends `n` requests one by one; the spans of those accepted.
fn send_requests(agent: &Collector, requests: &mut Requests, n: usize) -> Vec<Sent> {
    let http = agent.address("otlp", "http");
    let mut sent = Vec::new();
    for _ in 0..n {
        let (request, spans) = requests.next();
        post_traces_until_accepted(http, &request);
        sent.extend(spans);
    }
    sent
}

#[test]
fn past_max_elapsed_time_with_every_gateway_down_the_loss_is_what_the_agent_counts() {
    let top = "    retry_on_failure: {enabled: true, initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 1s}";
    let (gateways, proxies, agent, _) = behind_proxies("1s", top);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let mut requests = Requests::new(4);
    let first = send_requests(&agent, &mut requests, 10);
    wait_all_delivered(&all, &first);
    // And acknowledged to the agent: a reset eating an answer on its way
    // would make the agent count spans its gateway delivered as failed
    // (seen: 15 spans, the part of a request one gateway had).
    eventually(
        "the agent got every answer",
        || exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        |n| *n >= first.len() as f64,
    );

    for proxy in &proxies {
        proxy.set(Mode::Reset);
    }
    // Accepted (the queues have room), then undeliverable for 1s: dropped.
    let lost = send_requests(&agent, &mut requests, 10);
    let failed = eventually(
        "the spans sent while every gateway resets counted as failed",
        || exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        |n| *n >= lost.len() as f64,
    );
    assert_eq!(failed, lost.len() as f64);
    agent.wait_for_log("the drop logged with its reason", |line| {
        line["message"] == "Exporting failed. Dropping data."
            && line.to_string().contains("max_elapsed_time")
    });
    assert!(proxies.iter().all(|p| p.stats().resets > 0));

    for proxy in &proxies {
        proxy.set(Mode::PassThrough);
    }
    let last = send_requests(&agent, &mut requests, 10);
    wait_all_delivered(&all, &last);
    let landed = landed(&all);
    let lost_ids: HashSet<&Vec<u8>> = lost.iter().map(|s| &s.span).collect();
    assert!(
        landed.keys().all(|s| !lost_ids.contains(s)),
        "a span counted as failed was delivered"
    );
    assert!(landed.values().all(|p| p.len() == 1), "none twice");
    // sent == delivered + counted as failed, exactly.
    assert_eq!(landed.len(), first.len() + last.len());
    // The agent counts a span sent when its gateway's answer arrives, just
    // after the sink took it.
    let counted_sent = eventually(
        "the agent got every answer",
        || exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        |n| *n >= (first.len() + last.len()) as f64,
    );
    assert_eq!(counted_sent, (first.len() + last.len()) as f64);
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        lost.len() as f64
    );
}

#[test]
fn with_every_gateway_down_a_full_queue_refuses_and_counts_what_it_refused() {
    // Room for 5 requests of 20 spans over both gateways.
    let top = "    sending_queue: {enabled: true, sizer: items, queue_size: 100}";
    let (gateways, proxies, agent, _) = behind_proxies("1s", top);
    let all: Vec<&Gateway> = gateways.iter().collect();
    for proxy in &proxies {
        proxy.set(Mode::Reset);
    }
    let http = agent.address("otlp", "http");
    let mut requests = Requests::new(5);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let (request, spans) = requests.next();
        let body = prost::Message::encode_to_vec(&request);
        let response = http_request(
            http,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        );
        match response.status {
            200 => accepted.extend(spans),
            429 => refused += 1,
            other => panic!(
                "answered {other}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }
    // Nothing leaves while both reset, so the queue holds what it took.
    assert_eq!(accepted.len(), 100, "the queue took 100 spans");
    assert_eq!(refused, 3);
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
        (refused * SPANS_PER_REQUEST) as f64
    );
    assert_eq!(
        agent.metric("otelcol_receiver_refused_spans_total", &[]),
        (refused * SPANS_PER_REQUEST) as f64
    );
    // The parts wait up to the coalescing flush_timeout (50ms) before the
    // first attempt, which the resets then refuse.
    eventually(
        "a gateway connection was tried and reset",
        || proxies.iter().map(|p| p.stats().resets).sum::<u64>(),
        |resets| *resets > 0,
    );

    for proxy in &proxies {
        proxy.set(Mode::PassThrough);
    }
    // Everything accepted is delivered once the gateways answer, and the
    // room it held is free again.
    let landed = wait_all_delivered(&all, &accepted);
    assert!(landed.values().all(|p| p.len() == 1), "none twice");
    let more = send_requests(&agent, &mut requests, 6);
    let landed = wait_all_delivered(&all, &more);
    assert_eq!(landed.len(), accepted.len() + more.len());
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

#[test]
fn a_gateway_killed_mid_stream_and_restarted_on_its_port_loses_nothing() {
    let mut gateways = [Gateway::start(), Gateway::start(), Gateway::start()];
    let addresses: Vec<SocketAddr> = gateways.iter().map(|g| g.address).collect();
    let keys: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    let agent = agent(&addresses, "1s", "");
    let traffic = Traffic::start(agent.address("otlp", "http"), 6);
    let before = traffic.wait_past(0, 30);
    const KILLED: usize = 1;
    gateways[KILLED].kill();
    eventually(
        "the agent noticed the killed gateway",
        || failed_attempts(&agent, addresses[KILLED]),
        |n| *n > 0.0,
    );
    let down = traffic.wait_past(before, 80);
    gateways[KILLED].restart();
    wait_share_back(
        &traffic,
        &gateways[KILLED],
        down,
        "the restarted gateway back in use",
    );
    let after = traffic.accepted();
    traffic.wait_past(after, 10);
    let sent = traffic.stop();

    let all: Vec<&Gateway> = gateways.iter().collect();
    let landed = wait_all_delivered(&all, &sent);
    assert_eq!(landed.len(), sent.len(), "every span delivered");
    let duplicates = assert_duplicates_only_from(&landed, KILLED);
    // The survivors' traces stayed where they were, before, during and
    // after: a dead gateway moves only its own share.
    assert!(assert_unaffected(&sent, &landed, &keys, &[0, 2]) > 0);
    // The dead gateway's traces went to their owner among the survivors,
    // as the ring without it says (consistent hashing), or stayed with it.
    let ring = HashRing::new(&keys);
    let survivors = [keys[0].clone(), keys[2].clone()];
    let without = HashRing::new(&survivors);
    let mut moved = BTreeSet::new();
    for s in &sent {
        if owner(&ring, &keys, &s.trace) != KILLED {
            continue;
        }
        let next = if owner(&without, &survivors, &s.trace) == 0 {
            0
        } else {
            2
        };
        for place in &landed[&s.span] {
            assert!(
                *place == KILLED || *place == next,
                "span {:?} of the killed gateway's trace went to {} (ring without it says {})",
                s.span,
                keys[*place],
                keys[next]
            );
            if *place == next {
                moved.insert(s.trace.clone());
            }
        }
    }
    assert!(!moved.is_empty(), "the killed gateway's share moved");
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
        0.0
    );
    eprintln!(
        "kill: {} spans, {duplicates} delivered twice, {} of the killed gateway's traces moved",
        sent.len(),
        moved.len()
    );
}
