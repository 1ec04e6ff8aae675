//! The persistent sending queue (`sending_queue.storage` + `file_storage`):
//! spans the agent accepted while its downstream was unreachable survive a
//! `kill -9` and are delivered after a restart (at-least-once), and a graceful
//! restart delivers every span exactly once.
//!
//! The downstream's port is reserved by a socket that is bound but never
//! listens, so connections to it are refused until the gateway takes it over.

mod support;

use prost::Message;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use support::{Collector, ReservedPort, eventually, http_request, make_traces, read_file_exporter};

fn agent_config(storage: &Path, downstream: SocketAddr) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {storage}
    fsync: false
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  otlp:
    endpoint: {downstream}
    tls: {{insecure: true}}
    timeout: 2s
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 0s
    sending_queue:
      storage: file_storage
      num_consumers: 2
      queue_size: 1000
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#,
        storage = storage.display()
    )
}

fn gateway(addr: SocketAddr) -> Collector {
    Collector::start(
        support::binary("gateway-collector"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {addr}
exporters:
  file:
    path: {{dir}}/received.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
        ),
    )
}

fn start_agent(storage: &Path, downstream: SocketAddr) -> Collector {
    Collector::start_with_args(
        support::binary("agent-collector"),
        &agent_config(storage, downstream),
        &["--shutdown-timeout", "1s"],
    )
}

/// Posts `requests` requests of 2 traces x 5 spans; returns the span ids of
/// those answered 200 (all of them, or the test fails).
fn send(agent: &Collector, first_seed: u8, requests: u8) -> HashSet<Vec<u8>> {
    let addr = agent.address("otlp", "http");
    let mut accepted = HashSet::new();
    for seed in first_seed..first_seed + requests {
        let request = make_traces(seed, 2, 5, "persistent-queue-test");
        let response = http_request(
            addr,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &request.encode_to_vec(),
        );
        assert_eq!(response.status, 200, "request {seed} refused");
        accepted.extend(
            request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.span_id.clone()),
        );
    }
    accepted
}

/// How many times each span id arrived at the gateway.
fn received(gateway: &Collector) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for span in read_file_exporter(&gateway.path("received.json")).spans() {
        *counts.entry(span.span_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Requests stored in the agent's persistent queue for traces.
fn stored(storage: &Path) -> usize {
    std::fs::read_dir(storage.join("exporter_otlp_traces"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

fn wait_for_all(gateway: &Collector, accepted: &HashSet<Vec<u8>>) -> HashMap<Vec<u8>, usize> {
    eventually(
        "every accepted span at the gateway",
        || received(gateway),
        |got| accepted.iter().all(|id| got.contains_key(id)),
    )
}

#[test]
fn spans_accepted_before_a_kill_9_are_delivered_after_the_restart() {
    let storage = tempfile::tempdir().expect("storage dir");
    let mut port = ReservedPort::new();

    let mut agent = start_agent(storage.path(), port.addr);
    let accepted = send(&agent, 1, 40);
    assert_eq!(accepted.len(), 400);
    assert_eq!(
        stored(storage.path()),
        40,
        "every accepted request is on disk"
    );
    agent.signal(libc::SIGKILL);
    let status = agent.wait_exit();
    assert!(!status.success(), "killed: {status:?}");

    let agent = start_agent(storage.path(), port.addr);
    agent.wait_for_log("recovery", |v| {
        v["message"] == "requests left in the persistent queue are queued again"
            && v["requests"] == 40
    });
    let gateway = gateway(port.release());
    let got = wait_for_all(&gateway, &accepted);
    assert!(
        got.keys().all(|id| accepted.contains(id)),
        "nothing but what was sent"
    );
    eventually(
        "the delivered requests deleted",
        || stored(storage.path()),
        |n| *n == 0,
    );
    assert_eq!(
        agent.metric(
            "otelcol_exporter_send_failed_spans_total",
            &[("exporter", "otlp")]
        ),
        0.0
    );
}

#[test]
fn a_graceful_restart_delivers_every_span_exactly_once() {
    let storage = tempfile::tempdir().expect("storage dir");
    let mut port = ReservedPort::new();

    let mut agent = start_agent(storage.path(), port.addr);
    let mut accepted = send(&agent, 1, 20);
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit();
    assert!(status.success(), "{status:?}\n{}", agent.log_text());
    // The undelivered requests are kept, not dropped.
    agent.wait_for_log("the kept requests", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("it stays stored"))
            && v["kept_requests"] == 20
            && v["kept_items"] == 200
    });
    assert!(!agent.log_text().contains("Dropping data"));
    assert_eq!(stored(storage.path()), 20);

    let gateway = gateway(port.release());
    let mut agent = start_agent(storage.path(), port.addr);
    // New data after the restart goes the same way.
    accepted.extend(send(&agent, 100, 10));
    let got = wait_for_all(&gateway, &accepted);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());

    let got_after = received(&gateway);
    assert_eq!(got_after.len(), accepted.len(), "nothing else arrived");
    let duplicates: Vec<_> = got_after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "sent twice: {duplicates:?}");
    assert_eq!(got.len(), 300);
    assert_eq!(stored(storage.path()), 0, "nothing left on disk");
}
