//! Bad input to the OTLP receiver: every malformed, oversized or hostile
//! request gets a clear 4xx / gRPC error, is counted in
//! `otelcol_receiver_refused_requests{reason}` (or, for dropped items,
//! `otelcol_receiver_refused_spans`), and leaves the process serving: a valid
//! request right after still gets 200 and reaches the `file` exporter.

mod support;

use bytes::Bytes;
use collector_core::compression::Encoding;
use collector_core::pdata::rpc::RpcStatus;
use collector_core::receiver::otlp::RawCodec;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::cell::Cell;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;
use support::{Collector, HttpResponse, eventually, http_request, make_traces, read_file_exporter};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
        max_recv_msg_size_mib: 1
      http:
        endpoint: 127.0.0.1:0
        max_request_body_size: 1048576
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

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");
const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// gRPC / google.rpc code INVALID_ARGUMENT.
const INVALID_ARGUMENT: i32 = 3;
/// Nesting depth of the hostile `AnyValue`s.
const DEEP: usize = 10_000;

/// One collector plus what the tests delivered to it so far.
struct Fixture {
    collector: Collector,
    http: SocketAddr,
    grpc: SocketAddr,
    delivered: Cell<usize>,
    seed: Cell<u8>,
}

impl Fixture {
    fn new() -> Self {
        let collector = Collector::start(support::binary("gateway-collector"), CONFIG);
        let http = collector.address("otlp", "http");
        let grpc = collector.address("otlp", "grpc");
        Fixture {
            collector,
            http,
            grpc,
            delivered: Cell::new(0),
            seed: Cell::new(0),
        }
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        http_request(self.http, "POST", path, headers, body)
    }

    /// `otelcol_receiver_refused_requests_total` for one transport and reason.
    fn refused(&self, transport: &str, reason: &str) -> f64 {
        self.collector.metric(
            "otelcol_receiver_refused_requests_total",
            &[
                ("receiver", "otlp"),
                ("transport", transport),
                ("reason", reason),
            ],
        )
    }

    /// The non-zero `refused_requests` series, for failure messages.
    fn refusals(&self) -> String {
        self.collector
            .metrics_text()
            .lines()
            .filter(|l| {
                l.starts_with("otelcol_receiver_refused_requests_total") && !l.ends_with(" 0")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts a refusal counter moved by one since `before`.
    fn assert_counted(&self, transport: &str, reason: &str, before: f64) {
        assert_eq!(
            self.refused(transport, reason),
            before + 1.0,
            "refused_requests{{transport={transport},reason={reason}}} moved by one; non-zero series:\n{}",
            self.refusals()
        );
    }

    fn rss_bytes(&self) -> f64 {
        self.collector.metric("otelcol_process_memory_rss", &[])
    }

    fn next_request(&self, spans: usize) -> ExportTraceServiceRequest {
        self.seed.set(self.seed.get() + 1);
        make_traces(self.seed.get(), 1, spans, "bad-input-test")
    }

    /// Waits until the file holds every span delivered so far (and no more).
    fn wait_delivered(&self, added: usize) {
        self.delivered.set(self.delivered.get() + added);
        let want = self.delivered.get();
        let got = eventually(
            "valid spans in the file",
            || read_file_exporter(&self.collector.path("out.json")).span_count(),
            |n| *n >= want,
        );
        assert_eq!(got, want, "only the valid spans reach the file");
    }

    /// A valid OTLP/HTTP request still gets 200 and lands in the file.
    fn assert_still_serving(&self) {
        let body = self.next_request(2).encode_to_vec();
        let response = self.post("/v1/traces", &[PROTOBUF], &body);
        assert_eq!(
            response.status,
            200,
            "a valid request after bad input: {}",
            String::from_utf8_lossy(&response.body)
        );
        self.wait_delivered(2);
    }

    /// Sends `body` and checks the refusal: status, error body, counter, still serving.
    fn assert_refused(
        &self,
        reason: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.assert_refused_at("/v1/traces", reason, status, headers, body)
    }

    fn assert_refused_at(
        &self,
        path: &str,
        reason: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let before = self.refused("http", reason);
        let response = self.post(path, headers, body);
        assert_eq!(
            response.status,
            status,
            "{reason}: body {:?}, headers {:?}",
            String::from_utf8_lossy(&response.body),
            response.headers
        );
        self.assert_counted("http", reason, before);
        self.assert_still_serving();
        response
    }
}

/// The error body of a protobuf request: a `google.rpc.Status` in protobuf.
fn protobuf_status(response: &HttpResponse) -> RpcStatus {
    assert_eq!(
        response.header("Content-Type"),
        Some("application/x-protobuf"),
        "error body encoding"
    );
    let status = RpcStatus::decode(response.body.as_slice()).expect("google.rpc.Status body");
    assert!(!status.message.is_empty(), "the status says why");
    status
}

/// The error body of a JSON request: a `google.rpc.Status` in JSON.
fn json_status(response: &HttpResponse) -> serde_json::Value {
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "error body encoding"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&response.body).expect("JSON google.rpc.Status body");
    assert!(
        status["message"].as_str().is_some_and(|m| !m.is_empty()),
        "the status says why: {status}"
    );
    status
}

// ------------------------------------------------------------ wire helpers

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    let mut v = Vec::new();
    varint(value, &mut v);
    v.len()
}

/// A length-delimited protobuf field.
fn len_field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    varint((u64::from(tag) << 3) | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A span with valid IDs, as protobuf bytes, to which raw fields can be appended.
fn plain_span(name: &str) -> Vec<u8> {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        name: name.into(),
        kind: 1,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_500,
        ..Default::default()
    }
    .encode_to_vec()
}

/// An `ExportTraceServiceRequest` holding one span given as raw bytes.
fn request_with_span(span: &[u8]) -> Vec<u8> {
    let scope_spans = len_field(2, span); // ScopeSpans.spans
    let resource_spans = len_field(2, &scope_spans); // ResourceSpans.scope_spans
    len_field(1, &resource_spans) // ExportTraceServiceRequest.resource_spans
}

/// An `AnyValue` nested `depth` kvlists deep, encoded without recursion:
/// lengths are computed inside-out, then the bytes are written outside-in.
fn nested_any_value(depth: usize) -> Vec<u8> {
    let leaf = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".into())),
    }
    .encode_to_vec();
    // (KeyValue length, KeyValueList length, AnyValue length) per level; level 0 is the leaf.
    let mut lens = vec![(0usize, 0usize, leaf.len())];
    for level in 1..=depth {
        let inner = lens[level - 1].2;
        let kv = 3 + 1 + varint_len(inner as u64) + inner; // key "k", then value
        let kvl = 1 + varint_len(kv as u64) + kv; // KeyValueList.values
        let any = 1 + varint_len(kvl as u64) + kvl; // AnyValue.kvlist_value
        lens.push((kv, kvl, any));
    }
    let mut out = Vec::with_capacity(lens[depth].2);
    for level in (1..=depth).rev() {
        let (kv, kvl, _) = lens[level];
        out.push(0x32); // AnyValue.kvlist_value (6, LEN)
        varint(kvl as u64, &mut out);
        out.push(0x0a); // KeyValueList.values (1, LEN)
        varint(kv as u64, &mut out);
        out.extend_from_slice(&[0x0a, 0x01, b'k']); // KeyValue.key = "k"
        out.push(0x12); // KeyValue.value (2, LEN)
        varint(lens[level - 1].2 as u64, &mut out);
    }
    out.extend_from_slice(&leaf);
    assert_eq!(out.len(), lens[depth].2, "length bookkeeping");
    out
}

/// A trace request whose one span has an attribute nested `depth` deep (protobuf).
fn deep_protobuf_request(depth: usize) -> Vec<u8> {
    let mut attribute = len_field(1, b"deep"); // KeyValue.key
    attribute.extend(len_field(2, &nested_any_value(depth))); // KeyValue.value
    let mut span = plain_span("deep");
    span.extend(len_field(9, &attribute)); // Span.attributes
    request_with_span(&span)
}

/// The same in OTLP/JSON, built as a string.
fn deep_json_request(depth: usize) -> Vec<u8> {
    let mut body = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","name":"deep","attributes":[{"key":"deep","value":"#,
    );
    body.push_str(&r#"{"kvlistValue":{"values":[{"key":"k","value":"#.repeat(depth));
    body.push_str(r#"{"stringValue":"leaf"}"#);
    body.push_str(&"}]}}".repeat(depth));
    body.push_str("}]}]}]}]}");
    body.into_bytes()
}

fn gzip_zeros(megabytes: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..megabytes {
        encoder.write_all(&chunk).expect("gzip");
    }
    encoder.finish().expect("gzip")
}

// ------------------------------------------------------------ OTLP/HTTP

#[test]
fn truncated_protobuf_is_400() {
    let f = Fixture::new();
    let body = f.next_request(10).encode_to_vec();
    let response = f.assert_refused("decode", 400, &[PROTOBUF], &body[..body.len() / 2]);
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);
}

#[test]
fn garbage_bytes_are_400() {
    let f = Fixture::new();
    // 0xff... is a varint that never ends: no protobuf decoder can take it.
    let garbage: Vec<u8> = (0..64u8)
        .map(|i| if i < 12 { 0xff } else { i.wrapping_mul(37) })
        .collect();
    let response = f.assert_refused("decode", 400, &[PROTOBUF], &garbage);
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);

    let response = f.assert_refused(
        "decode",
        400,
        &[JSON],
        br#"{"resourceSpans": [{"scopeSpans": [{"#,
    );
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);

    let response = f.assert_refused("decode", 400, &[JSON], b"\x00\x01not json at all\xff");
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);
}

#[test]
fn wrong_content_type_is_415() {
    let f = Fixture::new();
    let body = f.next_request(1).encode_to_vec();
    f.assert_refused(
        "content_type",
        415,
        &[("Content-Type", "text/plain")],
        &body,
    );
    f.assert_refused("content_type", 415, &[], &body);
}

#[test]
fn get_is_405_with_allow_post() {
    let f = Fixture::new();
    let before = f.refused("http", "method");
    let response = http_request(f.http, "GET", "/v1/traces", &[], b"");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("POST"));
    f.assert_counted("http", "method", before);
    f.assert_still_serving();
}

#[test]
fn unknown_path_is_404() {
    let f = Fixture::new();
    let body = f.next_request(1).encode_to_vec();
    f.assert_refused_at("/v1/nothing", "not_found", 404, &[PROTOBUF], &body);
    f.assert_refused_at("/v1/traces/extra", "not_found", 404, &[PROTOBUF], &body);
}

#[test]
fn unknown_content_encoding_is_400() {
    let f = Fixture::new();
    let body = f.next_request(1).encode_to_vec();
    let response = f.assert_refused(
        "encoding",
        400,
        &[PROTOBUF, ("Content-Encoding", "br")],
        &body,
    );
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);
    let json = collector_core::pdata::json::encode_traces(&f.next_request(1));
    let response = f.assert_refused("encoding", 400, &[JSON, ("Content-Encoding", "br")], &json);
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);
}

#[test]
fn corrupt_gzip_is_400() {
    let f = Fixture::new();
    let mut body = gzip_zeros(1);
    let middle = body.len() / 2;
    body.truncate(middle);
    let response = f.assert_refused(
        "decode",
        400,
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);
}

#[test]
fn body_over_the_limit_is_413() {
    let f = Fixture::new();
    let body = vec![0u8; 2 << 20];
    let response = f.assert_refused("too_large", 413, &[PROTOBUF], &body);
    protobuf_status(&response);
}

/// Sends a compression bomb several times; answers 413 without inflating it.
fn assert_bomb_refused(f: &Fixture, encoding: &str, bomb: &[u8]) {
    let rss_before = f.rss_bytes();
    for round in 0..3 {
        let before = f.refused("http", "too_large");
        let started = Instant::now();
        let response = f.post(
            "/v1/traces",
            &[PROTOBUF, ("Content-Encoding", encoding)],
            bomb,
        );
        println!(
            "{encoding} bomb round {round}: {} bytes on the wire, answered in {:?}",
            bomb.len(),
            started.elapsed()
        );
        assert_eq!(
            response.status,
            413,
            "{encoding} bomb: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        protobuf_status(&response);
        f.assert_counted("http", "too_large", before);
        f.assert_still_serving();
    }
    let rss_after = f.rss_bytes();
    println!(
        "{encoding} bomb: collector RSS {:.1} MB before, {:.1} MB after",
        rss_before / 1e6,
        rss_after / 1e6
    );
    assert!(rss_after > 0.0, "otelcol_process_memory_rss is exported");
    assert!(
        rss_after < 150e6,
        "RSS {rss_after} bytes after a {encoding} bomb: it was inflated"
    );
}

#[test]
fn gzip_bomb_is_413_without_inflating_it() {
    let f = Fixture::new();
    let bomb = gzip_zeros(100); // 100 MiB of zeros: ~100 KB on the wire, under the 1 MiB body limit
    assert!(
        bomb.len() < 1 << 20,
        "the compressed body itself is within max_request_body_size"
    );
    assert_bomb_refused(&f, "gzip", &bomb);
}

#[test]
fn zstd_bomb_is_413_without_inflating_it() {
    let f = Fixture::new();
    let bomb = Encoding::Zstd
        .compress(&vec![0u8; 100 << 20])
        .expect("zstd");
    assert!(
        bomb.len() < 1 << 20,
        "the compressed body itself is within max_request_body_size"
    );
    assert_bomb_refused(&f, "zstd", &bomb);
}

#[test]
fn deeply_nested_any_value_in_protobuf_is_400() {
    let f = Fixture::new();
    // The builder is right: a shallow one is accepted.
    let shallow = deep_protobuf_request(5);
    ExportTraceServiceRequest::decode(shallow.as_slice()).expect("shallow request decodes");
    assert_eq!(f.post("/v1/traces", &[PROTOBUF], &shallow).status, 200);
    f.wait_delivered(1);

    let response = f.assert_refused("decode", 400, &[PROTOBUF], &deep_protobuf_request(DEEP));
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);
}

#[test]
fn deeply_nested_any_value_in_json_is_400() {
    let f = Fixture::new();
    let shallow = deep_json_request(5);
    let response = f.post("/v1/traces", &[JSON], &shallow);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    f.wait_delivered(1);

    let response = f.assert_refused("decode", 400, &[JSON], &deep_json_request(DEEP));
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);
}

#[test]
fn invalid_utf8_in_a_protobuf_string_is_400() {
    let f = Fixture::new();
    let mut span = plain_span("");
    span.extend([0x2a, 0x02, 0xff, 0xfe]); // Span.name (5, LEN) = ff fe
    let body = request_with_span(&span);
    let response = f.assert_refused("decode", 400, &[PROTOBUF], &body);
    assert_eq!(protobuf_status(&response).code, INVALID_ARGUMENT);

    // The same bytes inside a JSON string are not JSON.
    let mut json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","name":""#.to_vec();
    json.extend([0xff, 0xfe]);
    json.extend_from_slice(br#""}]}]}]}"#);
    let response = f.assert_refused("decode", 400, &[JSON], &json);
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);
}

fn json_spans(first_trace_id: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"ids"}}}}]}},"scopeSpans":[{{"spans":[
{{"traceId":"{first_trace_id}","spanId":"1111111111111111","name":"bad-id","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000"}},
{{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"good-id","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000"}}
]}}]}}]}}"#
    )
    .into_bytes()
}

#[test]
fn wrong_length_trace_id_is_a_partial_success() {
    let f = Fixture::new();
    let refused_spans = || {
        f.collector.metric(
            "otelcol_receiver_refused_spans_total",
            &[("receiver", "otlp"), ("transport", "http")],
        )
    };
    let accepted_spans = || {
        f.collector.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp"), ("transport", "http")],
        )
    };
    let (refused_before, accepted_before) = (refused_spans(), accepted_spans());

    // 15 bytes = 30 hex digits.
    let response = f.post(
        "/v1/traces",
        &[JSON],
        &json_spans("0af7651916cd43dd8448eb211c8031"),
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let answer: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON response");
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    assert_eq!(refused_spans(), refused_before + 1.0);
    assert_eq!(accepted_spans(), accepted_before + 1.0);
    f.wait_delivered(1);
    let file = read_file_exporter(&f.collector.path("out.json"));
    let names: Vec<&str> = file.spans().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["good-id"],
        "the valid span is delivered, the invalid one is not"
    );

    // The same over protobuf: the answer is an ExportTraceServiceResponse with partial_success.
    let mut request = f.next_request(2);
    request.resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .truncate(15);
    let response = f.post("/v1/traces", &[PROTOBUF], &request.encode_to_vec());
    assert_eq!(response.status, 200);
    let answer =
        ExportTraceServiceResponse::decode(response.body.as_slice()).expect("protobuf response");
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(!partial.error_message.is_empty());
    f.wait_delivered(1);
    f.assert_still_serving();
}

#[test]
fn non_hex_trace_id_is_400() {
    let f = Fixture::new();
    let response = f.assert_refused(
        "decode",
        400,
        &[JSON],
        &json_spans("0af7651916cd43dd8448eb211c80zzzz"),
    );
    assert_eq!(json_status(&response)["code"], INVALID_ARGUMENT);
    let file = read_file_exporter(&f.collector.path("out.json"));
    assert!(
        file.spans().all(|s| s.name != "good-id"),
        "a refused request delivers nothing"
    );
}

// ------------------------------------------------------------ OTLP/gRPC

async fn grpc_client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the gRPC port");
    tonic::client::Grpc::new(channel)
}

async fn grpc_export(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    body: Vec<u8>,
) -> Result<Bytes, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(GRPC_TRACES);
    client
        .unary(tonic::Request::new(Bytes::from(body)), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A valid gRPC export still succeeds (on the same connection) and lands in the file.
async fn assert_grpc_still_serving(
    f: &Fixture,
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
) {
    let body = f.next_request(3).encode_to_vec();
    let answer = grpc_export(client, body)
        .await
        .expect("a valid gRPC export after bad input");
    let answer = ExportTraceServiceResponse::decode(answer).expect("ExportTraceServiceResponse");
    assert_eq!(answer.partial_success, None);
    f.wait_delivered(3);
}

/// Checks a gRPC refusal: its status code and its refusal counter, reporting both at once.
fn assert_grpc_refused(
    f: &Fixture,
    status: &tonic::Status,
    code: tonic::Code,
    reason: &str,
    before: f64,
) {
    let counted = f.refused("grpc", reason) - before;
    assert!(
        status.code() == code && counted == 1.0,
        "expected gRPC {code:?} and refused_requests{{transport=grpc,reason={reason}}} +1;\n\
         got {:?} ({:?}) and +{counted}; non-zero refused_requests series:\n{}",
        status.code(),
        status.message(),
        f.refusals()
    );
}

/// A valid request of about `bytes` bytes: one span with a large attribute.
fn large_request(f: &Fixture, bytes: usize) -> Vec<u8> {
    let mut request = f.next_request(1);
    request.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(bytes))),
            }),
            ..Default::default()
        });
    request.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_message_over_the_limit_is_resource_exhausted() {
    let f = Fixture::new();
    let mut client = grpc_client(f.grpc).await;

    let before = f.refused("grpc", "too_large");
    let body = large_request(&f, 2 << 20);
    assert!(body.len() > 2 << 20);
    let status = grpc_export(&mut client, body)
        .await
        .expect_err("a 2 MiB message over a 1 MiB limit");
    // grpc-go (otelcol) answers RESOURCE_EXHAUSTED: "grpc: received message larger than max".
    assert_grpc_refused(
        &f,
        &status,
        tonic::Code::ResourceExhausted,
        "too_large",
        before,
    );
    assert_grpc_still_serving(&f, &mut client).await;

    // Just under the limit passes.
    let body = large_request(&f, 900 * 1024);
    grpc_export(&mut client, body)
        .await
        .expect("a message under the limit");
    f.wait_delivered(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_bomb_is_resource_exhausted() {
    let f = Fixture::new();
    let mut client = grpc_client(f.grpc)
        .await
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);

    let before = f.refused("grpc", "too_large");
    // 16 MiB of zeros, compressed on the wire to a few KB: over the 1 MiB limit once inflated.
    let status = grpc_export(&mut client, vec![0u8; 16 << 20])
        .await
        .expect_err("a bomb over the limit");
    assert_grpc_refused(
        &f,
        &status,
        tonic::Code::ResourceExhausted,
        "too_large",
        before,
    );
    assert_grpc_still_serving(&f, &mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_garbage_is_invalid_argument() {
    let f = Fixture::new();
    let mut client = grpc_client(f.grpc).await;

    let before = f.refused("grpc", "decode");
    let garbage: Vec<u8> = (0..64u8)
        .map(|i| if i < 12 { 0xff } else { i.wrapping_mul(37) })
        .collect();
    let status = grpc_export(&mut client, garbage)
        .await
        .expect_err("garbage");
    assert_grpc_refused(&f, &status, tonic::Code::InvalidArgument, "decode", before);
    assert_grpc_still_serving(&f, &mut client).await;

    let before = f.refused("grpc", "decode");
    let status = grpc_export(&mut client, deep_protobuf_request(DEEP))
        .await
        .expect_err("10,000-deep AnyValue");
    assert_grpc_refused(&f, &status, tonic::Code::InvalidArgument, "decode", before);
    assert_grpc_still_serving(&f, &mut client).await;

    // Every span sent over HTTP and gRPC so far, and nothing else, is in the file.
    f.assert_still_serving();
}
