//! SIGTERM drains what was accepted; SIGHUP swaps in a new config on the same
//! ports, and a broken new config leaves the running one in place.

mod support;

use prost::Message;
use std::process::Command;
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

/// Threads of process `pid` named `name`: tokio names its threads after the
/// binary (as the kernel keeps the main thread's), cut to the kernel's 15
/// bytes.
fn threads_named(pid: u32, name: &str) -> usize {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the collector's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn worker_threads_come_from_the_flag_then_the_environment() {
    // No file exporter and no host names: nothing starts tokio's blocking
    // pool, so the threads named after the binary are the main thread and
    // the async workers.
    let config = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  debug:
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#;
    let binary = "agent-collector";
    for (args, env, workers) in [
        (&["--worker-threads", "3"][..], None, 3),
        (&[][..], Some("5"), 5),
        (&["--worker-threads", "1"][..], Some("5"), 1),
    ] {
        let mut command = Command::new(support::binary(binary));
        command.env_remove("TOKIO_WORKER_THREADS");
        if let Some(n) = env {
            command.env("TOKIO_WORKER_THREADS", n);
        }
        let collector = Collector::spawn(command, binary, config, args);
        // Serving: the runtime and its workers are up.
        let addr = collector.address("otlp", "http");
        assert_eq!(post_traces(addr, 1, 1, 1), 200);
        assert_eq!(
            threads_named(collector.pid(), binary),
            1 + workers,
            "{args:?} TOKIO_WORKER_THREADS={env:?}"
        );
    }
}
