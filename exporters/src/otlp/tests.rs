//! Tests of the otlp exporter against an in-test HTTP/2 gRPC server that
//! records the raw frames it gets and answers from a script.

use super::*;
use crate::test_support::{ctx, logs, metrics, traces};
use base64::Engine as _;
use bytes::Bytes;
use collector_core::component::{CreateContext, Exporter};
use collector_core::consumer::{ConsumeError, ErrorKind};
use collector_core::pdata::Telemetry;
use collector_core::pdata::rpc::RpcStatus;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prost::Message;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the server got in one request.
#[derive(Debug)]
struct Received {
    path: String,
    headers: http::HeaderMap,
    /// The gRPC frame's compressed flag.
    compressed: bool,
    /// The message after decompression.
    message: Vec<u8>,
    /// The message's length on the wire.
    wire: usize,
}

/// How the server answers one request.
enum Reply {
    /// OK with this encoded response message.
    Ok(Vec<u8>),
    /// A trailers-only error.
    Error(tonic::Code, Option<Duration>),
    /// Exactly this response: HTTP status, headers, body data, trailers.
    Raw(RawReply),
}

#[derive(Default)]
struct RawReply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    data: Vec<u8>,
    trailers: Vec<(&'static str, String)>,
}

impl RawReply {
    /// A 200 response whose trailers carry `trailers`.
    fn trailers(trailers: &[(&'static str, &str)]) -> Reply {
        Reply::Raw(RawReply {
            status: 200,
            headers: vec![("content-type", "application/grpc".into())],
            data: Vec::new(),
            trailers: trailers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        })
    }
}

/// One gRPC frame around `message`.
fn frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

type ReplyBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

struct Server {
    endpoint: String,
    received: mpsc::UnboundedReceiver<Received>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that speaks TLS (ALPN h2) with this certificate.
    async fn start_tls(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Self {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let mut config =
            rustls::ServerConfig::builder_with_provider(collector_core::crypto::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let replies: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let script = replies.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let script = script.clone();
                let service = hyper::service::service_fn(move |request| {
                    let tx = tx.clone();
                    let reply = script.lock().pop_front().unwrap_or(Reply::Ok(Vec::new()));
                    async move { Ok::<_, Infallible>(answer(request, tx, reply).await) }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            endpoint,
            received: rx,
            replies,
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.replies.lock().extend(replies);
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.received.recv())
            .await
            .expect("no request within 10s")
            .expect("server stopped")
    }
}

async fn answer(
    request: http::Request<Incoming>,
    tx: mpsc::UnboundedSender<Received>,
    reply: Reply,
) -> http::Response<ReplyBody> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let raw = &body[5..5 + len];
    let encoding = parts
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let message = match (compressed, encoding) {
        (false, _) => raw.to_vec(),
        (true, "gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        (true, "zstd") => zstd::decode_all(raw).unwrap(),
        (true, other) => panic!("unexpected encoding {other}"),
    };
    let _ = tx.send(Received {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        compressed,
        message,
        wire: len,
    });
    let response = http::Response::builder().header("content-type", "application/grpc");
    let frames = match reply {
        Reply::Ok(message) => {
            let mut frame = vec![0];
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            vec![
                Ok(Frame::data(Bytes::from(frame))),
                Ok(Frame::trailers(trailers)),
            ]
        }
        Reply::Raw(raw) => {
            let mut response = http::Response::builder().status(raw.status);
            for (name, value) in raw.headers {
                response = response.header(name, value);
            }
            let mut frames = Vec::new();
            if !raw.data.is_empty() {
                frames.push(Ok(Frame::data(Bytes::from(raw.data))));
            }
            if !raw.trailers.is_empty() {
                let mut trailers = http::HeaderMap::new();
                for (name, value) in raw.trailers {
                    trailers.insert(name, http::HeaderValue::from_str(&value).unwrap());
                }
                frames.push(Ok(Frame::trailers(trailers)));
            }
            return response
                .body(StreamBody::new(futures::stream::iter(frames)))
                .unwrap();
        }
        Reply::Error(code, retry_after) => {
            let details = RpcStatus::new(code as i32, "scripted", retry_after).encode_to_vec();
            let details = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
            return response
                .header("grpc-status", (code as i32).to_string())
                .header("grpc-message", "scripted")
                .header("grpc-status-details-bin", details)
                .body(StreamBody::new(futures::stream::iter(Vec::new())))
                .unwrap();
        }
    };
    response
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap()
}

fn exporter(ctx: &CreateContext, yaml: &str) -> Arc<dyn Exporter> {
    let config: OtlpConfig = serde_yaml_ng::from_str(yaml).unwrap();
    OtlpExporterFactory.validate(&config).unwrap();
    OtlpExporterFactory.create(ctx, &config).unwrap()
}

/// Synchronous sends (no queue) with fast retries.
fn sync_config(endpoint: &str, extra: &str) -> String {
    format!(
        "endpoint: {endpoint}\ntls: {{insecure: true}}\nsending_queue: {{enabled: false}}\n\
         retry_on_failure: {{initial_interval: 10ms, randomization_factor: 0, max_elapsed_time: 5s}}\n{extra}"
    )
}

fn metric(ctx: &CreateContext, name: &str) -> f64 {
    ctx.host
        .metrics
        .value(name, &[("exporter", "otlp")])
        .unwrap_or(0.0)
}

#[tokio::test]
async fn sends_the_original_bytes_gzipped_with_headers() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(
        &ctx,
        &sync_config(
            &server.endpoint,
            "headers: {X-Tenant: acme, authorization: Bearer t0k}",
        ),
    );
    let payload = traces(3);
    let original = payload.to_protobuf();
    exporter.consume(Telemetry::new(payload)).await.unwrap();
    let got = server.next().await;
    assert_eq!(got.path, TRACES_PATH);
    assert!(got.compressed);
    assert_eq!(got.headers["grpc-encoding"], "gzip");
    assert_eq!(got.message, original.to_vec());
    assert_eq!(got.headers["x-tenant"], "acme");
    assert_eq!(got.headers["authorization"], "Bearer t0k");
    assert_eq!(got.headers["grpc-timeout"], "5000m");
    assert_eq!(got.headers["content-type"], "application/grpc");
    assert_eq!(got.headers["te"], "trailers");
    assert_eq!(got.headers["grpc-accept-encoding"], "gzip");
    let agent = got.headers["user-agent"].to_str().unwrap();
    assert!(agent.starts_with("ollyscale-otel/"), "{agent}");

    exporter.consume(Telemetry::new(metrics(2))).await.unwrap();
    assert_eq!(server.next().await.path, METRICS_PATH);
    exporter.consume(Telemetry::new(logs(2))).await.unwrap();
    assert_eq!(server.next().await.path, LOGS_PATH);
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_spans"), 3.0);
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_metric_points"), 2.0);
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_log_records"), 2.0);
}

#[tokio::test]
async fn zstd_and_no_compression() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let payload = traces(2);
    let original = payload.to_protobuf().to_vec();

    let zstd = exporter(&ctx, &sync_config(&server.endpoint, "compression: zstd"));
    zstd.consume(Telemetry::new(payload.clone())).await.unwrap();
    let got = server.next().await;
    assert_eq!(got.headers["grpc-encoding"], "zstd");
    assert_eq!(got.message, original);

    let none = exporter(&ctx, &sync_config(&server.endpoint, "compression: none"));
    none.consume(Telemetry::new(payload)).await.unwrap();
    let got = server.next().await;
    assert!(!got.compressed);
    assert_eq!(got.message, original);
}

#[tokio::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    server.script([
        Reply::Error(tonic::Code::Unavailable, None),
        Reply::Ok(Vec::new()),
    ]);
    exporter.consume(Telemetry::new(traces(2))).await.unwrap();
    server.next().await;
    server.next().await;
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_spans"), 2.0);

    server.script([Reply::Error(tonic::Code::InvalidArgument, None)]);
    let err = exporter
        .consume(Telemetry::new(traces(4)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    server.next().await;
    assert!(server.received.try_recv().is_err(), "not retried");
    assert_eq!(metric(&ctx, "otelcol_exporter_send_failed_spans"), 4.0);
}

#[tokio::test]
async fn retry_info_from_the_server_sets_the_delay() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    let delay = Duration::from_millis(300);
    server.script([
        Reply::Error(tonic::Code::ResourceExhausted, Some(delay)),
        Reply::Ok(Vec::new()),
    ]);
    let start = Instant::now();
    exporter.consume(Telemetry::new(traces(1))).await.unwrap();
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    server.next().await;
    server.next().await;
}

#[tokio::test]
async fn partial_success_is_counted_as_failed() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one span had an invalid id".into(),
        }),
    };
    server.script([Reply::Ok(response.encode_to_vec())]);
    exporter.consume(Telemetry::new(traces(3))).await.unwrap();
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_spans"), 2.0);
    assert_eq!(metric(&ctx, "otelcol_exporter_send_failed_spans"), 1.0);
}

#[tokio::test]
async fn queued_data_is_sent_by_shutdown() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(
        &ctx,
        &format!(
            "endpoint: http://{}\nsending_queue: {{num_consumers: 2}}",
            server.endpoint
        ),
    );
    exporter.start().await.unwrap();
    for n in 1..=5 {
        exporter.consume(Telemetry::new(traces(n))).await.unwrap();
    }
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let mut items = 0;
    for _ in 0..5 {
        let got = server.next().await;
        items +=
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                got.message.as_slice(),
            )
            .unwrap()
            .resource_spans[0]
                .scope_spans[0]
                .spans
                .len();
    }
    assert_eq!(items, 15);
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_spans"), 15.0);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retryable_failure() {
    // A port nothing listens on: bind, note it, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    drop(listener);
    let ctx = ctx("otlp");
    let exporter = exporter(
        &ctx,
        &format!(
            "endpoint: {endpoint}\ntls: {{insecure: true}}\nsending_queue: {{enabled: false}}\nretry_on_failure: {{enabled: false}}"
        ),
    );
    let err = exporter
        .consume(Telemetry::new(traces(1)))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(metric(&ctx, "otelcol_exporter_send_failed_spans"), 1.0);
}

#[test]
fn status_details_carry_the_retry_delay() {
    let details = RpcStatus::new(8, "full", Some(Duration::from_secs(7))).encode_to_vec();
    let status =
        tonic::Status::with_details(tonic::Code::ResourceExhausted, "full", details.into());
    let error: ConsumeError = status_to_error(&status);
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let plain = status_to_error(&tonic::Status::unavailable("down"));
    assert_eq!(plain.retry_after(), None);
    assert!(plain.is_retryable());
}

#[tokio::test]
async fn tls_endpoints_build_with_system_roots_or_a_ca_file() {
    let ctx = ctx("otlp");
    let config: OtlpConfig =
        serde_yaml_ng::from_str("endpoint: collector.example.com:4317").unwrap();
    // Needs a system CA store; skip where the machine has none.
    if let Err(e) = OtlpExporterFactory.create(&ctx, &config) {
        assert!(e.to_string().contains("tls"), "{e}");
    }
    let config: OtlpConfig =
        serde_yaml_ng::from_str("endpoint: https://gw:4317\ntls: {ca_file: /nonexistent/ca.pem}")
            .unwrap();
    let Err(err) = OtlpExporterFactory.create(&ctx, &config) else {
        panic!("a missing CA file must fail");
    };
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

fn certificate(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap()
}

#[tokio::test]
async fn tls_with_a_ca_file_and_server_name_override() {
    let cert = certificate("collector.test");
    let mut server = Server::start_tls(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let ctx = ctx("otlp");
    let exporter = exporter(
        &ctx,
        &format!(
            "endpoint: {}\ntls: {{ca_file: {}, server_name_override: collector.test}}\nsending_queue: {{enabled: false}}",
            server.endpoint,
            ca.display()
        ),
    );
    let payload = traces(2);
    let original = payload.to_protobuf().to_vec();
    exporter.consume(Telemetry::new(payload)).await.unwrap();
    assert_eq!(server.next().await.message, original);
}

#[tokio::test]
async fn tls_rejects_an_unknown_ca_unless_told_to_skip_verification() {
    let cert = certificate("collector.test");
    let mut server = Server::start_tls(&cert).await;
    let other = certificate("collector.test");
    let ctx = ctx("otlp");
    let untrusted = exporter(
        &ctx,
        &format!(
            "endpoint: https://{}\ntls: {{ca_pem: {:?}, server_name_override: collector.test}}\n\
             sending_queue: {{enabled: false}}\nretry_on_failure: {{enabled: false}}",
            server.endpoint,
            other.cert.pem()
        ),
    );
    assert!(untrusted.consume(Telemetry::new(traces(1))).await.is_err());
    assert!(server.received.try_recv().is_err());

    let skipping = exporter(
        &ctx,
        &format!(
            "endpoint: https://{}\ntls: {{insecure_skip_verify: true}}\nsending_queue: {{enabled: false}}",
            server.endpoint
        ),
    );
    skipping.consume(Telemetry::new(traces(1))).await.unwrap();
    server.next().await;
}

/// The compressed size of `payload` as the server received it.
async fn compressed_size(
    server: &mut Server,
    ctx: &CreateContext,
    extra: &str,
) -> (usize, Vec<u8>) {
    let exporter = exporter(ctx, &sync_config(&server.endpoint, extra));
    exporter.consume(Telemetry::new(traces(300))).await.unwrap();
    let got = server.next().await;
    assert!(got.compressed);
    (got.wire, got.message)
}

#[tokio::test]
async fn gzip_levels_1_and_9_and_zstd_levels() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let original = traces(300).to_protobuf().to_vec();
    let (fast, message) = compressed_size(&mut server, &ctx, "").await;
    assert_eq!(message, original, "default: gzip level 1");
    let (explicit, _) = compressed_size(&mut server, &ctx, "compression_params: {level: 1}").await;
    assert_eq!(fast, explicit, "the default gzip level is 1");
    let (best, message) =
        compressed_size(&mut server, &ctx, "compression_params: {level: 9}").await;
    assert_eq!(message, original);
    assert!(
        best < fast,
        "level 9 ({best}) is smaller than level 1 ({fast})"
    );
    let (_, message) = compressed_size(&mut server, &ctx, "compression: zstd").await;
    assert_eq!(message, original);
    let (_, message) = compressed_size(
        &mut server,
        &ctx,
        "compression: zstd\ncompression_params: {level: 19}",
    )
    .await;
    assert_eq!(message, original);
}

#[test]
fn compression_levels_are_checked() {
    let check = |yaml: &str| {
        let config: OtlpConfig = serde_yaml_ng::from_str(yaml).unwrap();
        OtlpExporterFactory.validate(&config)
    };
    check("endpoint: gw:4317\ncompression_params: {level: 9}").unwrap();
    check("endpoint: gw:4317\ncompression_params: {level: -1}").unwrap();
    check("endpoint: gw:4317\ncompression: zstd\ncompression_params: {level: 22}").unwrap();
    for bad in [
        "compression_params: {level: 10}",
        "compression_params: {level: -2}",
        "compression: zstd\ncompression_params: {level: 23}",
        "compression: none\ncompression_params: {level: 1}",
    ] {
        let err = check(&format!("endpoint: gw:4317\n{bad}")).unwrap_err();
        assert_eq!(err.path, "compression_params.level", "{bad}: {err}");
    }
    assert!(
        serde_yaml_ng::from_str::<OtlpConfig>("compression_params: {level: 1, window: 2}").is_err()
    );
}

#[tokio::test]
async fn trailers_only_errors_with_a_percent_encoded_message() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    server.script([Reply::Raw(RawReply {
        status: 200,
        headers: vec![
            ("content-type", "application/grpc".into()),
            ("grpc-status", "3".into()),
            ("grpc-message", "bad%20span%3A%20id%20%E2%9C%97 100%".into()),
        ],
        ..RawReply::default()
    })]);
    let err = exporter
        .consume(Telemetry::new(traces(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("bad span: id \u{2717} 100%"),
        "{}",
        err.message()
    );
    server.next().await;
    assert!(server.received.try_recv().is_err(), "not retried");
}

#[tokio::test]
async fn errors_in_trailers_carry_retry_info_in_padded_base64() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    let delay = Duration::from_millis(250);
    let details = RpcStatus::new(14, "busy", Some(delay)).encode_to_vec();
    let details = base64::engine::general_purpose::STANDARD.encode(details);
    assert!(details.ends_with('='), "padded: {details}");
    server.script([
        RawReply::trailers(&[
            ("grpc-status", "14"),
            ("grpc-message", "busy"),
            ("grpc-status-details-bin", &details),
        ]),
        Reply::Ok(Vec::new()),
    ]);
    let start = Instant::now();
    exporter.consume(Telemetry::new(traces(1))).await.unwrap();
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    server.next().await;
    server.next().await;

    // The same status read directly: kind, message and delay.
    let sender = GrpcSender::new(
        &serde_yaml_ng::from_str(&sync_config(&server.endpoint, "")).unwrap(),
        &server.endpoint,
    )
    .unwrap();
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(RpcStatus::new(8, "full", Some(Duration::from_secs(3))).encode_to_vec());
    server.script([RawReply::trailers(&[
        ("grpc-status", "8"),
        ("grpc-message", "full"),
        ("grpc-status-details-bin", &unpadded),
    ])]);
    let err = crate::helper::Sender::send(&sender, &traces(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(err.message().contains("full"), "{}", err.message());
}

#[tokio::test]
async fn missing_grpc_status_maps_per_the_spec() {
    let mut server = Server::start().await;
    let ctx = ctx("otlp");
    let sender = GrpcSender::new(
        &serde_yaml_ng::from_str(&sync_config(&server.endpoint, "")).unwrap(),
        &server.endpoint,
    )
    .unwrap();
    let payload = traces(1);
    let send = || crate::helper::Sender::send(&sender, &payload);
    // An HTTP error from a proxy: 503 is retryable, 500 is not.
    for (status, kind) in [
        (503, ErrorKind::Unavailable),
        (502, ErrorKind::Unavailable),
        (429, ErrorKind::Unavailable),
        (500, ErrorKind::Internal),
        (401, ErrorKind::Unauthenticated),
    ] {
        server.script([Reply::Raw(RawReply {
            status,
            headers: vec![("content-type", "text/plain".into())],
            data: b"upstream failed".to_vec(),
            ..RawReply::default()
        })]);
        let err = send().await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        server.next().await;
    }
    // 200 with a message but no grpc-status: a protocol violation.
    server.script([Reply::Raw(RawReply {
        status: 200,
        headers: vec![("content-type", "application/grpc".into())],
        data: frame(false, &[]),
        ..RawReply::default()
    })]);
    let err = send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("grpc-status"), "{err}");
    server.next().await;
    // An OK trailers-only response is a success.
    server.script([RawReply::trailers(&[("grpc-status", "0")])]);
    assert_eq!(
        send().await.unwrap(),
        crate::helper::SendOutcome::accepted()
    );
    drop(ctx);
}

#[tokio::test]
async fn partial_success_in_a_gzipped_response() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    let server = Server::start().await;
    let ctx = ctx("otlp");
    let exporter = exporter(&ctx, &sync_config(&server.endpoint, ""));
    let response = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 2,
            error_message: "two records were too old".into(),
        }),
    }
    .encode_to_vec();
    let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gzipped, &response).unwrap();
    server.script([Reply::Raw(RawReply {
        status: 200,
        headers: vec![
            ("content-type", "application/grpc".into()),
            ("grpc-encoding", "gzip".into()),
        ],
        data: frame(true, &gzipped.finish().unwrap()),
        trailers: vec![("grpc-status", "0".into())],
    })]);
    exporter.consume(Telemetry::new(logs(5))).await.unwrap();
    assert_eq!(metric(&ctx, "otelcol_exporter_sent_log_records"), 3.0);
    assert_eq!(
        metric(&ctx, "otelcol_exporter_send_failed_log_records"),
        2.0
    );
}

#[test]
fn grpc_timeouts_fit_in_eight_digits() {
    use super::grpc::grpc_timeout;
    assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000m");
    assert_eq!(grpc_timeout(Duration::from_micros(250)), "250u");
    assert_eq!(grpc_timeout(Duration::from_secs(100_000_000)), "1666666M");
    assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
}
