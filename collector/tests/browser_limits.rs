//! The browser collector's protections against abuse, with the real
//! `browser-collector` binary on loopback: the per-client rate limit (a flood
//! from one address does not reach another's bucket; forwarded headers only
//! from trusted proxies; a bounded client table) and the body size limit.
//! Other loopback addresses (127.0.0.2, ...) play distinct clients. And the
//! embedded browser config's per-request limits and client attributes.

mod support;

use collector_core::pdata::json;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use support::{Collector, HttpResponse, http_request, http_request_from, make_traces};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
        max_request_body_size: 1048576
        accept_text_plain_json: {text_plain}
        max_concurrent_requests: {max_concurrent}
        rate_limit:
          requests_per_second: 5
          request_burst: 10
          spans_per_second: 0
          max_clients: {max_clients}
          trusted_proxies: [127.0.0.4/32]
exporters:
  file:
    path: {dir}/out.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

const JSON: (&str, &str) = ("Content-Type", "application/json");
/// google.rpc.Code RESOURCE_EXHAUSTED.
const RESOURCE_EXHAUSTED: i64 = 8;

fn start(max_clients: usize) -> (Collector, SocketAddr) {
    start_with(max_clients, true)
}

fn start_with(max_clients: usize, text_plain: bool) -> (Collector, SocketAddr) {
    start_full(max_clients, text_plain, 0)
}

fn start_full(
    max_clients: usize,
    text_plain: bool,
    max_concurrent: u32,
) -> (Collector, SocketAddr) {
    let config = CONFIG
        .replace("{max_clients}", &max_clients.to_string())
        .replace("{max_concurrent}", &max_concurrent.to_string())
        .replace("{text_plain}", &text_plain.to_string());
    let collector = Collector::start(support::binary("browser-collector"), &config);
    let http = collector.address("otlp", "http");
    (collector, http)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn traces_body(seed: u8) -> Vec<u8> {
    json::encode_traces(&make_traces(seed, 1, 2, "rum"))
}

fn post_from(source: &str, http: SocketAddr, headers: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    http_request_from(
        ip(source),
        http,
        "POST",
        "/v1/traces",
        &all,
        &traces_body(1),
    )
}

/// A 429 from the limiter: `Retry-After` in whole seconds and a
/// `google.rpc.Status` body in the request's encoding.
fn assert_rate_limited(response: &HttpResponse) {
    assert_eq!(response.status, 429, "{response:?}");
    let retry_after: u64 = response
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {response:?}"));
    assert!(retry_after >= 1, "{response:?}");
    let status: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON status");
    assert_eq!(
        status["code"].as_i64(),
        Some(RESOURCE_EXHAUSTED),
        "{status}"
    );
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit")),
        "{status}"
    );
}

#[test]
fn a_flood_from_one_address_is_limited_while_another_is_served() {
    let (collector, http) = start(1000);
    const FLOODERS: usize = 16;
    const PER_FLOODER: usize = 40;
    // Everyone starts together, so the quiet client posts during the flood.
    let start = Arc::new(Barrier::new(FLOODERS + 1));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                (0..PER_FLOODER)
                    .map(|_| post_from("127.0.0.2", http, &[]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    start.wait();
    // Within its own burst (10): every request must be accepted however
    // busy 127.0.0.2's bucket is.
    let quiet: Vec<HttpResponse> = (0..10).map(|_| post_from("127.0.0.3", http, &[])).collect();
    let flood: Vec<HttpResponse> = flooders
        .into_iter()
        .flat_map(|t| t.join().expect("flooder"))
        .collect();

    for response in &quiet {
        assert_eq!(response.status, 200, "quiet client refused: {response:?}");
    }
    let limited: Vec<&HttpResponse> = flood.iter().filter(|r| r.status != 200).collect();
    let accepted = flood.len() - limited.len();
    for response in &limited {
        assert_rate_limited(response);
    }
    // 640 requests against a burst of 10 and 5/s: the flood would need over
    // two minutes to stay within its rate.
    assert!(
        !limited.is_empty() && accepted >= 10,
        "accepted {accepted} of {}",
        flood.len()
    );
    assert_eq!(
        collector.metric(
            "otelcol_receiver_rate_limited_requests_total",
            &[("receiver", "otlp"), ("limit", "requests")],
        ),
        limited.len() as f64
    );
    assert_eq!(
        collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "rate_limited")],
        ),
        limited.len() as f64
    );
    assert_eq!(
        collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")],
        ),
        (2 * (accepted + quiet.len())) as f64
    );
}

#[test]
fn forwarded_headers_count_only_from_trusted_proxies() {
    let (_collector, http) = start(1000);
    // An untrusted peer cannot pick a fresh bucket by forging the header.
    for i in 0..10 {
        let forged = format!("198.51.100.{i}");
        let response = post_from("127.0.0.5", http, &[("X-Forwarded-For", &forged)]);
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_rate_limited(&post_from(
        "127.0.0.5",
        http,
        &[("X-Forwarded-For", "198.51.100.99")],
    ));

    // From the trusted proxy the right-most untrusted hop is the client: a
    // value the browser forged in front of it changes nothing.
    let via_proxy = |hops: &str| post_from("127.0.0.4", http, &[("X-Forwarded-For", hops)]);
    for i in 0..10 {
        let hops = format!("10.9.9.{i}, 203.0.113.1");
        assert_eq!(via_proxy(&hops).status, 200);
    }
    assert_rate_limited(&via_proxy("6.6.6.6, 203.0.113.1"));
    // Another client behind the same proxy has its own bucket, and so has
    // one named by `Forwarded`.
    assert_eq!(via_proxy("203.0.113.2").status, 200);
    let forwarded = post_from(
        "127.0.0.4",
        http,
        &[("Forwarded", "for=\"[2001:db8::7]:1234\";proto=https")],
    );
    assert_eq!(forwarded.status, 200, "{forwarded:?}");
    // The proxy's own bucket is untouched by what it forwarded.
    assert_eq!(post_from("127.0.0.4", http, &[]).status, 200);
}

/// Sends `count` requests over one keep-alive connection from the trusted
/// proxy, each forwarded for a distinct address; returns the statuses seen.
fn spray(http: SocketAddr, first: u32, count: u32) -> Vec<u16> {
    let stream = {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(ip("127.0.0.4"), 0).into())
            .expect("bind");
        socket.connect(&http.into()).expect("connect");
        TcpStream::from(socket)
    };
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let body = b"{}";
    let mut statuses = Vec::new();
    for n in first..first + count {
        let client = std::net::Ipv4Addr::from(0x0a00_0000 | n);
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nX-Forwarded-For: {client}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // One write per request: a separate body write would wait for the
        // server's delayed ACK (Nagle).
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        writer.write_all(&request).expect("write");
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().expect("content-length");
            }
        }
        let mut skip = vec![0; length];
        reader.read_exact(&mut skip).expect("body");
        statuses.push(status);
    }
    statuses
}

#[test]
fn a_spray_of_forwarded_addresses_keeps_the_client_table_bounded() {
    const MAX_CLIENTS: usize = 1000;
    const SENDERS: u32 = 4;
    const PER_SENDER: u32 = 25_000;
    let (collector, http) = start(MAX_CLIENTS);
    let clients = || {
        collector.metric(
            "otelcol_receiver_rate_limiter_clients",
            &[("receiver", "otlp")],
        )
    };
    spray(http, 0, 2 * MAX_CLIENTS as u32);
    let rss_before = collector.metric("otelcol_process_memory_rss", &[]);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| std::thread::spawn(move || spray(http, 1_000_000 + s * PER_SENDER, PER_SENDER)))
        .collect();
    for sender in senders {
        let statuses = sender.join().expect("sender");
        // Every forwarded address is new, so each has a full bucket.
        assert!(statuses.iter().all(|s| *s == 200), "refused: {statuses:?}");
    }
    let table = clients();
    assert!(
        table > 0.0 && table <= MAX_CLIENTS as f64,
        "client table holds {table}"
    );
    let rss_after = collector.metric("otelcol_process_memory_rss", &[]);
    assert!(
        rss_after - rss_before < 64.0 * 1024.0 * 1024.0,
        "RSS grew from {rss_before} to {rss_after}"
    );
}

#[test]
fn an_oversized_body_gets_413() {
    let (collector, http) = start(1000);
    let body = vec![b' '; 2 * 1024 * 1024];
    let response = http_request(http, "POST", "/v1/traces", &[JSON], &body);
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(
        collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "too_large")],
        ),
        1.0
    );
}

#[test]
fn text_plain_json_is_accepted_only_where_enabled() {
    // What navigator.sendBeacon sends: JSON under a CORS-safelisted type.
    let beacon = ("Content-Type", "text/plain;charset=UTF-8");
    let (collector, http) = start_with(1000, true);
    let response = http_request(http, "POST", "/v1/traces", &[beacon], &traces_body(3));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")],
        ),
        2.0
    );
    let (collector, http) = start_with(1000, false);
    let response = http_request(http, "POST", "/v1/traces", &[beacon], &traces_body(3));
    assert_eq!(response.status, 415, "{response:?}");
    assert_eq!(
        collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "content_type")],
        ),
        1.0
    );
}

#[test]
fn requests_beyond_the_concurrency_cap_get_503() {
    let (collector, http) = start_full(1000, true, 1);
    // A request whose body never comes holds the only slot. If it lost the
    // race for the slot to one of our probes (and was answered 503), it is
    // sent again.
    let stall = || {
        let mut stream = TcpStream::connect(http).expect("connect");
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write head");
        stream.set_nonblocking(true).expect("nonblocking");
        stream
    };
    let stalled = std::cell::RefCell::new(stall());
    // A new client address for every attempt, so the rate limit never answers first.
    let attempt = std::cell::Cell::new(0u8);
    let next_client = || {
        attempt.set(attempt.get().wrapping_add(1));
        format!("127.0.1.{}", attempt.get())
    };
    let busy = support::eventually(
        "a 503 while the slot is held",
        || {
            let answered = stalled.borrow().peek(&mut [0u8; 1]).is_ok();
            if answered {
                *stalled.borrow_mut() = stall();
            }
            post_from(&next_client(), http, &[])
        },
        |r| r.status == 503,
    );
    let retry_after: u64 = busy
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry_after >= 1, "{busy:?}");
    let status: serde_json::Value = serde_json::from_slice(&busy.body).expect("JSON status");
    assert_eq!(status["code"].as_i64(), Some(14), "UNAVAILABLE: {status}");
    assert!(
        collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "overloaded")],
        ) >= 1.0
    );
    // Closing the stalled request frees the slot.
    drop(stalled.into_inner());
    support::eventually(
        "a 200 once the slot is free",
        || post_from(&next_client(), http, &[]).status,
        |s| *s == 200,
    );
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

fn post_protobuf(http: SocketAddr, request: &ExportTraceServiceRequest) -> HttpResponse {
    http_request(
        http,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &prost::Message::encode_to_vec(request),
    )
}

fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// The spans the file exporter wrote, once `n` are there.
fn delivered_spans(collector: &Collector, n: usize) -> Vec<(Vec<KeyValue>, Span)> {
    let path = collector.path("out.json");
    support::eventually(
        &format!("{n} spans in the file"),
        || {
            let contents = support::read_file_exporter(&path);
            contents
                .traces
                .iter()
                .flat_map(|t| &t.resource_spans)
                .flat_map(|r| {
                    let resource = r.resource.clone().unwrap_or_default().attributes;
                    r.scope_spans
                        .iter()
                        .flat_map(|s| &s.spans)
                        .map(move |s| (resource.clone(), s.clone()))
                })
                .collect::<Vec<_>>()
        },
        |spans| spans.len() >= n,
    )
}

fn string_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[test]
fn the_embedded_config_cuts_a_runaway_span_to_the_limits_and_counts_the_cuts() {
    // Body limit raised to 4 MiB so that a 1 MiB value fits next to 10,000
    // attributes; every other protection is the embedded config's.
    let (collector, http) = support::start_embedded_browser(&[(
        "max_request_body_size",
        serde_yaml_ng::Value::from(4 * 1024 * 1024),
    )]);
    let mut request = make_traces(7, 1, 1, "rum");
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.start_time_unix_nano = now_nanos() - 1_000_000;
    span.end_time_unix_nano = now_nanos();
    span.attributes = (0..10_000)
        .map(|i| string_attribute(&format!("attr.{i}"), "v".into()))
        .collect();
    span.attributes[0] = string_attribute("huge", "x".repeat(1024 * 1024));
    span.events = (0..200)
        .map(|i| Event {
            name: format!("event {i}"),
            ..Default::default()
        })
        .collect();
    let response = post_protobuf(http, &request);
    assert_eq!(response.status, 200, "{response:?}");

    let (_, got) = delivered_spans(&collector, 1).remove(0);
    assert_eq!(got.attributes.len(), 128);
    assert_eq!(got.dropped_attributes_count, 10_000 - 128);
    assert_eq!(
        string_of(&got.attributes, "huge").map(|s| s.len()),
        Some(4096)
    );
    assert_eq!(got.events.len(), 128);
    assert_eq!(got.dropped_events_count, 200 - 128);
    let truncated = |part: &str| {
        collector.metric(
            "otelcol_receiver_truncated_total",
            &[("receiver", "otlp"), ("part", part)],
        )
    };
    assert_eq!(truncated("attributes"), (10_000 - 128) as f64);
    assert_eq!(truncated("attribute_values"), 1.0);
    assert_eq!(truncated("events"), (200 - 128) as f64);
    assert_eq!(truncated("links"), 0.0);
    assert_eq!(
        collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")]
        ),
        1.0
    );
}

#[test]
fn the_embedded_config_refuses_items_over_the_request_limit_and_from_broken_clocks() {
    let (collector, http) = support::start_embedded_browser(&[]);
    // 1,500 spans in one request, two of them from clocks two days off:
    // those two are refused, and of the rest the first 1,000 are kept.
    let mut request = make_traces(8, 1, 1500, "rum");
    let now = now_nanos();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    for span in spans.iter_mut() {
        span.start_time_unix_nano = now - 1_000_000;
        span.end_time_unix_nano = now;
    }
    spans[0].start_time_unix_nano = now - 48 * 3600 * 1_000_000_000;
    spans[1].end_time_unix_nano = now + 48 * 3600 * 1_000_000_000;
    let response = post_protobuf(http, &request);
    assert_eq!(response.status, 200, "{response:?}");
    let answer = ExportTraceServiceResponse::decode(response.body.as_slice()).expect("response");
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 500, "{partial:?}");
    assert!(
        partial.error_message.contains("1000 at most")
            && partial
                .error_message
                .contains("24h from the collector's clock"),
        "{partial:?}"
    );
    let delivered = delivered_spans(&collector, 1000);
    assert_eq!(delivered.len(), 1000);
    assert!(
        delivered
            .iter()
            .all(|(_, s)| s.name != "span-0-0" && s.name != "span-0-1")
    );
    let refused = |reason: &str| {
        collector.metric(
            "otelcol_receiver_refused_spans_total",
            &[("receiver", "otlp"), ("reason", reason)],
        )
    };
    assert_eq!(refused("too_many_items"), 498.0);
    assert_eq!(refused("timestamp_skew"), 2.0);
    // Enrichment is off in the embedded config: nothing personal added.
    let (resource, _) = &delivered[0];
    assert_eq!(string_of(resource, "client.address"), None);
    assert_eq!(
        string_of(resource, "telemetry.source").as_deref(),
        Some("browser")
    );
}

#[test]
fn client_address_and_user_agent_are_added_when_enabled() {
    use serde_yaml_ng::Value;
    let (collector, http) = support::start_embedded_browser(&[
        ("add_client_address", Value::from(true)),
        ("add_user_agent", Value::from(true)),
    ]);
    let agent = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0";
    let send = |source: &str, headers: &[(&str, &str)], seed: u8| {
        let mut all = vec![JSON, ("User-Agent", agent)];
        all.extend_from_slice(headers);
        let mut request = make_traces(seed, 1, 1, "rum");
        let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
        span.end_time_unix_nano = now_nanos();
        span.start_time_unix_nano = span.end_time_unix_nano - 1_000;
        // What the sender claims is replaced by what the collector saw.
        request.resource_spans[0]
            .resource
            .get_or_insert_with(Default::default)
            .attributes
            .push(string_attribute("client.address", "1.2.3.4".into()));
        let response = http_request_from(
            ip(source),
            http,
            "POST",
            "/v1/traces",
            &all,
            &json::encode_traces(&request),
        );
        assert_eq!(response.status, 200, "{response:?}");
    };
    // Straight from the browser, and through a proxy the config trusts
    // (127.0.0.0/8 is in the embedded trusted_proxies).
    send("127.0.0.9", &[], 9);
    let delivered = delivered_spans(&collector, 1);
    assert_eq!(
        string_of(&delivered[0].0, "client.address").as_deref(),
        Some("127.0.0.9")
    );
    assert_eq!(
        string_of(&delivered[0].0, "user_agent.original").as_deref(),
        Some(agent)
    );
    send("127.0.0.4", &[("X-Forwarded-For", "203.0.113.50")], 10);
    let delivered = delivered_spans(&collector, 2);
    let forwarded = delivered
        .iter()
        .find(|(_, s)| s.trace_id[0] == 10)
        .expect("the proxied span");
    assert_eq!(
        string_of(&forwarded.0, "client.address").as_deref(),
        Some("203.0.113.50")
    );
}

#[test]
fn data_from_a_disallowed_origin_is_refused_even_without_a_preflight() {
    use serde_yaml_ng::Value;
    let cors: Value =
        serde_yaml_ng::from_str("allowed_origins: ['https://*.shop.example']").expect("cors");
    let (collector, http) = support::start_embedded_browser(&[("cors", cors)]);
    let beacon = ("Content-Type", "text/plain;charset=UTF-8");
    let post = |headers: &[(&str, &str)]| {
        let mut request = make_traces(11, 1, 1, "rum");
        let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
        span.end_time_unix_nano = now_nanos();
        span.start_time_unix_nano = span.end_time_unix_nano - 1_000;
        http_request(
            http,
            "POST",
            "/v1/traces",
            headers,
            &json::encode_traces(&request),
        )
    };
    // What sendBeacon or a form would send from another site: no preflight.
    let refused = post(&[beacon, ("Origin", "https://evil.example")]);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.header("Access-Control-Allow-Origin").is_none());
    let opaque = post(&[JSON, ("Origin", "null")]);
    assert_eq!(opaque.status, 403, "{opaque:?}");
    // An allowed origin, and a client outside any browser (no Origin).
    let allowed = post(&[beacon, ("Origin", "https://www.shop.example")]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("Access-Control-Allow-Origin"),
        Some("https://www.shop.example")
    );
    assert_eq!(post(&[JSON]).status, 200);
    assert_eq!(
        collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "origin")],
        ),
        2.0
    );
    assert_eq!(
        collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")]
        ),
        2.0
    );
}
