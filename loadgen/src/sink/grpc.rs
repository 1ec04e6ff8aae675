//! The OTLP/gRPC side of the sink: the three `Export` methods over h2c,
//! gzip and zstd accepted, each request counted and discarded.

use super::count::{self, Signal};
use super::tally::Tally;
use anyhow::Context;
use bytes::Bytes;
use collector_core::receiver::otlp::RawCodec;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::codec::{CompressionEncoding, EnabledCompressionEncodings};

/// Largest request message accepted (after decompression). Generous: the
/// collectors under test send whole batches (thousands of spans).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// HTTP/2 flow-control windows; large, so that the sink never throttles a sender.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Accepts connections on `listener` for ever, serving each on its own task.
pub(crate) async fn serve(listener: TcpListener, tally: Arc<Tally>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await.context("accepting a connection")?;
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| export(request, tally.clone()));
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(1 << 20)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                log_connection_error(peer, &e);
            }
        });
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    // A client that goes away without a GOAWAY is routine at the end of a run.
    if !error.is_incomplete_message() && !error.to_string().contains("connection reset") {
        eprintln!("otel-sink: connection from {peer}: {error}");
    }
}

/// Serves one HTTP/2 request: an OTLP `Export` call, or `UNIMPLEMENTED`.
async fn export(
    request: http::Request<hyper::body::Incoming>,
    tally: Arc<Tally>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let signal = match request.uri().path() {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Signal::Traces,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Signal::Metrics,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Signal::Logs,
        other => {
            return Ok(
                tonic::Status::unimplemented(format!("otel-sink has no method {other}"))
                    .into_http(),
            );
        }
    };
    tally.note_encoding(
        request
            .headers()
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok()),
    );
    let mut accepted = EnabledCompressionEncodings::default();
    accepted.enable(CompressionEncoding::Gzip);
    accepted.enable(CompressionEncoding::Zstd);
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .apply_compression_config(accepted, EnabledCompressionEncodings::default())
        .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), None);
    // The body's bytes as they came (compressed, with gRPC's prefixes):
    // what each contender's compression costs on the wire.
    let wire = tally.clone();
    let request = request.map(|body| {
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                wire.record_wire_bytes(data.len());
            }
            frame
        })
    });
    Ok(grpc.unary(ExportCall { signal, tally }, request).await)
}

/// One `Export` call: count, then answer with an empty (full success) response.
struct ExportCall {
    signal: Signal,
    tally: Arc<Tally>,
}

impl tonic::server::UnaryService<Bytes> for ExportCall {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let body = request.into_inner();
        std::future::ready(match count::items(self.signal, &body) {
            Ok(items) => {
                self.tally.record(self.signal, items, body.len());
                // The empty message is a valid Export*ServiceResponse of every signal.
                Ok(tonic::Response::new(Bytes::new()))
            }
            Err(e) => {
                self.tally.record_malformed();
                Err(tonic::Status::invalid_argument(e.to_string()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    use tonic::codec::CompressionEncoding;

    /// 100 alike spans: compressible, so gzip's wire bytes are far fewer.
    fn request() -> Bytes {
        let span = Span {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            name: "the same operation, again and again".into(),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; 100],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    }

    /// Sends `body` once, gzipped or not, and returns the sink's
    /// `(message_bytes, wire_bytes)` added by it.
    async fn send(tally: &Tally, address: SocketAddr, body: Bytes, gzip: bool) -> (u64, u64) {
        let (message, wire) = (count(tally, "message_bytes"), count(tally, "wire_bytes"));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut grpc = tonic::client::Grpc::new(channel);
        if gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        grpc.ready().await.expect("ready");
        grpc.unary::<Bytes, Bytes, _>(
            tonic::Request::new(body),
            http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ),
            RawCodec,
        )
        .await
        .expect("export accepted");
        (
            count(tally, "message_bytes") - message,
            count(tally, "wire_bytes") - wire,
        )
    }

    #[tokio::test]
    async fn counts_the_bytes_on_the_wire_and_once_decompressed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let tally = Arc::new(Tally::default());
        tokio::spawn(serve(listener, tally.clone()));
        let body = request();

        let (message, wire) = send(&tally, address, body.clone(), false).await;
        assert_eq!(message, body.len() as u64);
        // Uncompressed: the message and gRPC's 5-byte prefix.
        assert_eq!(wire, message + 5);

        let (message, wire) = send(&tally, address, body.clone(), true).await;
        assert_eq!(message, body.len() as u64);
        assert!(
            wire > 5 && wire < message / 10,
            "gzip: {wire} of {message} bytes"
        );
        assert_eq!(count(&tally, "requests"), 2);
    }

    /// One of the sink's totals, as its stats endpoint answers them.
    fn count(tally: &Tally, name: &str) -> u64 {
        let json: serde_json::Value = serde_json::from_str(&tally.to_json()).expect("json");
        json[name].as_u64().expect(name)
    }
}
