//! OTLP/gRPC: the three `Export` methods, served with tonic's gRPC framing
//! over hyper. The request message reaches us as raw bytes (our own codec),
//! so an unmodified batch can be forwarded without re-encoding.

use super::ingest::{Ingest, Transport};
use crate::pdata::{ClientInfo, Logs, Metrics, Payload, Rejected, Signal, Traces, rpc::RpcStatus};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};

pub(crate) const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub(crate) const METRICS_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub(crate) const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Passes message bytes through untouched in both directions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

/// Per-connection gRPC handler.
#[derive(Clone)]
pub(crate) struct GrpcHandler {
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) max_recv_bytes: usize,
    pub(crate) include_metadata: bool,
    pub(crate) peer: Option<SocketAddr>,
}

/// One `Export` call.
struct ExportCall {
    handler: GrpcHandler,
    signal: Signal,
    /// Set when tonic got as far as calling us: when it stays unset, tonic
    /// refused the message itself (size limit, decompression failure).
    reached: Arc<AtomicBool>,
}

impl tonic::server::UnaryService<Bytes> for ExportCall {
    type Response = Bytes;
    type Future =
        futures::future::BoxFuture<'static, Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.reached.store(true, Ordering::Relaxed);
        let handler = self.handler.clone();
        let signal = self.signal;
        Box::pin(async move { handler.export(signal, request).await })
    }
}

fn decode(signal: Signal, bytes: Bytes) -> Result<Payload, crate::pdata::BatchError> {
    Ok(match signal {
        Signal::Traces => Payload::Traces(Traces::decode(bytes)?),
        Signal::Metrics => Payload::Metrics(Metrics::decode(bytes)?),
        Signal::Logs => Payload::Logs(Logs::decode(bytes)?),
    })
}

/// The `Export*ServiceResponse` bytes, with `partial_success` when items were dropped.
pub(crate) fn response_bytes(signal: Signal, rejected: Option<Rejected>) -> Bytes {
    let (count, message) = rejected
        .map(|r| (r.items as i64, r.message))
        .unwrap_or_default();
    let partial = count > 0;
    let encoded = match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess {
                rejected_spans: count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial.then_some(ExportMetricsPartialSuccess {
                rejected_data_points: count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess {
                rejected_log_records: count,
                error_message: message,
            }),
        }
        .encode_to_vec(),
    };
    Bytes::from(encoded)
}

/// A gRPC status for a consume error, with RetryInfo when a delay is known.
pub(crate) fn status_for(error: &crate::consumer::ConsumeError) -> tonic::Status {
    let code = error.grpc_code();
    match error.retry_after() {
        Some(delay) => {
            let details = RpcStatus::new(code as i32, error.message(), Some(delay)).encode_to_vec();
            tonic::Status::with_details(code, error.message(), Bytes::from(details))
        }
        None => tonic::Status::new(code, error.message()),
    }
}

fn metadata_pairs(metadata: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect()
}

impl GrpcHandler {
    async fn export(
        &self,
        signal: Signal,
        request: tonic::Request<Bytes>,
    ) -> Result<tonic::Response<Bytes>, tonic::Status> {
        let client = if self.include_metadata {
            ClientInfo::with_metadata(self.peer, metadata_pairs(request.metadata()))
        } else {
            ClientInfo::from_addr(self.peer)
        };
        if !self.ingest.accepts(signal) {
            self.ingest
                .refuse_request(Transport::Grpc, "no_pipeline", signal.as_str());
            return Err(tonic::Status::unimplemented(format!(
                "this receiver has no {signal} pipeline"
            )));
        }
        let payload = decode(signal, request.into_inner()).map_err(|e| {
            self.ingest
                .refuse_request(Transport::Grpc, "decode", &e.to_string());
            tonic::Status::invalid_argument(e.to_string())
        })?;
        match self
            .ingest
            .export(Transport::Grpc, payload, client, None)
            .await
        {
            Ok(rejected) => Ok(tonic::Response::new(response_bytes(signal, rejected))),
            Err(e) => Err(status_for(&e)),
        }
    }

    /// Serves one HTTP/2 request.
    pub(crate) async fn serve(
        self,
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible> {
        let signal = match request.uri().path() {
            TRACES_PATH => Signal::Traces,
            METRICS_PATH => Signal::Metrics,
            LOGS_PATH => Signal::Logs,
            other => {
                self.ingest
                    .refuse_request(Transport::Grpc, "not_found", other);
                return Ok(
                    tonic::Status::unimplemented(format!("unknown method {other}")).into_http(),
                );
            }
        };
        let mut encodings = EnabledCompressionEncodings::default();
        encodings.enable(CompressionEncoding::Gzip);
        encodings.enable(CompressionEncoding::Zstd);
        let mut grpc = tonic::server::Grpc::new(RawCodec)
            .apply_compression_config(encodings, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.max_recv_bytes), None);
        let max = self.max_recv_bytes;
        let ingest = self.ingest.clone();
        let reached = Arc::new(AtomicBool::new(false));
        let call = ExportCall {
            handler: self,
            signal,
            reached: reached.clone(),
        };
        let response = grpc.unary(call, request).await;
        if reached.load(Ordering::Relaxed) {
            return Ok(response);
        }
        // tonic refused the message before our handler ran. Count it, and
        // answer an oversized or bomb message with RESOURCE_EXHAUSTED as
        // grpc-go does (tonic says OUT_OF_RANGE, which clients would retry).
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let message = response
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(|m| m.replace("%20", " "))
            .unwrap_or_default();
        let too_large = code == "11"
            || code == "8"
            || message.contains("size limit")
            || message.contains("too large");
        if too_large {
            ingest.refuse_request(Transport::Grpc, "too_large", &message);
            let status = tonic::Status::resource_exhausted(format!(
                "received message larger than max ({max} bytes)"
            ));
            return Ok(status.into_http());
        }
        let reason = if code == "12" { "encoding" } else { "decode" };
        ingest.refuse_request(Transport::Grpc, reason, &message);
        Ok(response)
    }
}
