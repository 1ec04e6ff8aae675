//! The agent's `loadbalancing` exporter against real gateways and a real DNS
//! server: a network namespace with dnsmasq on 127.0.0.1:53 answering the
//! gateways' headless-service name, gateway collectors on 127.0.0.2-5:4317
//! writing what they get to files, and an agent collector resolving the name
//! every 200ms. Traces are sent to the agent in random order across many
//! requests; every span is then looked up in the gateways' files.
//!
//! Needs root (network namespaces) and dnsmasq; skipped otherwise.

mod support;

use testkit::netns;

use exporters::loadbalancing::HashRing;
use netns::{Dnsmasq, NetNs, NsCollector};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{PATIENCE, Rng, file_span_ids, post_traces_until_accepted};

const NAME: &str = "gateway-collector-headless.otel-system.svc.cluster.local";
const SPANS_PER_TRACE: usize = 5;
const SPANS_PER_REQUEST: usize = 50;

fn gateway_config(ip: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {ip}:4317
exporters:
  file:
    path: {{dir}}/received.json
    flush_interval: 0s
service:
  telemetry:
    metrics:
      address: {ip}:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
    )
}

const AGENT: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  loadbalancing/gateway:
    resolver:
      dns:
        hostname: gateway-collector-headless.otel-system.svc.cluster.local
        port: '4317'
        interval: 200ms
    protocol:
      otlp:
        tls:
          insecure: true
        compression: none
        timeout: 2s
        retry_on_failure: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 10s}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing/gateway]
"#;

/// A gateway on `ip`:4317 inside the namespace.
struct Gateway {
    key: String,
    collector: NsCollector,
}

impl Gateway {
    fn start(ns: &NetNs, ip: &str) -> Gateway {
        let collector = NsCollector::start(
            ns,
            support::binary("gateway-collector"),
            &format!("gw {ip}"),
            &gateway_config(ip),
        );
        collector.address("otlp", "grpc");
        Gateway {
            key: format!("{ip}:4317"),
            collector,
        }
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The spans of `traces` (5 each, unique span IDs from `next_span`),
/// shuffled and cut into requests of 50 spans.
fn requests(
    traces: &[[u8; 16]],
    rng: &mut Rng,
    next_span: &mut u64,
) -> Vec<ExportTraceServiceRequest> {
    let mut spans: Vec<Span> = Vec::new();
    for trace in traces {
        for s in 0..SPANS_PER_TRACE {
            *next_span += 1;
            spans.push(Span {
                trace_id: trace.to_vec(),
                span_id: next_span.to_be_bytes().to_vec(),
                name: format!("op-{s}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_000_100_000,
                ..Default::default()
            });
        }
    }
    for i in (1..spans.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        spans.swap(i, j);
    }
    spans
        .chunks(SPANS_PER_REQUEST)
        .map(|chunk| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "lb-test")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: chunk.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .collect()
}

/// Posts every request to the agent from inside the namespace, retrying
/// refusals (backpressure); `sent` counts the requests accepted.
fn send(
    ns: &NetNs,
    agent: SocketAddr,
    requests: Vec<ExportTraceServiceRequest>,
    sent: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    ns.spawn(move || {
        for request in requests {
            post_traces_until_accepted(agent, &request);
            sent.fetch_add(1, Ordering::AcqRel);
        }
    })
}

fn send_all(ns: &NetNs, agent: SocketAddr, requests: Vec<ExportTraceServiceRequest>) {
    send(ns, agent, requests, Arc::default())
        .join()
        .expect("sender thread");
}

/// Every delivered span: span ID -> (gateway, trace ID); duplicates listed apart.
struct Delivered {
    spans: BTreeMap<Vec<u8>, (String, Vec<u8>)>,
    duplicates: usize,
    per_gateway: BTreeMap<String, usize>,
}

fn delivered(gateways: &[&Gateway]) -> Delivered {
    let mut d = Delivered {
        spans: BTreeMap::new(),
        duplicates: 0,
        per_gateway: BTreeMap::new(),
    };
    for gateway in gateways {
        let spans = file_span_ids(&gateway.collector.path("received.json"));
        d.per_gateway.insert(gateway.key.clone(), spans.len());
        for (span, trace) in spans {
            if d.spans.insert(span, (gateway.key.clone(), trace)).is_some() {
                d.duplicates += 1;
            }
        }
    }
    d
}

/// Waits until `expected` distinct spans arrived in total.
fn wait_delivered(gateways: &[&Gateway], expected: usize, agent: &NsCollector) -> Delivered {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = delivered(gateways);
        if d.spans.len() >= expected {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} spans arrived ({:?}); agent logs:\n{}",
            d.spans.len(),
            d.per_gateway,
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The gateway(s) each trace's spans landed on.
fn placement(d: &Delivered) -> BTreeMap<Vec<u8>, BTreeSet<String>> {
    let mut out: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for (gateway, trace) in d.spans.values() {
        out.entry(trace.clone())
            .or_default()
            .insert(gateway.clone());
    }
    out
}

/// Asserts every trace of `traces` is on exactly one gateway, the one the
/// ring of `keys` names.
fn assert_on_ring_owner(d: &Delivered, traces: &[[u8; 16]], keys: &[&str]) {
    let ring = HashRing::new(keys);
    let placed = placement(d);
    for trace in traces {
        let expected = ring.endpoint_for(trace).expect("a ring owner").to_string();
        let got = placed.get(trace.as_slice()).cloned().unwrap_or_default();
        assert_eq!(
            got,
            BTreeSet::from([expected]),
            "trace {} must be whole on its ring owner",
            hex(trace)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until the agent routes over `n` backends.
fn wait_backends(ns: &NetNs, agent: &NsCollector, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = agent.metric(ns, "otelcol_loadbalancer_num_backends", &[]);
        if got == n as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never saw {n} backends (last {got}); logs:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn traces_follow_the_ring_as_dns_answers_change() {
    if netns::skip_without_namespaces() {
        return;
    }
    let started = Instant::now();
    let ns = NetNs::create("dns");
    let dns = Dnsmasq::start(&ns, NAME, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let g2 = Gateway::start(&ns, "127.0.0.2");
    let g3 = Gateway::start(&ns, "127.0.0.3");
    let g4 = Gateway::start(&ns, "127.0.0.4");
    let agent = NsCollector::start(&ns, support::binary("agent-collector"), "agent", AGENT);
    let agent_addr = agent.address("otlp", "http");
    wait_backends(&ns, &agent, 3);
    let three = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];

    // 1. Three gateways: 2,000 traces of 5 spans in random order.
    let mut rng = Rng(0x5eed);
    let mut next_span = 0u64;
    let first = rng.trace_ids(2000);
    send_all(&ns, agent_addr, requests(&first, &mut rng, &mut next_span));
    let mut total = first.len() * SPANS_PER_TRACE;
    let d = wait_delivered(&[&g2, &g3, &g4], total, &agent);
    assert_eq!(d.duplicates, 0);
    assert_eq!(d.spans.len(), total);
    assert_on_ring_owner(&d, &first, &three);
    for gateway in [&g2, &g3, &g4] {
        assert!(
            d.per_gateway[&gateway.key] > 0,
            "{} got nothing",
            gateway.key
        );
    }

    // 2. The answer drops to two addresses while traffic flows: nothing is
    //    lost; traces sent after the agent saw the change follow the new ring.
    let during = rng.trace_ids(500);
    let during_requests = requests(&during, &mut rng, &mut next_span);
    let during_count = during_requests.len();
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = send(&ns, agent_addr, during_requests, progress.clone());
    let deadline = Instant::now() + PATIENCE;
    while progress.load(Ordering::Acquire) < during_count / 3 {
        assert!(Instant::now() < deadline, "sending stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    dns.set(&ns, NAME, &["127.0.0.2", "127.0.0.3"]);
    wait_backends(&ns, &agent, 2);
    sender.join().expect("sender");
    let after = rng.trace_ids(500);
    send_all(&ns, agent_addr, requests(&after, &mut rng, &mut next_span));
    total += (during.len() + after.len()) * SPANS_PER_TRACE;
    let d = wait_delivered(&[&g2, &g3, &g4], total, &agent);
    assert_eq!(d.duplicates, 0, "no span delivered twice");
    assert_eq!(d.spans.len(), total, "no span lost or invented");
    let two = ["127.0.0.2:4317", "127.0.0.3:4317"];
    assert_on_ring_owner(&d, &after, &two);

    // 3. A fourth gateway joins (the answer lists four): about a quarter of
    //    new traces go to it, each where the ring says.
    let g5 = Gateway::start(&ns, "127.0.0.5");
    dns.set(
        &ns,
        NAME,
        &["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"],
    );
    wait_backends(&ns, &agent, 4);
    let last = rng.trace_ids(2000);
    send_all(&ns, agent_addr, requests(&last, &mut rng, &mut next_span));
    total += last.len() * SPANS_PER_TRACE;
    let all = [&g2, &g3, &g4, &g5];
    let d = wait_delivered(&all, total, &agent);
    assert_eq!(d.duplicates, 0);
    assert_eq!(d.spans.len(), total);
    let four = [
        "127.0.0.2:4317",
        "127.0.0.3:4317",
        "127.0.0.4:4317",
        "127.0.0.5:4317",
    ];
    assert_on_ring_owner(&d, &last, &four);
    let to_new = placement(&d)
        .iter()
        .filter(|(trace, places)| {
            last.iter().any(|t| t.as_slice() == trace.as_slice())
                && places.contains("127.0.0.5:4317")
        })
        .count();
    let share = to_new as f64 / last.len() as f64;
    assert!(
        (0.15..=0.35).contains(&share),
        "about a quarter of new traces go to the new gateway, got {share}"
    );
    assert_eq!(
        agent.metric(
            &ns,
            "otelcol_exporter_send_failed_spans_total",
            &[("exporter", "loadbalancing/gateway")]
        ),
        0.0
    );
    assert!(
        agent.metric(
            &ns,
            "otelcol_loadbalancer_num_resolutions_total",
            &[("success", "true")]
        ) >= 3.0
    );
    eprintln!("dns test took {:?}", started.elapsed());
}

#[test]
fn a_killed_gateways_share_is_rerouted_and_nothing_is_lost() {
    if netns::skip_without_namespaces() {
        return;
    }
    let started = Instant::now();
    let ns = NetNs::create("kill");
    let _dns = Dnsmasq::start(&ns, NAME, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let g2 = Gateway::start(&ns, "127.0.0.2");
    let mut g3 = Gateway::start(&ns, "127.0.0.3");
    let g4 = Gateway::start(&ns, "127.0.0.4");
    let agent = NsCollector::start(&ns, support::binary("agent-collector"), "agent", AGENT);
    let agent_addr = agent.address("otlp", "http");
    wait_backends(&ns, &agent, 3);
    let three = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];

    let mut rng = Rng(0xdead);
    let mut next_span = 0u64;
    let first = rng.trace_ids(1000);
    send_all(&ns, agent_addr, requests(&first, &mut rng, &mut next_span));
    let mut total = first.len() * SPANS_PER_TRACE;
    let d = wait_delivered(&[&g2, &g3, &g4], total, &agent);
    assert_on_ring_owner(&d, &first, &three);
    let before_kill = d.per_gateway["127.0.0.3:4317"];

    // The gateway's file exporter acknowledges before it writes, so data a
    // gateway acknowledged in the instant before a SIGKILL can die with it:
    // that would be the gateway's loss, not the agent's. Freeze it first
    // (everything it acknowledged is written by now), so that everything
    // sent to it from here on is unacknowledged when it is killed.
    g3.collector.signal(libc::SIGSTOP);
    let second = rng.trace_ids(1000);
    let second_requests = requests(&second, &mut rng, &mut next_span);
    let count = second_requests.len();
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = send(&ns, agent_addr, second_requests, progress.clone());
    let deadline = Instant::now() + PATIENCE;
    while progress.load(Ordering::Acquire) < count / 3 {
        assert!(Instant::now() < deadline, "sending stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Mid-stream: requests for it are in flight, queued or in retry.
    g3.collector.signal(libc::SIGKILL);
    g3.collector.reap();
    sender.join().expect("sender");
    total += second.len() * SPANS_PER_TRACE;

    let d = wait_delivered(&[&g2, &g3, &g4], total, &agent);
    assert_eq!(d.duplicates, 0, "no span delivered twice");
    assert_eq!(d.spans.len(), total, "every span sent was delivered");
    assert_eq!(
        d.per_gateway["127.0.0.3:4317"], before_kill,
        "the frozen gateway wrote nothing more"
    );
    assert_eq!(
        agent.metric(
            &ns,
            "otelcol_exporter_send_failed_spans_total",
            &[("exporter", "loadbalancing/gateway")]
        ),
        0.0
    );
    assert!(
        agent.metric(
            &ns,
            "otelcol_loadbalancer_backend_outcome_total",
            &[("endpoint", "127.0.0.3:4317"), ("success", "false")]
        ) > 0.0
    );
    // The dead gateway is still in the DNS answer; the others took its
    // share. Taking a gateway out of the ring moves only its own traces, so
    // every trace sent after the freeze is whole on its owner in the ring
    // of the two survivors.
    assert_on_ring_owner(&d, &second, &["127.0.0.2:4317", "127.0.0.4:4317"]);
    eprintln!("kill test took {:?}", started.elapsed());
}

#[test]
fn the_charts_agent_and_browser_configs_route_unchanged() {
    if netns::skip_without_namespaces() {
        return;
    }
    let ns = NetNs::create("chart");
    let _dns = Dnsmasq::start(&ns, NAME, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let gateways = [
        Gateway::start(&ns, "127.0.0.2"),
        Gateway::start(&ns, "127.0.0.3"),
        Gateway::start(&ns, "127.0.0.4"),
    ];
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // The files as the chart had them; only the listening addresses are
    // moved off the gateways' port (all share the namespace).
    let listen = [
        "--set",
        "receivers.otlp.protocols.http.endpoint=127.0.0.1:0",
        "--set",
        "service.telemetry.metrics.address=127.0.0.1:0",
    ];
    let mut agent_args = listen.to_vec();
    agent_args.extend([
        "--set",
        "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:0",
    ]);
    let agent_yaml =
        std::fs::read_to_string(data.join("original-agent.yaml")).expect("agent config");
    let browser_yaml =
        std::fs::read_to_string(data.join("original-browser.yaml")).expect("browser config");
    let agent = NsCollector::start_with_args(
        &ns,
        support::binary("agent-collector"),
        "agent",
        &agent_yaml,
        &agent_args,
    );
    let browser = NsCollector::start_with_args(
        &ns,
        support::binary("browser-collector"),
        "browser",
        &browser_yaml,
        &listen,
    );
    wait_backends(&ns, &agent, 3);
    wait_backends(&ns, &browser, 3);
    let mut rng = Rng(0xc4a7);
    let mut next_span = 0u64;
    let via_agent = rng.trace_ids(300);
    let via_browser = rng.trace_ids(300);
    send_all(
        &ns,
        agent.address("otlp", "http"),
        requests(&via_agent, &mut rng, &mut next_span),
    );
    send_all(
        &ns,
        browser.address("otlp", "http"),
        requests(&via_browser, &mut rng, &mut next_span),
    );
    let all: Vec<&Gateway> = gateways.iter().collect();
    let total = (via_agent.len() + via_browser.len()) * SPANS_PER_TRACE;
    let d = wait_delivered(&all, total, &agent);
    assert_eq!(d.duplicates, 0);
    assert_eq!(d.spans.len(), total);
    let keys = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];
    assert_on_ring_owner(&d, &via_agent, &keys);
    assert_on_ring_owner(&d, &via_browser, &keys);
}
