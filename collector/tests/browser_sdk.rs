//! The OpenTelemetry JS web SDK in a real headless Chromium against the real
//! `browser-collector`. The page (`tests/js/page.js`, bundled with esbuild
//! here) is served from one loopback origin and exports to the collector on
//! another (a different port), so the browser makes a real CORS preflight
//! before it POSTs OTLP/JSON. What the collector's `file` exporter writes is
//! checked: the document-load and fetch instrumentations' spans, a manual
//! span's attributes, exception event and parent, the resource (with the
//! embedded config's `telemetry.source=browser`), and a log record. A page
//! on an origin the collector does not allow gets nothing through, and a
//! hand-built span sent with `navigator.sendBeacon` (text/plain JSON, no
//! preflight) does.
//!
//! Needs Chromium and the npm packages of `tests/js`: `cargo xtask setup`
//! installs both (`OLLY_CHROMIUM`, `OLLY_JS_DIR`).

mod support;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Collector;

const SETUP_HINT: &str = "run `cargo xtask setup` (it installs Chromium and `npm ci`s collector/tests/js), or set OLLY_CHROMIUM / OLLY_JS_DIR";

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Chromium: `$OLLY_CHROMIUM`, else Debian's. Missing is a failure, not a skip.
fn chromium() -> PathBuf {
    let path = env_path("OLLY_CHROMIUM").unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium is missing at {}: {SETUP_HINT}",
        path.display()
    );
    path
}

/// The npm project with `page.js`: `$OLLY_JS_DIR`, else this crate's `tests/js`.
fn js_dir() -> PathBuf {
    let dir = env_path("OLLY_JS_DIR").unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("js")
    });
    for needed in [
        "page.js",
        "node_modules/.bin/esbuild",
        "node_modules/@opentelemetry/sdk-trace-web",
    ] {
        assert!(
            dir.join(needed).exists(),
            "{} is missing: {SETUP_HINT}",
            dir.join(needed).display()
        );
    }
    dir
}

/// Bundles `page.js` into `{out}/bundle.js`; returns the bundle's bytes.
fn bundle(out: &Path) -> Vec<u8> {
    let js = js_dir();
    let outfile = out.join("bundle.js");
    let output = Command::new(js.join("node_modules/.bin/esbuild"))
        .current_dir(&js)
        .args([
            "page.js",
            "--bundle",
            "--format=iife",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", outfile.display()))
        .output()
        .expect("running esbuild");
    assert!(
        output.status.success(),
        "esbuild failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&outfile).expect("bundle.js")
}

/// One request the page's server answered.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The page's own origin: serves `/` (the HTML), `/bundle.js` and
/// `/api/ping` (the page's `fetch`), one request per connection.
struct PageServer {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl PageServer {
    fn start(bundle: Vec<u8>) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let address = listener.local_addr().expect("page server address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bundle = Arc::new(bundle);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let bundle = bundle.clone();
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &bundle, &log));
            }
        });
        PageServer { address, seen }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    fn page_url(&self, collector: SocketAddr, mode: &str, timeout_ms: u32) -> String {
        format!(
            "{}/?collector=http://{collector}&mode={mode}&timeout={timeout_ms}",
            self.origin()
        )
    }

    fn seen(&self, path_prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|s| s.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }
}

const PAGE_HTML: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>loading</title></head>\n<body><h1>rum test</h1><script src=\"/bundle.js\"></script></body></html>\n";

fn serve(stream: TcpStream, bundle: &[u8], log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();
    log.lock().expect("seen").push(Seen {
        path: target,
        headers,
    });
    let (status, content_type, content): (&str, &str, &[u8]) = match path.as_str() {
        "/" => ("200 OK", "text/html; charset=utf-8", PAGE_HTML.as_bytes()),
        "/bundle.js" => ("200 OK", "text/javascript; charset=utf-8", bundle),
        "/api/ping" => ("200 OK", "text/plain; charset=utf-8", b"pong"),
        _ => ("404 Not Found", "text/plain", b"not found"),
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(content));
}

/// The embedded browser config with CORS for `allowed_origin` only.
fn start_collector(allowed_origin: &str) -> (Collector, SocketAddr) {
    let cors: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
        "allowed_origins: [{}]",
        serde_json::json!(allowed_origin)
    ))
    .expect("cors");
    support::start_embedded_browser(&[("cors", cors)])
}

/// What the page reported in `<pre id="result">`.
struct PageRun {
    result: serde_json::Value,
    dom: String,
    stderr: String,
}

/// Loads `url` in headless Chromium, returns the DOM it dumped once the
/// page's virtual time ran out, and the page's result. Fails unless the page
/// says it is done.
fn run_chromium(url: &str) -> PageRun {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=15000", "--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}; {SETUP_HINT}", chromium().display()));
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    // Chromium exits on its own once it dumped the DOM; a hung browser is
    // killed rather than holding the test forever.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let context =
        || format!("url: {url}\nstatus: {status:?}\n--- DOM ---\n{dom}\n--- stderr ---\n{stderr}");
    assert!(
        status.is_some_and(|s| s.success()),
        "chromium failed or hung\n{}",
        context()
    );
    assert!(
        dom.contains("<title>done</title>"),
        "the page did not finish (no <title>done</title>)\n{}",
        context()
    );
    let start = dom
        .find("<pre id=\"result\">")
        .map(|i| i + "<pre id=\"result\">".len())
        .unwrap_or_else(|| panic!("no <pre id=result>\n{}", context()));
    let end = dom[start..]
        .find("</pre>")
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("unterminated <pre id=result>\n{}", context()));
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let result = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("result is not JSON ({e}): {text}\n{}", context()));
    PageRun {
        result,
        dom,
        stderr,
    }
}

fn any_string(value: &Option<AnyValue>) -> Option<&str> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid W3C ID: the right length and not all zeros.
fn assert_valid_ids(span: &Span) {
    assert_eq!(span.trace_id.len(), 16, "{span:?}");
    assert_eq!(span.span_id.len(), 8, "{span:?}");
    assert!(span.trace_id.iter().any(|b| *b != 0), "{span:?}");
    assert!(span.span_id.iter().any(|b| *b != 0), "{span:?}");
    assert!(
        span.parent_span_id.is_empty() || span.parent_span_id.len() == 8,
        "{span:?}"
    );
}

/// Spans with their resource attributes, as the file exporter wrote them.
fn spans_with_resource(path: &Path) -> Vec<(Vec<KeyValue>, Span)> {
    let contents = support::read_file_exporter(path);
    let mut out = Vec::new();
    for request in &contents.traces {
        for rs in &request.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push((resource.clone(), span.clone()));
                }
            }
        }
    }
    out
}

fn logs_with_resource(path: &Path) -> Vec<(Vec<KeyValue>, LogRecord)> {
    let contents = support::read_file_exporter(path);
    let mut out = Vec::new();
    for request in &contents.logs {
        for rl in &request.resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for sl in &rl.scope_logs {
                for record in &sl.log_records {
                    out.push((resource.clone(), record.clone()));
                }
            }
        }
    }
    out
}

fn assert_browser_resource(resource: &[KeyValue]) {
    assert_eq!(
        string_attr(resource, "service.name"),
        Some("rum-test"),
        "{resource:?}"
    );
    assert_eq!(
        string_attr(resource, "telemetry.source"),
        Some("browser"),
        "{resource:?}"
    );
}

fn find<'a>(spans: &'a [(Vec<KeyValue>, Span)], name: &str) -> &'a (Vec<KeyValue>, Span) {
    spans
        .iter()
        .find(|(_, s)| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:?}"))
}

#[test]
fn the_web_sdk_in_chromium_exports_spans_and_logs_across_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = PageServer::start(bundle(dir.path()));
    let (collector, http) = start_collector(&server.origin());
    let run = run_chromium(&server.page_url(http, "sdk", 5000));
    let result = &run.result;
    let context = || format!("result: {result}\nstderr: {}", run.stderr);

    assert_eq!(result["errors"], serde_json::json!([]), "{}", context());
    assert_eq!(result["tracesFlushed"], true, "{}", context());
    assert_eq!(result["logsFlushed"], true, "{}", context());
    assert_eq!(result["fetchStatus"], 200, "{}", context());
    assert_eq!(result["fetchBody"], "pong", "{}", context());
    let exports = result["exports"].as_array().expect("exports");
    for signal in ["traces", "logs"] {
        assert!(
            exports.iter().any(|e| e["signal"] == signal),
            "no {signal} export: {}",
            context()
        );
    }
    // ExportResultCode.SUCCESS: the collector answered the CORS preflight
    // and the POST.
    for export in exports {
        assert_eq!(export["code"], 0, "{export}: {}", context());
    }

    let out = collector.path("out.json");
    let spans = support::eventually(
        "the page's spans in the file",
        || spans_with_resource(&out),
        |spans| {
            ["documentLoad", "GET", "checkout.flow", "checkout.submit"]
                .iter()
                .all(|name| spans.iter().any(|(_, s)| s.name == *name))
        },
    );
    for (resource, span) in &spans {
        assert_browser_resource(resource);
        assert_valid_ids(span);
    }

    // The document-load instrumentation: documentLoad with documentFetch under it.
    let (_, document_load) = find(&spans, "documentLoad");
    let (_, document_fetch) = find(&spans, "documentFetch");
    assert_eq!(document_fetch.parent_span_id, document_load.span_id);
    assert_eq!(document_fetch.trace_id, document_load.trace_id);
    assert!(
        string_attr(&document_load.attributes, "http.url")
            .or_else(|| string_attr(&document_load.attributes, "url.full"))
            .is_some_and(|u| u.starts_with(&server.origin())),
        "{document_load:?}"
    );

    // The fetch instrumentation: a client span for /api/ping, whose context
    // went out in the request's traceparent (same origin).
    let (_, fetch) = find(&spans, "GET");
    assert!(
        string_attr(&fetch.attributes, "url.full")
            .or_else(|| string_attr(&fetch.attributes, "http.url"))
            .is_some_and(|u| u.contains("/api/ping")),
        "{fetch:?}"
    );
    let pings = server.seen("/api/ping");
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(
        pings[0].header("traceparent"),
        Some(format!("00-{}-{}-01", hex(&fetch.trace_id), hex(&fetch.span_id)).as_str()),
        "{pings:?}"
    );

    // The manual spans: attributes, the exception event, the parent link.
    let (_, parent) = find(&spans, "checkout.flow");
    let (_, child) = find(&spans, "checkout.submit");
    assert_eq!(
        string_attr(&child.attributes, "app.user_action"),
        Some("checkout")
    );
    assert_eq!(
        attr(&child.attributes, "app.cart_items"),
        Some(&any_value::Value::IntValue(3)),
        "{child:?}"
    );
    let exception = child
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event: {child:?}"));
    assert_eq!(
        string_attr(&exception.attributes, "exception.message"),
        Some("boom")
    );
    assert_eq!(
        string_attr(&exception.attributes, "exception.type"),
        Some("Error")
    );
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);
    assert!(parent.parent_span_id.is_empty(), "{parent:?}");
    assert_eq!(result["parentSpanId"], hex(&parent.span_id));
    assert_eq!(result["childSpanId"], hex(&child.span_id));
    assert_eq!(result["traceId"], hex(&parent.trace_id));

    // The log record.
    let logs = support::eventually(
        "the page's log record in the file",
        || logs_with_resource(&out),
        |logs| !logs.is_empty(),
    );
    assert_eq!(logs.len(), 1, "{logs:?}");
    let (resource, record) = &logs[0];
    assert_browser_resource(resource);
    assert_eq!(any_string(&record.body), Some("checkout submitted"));
    assert_eq!(record.severity_number, 9, "{record:?}");
    assert_eq!(record.severity_text, "INFO");
    assert_eq!(
        string_attr(&record.attributes, "app.user_action"),
        Some("checkout")
    );
}

#[test]
fn a_page_on_an_origin_that_is_not_allowed_gets_nothing_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = PageServer::start(bundle(dir.path()));
    // Another origin on the same host: only the port differs.
    let other = format!("http://127.0.0.1:{}", server.address.port() ^ 1);
    let (collector, http) = start_collector(&other);
    let run = run_chromium(&server.page_url(http, "sdk", 2000));
    let result = &run.result;
    let context = || format!("result: {result}\nDOM: {}\nstderr: {}", run.dom, run.stderr);

    // The page ran (its own fetch worked), but every export failed: the
    // preflight had no Access-Control-Allow-Origin, so no POST was made.
    assert_eq!(result["fetchStatus"], 200, "{}", context());
    assert_eq!(result["tracesFlushed"], false, "{}", context());
    // (The logs processor's forceFlush resolves even when its export
    // failed: the SDK hands the error to its global handler. The recorded
    // export outcome below is what tells.)
    let exports = result["exports"].as_array().expect("exports");
    for signal in ["traces", "logs"] {
        assert!(
            exports.iter().any(|e| e["signal"] == signal),
            "no {signal} export attempt: {}",
            context()
        );
    }
    for export in exports {
        assert_ne!(export["code"], 0, "{export}: {}", context());
    }

    // A beacon needs no preflight, so the browser sends it whatever the
    // collector's CORS says: the collector refuses it for its Origin.
    let beacon = run_chromium(&server.page_url(http, "beacon", 5000));
    assert_eq!(beacon.result["beaconQueued"], true, "{}", beacon.result);
    support::eventually(
        "the beacon refused for its origin",
        || {
            collector.metric(
                "otelcol_receiver_refused_requests_total",
                &[("receiver", "otlp"), ("reason", "origin")],
            )
        },
        |refused| *refused >= 1.0,
    );

    // A barrier: a span posted directly (no Origin) is written; had the
    // browser's got through, they would be there too.
    let mut marker = support::make_traces(42, 1, 1, "marker");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    // Within the embedded config's timestamp skew limit.
    let span = &mut marker.resource_spans[0].scope_spans[0].spans[0];
    span.start_time_unix_nano = now - 1_000_000;
    span.end_time_unix_nano = now;
    support::post_traces_until_accepted(http, &marker);
    let out = collector.path("out.json");
    let spans = support::eventually(
        "the marker span in the file",
        || spans_with_resource(&out),
        |spans| !spans.is_empty(),
    );
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(spans.len(), 1, "browser spans got through: {names:?}");
    assert_eq!(
        spans[0].1.span_id,
        marker.resource_spans[0].scope_spans[0].spans[0].span_id
    );
    assert!(logs_with_resource(&out).is_empty());
    assert_eq!(
        collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")]
        ),
        1.0
    );
}

#[test]
fn a_send_beacon_span_gets_through_as_text_plain_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = PageServer::start(bundle(dir.path()));
    let (collector, http) = start_collector(&server.origin());
    let run = run_chromium(&server.page_url(http, "beacon", 5000));
    let result = &run.result;
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert_eq!(result["beaconQueued"], true, "{result}");

    let out = collector.path("out.json");
    let spans = support::eventually(
        "the beacon's span in the file",
        || spans_with_resource(&out),
        |spans| !spans.is_empty(),
    );
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (resource, span) = &spans[0];
    assert_browser_resource(resource);
    assert_valid_ids(span);
    assert_eq!(span.name, "page.beacon");
    assert_eq!(result["traceId"], hex(&span.trace_id));
    assert_eq!(result["spanId"], hex(&span.span_id));
    assert_eq!(
        attr(&span.attributes, "app.beacon"),
        Some(&any_value::Value::BoolValue(true))
    );
}
