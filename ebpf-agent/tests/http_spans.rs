//! The agent with its real kernel probes against real servers and clients:
//! Python's `http.server` and a hyper server listening in a network
//! namespace the test creates (and removes), driven by curl, Python's
//! urllib/http.client and raw sockets, and by `ebpf-http-bench load`. The
//! agent runs on the host (tracepoints are system-wide) and writes spans
//! with a `file` exporter.
//!
//! Each test uses its own ports, so tests that run at once never select each
//! other's servers. Needs root (namespaces, BPF); skipped otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use testkit::netns::{NetNs, skip_without_namespaces};
use testkit::{Collector, PATIENCE, eventually, read_file_exporter};

const AGENT: &str = env!("CARGO_BIN_EXE_ebpf-agent");
const BENCH: &str = env!("CARGO_BIN_EXE_ebpf-http-bench");
/// What clock conversion and scheduling may add around a client's own
/// measurement of a request.
const SLACK_NS: u64 = 2_000_000;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

fn agent_config(port: u16) -> String {
    agent_config_with(port, "")
}

/// The agent's config with `extra` (indented YAML) under `receivers.ebpf`.
fn agent_config_with(port: u16, extra: &str) -> String {
    format!(
        r#"
receivers:
  ebpf:
    open_ports: "{port}"
{extra}    metrics:
      interval: 1s
exporters:
  file/spans:
    path: "{{dir}}/spans.json"
    flush_interval: 100ms
  file/metrics:
    path: "{{dir}}/metrics.json"
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [ebpf]
      exporters: [file/spans]
    metrics:
      receivers: [ebpf]
      exporters: [file/metrics]
"#
    )
}

/// Starts the agent and waits until it runs.
fn start_agent(port: u16) -> Collector {
    start_agent_with(port, "")
}

/// Starts the agent with `extra` under `receivers.ebpf` and waits until it
/// runs.
fn start_agent_with(port: u16, extra: &str) -> Collector {
    let agent = Collector::start(AGENT, &agent_config_with(port, extra));
    agent.wait_for_log("the agent to run", |v| {
        v["message"] == "everything is ready; begin running and processing data"
    });
    agent
}

/// Which tracepoints the agent's probes attached to, as it logged.
fn attached_hooks(agent: &Collector) -> String {
    let line = agent.wait_for_log("the probes to attach", |v| {
        v["message"] == "probes attached"
    });
    line["hooks"].as_str().unwrap_or_default().to_string()
}

/// Waits until the agent instruments `pid`.
fn wait_instrumented(agent: &Collector, pid: u32) {
    agent.wait_for_log(&format!("instrumenting {pid}"), |v| {
        v["message"] == "instrumenting process" && v["pid"] == pid
    });
}

/// A server in the namespace, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// Runs `command` and waits for its first line on stdout (it prints one
    /// once it listens).
    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server output");
        assert!(!line.is_empty(), "the server exited before listening");
        Server { child }
    }

    fn python(ns: &NetNs, port: u16) -> Server {
        let mut command = ns.command(testkit::python());
        command.arg(script("http_server.py")).arg(port.to_string());
        Server::start(command)
    }

    /// The hyper server, with `OTEL_SERVICE_NAME` in its environment when
    /// `service_name` is given.
    fn hyper(ns: &NetNs, port: u16, service_name: Option<&str>) -> Server {
        let mut command = ns.command(BENCH);
        command
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"));
        if let Some(name) = service_name {
            command.env("OTEL_SERVICE_NAME", name);
        }
        Server::start(command)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client measured for one request.
#[derive(Debug, Clone)]
struct Measured {
    path: String,
    status: Option<u16>,
    start_ns: u64,
    end_ns: u64,
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run client");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Runs `tests/py/http_client.py <port> <mode> <args>` in the namespace.
fn client(ns: &NetNs, port: u16, mode: &str, args: &[&str]) -> Vec<Measured> {
    let out = run(ns
        .command(testkit::python())
        .arg(script("http_client.py"))
        .arg(port.to_string())
        .arg(mode)
        .args(args));
    out.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("client JSON");
            Measured {
                path: v["path"].as_str().expect("path").to_string(),
                status: v["status"].as_u64().map(|s| s as u16),
                start_ns: v["start_ns"].as_u64().expect("start"),
                end_ns: v["end_ns"].as_u64().expect("end"),
            }
        })
        .collect()
}

/// curl in the namespace; several URLs share one keep-alive connection.
/// The wall-clock bounds of the whole run go to each request.
fn curl(ns: &NetNs, port: u16, paths: &[&str], headers: &[&str]) -> Vec<Measured> {
    let mut command = ns.command("curl");
    command.args(["-s", "--http1.1"]);
    for header in headers {
        command.args(["-H", header]);
    }
    for path in paths {
        command
            .args(["-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}{path}"));
    }
    let start_ns = now_ns();
    run(&mut command);
    let end_ns = now_ns();
    paths
        .iter()
        .map(|p| Measured {
            path: p.to_string(),
            status: None,
            start_ns,
            end_ns,
        })
        .collect()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// A span with its resource's attributes.
#[derive(Debug, Clone)]
struct Seen {
    span: Span,
    resource: HashMap<String, String>,
}

fn value_text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value_text(&kv.value)))
        .collect()
}

impl Seen {
    fn attr(&self, key: &str) -> Option<String> {
        attributes(&self.span.attributes).get(key).cloned()
    }
}

fn spans_in(path: &Path) -> Vec<Seen> {
    let contents = read_file_exporter(path);
    let mut seen = Vec::new();
    for request in &contents.traces {
        for rs in &request.resource_spans {
            let resource = attributes(
                &rs.resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default(),
            );
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    seen.push(Seen {
                        span: span.clone(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    seen
}

/// Waits for at least `n` spans in the agent's output.
fn wait_spans(agent: &Collector, n: usize) -> Vec<Seen> {
    let path = agent.path("spans.json");
    eventually(
        &format!("{n} spans"),
        || spans_in(&path),
        |spans| spans.len() >= n,
    )
}

/// The one span whose `url.path` is `path`.
fn by_path<'a>(spans: &'a [Seen], path: &str) -> &'a Seen {
    let found: Vec<&Seen> = spans
        .iter()
        .filter(|s| s.attr("url.path").as_deref() == Some(path))
        .collect();
    assert_eq!(found.len(), 1, "spans for {path}: {found:#?}");
    found[0]
}

/// The span lies within what the client measured, and it is a server span
/// of the request with the expected status. Without a response the span
/// ends when the server closes the connection, which the client cannot see:
/// it sees the FIN of the server's shutdown, which may come well before the
/// server's close (a loaded machine, seen: 3 ms), so only the start is
/// bounded then.
fn check(seen: &Seen, measured: &Measured, port: u16) {
    let span = &seen.span;
    let path = &measured.path;
    assert_eq!(span.kind, SpanKind::Server as i32, "{path}");
    let answered = measured.status.is_some();
    assert!(
        span.start_time_unix_nano + SLACK_NS >= measured.start_ns
            && (!answered || span.end_time_unix_nano <= measured.end_ns + SLACK_NS)
            && span.start_time_unix_nano <= span.end_time_unix_nano,
        "{path}: span {}..{} outside the client's {}..{}",
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        measured.start_ns,
        measured.end_ns
    );
    if let Some(status) = measured.status {
        assert_eq!(
            seen.attr("http.response.status_code"),
            Some(status.to_string()),
            "{path}"
        );
    }
    assert_eq!(seen.attr("server.port"), Some(port.to_string()), "{path}");
    assert_eq!(seen.attr("client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen.attr("network.peer.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen.attr("url.scheme").as_deref(), Some("http"));
    assert_eq!(
        seen.attr("network.protocol.version").as_deref(),
        Some("1.1")
    );
}

fn is_error(seen: &Seen) -> bool {
    seen.span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

#[test]
fn python_http_server_gets_one_span_per_request() {
    if skip_without_namespaces() {
        return;
    }
    const PORT: u16 = 18101;
    const OTHER_PORT: u16 = 18102;
    let ns = NetNs::create("ebpf-py");
    let unselected = Server::python(&ns, OTHER_PORT);
    let server = Server::python(&ns, PORT);
    let agent = start_agent(PORT);
    // By default the cheaper BTF tracepoints, where the kernel has BTF.
    let expected_hooks = if Path::new("/sys/kernel/btf/vmlinux").exists() {
        "BTF tracepoints"
    } else {
        "raw tracepoints"
    };
    assert_eq!(attached_hooks(&agent), expected_hooks);
    wait_instrumented(&agent, server.pid());
    let instrumented = |pid: u32| {
        agent.log_text().lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v["message"] == "instrumenting process" && v["pid"] == pid)
        })
    };
    assert!(
        !instrumented(unselected.pid()),
        "a server on an unselected port is not instrumented"
    );

    // Traffic to the unselected port first: if it made spans, they would
    // arrive before the others.
    curl(&ns, OTHER_PORT, &["/ignored", "/ignored/2"], &[]);

    let mut measured = Vec::new();
    // One keep-alive connection, then fresh ones.
    let mut kept = curl(&ns, PORT, &["/ok", "/items/42"], &[]);
    kept[0].status = Some(200);
    kept[1].status = Some(200);
    measured.extend(kept);
    measured.extend(client(
        &ns,
        PORT,
        "urllib",
        &["/status/404", "/status/500", "/users/7/orders"],
    ));
    // A body sent with sendfile(2) between two requests on one connection:
    // the request after it is still seen as a request.
    measured.extend(client(
        &ns,
        PORT,
        "keepalive",
        &["/keep/1", "/file", "/keep/2", "/chunked"],
    ));
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let parent_id = "b7ad6b7169203331";
    measured.extend(client(
        &ns,
        PORT,
        "traceparent",
        &[&format!("00-{trace_id}-{parent_id}-01"), "/traced"],
    ));
    measured.extend(client(&ns, PORT, "split", &[]));
    measured.extend(client(&ns, PORT, "pipeline", &["10"]));
    measured.extend(client(&ns, PORT, "upload", &["1048576"]));
    // The server asks the unselected one for /slow while it answers: its
    // own outgoing request is a client span.
    let proxy_path = format!("/proxy/{OTHER_PORT}/slow");
    measured.extend(client(&ns, PORT, "urllib", &[&proxy_path]));
    let hang = client(&ns, PORT, "hang", &[]);
    assert_eq!(
        hang[0].status, None,
        "the server answers /hang with nothing"
    );
    measured.extend(hang);
    let disconnect = client(&ns, PORT, "disconnect", &[]);

    // One server span per request, and the proxy's client span.
    let expected = measured.len() + disconnect.len() + 1;
    let all_spans = wait_spans(&agent, expected);
    let (spans, client_spans): (Vec<Seen>, Vec<Seen>) = all_spans
        .iter()
        .cloned()
        .partition(|s| s.span.kind == SpanKind::Server as i32);
    assert!(
        spans
            .iter()
            .all(|s| s.attr("server.port") == Some(PORT.to_string())),
        "only the selected port's server makes server spans"
    );

    for m in &measured {
        check(by_path(&spans, &m.path), m, PORT);
    }
    let ok = by_path(&spans, "/ok");
    assert_eq!(ok.span.name, "GET /ok");
    assert_eq!(ok.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(ok.attr("http.route").as_deref(), Some("/ok"));
    assert_eq!(ok.attr("server.address").as_deref(), Some("127.0.0.1"));
    assert!(
        ok.attr("user_agent.original")
            .is_some_and(|u| u.starts_with("curl/"))
    );
    assert!(!is_error(ok));
    // The keep-alive pair shares a connection: the same client port.
    assert_eq!(
        ok.attr("client.port"),
        by_path(&spans, "/items/42").attr("client.port")
    );
    assert_eq!(
        by_path(&spans, "/items/42").attr("http.route").as_deref(),
        Some("/items/{id}")
    );
    assert_eq!(
        by_path(&spans, "/users/7/orders").span.name,
        "GET /users/{id}/orders"
    );
    assert!(
        !is_error(by_path(&spans, "/status/404")),
        "a server 4xx is not an error"
    );
    assert!(is_error(by_path(&spans, "/status/500")));
    let traced = by_path(&spans, "/traced");
    assert_eq!(hex::encode(&traced.span.trace_id), trace_id);
    assert_eq!(hex::encode(&traced.span.parent_span_id), parent_id);
    let fresh = by_path(&spans, "/ok");
    assert!(
        fresh.span.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    assert_ne!(fresh.span.trace_id, traced.span.trace_id);

    let split = by_path(&spans, "/split");
    assert_eq!(split.attr("server.address").as_deref(), Some("split.test"));
    // Its start is the first write's arrival, before the two pauses.
    let split_measured = measured.iter().find(|m| m.path == "/split").unwrap();
    assert!(
        split.span.end_time_unix_nano - split.span.start_time_unix_nano >= 250_000_000,
        "the span covers the pauses between the request's writes"
    );
    assert!(split.span.start_time_unix_nano < split_measured.start_ns + 150_000_000);

    let chunked = by_path(&spans, "/chunked");
    assert!(
        chunked.span.end_time_unix_nano - chunked.span.start_time_unix_nano >= 40_000_000,
        "a chunked response ends with its last chunk (two 20 ms pauses)"
    );
    let upload = by_path(&spans, "/upload");
    assert_eq!(upload.attr("http.request.method").as_deref(), Some("POST"));
    for i in 0..10 {
        let pipelined = by_path(&spans, &format!("/pipelined/{i}"));
        assert_eq!(
            pipelined.attr("http.response.status_code").as_deref(),
            Some("200")
        );
    }
    let hung = by_path(&spans, "/hang");
    assert!(is_error(hung), "no response is an error");
    assert_eq!(hung.attr("http.response.status_code"), None);
    assert_eq!(
        hung.span.status.as_ref().map(|s| s.message.as_str()),
        Some("no response")
    );
    // The client hung up before the answer: the server still handled the
    // request (300 ms), and the span says so.
    let slow = by_path(&spans, "/slow");
    assert!(slow.span.end_time_unix_nano - slow.span.start_time_unix_nano >= 300_000_000);

    // The outgoing request: from the request's write to the response's
    // read, so it covers the other server's 300 ms, inside the span of the
    // request that made it.
    assert_eq!(client_spans.len(), 1, "client spans: {client_spans:#?}");
    let outgoing = &client_spans[0];
    assert_eq!(outgoing.span.kind, SpanKind::Client as i32);
    assert_eq!(outgoing.span.name, "GET");
    assert_eq!(
        outgoing.attr("url.full"),
        Some(format!("http://127.0.0.1:{OTHER_PORT}/slow"))
    );
    assert_eq!(outgoing.attr("server.port"), Some(OTHER_PORT.to_string()));
    assert_eq!(
        outgoing.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(!is_error(outgoing));
    let proxied = by_path(&spans, &proxy_path);
    assert!(
        outgoing.span.end_time_unix_nano - outgoing.span.start_time_unix_nano >= 300_000_000,
        "the client span covers the other server's pause"
    );
    assert!(
        proxied.span.start_time_unix_nano <= outgoing.span.start_time_unix_nano
            && outgoing.span.end_time_unix_nano <= proxied.span.end_time_unix_nano,
        "the outgoing request lies within the request that made it"
    );
    assert_eq!(
        outgoing.resource.get("process.pid"),
        Some(&server.pid().to_string())
    );

    let resource = &ok.resource;
    assert_eq!(resource.get("process.pid"), Some(&server.pid().to_string()));
    assert!(
        resource
            .get("service.name")
            .is_some_and(|n| n.starts_with("python")),
        "service.name falls back to the executable: {resource:?}"
    );
    assert!(resource.contains_key("host.name"));
    assert_eq!(
        all_spans.len(),
        expected,
        "one span per request: {all_spans:#?}"
    );
}

#[test]
fn hyper_server_spans_and_red_metrics() {
    if skip_without_namespaces() {
        return;
    }
    const PORT: u16 = 18111;
    let ns = NetNs::create("ebpf-hyper");
    let server = Server::hyper(&ns, PORT, Some("hyper-shop"));
    // The raw tracepoints, which kernels without BTF get, record the same.
    let agent = start_agent_with(PORT, "    syscall_tracepoints: raw\n");
    assert_eq!(attached_hooks(&agent), "raw tracepoints");
    wait_instrumented(&agent, server.pid());

    let mut measured = curl(&ns, PORT, &["/a", "/status/503", "/chunked"], &[]);
    measured[0].status = Some(200);
    measured[1].status = Some(503);
    measured[2].status = Some(200);
    measured.extend(client(&ns, PORT, "urllib", &["/orders/123", "/status/404"]));
    measured.extend(client(&ns, PORT, "pipeline", &["10"]));
    measured.extend(client(&ns, PORT, "upload", &["1048576"]));
    let spans = wait_spans(&agent, measured.len());
    for m in &measured {
        check(by_path(&spans, &m.path), m, PORT);
    }
    assert!(is_error(by_path(&spans, "/status/503")));
    assert_eq!(
        by_path(&spans, "/a")
            .resource
            .get("service.name")
            .map(String::as_str),
        Some("hyper-shop"),
        "OTEL_SERVICE_NAME of the process names the service"
    );
    assert_eq!(spans.len(), measured.len());

    // RED metrics: the duration histogram counts every request by route.
    let metrics_path = agent.path("metrics.json");
    let counts = eventually(
        "RED histograms for every request",
        || {
            let contents = read_file_exporter(&metrics_path);
            let mut counts: HashMap<String, u64> = HashMap::new();
            // Cumulative: the latest export has the totals.
            if let Some(last) = contents.metrics.last() {
                for rm in &last.resource_metrics {
                    for sm in &rm.scope_metrics {
                        for metric in sm
                            .metrics
                            .iter()
                            .filter(|m| m.name == "http.server.request.duration")
                        {
                            if let Some(
                                opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h),
                            ) = &metric.data
                            {
                                for point in &h.data_points {
                                    let route = attributes(&point.attributes)
                                        .get("http.route")
                                        .cloned()
                                        .unwrap_or_default();
                                    *counts.entry(route).or_default() += point.count;
                                }
                            }
                        }
                    }
                }
            }
            counts
        },
        |counts| counts.values().sum::<u64>() >= measured.len() as u64,
    );
    assert_eq!(counts.get("/orders/{id}"), Some(&1));
    assert_eq!(counts.get("/pipelined/{id}"), Some(&10));
}

#[test]
fn load_of_5000_requests_per_second_is_fully_accounted() {
    if skip_without_namespaces() {
        return;
    }
    const PORT: u16 = 18121;
    let ns = NetNs::create("ebpf-load");
    let server = Server::hyper(&ns, PORT, Some("load-target"));
    let config = agent_config(PORT).replace(
        "path: \"{dir}/spans.json\"",
        "path: \"{dir}/spans.pb\"\n    format: proto",
    );
    let agent = Collector::start(AGENT, &config);
    agent.wait_for_log("the agent to run", |v| {
        v["message"] == "everything is ready; begin running and processing data"
    });
    wait_instrumented(&agent, server.pid());

    let report = run(ns.command(BENCH).args([
        "load",
        "--target",
        &format!("127.0.0.1:{PORT}"),
        "--rate",
        "5000",
        "--duration",
        "10s",
        "--connections",
        "8",
    ]));
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("load report");
    let ok = report["ok"].as_u64().expect("ok");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(ok >= 20_000, "the load ran: {report}");

    let sent = |agent: &Collector| {
        agent.metric(
            "otelcol_exporter_sent_spans_total",
            &[("exporter", "file/spans")],
        ) as u64
    };
    let lost =
        |agent: &Collector| agent.metric("otelcol_ebpf_kernel_events_lost_total", &[]) as u64;
    // Every request is a span, or the loss counters say how many were not.
    let delivered = eventually(
        "a span per request, or counted losses",
        || (sent(&agent), lost(&agent)),
        |(sent, lost)| *sent >= ok || *lost > 0,
    );
    assert_eq!(
        delivered,
        (ok, 0),
        "spans sent and kernel events lost, {report}"
    );
    assert_eq!(
        agent.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "ebpf")]
        ) as u64,
        ok
    );
    assert_eq!(
        agent.metric(
            "otelcol_receiver_refused_spans_total",
            &[("receiver", "ebpf")]
        ) as u64,
        0
    );
}

#[test]
fn processes_that_start_later_are_picked_up_and_exited_ones_forgotten() {
    if skip_without_namespaces() {
        return;
    }
    const PORT: u16 = 18131;
    let ns = NetNs::create("ebpf-later");
    let agent = start_agent(PORT);
    assert_eq!(
        agent.metric("otelcol_ebpf_instrumented_processes", &[]),
        0.0
    );
    let server = Server::hyper(&ns, PORT, Some("late-starter"));
    let pid = server.pid();
    let started = std::time::Instant::now();
    wait_instrumented(&agent, pid);
    assert!(
        started.elapsed() < PATIENCE,
        "picked up within the scan interval"
    );
    curl(&ns, PORT, &["/late"], &[]);
    let spans = wait_spans(&agent, 1);
    assert_eq!(spans[0].attr("url.path").as_deref(), Some("/late"));

    drop(server);
    agent.wait_for_log("the exited server forgotten", |v| {
        v["message"] == "no longer instrumenting process" && v["pid"] == pid
    });
    eventually(
        "no instrumented processes",
        || agent.metric("otelcol_ebpf_instrumented_processes", &[]),
        |n| *n == 0.0,
    );
}

#[test]
fn without_privileges_it_exits_naming_the_missing_capabilities() {
    if skip_without_namespaces() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, agent_config(18141).replace("{dir}", "/tmp")).expect("config");
    // Readable by the unprivileged user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(AGENT)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON"),
        "names the capabilities: {stderr}"
    );
}

/// A cgroup whose path carries a container ID, as a container runtime makes
/// one; removed when dropped (after its processes exited).
struct ContainerCgroup {
    path: PathBuf,
}

impl ContainerCgroup {
    /// Moves `pid` into `<cgroup2 root>/olly-test-<id>/cri-containerd-<id>.scope`.
    fn enter(pid: u32, id: &str) -> ContainerCgroup {
        // cgroup v2, alone or beside v1 (hybrid: the unified hierarchy).
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists())
            .expect("a cgroup v2 hierarchy");
        let path = root.join(format!("olly-test-{}", std::process::id()));
        let scope = path.join(format!("cri-containerd-{id}.scope"));
        std::fs::create_dir_all(&scope).expect("create the cgroup");
        std::fs::write(scope.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
        ContainerCgroup { path }
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[test]
fn kubernetes_pod_metadata_from_the_api_by_container_id() {
    if skip_without_namespaces() {
        return;
    }
    const PORT: u16 = 18151;
    const NODE: &str = "test-node-1";
    let container_id = "4f2a".repeat(16);
    let api = testkit::kube_api::FakeKubeApi::start();
    api.apply(
        "/api/v1/pods",
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "shop-6c8d9f7b5-k2v9x",
                "namespace": "demo",
                "uid": "7e1d2c3b-0000-4000-8000-000000000001",
                "labels": {"pod-template-hash": "6c8d9f7b5", "app.kubernetes.io/name": "shop"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "shop-6c8d9f7b5", "uid": "rs-1", "controller": true}]
            },
            "spec": {"nodeName": NODE, "containers": [{"name": "web"}]},
            "status": {"containerStatuses": [{
                "name": "web", "containerID": format!("containerd://{container_id}"),
                "image": "shop", "imageID": "", "ready": true, "restartCount": 0
            }]}
        }),
    );
    let ns = NetNs::create("ebpf-kube");
    let server = Server::hyper(&ns, PORT, None);
    let _cgroup = ContainerCgroup::enter(server.pid(), &container_id);

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let mut command = Command::new(AGENT);
    command.env("KUBECONFIG", &kubeconfig);
    let config = agent_config_with(
        PORT,
        &format!("    kube_metadata:\n      enabled: true\n      node_name: {NODE}\n"),
    );
    let agent = Collector::spawn(command, "ebpf-agent", &config, &[]);
    agent.wait_for_log("the pods listed", |v| {
        v["message"] == "kube_metadata: pods of this node listed" && v["pods"] == 1
    });
    wait_instrumented(&agent, server.pid());
    assert!(
        api.requests().iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("fieldSelector=spec.nodeName%3Dtest-node-1")),
        "the watch is limited to this node: {:?}",
        api.requests()
    );

    curl(&ns, PORT, &["/in-a-pod"], &[]);
    let spans = wait_spans(&agent, 1);
    let resource = &by_path(&spans, "/in-a-pod").resource;
    let get = |k: &str| resource.get(k).map(String::as_str);
    assert_eq!(get("container.id"), Some(container_id.as_str()));
    assert_eq!(get("k8s.namespace.name"), Some("demo"));
    assert_eq!(get("k8s.pod.name"), Some("shop-6c8d9f7b5-k2v9x"));
    assert_eq!(
        get("k8s.pod.uid"),
        Some("7e1d2c3b-0000-4000-8000-000000000001")
    );
    assert_eq!(get("k8s.node.name"), Some(NODE));
    assert_eq!(get("k8s.deployment.name"), Some("shop"));
    assert_eq!(get("k8s.container.name"), Some("web"));
    assert_eq!(
        get("service.name"),
        Some("shop"),
        "without OTEL_SERVICE_NAME, the pod's app.kubernetes.io/name names the service"
    );

    // A pod deleted from the API no longer describes the process.
    api.delete("/api/v1/pods", "shop-6c8d9f7b5-k2v9x");
    eventually(
        "the deleted pod's metadata gone",
        || {
            curl(&ns, PORT, &["/after-delete"], &[]);
            spans_in(&agent.path("spans.json"))
                .iter()
                .filter(|s| s.attr("url.path").as_deref() == Some("/after-delete"))
                .any(|s| !s.resource.contains_key("k8s.pod.name"))
        },
        |gone| *gone,
    );
}
