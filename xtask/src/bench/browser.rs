//! The browser role (`--only browser`): the intake of OTLP/JSON from many
//! small requests, the shape of real-user monitoring, by the release
//! `browser-collector` with its embedded config (read from
//! `browser-collector print-default-config`) adapted: the HTTP endpoint and
//! the self-metrics on free loopback ports, no `health_check` extension, and
//! the `loadbalancing/gateway` exporter replaced by an `otlp` exporter to the
//! counting sink (`compression: none`).
//!
//! Two configs, each on a fresh process with the same load, `--rounds`
//! times each (alternating, so that the machine's other load falls on both):
//!
//! - **limiter on**: the embedded `protocols.http` as is (`rate_limit` with
//!   127.0.0.1 among its `trusted_proxies`, so that the load's
//!   `X-Forwarded-For` names the clients; `limits`,
//!   `max_concurrent_requests`, `max_decoding_bytes`,
//!   `accept_text_plain_json`);
//! - **limiter off**: the same without `rate_limit`, `limits`,
//!   `max_concurrent_requests` and `max_decoding_bytes`.
//!
//! The load is generated here (no other process): [`CLIENT_THREADS`]
//! threads POST OTLP/JSON to `/v1/traces` over hand-written HTTP/1.1 for
//! `--duration` (after an unmeasured `--warmup`), 1..=20 spans per request
//! (page loads, fetches, clicks; IDs, timestamps and attributes like the web
//! SDK's), each request from one of [`CLIENT_ADDRESSES`] clients named in
//! `X-Forwarded-For`; half the threads keep their connection alive, half
//! open one per request. Printed per config (the round with the median
//! requests per CPU-second): requests/s, spans/s, requests per CPU-second of
//! the collector process, latency p50/p99, peak RSS, non-200 answers, and
//! whether the sink got every accepted span; then the limiter's cost,
//! 1 - (requests per CPU-s on / off), against [`TARGET_LIMITER_COST`].
//!
//! Measured (README, "Browser intake"; 2 shared CPUs, 3 rounds of 10 s):
//! limiter on 7,720 requests per CPU-second, off 8,083, a cost of 4.5%,
//! within the noise of that machine; no refusals, every span delivered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_yaml_ng::{Mapping, Value};

use super::children::{ChildGuard, check_interrupted};
use super::probe::{self, cpu_ticks, free_address, json_number, peak_rss_bytes};
use super::report::{Json, verdict};
use super::{Bench, START_TIMEOUT, with_fresh_ports};
use crate::cmd;

/// Client threads of the load; the first half keep their connection alive.
pub(crate) const CLIENT_THREADS: usize = 16;
/// Distinct client addresses the requests come from (`X-Forwarded-For`).
pub(crate) const CLIENT_ADDRESSES: u32 = 10_000;
/// Spans per request: 1..=this, varying per request.
const MAX_SPANS_PER_REQUEST: u64 = 20;
/// The page the spans come from (and the `Origin` header).
const ORIGIN: &str = "https://shop.example.com";
/// The limiter may cost at most this share of the intake's CPU.
pub(crate) const TARGET_LIMITER_COST: f64 = 0.05;
/// A request that takes longer than this counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to 127.0.0.0/8-less `trusted_proxies`, so the load's
/// `X-Forwarded-For` is believed.
const LOOPBACK_PROXY: &str = "127.0.0.1/32";
/// The receiver settings the "off" config removes from `protocols.http`.
const LIMITER_KEYS: [&str; 4] = [
    "rate_limit",
    "limits",
    "max_concurrent_requests",
    "max_decoding_bytes",
];
const MIB: f64 = 1024.0 * 1024.0;

/// One of the two configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limiter {
    On,
    Off,
}

impl Limiter {
    const BOTH: [Limiter; 2] = [Limiter::On, Limiter::Off];

    /// The name in results.json and the logs.
    fn name(self) -> &'static str {
        match self {
            Limiter::On => "limiter-on",
            Limiter::Off => "limiter-off",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Limiter::On => "limiter on (embedded protocols.http)",
            Limiter::Off => {
                "limiter off (no rate_limit, limits, max_concurrent_requests, max_decoding_bytes)"
            }
        }
    }
}

/// What the browser section runs, in a sentence.
pub(crate) fn describe() -> String {
    "browser-collector, embedded default config: otlp (HTTP, loopback) -> resource -> batch (as embedded) \
     -> otlp exporter to the counting sink, compression none; limiter on and off"
        .to_string()
}

fn load_description() -> String {
    format!(
        "{CLIENT_THREADS} threads ({} keep-alive, {} a connection per request), OTLP/JSON POST /v1/traces, \
         1..={MAX_SPANS_PER_REQUEST} spans per request, {CLIENT_ADDRESSES} client addresses in X-Forwarded-For",
        CLIENT_THREADS / 2,
        CLIENT_THREADS - CLIENT_THREADS / 2
    )
}

// ---------------------------------------------------------------------------
// The config

/// The collector's listeners and where it exports.
#[derive(Clone, Copy, Debug)]
struct Ports {
    http: SocketAddr,
    metrics: SocketAddr,
    sink: SocketAddr,
}

/// The embedded config, as the binary prints it (so the bench measures what
/// the binary would run, not a copy of the file).
fn embedded_config(bench: &Bench<'_>) -> Result<String> {
    cmd::run_captured(Command::new(&bench.layout.browser).arg("print-default-config"))
        .context("browser-collector print-default-config")
}

/// The mapping under `key` of `map`, which must be there.
fn child<'a>(map: &'a mut Mapping, key: &str) -> Result<&'a mut Mapping> {
    map.get_mut(key)
        .and_then(Value::as_mapping_mut)
        .with_context(|| format!("the embedded config has no mapping {key:?}"))
}

/// `yaml` (the embedded config) adapted to `ports`, with or without the limiter.
fn adapt(yaml: &str, limiter: Limiter, ports: Ports) -> Result<String> {
    let mut root: Value = serde_yaml_ng::from_str(yaml).context("parsing the embedded config")?;
    let root_map = root
        .as_mapping_mut()
        .context("the embedded config is not a mapping")?;

    let http = child(child(child(root_map, "receivers")?, "otlp")?, "protocols")?;
    let http = child(http, "http")?;
    http.insert("endpoint".into(), ports.http.to_string().into());
    match limiter {
        Limiter::On => trust_loopback(child(http, "rate_limit")?)?,
        Limiter::Off => {
            for key in LIMITER_KEYS {
                http.remove(key);
            }
        }
    }

    // The sink instead of the gateways; nothing else differs downstream.
    let mut otlp = Mapping::new();
    otlp.insert("endpoint".into(), ports.sink.to_string().into());
    otlp.insert("compression".into(), "none".into());
    let mut tls = Mapping::new();
    tls.insert("insecure".into(), true.into());
    otlp.insert("tls".into(), tls.into());
    let mut exporters = Mapping::new();
    exporters.insert("otlp".into(), otlp.into());
    root_map.insert("exporters".into(), exporters.into());

    // health_check would listen on a fixed port, which the other engineers'
    // collectors on this machine may hold; the bench does not need it.
    root_map.remove("extensions");
    let service = child(root_map, "service")?;
    service.remove("extensions");
    let metrics = child(child(service, "telemetry")?, "metrics")?;
    metrics.insert("address".into(), ports.metrics.to_string().into());
    for (_, pipeline) in child(service, "pipelines")?.iter_mut() {
        let pipeline = pipeline
            .as_mapping_mut()
            .context("a pipeline is not a mapping")?;
        pipeline.insert("exporters".into(), vec![Value::from("otlp")].into());
    }

    let text = serde_yaml_ng::to_string(&root).context("writing the adapted config")?;
    Ok(format!(
        "# Written by `cargo xtask bench` ({}).\n{text}",
        limiter.name()
    ))
}

/// Makes sure 127.0.0.1 is a trusted proxy: the load comes from loopback
/// and names its client in `X-Forwarded-For`, which the limiter believes
/// only from trusted proxies (otherwise every request would be one client).
fn trust_loopback(rate_limit: &mut Mapping) -> Result<()> {
    let proxies = rate_limit
        .entry("trusted_proxies".into())
        .or_insert_with(|| Value::Sequence(Vec::new()))
        .as_sequence_mut()
        .context("rate_limit.trusted_proxies is not a list")?;
    let covered = proxies.iter().any(|p| {
        matches!(
            p.as_str(),
            Some("127.0.0.0/8" | "127.0.0.1" | "127.0.0.1/32")
        )
    });
    if !covered {
        proxies.push(LOOPBACK_PROXY.into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The load

/// SplitMix64: deterministic per thread, so every run sends the same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `bytes` random bytes as lower-case hex, never all zero (OTLP's
    /// invalid ID).
    fn hex_id(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            let _ = write!(out, "{:016x}", self.next() | 1);
        }
        out.truncate(bytes * 2);
        out
    }
}

/// Client `index`'s address, in 198.18.0.0/15 (the benchmarking range):
/// outside every private block, which the embedded `trusted_proxies` would
/// skip over as proxies.
fn client_address(index: u32) -> String {
    format!("198.18.{}.{}", index / 256, index % 256)
}

/// What a page's spans are about: name, span kind, instrumentation scope.
const SPAN_KINDS: [(&str, u8, &str); 5] = [
    (
        "documentLoad",
        1,
        "@opentelemetry/instrumentation-document-load",
    ),
    (
        "documentFetch",
        1,
        "@opentelemetry/instrumentation-document-load",
    ),
    (
        "resourceFetch",
        1,
        "@opentelemetry/instrumentation-document-load",
    ),
    ("HTTP GET", 3, "@opentelemetry/instrumentation-fetch"),
    (
        "click",
        1,
        "@opentelemetry/instrumentation-user-interaction",
    ),
];
const PAGES: [&str; 6] = [
    "/",
    "/products",
    "/products/42",
    "/cart",
    "/checkout",
    "/account",
];

/// Nanoseconds since the epoch: the spans are timed now, or the limits'
/// `max_timestamp_skew` would refuse them.
fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One OTLP/JSON export of `spans` spans of one page view (one trace: the
/// first span is the parent of the others), as the web SDK sends it.
fn request_body(rng: &mut Rng, spans: u64, now: u128) -> String {
    let trace_id = rng.hex_id(16);
    let session = rng.hex_id(8);
    let page = PAGES[rng.below(PAGES.len() as u64) as usize];
    let root_id = rng.hex_id(8);
    let mut body = String::with_capacity(600 * spans as usize + 400);
    let _ = write!(
        body,
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop-web"}}}},{{"key":"telemetry.sdk.language","value":{{"stringValue":"webjs"}}}},{{"key":"telemetry.sdk.name","value":{{"stringValue":"opentelemetry"}}}},{{"key":"telemetry.sdk.version","value":{{"stringValue":"1.30.1"}}}}]}},"scopeSpans":[{{"scope":{{"name":"@opentelemetry/instrumentation-web","version":"0.44.0"}},"spans":["#
    );
    for i in 0..spans {
        let (name, kind, scope) = SPAN_KINDS[rng.below(SPAN_KINDS.len() as u64) as usize];
        let span_id = if i == 0 {
            root_id.clone()
        } else {
            rng.hex_id(8)
        };
        // The page load's span is the root: no parentSpanId at all.
        let parent = if i == 0 {
            String::new()
        } else {
            format!(r#""parentSpanId":"{root_id}","#)
        };
        let took = 1_000_000 + u128::from(rng.below(500_000_000));
        let _ = write!(
            body,
            r#"{}{{"traceId":"{trace_id}","spanId":"{span_id}",{parent}"name":"{name}","kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{now}","attributes":[{{"key":"session.id","value":{{"stringValue":"{session}"}}}},{{"key":"url.full","value":{{"stringValue":"{ORIGIN}{page}?v={}"}}}},{{"key":"http.method","value":{{"stringValue":"GET"}}}},{{"key":"otel.scope","value":{{"stringValue":"{scope}"}}}},{{"key":"user_agent.original","value":{{"stringValue":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}}}}],"status":{{}}}}"#,
            if i == 0 { "" } else { "," },
            now - took,
            rng.below(1000),
        );
    }
    body.push_str("]}]}]}");
    body
}

/// The head of a POST of `length` body bytes from `client`.
fn request_head(host: SocketAddr, length: usize, client: &str, keep_alive: bool) -> String {
    format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nOrigin: {ORIGIN}\r\nX-Forwarded-For: {client}\r\n\
         Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )
}

/// An HTTP response: its status and body.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The server will close the connection after it.
    closes: bool,
}

/// Reads one response off `reader`: the whole body (by `Content-Length`,
/// chunks, or to the end), so that a kept-alive connection is ready for the
/// next request.
fn read_response(reader: &mut impl BufRead) -> Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line).context("reading the status")?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut closes = line.starts_with("HTTP/1.0");
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading a header")? == 0 {
            bail!("the connection closed inside the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => closes = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        read_chunks(reader, &mut body)?;
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).context("reading the body")?;
    } else {
        reader.read_to_end(&mut body).context("reading the body")?;
        closes = true;
    }
    Ok(Response {
        status,
        body,
        closes,
    })
}

/// A chunked body's chunks, appended to `body`.
fn read_chunks(reader: &mut impl BufRead, body: &mut Vec<u8>) -> Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .context("reading a chunk size")?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size =
            usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

/// The spans a 200 answer's `partialSuccess` refused (OTLP/JSON writes the
/// int64 as a string or a number).
fn rejected_spans(body: &str) -> u64 {
    let unquoted = body.replace("\"rejectedSpans\":\"", "\"rejectedSpans\":");
    json_number(&unquoted, "rejectedSpans").map_or(0, |n| n as u64)
}

/// One thread's (or, merged, the load's) counts.
#[derive(Clone, Debug, Default)]
struct Tally {
    /// Requests answered 200.
    ok_requests: u64,
    /// Spans sent in requests answered 200, less those refused as partial success.
    accepted_spans: u64,
    sent_spans: u64,
    rejected_spans: u64,
    /// Other answers, by status.
    non_200: BTreeMap<u16, u64>,
    /// Requests without an answer (connection or I/O errors, timeouts).
    failed: u64,
    /// One entry per answered request, microseconds, from before the
    /// connect (a new connection's) or the write until the whole answer.
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok_requests += other.ok_requests;
        self.accepted_spans += other.accepted_spans;
        self.sent_spans += other.sent_spans;
        self.rejected_spans += other.rejected_spans;
        for (status, n) in other.non_200 {
            *self.non_200.entry(status).or_default() += n;
        }
        self.failed += other.failed;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, spans: u64, response: &Response, started: Instant) {
        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.latencies_us.push(micros);
        self.sent_spans += spans;
        if response.status == 200 {
            let rejected = rejected_spans(&String::from_utf8_lossy(&response.body));
            self.ok_requests += 1;
            self.rejected_spans += rejected;
            self.accepted_spans += spans.saturating_sub(rejected);
        } else {
            *self.non_200.entry(response.status).or_default() += 1;
        }
    }

    fn fail(&mut self, spans: u64, error: anyhow::Error) {
        self.sent_spans += spans;
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }
}

fn connect(endpoint: SocketAddr) -> Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&endpoint, IO_TIMEOUT)
        .with_context(|| format!("connecting to {endpoint}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    // Head and body go out in one write; no Nagle delay on the next request.
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One request on `connection` (opened here when there is none): the
/// answer, with the connection kept when the server keeps it.
fn exchange(
    connection: &mut Option<BufReader<TcpStream>>,
    endpoint: SocketAddr,
    request: &[u8],
) -> Result<Response> {
    let reader = match connection {
        Some(reader) => reader,
        None => connection.insert(connect(endpoint)?),
    };
    let answer = reader
        .get_mut()
        .write_all(request)
        .context("sending the request")
        .and_then(|()| read_response(reader));
    match answer {
        Ok(response) => {
            if response.closes {
                *connection = None;
            }
            Ok(response)
        }
        Err(e) => {
            *connection = None;
            Err(e)
        }
    }
}

/// Client thread `index` until `deadline`: keep-alive for the first half
/// of the threads, a connection per request for the others.
fn client_thread(index: usize, endpoint: SocketAddr, deadline: Instant) -> Tally {
    let keep_alive = index < CLIENT_THREADS / 2;
    let mut rng = Rng(0x0b5e_55ed ^ ((index as u64 + 1) << 32));
    let mut tally = Tally::default();
    let mut connection = None;
    while Instant::now() < deadline {
        let spans = 1 + rng.below(MAX_SPANS_PER_REQUEST);
        let client = client_address(rng.below(u64::from(CLIENT_ADDRESSES)) as u32);
        let body = request_body(&mut rng, spans, now_nanos());
        let mut request = request_head(endpoint, body.len(), &client, keep_alive).into_bytes();
        request.extend_from_slice(body.as_bytes());
        let started = Instant::now();
        match exchange(&mut connection, endpoint, &request) {
            Ok(response) => tally.record(spans, &response, started),
            Err(e) => tally.fail(spans, e),
        }
        if !keep_alive {
            connection = None;
        }
    }
    tally
}

/// The whole load for `duration`: every thread's tally, and how long it took.
fn run_load(endpoint: SocketAddr, duration: Duration) -> Result<(Tally, f64)> {
    let started = Instant::now();
    let deadline = started + duration;
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|i| thread::spawn(move || client_thread(i, endpoint, deadline)))
        .collect();
    let mut total = Tally::default();
    for handle in threads {
        let tally = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        total.merge(tally);
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

/// The `q` quantile of `sorted` (nearest rank), in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

// ---------------------------------------------------------------------------
// Measuring

/// One config's measured window.
#[derive(Clone, Debug)]
pub(crate) struct Intake {
    ok_requests: u64,
    accepted_spans: u64,
    sent_spans: u64,
    rejected_spans: u64,
    non_200: BTreeMap<u16, u64>,
    failed_requests: u64,
    first_error: Option<String>,
    load_seconds: f64,
    /// Load plus the drain: the span of the CPU reading.
    window_seconds: f64,
    cpu_seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_bytes: u64,
    /// Spans the sink counted in the window.
    delivered_spans: u64,
    /// The sink counted every accepted span before the drain gave up.
    drained: bool,
}

impl Intake {
    fn requests_per_second(&self) -> f64 {
        ratio(self.ok_requests as f64, self.load_seconds)
    }

    fn spans_per_second(&self) -> f64 {
        ratio(self.accepted_spans as f64, self.load_seconds)
    }

    fn requests_per_cpu_second(&self) -> f64 {
        ratio(self.ok_requests as f64, self.cpu_seconds)
    }

    fn non_200_total(&self) -> u64 {
        self.non_200.values().sum()
    }

    /// `404:3, 503:2`, or `0`.
    fn non_200_text(&self) -> String {
        if self.non_200.is_empty() {
            return "0".to_string();
        }
        self.non_200
            .iter()
            .map(|(status, n)| format!("{n} x {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// A running browser-collector.
struct Running {
    guard: ChildGuard,
    http: SocketAddr,
}

fn start(bench: &Bench<'_>, embedded: &str, limiter: Limiter) -> Result<Running> {
    let log = bench.layout.log(&format!("browser-{}", limiter.name()));
    let path = bench
        .layout
        .out_dir
        .join(format!("browser-{}.yaml", limiter.name()));
    let sink = bench.sink.grpc;
    with_fresh_ports("browser-collector", || {
        let ports = Ports {
            http: free_address()?,
            metrics: free_address()?,
            sink,
        };
        std::fs::write(&path, adapt(embedded, limiter, ports)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let mut command = Command::new(&bench.layout.browser);
        command.arg("--config").arg(&path);
        let mut guard = ChildGuard::spawn("browser-collector", &mut command, &log)?;
        guard.wait_listening(ports.http, START_TIMEOUT)?;
        guard.wait_listening(ports.metrics, START_TIMEOUT)?;
        Ok(Running {
            guard,
            http: ports.http,
        })
    })
}

/// A fresh collector with `limiter`: warm-up, then one measured window from
/// the start of the load until the sink counted every accepted span.
fn measure(bench: &mut Bench<'_>, embedded: &str, limiter: Limiter) -> Result<Intake> {
    let mut running = start(bench, embedded, limiter)?;
    let pid = running.guard.pid();
    let ticks = probe::clock_ticks_per_second();

    if !bench.settings.warmup.is_zero() {
        let base = bench.sink.counts()?;
        let (warm, _) = run_load(running.http, bench.settings.warmup)?;
        bench.sink.drain(&base, warm.accepted_spans)?;
    }
    running.guard.check_running()?;
    check_interrupted()?;

    let sink_before = bench.sink.counts()?;
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let (mut load, load_seconds) = run_load(running.http, bench.settings.duration)?;
    let (sink_after, drained) = bench.sink.drain(&sink_before, load.accepted_spans)?;
    let cpu_after = cpu_ticks(pid)?;
    let window_seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes(pid)?;
    running.guard.check_running()?;

    load.latencies_us.sort_unstable();
    Ok(Intake {
        ok_requests: load.ok_requests,
        accepted_spans: load.accepted_spans,
        sent_spans: load.sent_spans,
        rejected_spans: load.rejected_spans,
        non_200: load.non_200.clone(),
        failed_requests: load.failed,
        first_error: load.first_error.clone(),
        load_seconds,
        window_seconds,
        cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / ticks,
        p50_ms: quantile_ms(&load.latencies_us, 0.50),
        p99_ms: quantile_ms(&load.latencies_us, 0.99),
        peak_rss_bytes: peak_rss,
        delivered_spans: sink_after.since(&sink_before).spans,
        drained,
    })
}

/// The rounds of one config, or why there are none.
#[derive(Debug)]
pub(crate) struct ConfigResult {
    limiter: Limiter,
    rounds: Result<Vec<Intake>, String>,
}

/// Everything the browser section measured.
#[derive(Debug)]
pub(crate) struct BrowserResult {
    configs: Vec<ConfigResult>,
}

impl BrowserResult {
    fn median(&self, limiter: Limiter) -> Option<&Intake> {
        let config = self.configs.iter().find(|c| c.limiter == limiter)?;
        median(config.rounds.as_ref().ok()?)
    }

    /// 1 - (requests per CPU-s on / off): the share of the intake's CPU
    /// the limiter adds (negative when the "on" run happened to be cheaper).
    fn limiter_cost(&self) -> Option<f64> {
        let on = self.median(Limiter::On)?.requests_per_cpu_second();
        let off = self.median(Limiter::Off)?.requests_per_cpu_second();
        let cost = 1.0 - ratio(on, off);
        cost.is_finite().then_some(cost)
    }
}

/// The round with the median requests per CPU-second.
fn median(rounds: &[Intake]) -> Option<&Intake> {
    let mut sorted: Vec<&Intake> = rounds.iter().collect();
    sorted.sort_by(|a, b| {
        a.requests_per_cpu_second()
            .total_cmp(&b.requests_per_cpu_second())
    });
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Runs the browser section: `--rounds` rounds of both configs.
pub(crate) fn run(bench: &mut Bench<'_>) -> Result<BrowserResult> {
    let embedded = embedded_config(bench)?;
    let mut rounds: Vec<(Limiter, Result<Vec<Intake>, String>)> =
        Limiter::BOTH.iter().map(|&l| (l, Ok(Vec::new()))).collect();
    for round in 1..=bench.settings.rounds {
        for (limiter, result) in rounds.iter_mut() {
            let Ok(done) = result else {
                continue;
            };
            eprintln!(
                "bench: round {round}/{}: browser intake, {} ...",
                bench.settings.rounds,
                limiter.label()
            );
            match measure(bench, &embedded, *limiter) {
                Ok(m) => {
                    eprintln!(
                        "bench:   {:.0} requests/s, {:.0} spans/s, {:.0} requests/CPU-s, p50 {:.2} ms, p99 {:.2} ms, \
                         peak RSS {:.1} MiB, non-200 {}, failed {}, delivered {}/{}",
                        m.requests_per_second(),
                        m.spans_per_second(),
                        m.requests_per_cpu_second(),
                        m.p50_ms,
                        m.p99_ms,
                        m.peak_rss_bytes as f64 / MIB,
                        m.non_200_text(),
                        m.failed_requests,
                        m.delivered_spans,
                        m.accepted_spans
                    );
                    done.push(m);
                }
                Err(e) => {
                    check_interrupted()?;
                    eprintln!("bench:   failed: {e:#}");
                    *result = Err(format!("{e:#}"));
                }
            }
        }
    }
    Ok(BrowserResult {
        configs: rounds
            .into_iter()
            .map(|(limiter, rounds)| ConfigResult { limiter, rounds })
            .collect(),
    })
}

// ---------------------------------------------------------------------------
// Output

fn delivered_text(m: &Intake) -> String {
    format!(
        "{}/{} {}",
        m.delivered_spans,
        m.accepted_spans,
        if m.delivered_spans == m.accepted_spans {
            "[equal]"
        } else if m.drained {
            "[more than accepted]"
        } else {
            "[MISSING]"
        }
    )
}

/// The browser section as printed.
pub(crate) fn table(settings: &super::Settings, result: &BrowserResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nbrowser: {}", describe());
    let _ = writeln!(
        out,
        "load: {}, {:.1} s (+{:.1} s warm-up), {} round(s)",
        load_description(),
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.rounds
    );
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>12} {:>9} {:>9} {:>10} {:>8} {:>7}   delivered/accepted spans",
        "config",
        "requests/s",
        "spans/s",
        "req/CPU-s",
        "p50 ms",
        "p99 ms",
        "peak RSS",
        "non-200",
        "failed"
    );
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(12 + 10 + 10 + 12 + 9 + 9 + 10 + 8 + 7 + 35)
    );
    for config in &result.configs {
        let name = config.limiter.name();
        let m = match &config.rounds {
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{name:<12} failed: {}",
                    e.lines().next().unwrap_or_default()
                );
                continue;
            }
            Ok(rounds) => match median(rounds) {
                Some(m) => m,
                None => {
                    let _ = writeln!(out, "{name:<12} no rounds");
                    continue;
                }
            },
        };
        let _ = writeln!(
            out,
            "{name:<12} {:>10.0} {:>10.0} {:>12.0} {:>9.2} {:>9.2} {:>6.1} MiB {:>8} {:>7}   {}",
            m.requests_per_second(),
            m.spans_per_second(),
            m.requests_per_cpu_second(),
            m.p50_ms,
            m.p99_ms,
            m.peak_rss_bytes as f64 / MIB,
            m.non_200_total(),
            m.failed_requests,
            delivered_text(m)
        );
        if m.non_200_total() > 0 {
            let _ = writeln!(
                out,
                "  {name}: REFUSED {} (the limiter must not refuse this load)",
                m.non_200_text()
            );
        }
        if m.rejected_spans > 0 {
            let _ = writeln!(
                out,
                "  {name}: {} spans refused as partial success",
                m.rejected_spans
            );
        }
        if let Some(e) = &m.first_error {
            let _ = writeln!(
                out,
                "  {name}: first failure: {}",
                e.lines().next().unwrap_or_default()
            );
        }
    }
    if settings.rounds > 1 {
        let _ = writeln!(
            out,
            "(each row is the round with the median requests/CPU-s; results.json has every round)"
        );
    }
    match result.limiter_cost() {
        Some(cost) => {
            let _ = writeln!(
                out,
                "limiter's cost: {:.1}% of the intake's CPU (1 - req/CPU-s on / off), target < {:.0}% [{}]",
                cost * 100.0,
                TARGET_LIMITER_COST * 100.0,
                verdict(cost < TARGET_LIMITER_COST)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "limiter's cost: not measured (a config has no figures)"
            );
        }
    }
    out
}

fn intake_json(m: &Intake) -> Json {
    Json::Object(vec![
        ("requests_per_second", Json::float(m.requests_per_second())),
        ("spans_per_second", Json::float(m.spans_per_second())),
        (
            "requests_per_cpu_second",
            Json::float(m.requests_per_cpu_second()),
        ),
        ("latency_p50_ms", Json::float(m.p50_ms)),
        ("latency_p99_ms", Json::float(m.p99_ms)),
        ("peak_rss_bytes", Json::Int(m.peak_rss_bytes)),
        ("ok_requests", Json::Int(m.ok_requests)),
        ("non_200_requests", Json::Int(m.non_200_total())),
        (
            "non_200_by_status",
            Json::Array(
                m.non_200
                    .iter()
                    .map(|(status, n)| {
                        Json::Object(vec![
                            ("status", Json::Int(u64::from(*status))),
                            ("requests", Json::Int(*n)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("failed_requests", Json::Int(m.failed_requests)),
        (
            "first_failure",
            m.first_error.clone().map_or(Json::Null, Json::Str),
        ),
        ("sent_spans", Json::Int(m.sent_spans)),
        ("accepted_spans", Json::Int(m.accepted_spans)),
        ("rejected_spans", Json::Int(m.rejected_spans)),
        ("delivered_spans", Json::Int(m.delivered_spans)),
        (
            "delivered_equals_accepted",
            Json::Bool(m.delivered_spans == m.accepted_spans),
        ),
        ("drained", Json::Bool(m.drained)),
        ("cpu_seconds", Json::float(m.cpu_seconds)),
        ("load_seconds", Json::float(m.load_seconds)),
        ("window_seconds", Json::float(m.window_seconds)),
    ])
}

/// The browser section of `results.json`.
pub(crate) fn json(result: &BrowserResult) -> Json {
    let configs = result
        .configs
        .iter()
        .map(|config| {
            let mut fields = vec![
                ("name", Json::Str(config.limiter.name().into())),
                ("label", Json::Str(config.limiter.label().into())),
            ];
            match &config.rounds {
                Ok(rounds) => {
                    fields.push(("status", Json::Str("measured".into())));
                    if let Some(m) = median(rounds) {
                        fields.push(("median", intake_json(m)));
                    }
                    fields.push((
                        "rounds",
                        Json::Array(rounds.iter().map(intake_json).collect()),
                    ));
                }
                Err(e) => {
                    fields.push(("status", Json::Str("failed".into())));
                    fields.push(("error", Json::Str(e.clone())));
                }
            }
            Json::Object(fields)
        })
        .collect();
    Json::Object(vec![
        ("description", Json::Str(describe())),
        ("load", Json::Str(load_description())),
        ("client_threads", Json::Int(CLIENT_THREADS as u64)),
        ("client_addresses", Json::Int(u64::from(CLIENT_ADDRESSES))),
        ("max_spans_per_request", Json::Int(MAX_SPANS_PER_REQUEST)),
        ("configs", Json::Array(configs)),
        (
            "limiter_cost",
            result.limiter_cost().map_or(Json::Null, Json::float),
        ),
        ("target_limiter_cost", Json::float(TARGET_LIMITER_COST)),
        (
            "limiter_cost_met",
            result
                .limiter_cost()
                .map_or(Json::Null, |c| Json::Bool(c < TARGET_LIMITER_COST)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMBEDDED: &str = include_str!("../../../collector/src/defaults/browser.yaml");

    fn ports() -> Ports {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Ports {
            http: a(1),
            metrics: a(2),
            sink: a(3),
        }
    }

    fn http_of(config: &Value) -> &Mapping {
        config["receivers"]["otlp"]["protocols"]["http"]
            .as_mapping()
            .expect("protocols.http")
    }

    #[test]
    fn limiter_on_keeps_the_embedded_receiver_on_loopback() {
        let text = adapt(EMBEDDED, Limiter::On, ports()).expect("adapts");
        let config: Value = serde_yaml_ng::from_str(&text).expect("yaml");
        let http = http_of(&config);
        assert_eq!(http["endpoint"].as_str(), Some("127.0.0.1:1"));
        for key in LIMITER_KEYS {
            assert!(http.contains_key(key), "{key} kept");
        }
        assert_eq!(http["accept_text_plain_json"].as_bool(), Some(true));
        assert_eq!(
            config["exporters"]["otlp"]["endpoint"].as_str(),
            Some("127.0.0.1:3")
        );
        assert_eq!(
            config["exporters"]["otlp"]["compression"].as_str(),
            Some("none")
        );
        assert_eq!(
            config["service"]["telemetry"]["metrics"]["address"].as_str(),
            Some("127.0.0.1:2")
        );
        assert!(config.get("extensions").is_none());
        assert!(config["service"].get("extensions").is_none());
        assert_eq!(
            config["service"]["pipelines"]["traces"]["exporters"][0].as_str(),
            Some("otlp")
        );
        assert!(!text.contains("0.0.0.0:"));
        assert!(!text.contains("loadbalancing"));
    }

    #[test]
    fn limiter_off_drops_exactly_the_limiter_settings() {
        let text = adapt(EMBEDDED, Limiter::Off, ports()).expect("adapts");
        let config: Value = serde_yaml_ng::from_str(&text).expect("yaml");
        let http = http_of(&config);
        for key in LIMITER_KEYS {
            assert!(!http.contains_key(key), "{key} removed");
        }
        assert_eq!(http["accept_text_plain_json"].as_bool(), Some(true));
        assert!(http.contains_key("cors"));
        assert!(http.contains_key("max_request_body_size"));
    }

    #[test]
    fn loopback_is_added_to_trusted_proxies_once() {
        let mut rate_limit: Mapping =
            serde_yaml_ng::from_str("trusted_proxies: [10.0.0.0/8]").expect("yaml");
        trust_loopback(&mut rate_limit).expect("adds");
        trust_loopback(&mut rate_limit).expect("idempotent");
        let proxies = rate_limit["trusted_proxies"].as_sequence().expect("list");
        assert_eq!(proxies.len(), 2);
        assert_eq!(proxies[1].as_str(), Some(LOOPBACK_PROXY));
    }

    #[test]
    fn bodies_are_otlp_json_with_valid_ids() {
        let mut rng = Rng(7);
        let now = now_nanos();
        let body = request_body(&mut rng, 3, now);
        // YAML is a superset of JSON: serde_yaml_ng reads the body (xtask
        // takes no JSON crate).
        let value: Value = serde_yaml_ng::from_str(&body).expect("JSON is YAML");
        let spans = value["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_sequence()
            .expect("spans");
        assert_eq!(spans.len(), 3);
        let trace_id = spans[0]["traceId"].as_str().expect("traceId");
        assert_eq!(trace_id.len(), 32);
        assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()));
        for span in &spans[1..] {
            assert_eq!(span["traceId"].as_str(), Some(trace_id));
            assert_eq!(span["parentSpanId"], spans[0]["spanId"]);
            assert_eq!(span["spanId"].as_str().map(str::len), Some(16));
        }
        assert!(body.contains(&format!("\"endTimeUnixNano\":\"{now}\"")));
    }

    #[test]
    fn client_addresses_are_distinct_and_public() {
        let all: std::collections::BTreeSet<String> =
            (0..CLIENT_ADDRESSES).map(client_address).collect();
        assert_eq!(all.len(), CLIENT_ADDRESSES as usize);
        assert!(
            all.iter()
                .all(|a| a.starts_with("198.18.") || a.starts_with("198.19."))
        );
    }

    #[test]
    fn responses_are_read_by_length_and_by_chunks() {
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 503 Busy\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut reader = std::io::Cursor::new(text.as_bytes());
        let first = read_response(&mut reader).expect("first");
        assert_eq!(
            (first.status, first.body.as_slice(), first.closes),
            (200, &b"{}"[..], false)
        );
        let second = read_response(&mut reader).expect("second");
        assert_eq!(
            (second.status, second.body.as_slice(), second.closes),
            (503, &b"abc"[..], true)
        );
    }

    #[test]
    fn partial_success_is_read_as_string_or_number() {
        assert_eq!(rejected_spans("{}"), 0);
        assert_eq!(
            rejected_spans(r#"{"partialSuccess":{"rejectedSpans":"4","errorMessage":"x"}}"#),
            4
        );
        assert_eq!(
            rejected_spans(r#"{"partialSuccess":{"rejectedSpans":5}}"#),
            5
        );
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(quantile_ms(&sorted, 0.50), 50.0);
        assert_eq!(quantile_ms(&sorted, 0.99), 99.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }
}
