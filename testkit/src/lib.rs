//! Test harness for the integration tests of every crate: runs the real
//! binaries (collectors, the eBPF agent) on loopback ports the OS picks,
//! finds those ports in the JSON logs, talks plain HTTP/1.1 to them, and
//! reads what the `file` exporter wrote. [`netns`] runs them in network
//! namespaces; [`fault_proxy`] breaks the TCP connections between them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;
pub mod faulty_sink;
mod fixtures;
pub mod kube_api;
pub mod netns;
pub mod opamp_server;

pub use fixtures::{ReservedPort, Rng};

use collector_core::pdata::json;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

/// A running collector process (any binary of the shared runtime). Killed
/// when dropped.
pub struct Collector {
    child: Child,
    logs: Arc<(Mutex<LogState>, Condvar)>,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    label: String,
}

impl Collector {
    /// Starts `binary` with `config` (YAML) written to a temp dir. `{dir}` in
    /// the config is replaced by that directory. Logs are forced to JSON.
    pub fn start(binary: impl AsRef<Path>, config: &str) -> Collector {
        Self::start_with_args(binary, config, &[])
    }

    /// Like [`Collector::start`] with extra command-line arguments.
    pub fn start_with_args(binary: impl AsRef<Path>, config: &str, args: &[&str]) -> Collector {
        let binary = binary.as_ref();
        let label = binary.file_name().map_or_else(
            || "collector".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::spawn(Command::new(binary), &label, config, args)
    }

    /// Runs `command` (a binary, or a wrapper that execs one) with `config`
    /// as [`Collector::start`] does; `label` prefixes its log lines when
    /// `OLLY_TEST_LOGS` is set.
    pub fn spawn(mut command: Command, label: &str, config: &str, args: &[&str]) -> Collector {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(
            &config_path,
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .expect("write config");
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .arg("--set")
            .arg("service.telemetry.logs.encoding=json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn collector");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new((Mutex::new(LogState::default()), Condvar::new()));
        let sink = logs.clone();
        let tag = label.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("OLLY_TEST_LOGS").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                let (state, cv) = &*sink;
                state.lock().expect("log lock").lines.push(line);
                cv.notify_all();
            }
            let (state, cv) = &*sink;
            state.lock().expect("log lock").closed = true;
            cv.notify_all();
        });
        Collector {
            child,
            logs,
            config_path,
            dir,
            label: label.to_string(),
        }
    }

    /// Path inside the collector's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until a log line satisfies `matches`; returns it.
    pub fn wait_for_log(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        let (state, cv) = &*self.logs;
        let mut guard = state.lock().expect("log lock");
        let mut seen = 0;
        loop {
            for line in &guard.lines[seen..] {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
                    && matches(&value)
                {
                    return value;
                }
            }
            seen = guard.lines.len();
            let now = Instant::now();
            if guard.closed || now >= deadline {
                panic!(
                    "{}: no log line for {what}; logs:\n{}",
                    self.label,
                    guard.lines.join("\n")
                );
            }
            guard = cv.wait_timeout(guard, deadline - now).expect("log wait").0;
        }
    }

    /// All log lines so far.
    pub fn log_text(&self) -> String {
        self.logs.0.lock().expect("log lock").lines.join("\n")
    }

    /// The address a component bound (`otlp`/`grpc`, `health_check`/`http`, `telemetry`/`prometheus`).
    pub fn address(&self, component: &str, protocol: &str) -> SocketAddr {
        let line = self.wait_for_log(&format!("{component} {protocol} listening"), |v| {
            v["message"] == "listening" && v["component"] == component && v["protocol"] == protocol
        });
        line["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("address field")
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we own.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "collector did not exit; logs:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit after a kill.
    pub fn reap(&mut self) {
        let _ = self.child.wait();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The self-metrics text.
    pub fn metrics_text(&self) -> String {
        let addr = self.address("telemetry", "prometheus");
        let response = http_request(addr, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&response.body).into_owned()
    }

    /// Sum of every series of `name` whose labels contain all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics_text(), name, labels)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the series of a metric in Prometheus text.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    exchange(stream, addr, method, path, headers, body)
}

/// [`http_request`] from a chosen local address (e.g. `127.0.0.2`, to play
/// another client on loopback).
pub fn http_request_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind client address");
    socket
        .connect_timeout(&addr.into(), PATIENCE)
        .expect("connect");
    exchange(socket.into(), addr, method, path, headers, body)
}

fn exchange(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (e.g. 413) before reading a large body; ignore write errors then.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// Export requests a `file` exporter wrote as OTLP/JSON lines, by signal.
#[derive(Debug, Default)]
pub struct FileContents {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

impl FileContents {
    pub fn span_count(&self) -> usize {
        self.traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
    pub fn log_count(&self) -> usize {
        self.logs
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }
    pub fn spans(&self) -> impl Iterator<Item = &opentelemetry_proto::tonic::trace::v1::Span> {
        self.traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
    }
}

/// The spans of a `file` exporter's JSON-lines output as (span ID, trace
/// ID). Only complete lines count: the writer may be in the middle of one.
pub fn file_span_ids(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut out = Vec::new();
    for line in complete.lines().filter(|l| !l.trim().is_empty()) {
        let request = json::decode_traces(line.as_bytes()).expect("a traces line");
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            out.push((span.span_id.clone(), span.trace_id.clone()));
        }
    }
    out
}

/// POSTs an OTLP/HTTP protobuf traces request to `/v1/traces`, again while
/// the collector answers 429 or 503 (backpressure) for up to [`PATIENCE`];
/// panics on any other refusal.
pub fn post_traces_until_accepted(address: SocketAddr, request: &ExportTraceServiceRequest) {
    let body = prost::Message::encode_to_vec(request);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = http_request(
            address,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        );
        match response.status {
            200 => return,
            429 | 503 if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!(
                "{address} answered {other}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }
}

/// Reads a JSON-lines file written by the `file` exporter. A line is told
/// apart by its top-level key.
pub fn read_file_exporter(path: &Path) -> FileContents {
    let mut contents = FileContents::default();
    let Ok(text) = std::fs::read_to_string(path) else {
        return contents;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("{\"resourceSpans\"") {
            contents
                .traces
                .push(json::decode_traces(line.as_bytes()).expect("traces line"));
        } else if line.starts_with("{\"resourceMetrics\"") {
            contents
                .metrics
                .push(json::decode_metrics(line.as_bytes()).expect("metrics line"));
        } else if line.starts_with("{\"resourceLogs\"") {
            contents
                .logs
                .push(json::decode_logs(line.as_bytes()).expect("logs line"));
        }
    }
    contents
}

/// Polls `read` until `done` holds or patience runs out; returns the last value.
pub fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            let text = format!("{value:?}");
            panic!(
                "timed out waiting for {what}; last value: {}",
                &text[..text.len().min(2000)]
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The Python interpreter of the test venv (`cargo xtask setup` makes it).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OLLY_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let default = home.join(".cache/ollyscale-otel/venv/bin/python");
    assert!(
        default.exists(),
        "no test venv at {}: run `cargo xtask setup`",
        default.display()
    );
    default
}

/// Builds an OTLP trace request with `traces` traces of `spans` spans each.
pub fn make_traces(
    seed: u8,
    traces: usize,
    spans: usize,
    service: &str,
) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let mut all = Vec::new();
    for t in 0..traces {
        let mut trace_id = [0u8; 16];
        trace_id[0] = seed;
        trace_id[8..].copy_from_slice(&(t as u64 + 1).to_be_bytes());
        for s in 0..spans {
            // Unique per (seed, trace, span) so tests can track every span.
            let mut span_id = [0u8; 8];
            span_id[0] = seed;
            span_id[1..4].copy_from_slice(&(t as u32).to_be_bytes()[1..]);
            span_id[4..].copy_from_slice(&(s as u32 + 1).to_be_bytes());
            all.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: format!("span-{t}-{s}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + s as u64,
                end_time_unix_nano: 1_700_000_000_000_001_000 + s as u64,
                attributes: vec![kv("test.seed", &seed.to_string())],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: all,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
