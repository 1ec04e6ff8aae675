//! The agent's `loadbalancing` exporter with the `k8s` resolver against a
//! fake Kubernetes API (testkit's `FakeKubeApi`, reached through the
//! KUBECONFIG the agent is given) and two real gateways on 127.0.0.2:P and
//! 127.0.0.3:P (the same port, as pods behind one Service): each trace lands
//! whole on the gateway the hash ring names; when the EndpointSlice marks one
//! gateway not ready, new traces all go to the other, and nothing is lost.

mod support;

use exporters::loadbalancing::HashRing;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use support::{Collector, eventually, file_span_ids, make_traces, post_traces_until_accepted};
use testkit::kube_api::FakeKubeApi;

const NAMESPACE: &str = "otel-system";
const SERVICE: &str = "gateway-collector";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/otel-system/endpointslices";
const TRACES_PER_REQUEST: usize = 20;
const SPANS_PER_TRACE: usize = 5;

fn gateway_config(ip: &str, port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {ip}:{port}
exporters:
  file:
    path: {{dir}}/received.json
    flush_interval: 0s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
    )
}

fn agent_config(port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  loadbalancing/gateway:
    resolver:
      k8s:
        service: {SERVICE}.{NAMESPACE}
        ports: [{port}]
        timeout: 5s
    protocol:
      otlp:
        tls:
          insecure: true
        compression: none
        timeout: 2s
        retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 10s}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing/gateway]
"#
    )
}

/// The Service's one EndpointSlice: (address, ready) per gateway pod.
fn endpoint_slice(endpoints: &[(&str, bool)], port: u16) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (address, ready))| {
            serde_json::json!({
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": format!("{SERVICE}-{i}")},
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{SERVICE}-x7k2p"),
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "otlp-grpc", "port": port, "protocol": "TCP"}],
    })
}

/// A gateway listening on `ip`:`port`, with the ring key the agent gives it.
struct Gateway {
    key: String,
    collector: Collector,
}

/// A port free on both 127.0.0.2 and 127.0.0.3 (checked by binding both).
fn shared_port() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let port = first.local_addr().expect("address").port();
        if TcpListener::bind(("127.0.0.3", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Starts a gateway; `None` when it could not listen (the port was taken
/// between the check and the start).
fn try_gateway(ip: &str, port: u16) -> Option<Gateway> {
    let collector = Collector::start(
        support::binary("gateway-collector"),
        &gateway_config(ip, port),
    );
    let listening = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        collector.address("otlp", "grpc")
    }));
    listening.ok().map(|_| Gateway {
        key: format!("{ip}:{port}"),
        collector,
    })
}

/// Two gateways on the same port of 127.0.0.2 and 127.0.0.3, retrying with
/// another port if one could not listen.
fn start_gateways() -> (Gateway, Gateway, u16) {
    for _ in 0..5 {
        let port = shared_port();
        if let (Some(a), Some(b)) = (
            try_gateway("127.0.0.2", port),
            try_gateway("127.0.0.3", port),
        ) {
            return (a, b, port);
        }
    }
    panic!("could not start two gateways on one port");
}

/// Every delivered span: span ID -> (gateway key, trace ID), and how many
/// spans arrived twice.
#[derive(Debug)]
struct Delivered {
    spans: BTreeMap<Vec<u8>, (String, Vec<u8>)>,
    duplicates: usize,
}

fn delivered(gateways: &[&Gateway]) -> Delivered {
    let mut d = Delivered {
        spans: BTreeMap::new(),
        duplicates: 0,
    };
    for gateway in gateways {
        for (span, trace) in file_span_ids(&gateway.collector.path("received.json")) {
            if d.spans.insert(span, (gateway.key.clone(), trace)).is_some() {
                d.duplicates += 1;
            }
        }
    }
    d
}

/// Posts `make_traces` requests for `seeds` to the agent, retrying
/// backpressure; returns the trace IDs sent.
fn send(agent: SocketAddr, seeds: std::ops::RangeInclusive<u8>) -> Vec<Vec<u8>> {
    let mut traces = Vec::new();
    for seed in seeds {
        let request = make_traces(seed, TRACES_PER_REQUEST, SPANS_PER_TRACE, "k8s-lb-test");
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if traces.last() != Some(&span.trace_id) {
                traces.push(span.trace_id.clone());
            }
        }
        post_traces_until_accepted(agent, &request);
    }
    traces.dedup();
    traces
}

/// Asserts every trace of `traces` is whole on the gateway the ring of
/// `keys` names, and only there.
fn assert_on_ring_owner(d: &Delivered, traces: &[Vec<u8>], keys: &[&str]) {
    let ring = HashRing::new(keys);
    let mut placed: BTreeMap<&[u8], BTreeSet<&str>> = BTreeMap::new();
    let mut spans_of: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (gateway, trace) in d.spans.values() {
        placed.entry(trace).or_default().insert(gateway);
        *spans_of.entry(trace).or_default() += 1;
    }
    for trace in traces {
        let expected = ring.endpoint_for(trace).expect("a ring owner");
        let got = placed.get(trace.as_slice()).cloned().unwrap_or_default();
        assert_eq!(got, BTreeSet::from([expected]), "trace {trace:02x?}");
        assert_eq!(spans_of.get(trace.as_slice()), Some(&SPANS_PER_TRACE));
    }
}

fn backends(agent: &Collector) -> f64 {
    agent.metric("otelcol_loadbalancer_num_backends", &[("resolver", "k8s")])
}

#[test]
fn traces_follow_the_ring_as_the_endpoint_slice_changes() {
    let (g2, g3, port) = start_gateways();
    let api = FakeKubeApi::start();
    api.apply(
        SLICES,
        endpoint_slice(&[("127.0.0.2", true), ("127.0.0.3", true)], port),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let mut command = Command::new(support::binary("agent-collector"));
    command
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let agent = Collector::spawn(command, "agent", &agent_config(port), &[]);
    let agent_addr = agent.address("otlp", "http");
    eventually(
        "the agent sees both gateways",
        || backends(&agent),
        |n| *n == 2.0,
    );
    let both = [g2.key.as_str(), g3.key.as_str()];

    // 1. Both gateways ready: every trace whole on its ring owner.
    let first = send(agent_addr, 1..=10);
    assert_eq!(first.len(), 10 * TRACES_PER_REQUEST);
    let expected = first.len() * SPANS_PER_TRACE;
    let d = eventually(
        "the first traces delivered",
        || delivered(&[&g2, &g3]),
        |d| d.spans.len() >= expected,
    );
    assert_eq!(d.duplicates, 0);
    assert_eq!(d.spans.len(), expected);
    assert_on_ring_owner(&d, &first, &both);
    for gateway in [&g2, &g3] {
        assert!(
            d.spans.values().any(|(g, _)| *g == gateway.key),
            "{} got nothing",
            gateway.key
        );
    }

    // 2. The slice marks 127.0.0.3 not ready: new traces all go to 127.0.0.2.
    api.apply(
        SLICES,
        endpoint_slice(&[("127.0.0.2", true), ("127.0.0.3", false)], port),
    );
    eventually(
        "the agent drops the unready gateway",
        || backends(&agent),
        |n| *n == 1.0,
    );
    let second = send(agent_addr, 11..=20);
    let expected = (first.len() + second.len()) * SPANS_PER_TRACE;
    let d = eventually(
        "the second traces delivered",
        || delivered(&[&g2, &g3]),
        |d| d.spans.len() >= expected,
    );
    assert_eq!(d.duplicates, 0, "no span delivered twice");
    assert_eq!(d.spans.len(), expected, "no span lost or invented");
    assert_on_ring_owner(&d, &second, &[g2.key.as_str()]);

    // The agent listed and watched only the Service's slices.
    let requests = api.requests();
    let selector = format!("labelSelector=kubernetes.io%2Fservice-name%3D{SERVICE}");
    for watch in [false, true] {
        assert!(
            requests.iter().any(|r| r.starts_with(&format!("{SLICES}?"))
                && r.contains(&selector)
                && r.contains("watch=true") == watch),
            "no {} request with {selector}: {requests:?}",
            if watch { "watch" } else { "list" }
        );
    }
    assert!(
        agent.metric(
            "otelcol_loadbalancer_num_resolutions_total",
            &[("resolver", "k8s"), ("success", "true")]
        ) >= 2.0
    );
    assert_eq!(
        agent.metric(
            "otelcol_loadbalancer_num_resolutions_total",
            &[("resolver", "k8s"), ("success", "false")]
        ),
        0.0
    );
}
