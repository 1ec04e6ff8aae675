//! SIGTERM drains what was accepted; SIGHUP swaps in a new config on the same
//! ports, and a broken new config leaves the running one in place.

mod support;

use prost::Message;
use support::{Collector, eventually, http_request, make_traces, read_file_exporter};

fn post_traces(addr: std::net::SocketAddr, seed: u8, traces: usize, spans: usize) -> u16 {
    let body = make_traces(seed, traces, spans, "lifecycle-test").encode_to_vec();
    http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    )
    .status
}

fn config(out: &str, extra_processor: &str, timeout: &str) -> String {
    let (processors, names) = if extra_processor.is_empty() {
        (String::new(), "[batch]")
    } else {
        (
            format!(
                "  resource:\n    attributes: [{{key: generation, value: {extra_processor}, action: upsert}}]\n"
            ),
            "[resource, batch]",
        )
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: {timeout}
    send_batch_size: 100000
{processors}exporters:
  file:
    path: {{dir}}/{out}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: {names}
      exporters: [file]
"#
    )
}

#[test]
fn sigterm_delivers_everything_acknowledged_before_exit() {
    // A 10-minute batch timeout: without a graceful drain nothing would be written.
    let mut collector = Collector::start(
        support::binary("agent-collector"),
        &config("out.json", "", "10m"),
    );
    let addr = collector.address("otlp", "http");
    for seed in 0..20u8 {
        assert_eq!(post_traces(addr, seed, 5, 10), 200);
    }
    collector.signal(libc::SIGTERM);
    let status = collector.wait_exit();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        collector.log_text()
    );
    let written = read_file_exporter(&collector.path("out.json"));
    assert_eq!(written.span_count(), 20 * 5 * 10);
}

#[test]
fn sighup_applies_a_changed_config_on_the_same_port() {
    let collector = Collector::start(
        support::binary("agent-collector"),
        &config("a.json", "", "10ms"),
    );
    let addr = collector.address("otlp", "http");
    assert_eq!(post_traces(addr, 1, 1, 10), 200);
    eventually(
        "spans in a.json",
        || read_file_exporter(&collector.path("a.json")).span_count(),
        |n| *n == 10,
    );

    std::fs::write(
        &collector.config_path,
        config("b.json", "b", "10ms").replace("{dir}", &collector.dir.path().display().to_string()),
    )
    .expect("rewrite config");
    collector.signal(libc::SIGHUP);
    collector.wait_for_log("reload", |v| v["message"] == "configuration reloaded");

    assert_eq!(
        post_traces(addr, 2, 1, 10),
        200,
        "same port keeps serving after the reload"
    );
    let b = eventually(
        "spans in b.json",
        || read_file_exporter(&collector.path("b.json")),
        |c| c.span_count() == 10,
    );
    let resource = b.traces[0].resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    assert!(
        resource.attributes.iter().any(|kv| kv.key == "generation"),
        "the new pipeline's resource processor ran"
    );
    assert_eq!(
        read_file_exporter(&collector.path("a.json")).span_count(),
        10,
        "old pipeline got nothing new"
    );
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_pipelines_serving() {
    let collector = Collector::start(
        support::binary("agent-collector"),
        &config("a.json", "", "10ms"),
    );
    let addr = collector.address("otlp", "http");
    std::fs::write(
        &collector.config_path,
        "receivers: {otlp: {protocols: {}}}\nservice: {pipelines: {}}\n",
    )
    .expect("rewrite");
    collector.signal(libc::SIGHUP);
    let line = collector.wait_for_log("rejection", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("new configuration rejected"))
    });
    assert!(
        line.to_string().contains("receivers.otlp.protocols"),
        "the log says why: {line}"
    );

    assert_eq!(post_traces(addr, 3, 2, 5), 200);
    eventually(
        "spans in a.json",
        || read_file_exporter(&collector.path("a.json")).span_count(),
        |n| *n == 10,
    );
}
