//! When the downstream stops, bounded queues fill and the receiver refuses new
//! data with 429 (retryable) instead of growing memory; once the downstream is
//! back, everything that was acknowledged arrives.

mod support;

use prost::Message;
use std::collections::HashSet;
use support::{Collector, eventually, http_request, make_traces, read_file_exporter};

const DOWNSTREAM: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  file:
    path: {dir}/received.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

fn upstream(downstream: std::net::SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 10ms
    send_batch_size: 50
    send_batch_max_size: 50
exporters:
  otlp:
    endpoint: {downstream}
    tls: {{insecure: true}}
    compression: none
    timeout: 500ms
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 0
    sending_queue:
      num_consumers: 1
      queue_size: 2
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"#
    )
}

fn span_ids(
    request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Vec<Vec<u8>> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

#[test]
fn a_stalled_downstream_turns_into_429_and_nothing_acknowledged_is_lost() {
    let downstream = Collector::start(support::binary("gateway-collector"), DOWNSTREAM);
    let downstream_addr = downstream.address("otlp", "grpc");
    let agent = Collector::start(
        support::binary("agent-collector"),
        &upstream(downstream_addr),
    );
    let addr = agent.address("otlp", "http");

    downstream.signal(libc::SIGSTOP);
    let mut accepted: HashSet<Vec<u8>> = HashSet::new();
    let mut refused = 0;
    let mut retry_after_seen = false;
    for seed in 0..=250u8 {
        // 400 spans a request: the batch buffer holds 4 x 8192 items whatever
        // `send_batch_size` says, so it takes ~80 requests to fill it.
        let request = make_traces(seed, 1, 400, "backpressure-test");
        let response = http_request(
            addr,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &request.encode_to_vec(),
        );
        match response.status {
            200 => accepted.extend(span_ids(&request)),
            429 | 503 => {
                refused += 1;
                retry_after_seen |= response.header("Retry-After").is_some();
            }
            other => panic!("unexpected status {other}"),
        }
        if refused >= 20 {
            break;
        }
    }
    assert!(
        refused >= 20,
        "a stalled downstream must cause refusals; accepted {} spans",
        accepted.len()
    );
    assert!(retry_after_seen, "429 answers carry Retry-After");
    let refused_metric = agent.metric(
        "otelcol_receiver_refused_spans_total",
        &[("transport", "http")],
    );
    assert!(
        refused_metric >= 200.0,
        "refusals are counted: {refused_metric}"
    );
    let rss = agent.metric("otelcol_process_memory_rss", &[]);
    assert!(
        rss < 200.0 * 1024.0 * 1024.0,
        "bounded memory while refusing: {rss} bytes"
    );

    downstream.signal(libc::SIGCONT);
    let received = eventually(
        "every acknowledged span downstream",
        || {
            let contents = read_file_exporter(&downstream.path("received.json"));
            let got: HashSet<Vec<u8>> = contents.spans().map(|s| s.span_id.clone()).collect();
            accepted.difference(&got).count()
        },
        |missing| *missing == 0,
    );
    assert_eq!(received, 0, "agent metrics:\n{}", agent.metrics_text());
}
