//! What the `otlp` exporter does with each fault of its downstream, with the
//! real `agent-collector` binary in front of a scripted OTLP/gRPC server
//! (`testkit::faulty_sink`): transient refusals (UNAVAILABLE,
//! RESOURCE_EXHAUSTED with and without RetryInfo) and timeouts are retried
//! until delivered; permanent ones (INVALID_ARGUMENT, and INTERNAL, which
//! OllyScale's receiver answers on storage errors; otelcol does not retry it
//! either) are counted as failed and not retried; partial success counts
//! the rejected spans as failed; a slow downstream loses nothing. While a
//! downstream keeps failing, the sending queue holds no more than its
//! `queue_size` and the receiver refuses the rest (counted), so memory stays
//! bounded; what was accepted is delivered once the downstream recovers.
//! After a blackhole (a `testkit::fault_proxy` that swallows the bytes
//! without resetting anything), the exporter drops the connection its
//! attempts timed out on, and a new one delivers soon after the path is
//! back.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Collector, eventually, http_request, make_traces, post_traces_until_accepted};
use testkit::fault_proxy::{FaultProxy, Mode};
use testkit::faulty_sink::{Answer, FaultySink};

fn agent(sink: &FaultySink) -> Collector {
    agent_with_queue(sink, 1000)
}

/// The agent with a sending queue of `queue_size` requests.
fn agent_with_queue(sink: &FaultySink, queue_size: usize) -> Collector {
    agent_to(sink.address, queue_size)
}

/// The agent exporting to `endpoint` with a sending queue of `queue_size`
/// requests; `keepalive` at its defaults (10s, no ping without a request
/// open, as otelcol and the chart): each attempt ends at `timeout` before a
/// ping is due.
fn agent_to(endpoint: SocketAddr, queue_size: usize) -> Collector {
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  otlp:
    endpoint: {}
    tls: {{insecure: true}}
    compression: none
    timeout: 300ms
    retry_on_failure:
      initial_interval: 20ms
      max_interval: 100ms
      max_elapsed_time: 0
    sending_queue:
      num_consumers: 2
      queue_size: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#,
        endpoint, queue_size
    );
    Collector::start(support::binary("agent-collector"), &config)
}

/// Sends `requests` requests of 5 spans each; returns every span ID sent.
fn send(agent: &Collector, seed: u8, requests: usize) -> HashSet<Vec<u8>> {
    let http = agent.address("otlp", "http");
    let mut sent = HashSet::new();
    for r in 0..requests {
        let request = make_traces(seed.wrapping_add(r as u8), 1, 5, "faults");
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            sent.insert(span.span_id.clone());
        }
        post_traces_until_accepted(http, &request);
    }
    sent
}

fn exporter_metric(agent: &Collector, name: &str) -> f64 {
    agent.metric(name, &[("exporter", "otlp")])
}

fn code(code: tonic::Code, retry_after: Option<Duration>) -> Answer {
    Answer::Status { code, retry_after }
}

#[test]
fn transient_refusals_and_timeouts_are_retried_until_everything_is_delivered() {
    let sink = FaultySink::start(Answer::Ok);
    sink.then([
        code(tonic::Code::Unavailable, None),
        code(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(100)),
        ),
        code(tonic::Code::ResourceExhausted, None),
        Answer::Stall,
        code(tonic::Code::Unavailable, None),
        Answer::Stall,
    ]);
    let agent = agent(&sink);
    let sent = send(&agent, 1, 8);
    let delivered = eventually(
        "every span delivered",
        || sink.delivered(),
        |d| d.len() >= sent.len(),
    );
    let unique: HashSet<Vec<u8>> = delivered.iter().cloned().collect();
    assert_eq!(unique, sent, "every span sent is delivered");
    assert_eq!(delivered.len(), sent.len(), "none delivered twice");
    let calls = sink.calls();
    let refused = calls.iter().filter(|c| c.answer != Answer::Ok).count();
    assert_eq!(refused, 6, "each scripted fault was met once: {calls:?}");
    assert_eq!(
        calls.len(),
        8 + refused,
        "each fault cost exactly one more call"
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        sent.len() as f64
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

#[test]
fn permanent_refusals_are_counted_as_failed_and_not_retried() {
    for permanent in [tonic::Code::InvalidArgument, tonic::Code::Internal] {
        let sink = FaultySink::start(code(permanent, None));
        let agent = agent(&sink);
        let sent = send(&agent, 20, 4);
        let failed = eventually(
            &format!("{permanent:?}: the spans counted as failed"),
            || exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
            |failed| *failed >= sent.len() as f64,
        );
        assert_eq!(failed, sent.len() as f64, "{permanent:?}");
        let calls = sink.calls();
        assert_eq!(
            calls.len(),
            4,
            "{permanent:?}: one call per request, no retry"
        );
        let attempted: HashSet<Vec<u8>> = calls.into_iter().flat_map(|c| c.span_ids).collect();
        assert_eq!(attempted, sent);
        assert_eq!(
            exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
            0.0
        );
        // The refusal is logged with the downstream's message.
        agent.wait_for_log("the permanent refusal logged", |line| {
            line.to_string().contains("scripted fault")
        });
    }
}

#[test]
fn partial_success_counts_the_rejected_spans_as_failed() {
    let sink = FaultySink::start(Answer::PartialSuccess { rejected: 2 });
    let agent = agent(&sink);
    let sent = send(&agent, 40, 3);
    eventually(
        "every request answered",
        || exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        |n| *n >= 9.0,
    );
    assert_eq!(sink.calls().len(), 3, "partial success is not retried");
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        (sent.len() - 6) as f64
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        6.0
    );
}

#[test]
fn a_slow_downstream_loses_nothing() {
    let sink = FaultySink::start(Answer::Slow(Duration::from_millis(100)));
    let agent = agent(&sink);
    let sent = send(&agent, 60, 10);
    let delivered = eventually(
        "every span delivered",
        || sink.delivered(),
        |d| d.len() >= sent.len(),
    );
    assert_eq!(delivered.iter().cloned().collect::<HashSet<_>>(), sent);
    assert_eq!(delivered.len(), sent.len());
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

#[test]
fn a_failing_downstream_fills_the_queue_to_its_bound_then_the_receiver_refuses() {
    const QUEUE: usize = 4;
    const CONSUMERS: usize = 2;
    let faults = [
        code(tonic::Code::Unavailable, None),
        code(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(50)),
        ),
        Answer::Stall,
    ];
    for fault in faults {
        let sink = FaultySink::start(fault.clone());
        let agent = agent_with_queue(&sink, QUEUE);
        let http = agent.address("otlp", "http");
        let mut accepted = HashSet::new();
        let mut refused_spans = 0usize;
        for r in 0..30u8 {
            let request = make_traces(r.wrapping_mul(7), 1, 5, "bounded");
            let response = http_request(
                http,
                "POST",
                "/v1/traces",
                &[("Content-Type", "application/x-protobuf")],
                &prost::Message::encode_to_vec(&request),
            );
            let ids = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.span_id.clone());
            match response.status {
                200 => accepted.extend(ids),
                429 | 503 => refused_spans += ids.count(),
                other => panic!("{fault:?}: answered {other}"),
            }
            let queued = exporter_metric(&agent, "otelcol_exporter_queue_size");
            let capacity = exporter_metric(&agent, "otelcol_exporter_queue_capacity");
            assert!(
                queued <= capacity && capacity == QUEUE as f64,
                "{fault:?}: queue {queued} over its capacity {capacity}"
            );
        }
        // The queue and the consumers retrying hold everything accepted;
        // the rest was refused to the sender, and counted.
        assert!(
            accepted.len() <= (QUEUE + CONSUMERS) * 5,
            "{fault:?}: {} spans accepted past the queue's bound",
            accepted.len()
        );
        assert!(refused_spans > 0, "{fault:?}: nothing refused");
        assert_eq!(
            exporter_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
            refused_spans as f64,
            "{fault:?}"
        );
        // The downstream recovers: everything accepted arrives.
        sink.otherwise(Answer::Ok);
        let delivered = eventually(
            &format!("{fault:?}: every accepted span delivered"),
            || sink.delivered(),
            |d| d.iter().collect::<HashSet<_>>().len() >= accepted.len(),
        );
        let delivered: HashSet<Vec<u8>> = delivered.into_iter().collect();
        assert_eq!(delivered, accepted, "{fault:?}");
        assert_eq!(
            exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
            0.0,
            "{fault:?}"
        );
    }
}

/// Longest wait, once a blackhole is over, until what timed out in it is
/// delivered: what is left of the retry backoff (at most 100ms here) and
/// an attempt over a new connection. Had the exporter kept the blackholed
/// connection, every attempt would time out on it until a keepalive ping
/// went unanswered (18s here with the default keepalive).
const BLACKHOLE_RECOVERY: Duration = Duration::from_secs(10);

#[test]
fn after_a_blackhole_a_new_connection_delivers_what_timed_out() {
    let sink = FaultySink::start(Answer::Ok);
    let proxy = FaultProxy::start(sink.address);
    let agent = agent_to(proxy.address, 1000);
    let before = send(&agent, 1, 2);
    // Answered, not only delivered: a blackhole swallowing an answer would
    // make the exporter send that request again (at least once).
    eventually(
        "sent before the fault",
        || exporter_metric(&agent, "otelcol_exporter_sent_spans_total"),
        |n| *n >= before.len() as f64,
    );

    proxy.set(Mode::Blackhole);
    let during = send(&agent, 50, 3);
    agent.wait_for_log("an attempt unanswered, its connection dropped", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("A request went unanswered"))
    });
    proxy.set(Mode::PassThrough);
    let restored = Instant::now();

    let all: HashSet<Vec<u8>> = before.union(&during).cloned().collect();
    let delivered = eventually(
        "everything delivered after the blackhole",
        || sink.delivered(),
        |d| all.iter().all(|id| d.contains(id)),
    );
    let recovery = restored.elapsed();
    assert!(
        recovery <= BLACKHOLE_RECOVERY,
        "delivered only {recovery:?} after the path was back"
    );
    assert_eq!(delivered.len(), all.len(), "none delivered twice");
    assert!(
        proxy.stats().connections >= 2,
        "a new connection: {:?}",
        proxy.stats()
    );
    assert_eq!(
        exporter_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}
