//! The OTLP/gRPC transport: a lazily connected tonic channel and a codec that
//! writes the batch's protobuf bytes as they are.

use super::config::{Compression, OtlpConfig, Target};
use crate::helper::{SendOutcome, Sender};
use async_trait::async_trait;
use bytes::{BufMut, Bytes};
use collector_core::component::ComponentError;
use collector_core::consumer::ConsumeError;
use collector_core::pdata::rpc::grpc_retry_delay;
use collector_core::pdata::{Payload, Signal};
use http::uri::PathAndQuery;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Channel, Endpoint};

/// gRPC method of each signal's `Export`.
pub const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// gRPC method of the metrics `Export`.
pub const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// gRPC method of the logs `Export`.
pub const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Requests are split to stay within the 4 MiB a gRPC server accepts by
/// default (grpc-go, grpc-python, otelcol's receiver), with some headroom.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 16 * 1024;

/// Sends OTLP export requests over one gRPC channel.
#[derive(Clone, Debug)]
pub struct GrpcSender {
    channel: Channel,
    headers: MetadataMap,
    compression: Option<CompressionEncoding>,
    timeout: Duration,
    endpoint: String,
}

impl GrpcSender {
    /// A sender to `endpoint` with the rest of `config` (its own `endpoint`
    /// is ignored, so the loadbalancing exporter can pass each backend).
    /// Connects lazily; must be called inside a tokio runtime.
    pub fn new(config: &OtlpConfig, endpoint: &str) -> Result<Self, ComponentError> {
        let target = config
            .target(endpoint)
            .map_err(|e| ComponentError::new(format!("endpoint: {e}")))?;
        let channel = build_channel(config, &target)?;
        Ok(Self {
            channel,
            headers: metadata(config)?,
            compression: match config.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            timeout: config.timeout,
            endpoint: endpoint.to_string(),
        })
    }

    /// The endpoint this sender sends to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn build_channel(config: &OtlpConfig, target: &Target) -> Result<Channel, ComponentError> {
    let error = |what: &str, e: &dyn std::fmt::Display| ComponentError::new(format!("{what}: {e}"));
    let mut endpoint = Endpoint::from_shared(target.uri.clone())
        .map_err(|e| error("endpoint", &e))?
        .tcp_nodelay(true)
        .user_agent(concat!("ollyscale-otel/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| error("user agent", &e))?;
    if let Some(keepalive) = &config.keepalive {
        if !keepalive.time.is_zero() {
            endpoint = endpoint
                .http2_keep_alive_interval(keepalive.time)
                .keep_alive_while_idle(keepalive.permit_without_stream);
        }
        if !keepalive.timeout.is_zero() {
            endpoint = endpoint.keep_alive_timeout(keepalive.timeout);
        }
    }
    if !config.authority.is_empty() {
        let scheme = if target.tls { "https" } else { "http" };
        let origin = format!("{scheme}://{}", config.authority)
            .parse()
            .map_err(|e| error("authority", &e))?;
        endpoint = endpoint.origin(origin);
    }
    if target.tls {
        endpoint = super::tls::configure(endpoint, config)?;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ComponentError::new(
            "the otlp exporter must be created inside a tokio runtime",
        ));
    }
    Ok(endpoint.connect_lazy())
}

fn metadata(config: &OtlpConfig) -> Result<MetadataMap, ComponentError> {
    let mut map = MetadataMap::new();
    for (key, value) in &config.headers {
        let bad = || ComponentError::new(format!("headers.{key}: not valid gRPC metadata"));
        let lower = key.to_ascii_lowercase();
        if lower.ends_with("-bin") {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad())?;
            map.append_bin(key, BinaryMetadataValue::from_bytes(value.as_bytes()));
        } else {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad())?;
            let value: AsciiMetadataValue = value.parse().map_err(|_| bad())?;
            map.append(key, value);
        }
    }
    Ok(map)
}

fn path(signal: Signal) -> PathAndQuery {
    PathAndQuery::from_static(match signal {
        Signal::Traces => TRACES_PATH,
        Signal::Metrics => METRICS_PATH,
        Signal::Logs => LOGS_PATH,
    })
}

/// Maps a gRPC status to a consume error, with the server's `RetryInfo`.
pub fn status_to_error(status: &tonic::Status) -> ConsumeError {
    let error = ConsumeError::from_grpc_status(status);
    match grpc_retry_delay(status) {
        Some(delay) => error.with_retry_after(delay),
        None => error,
    }
}

#[async_trait]
impl Sender for GrpcSender {
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if let Some(encoding) = self.compression {
            grpc = grpc.send_compressed(encoding);
        }
        grpc.ready().await.map_err(|e| {
            ConsumeError::unavailable(format!("cannot connect to {}: {e}", self.endpoint))
        })?;
        // The received bytes, as segments: each byte is copied once, into the frame.
        let mut request = tonic::Request::new(payload.protobuf_segments());
        *request.metadata_mut() = self.headers.clone();
        if !self.timeout.is_zero() {
            request.set_timeout(self.timeout);
        }
        let response = grpc
            .unary(request, path(payload.signal()), PassThroughCodec)
            .await
            .map_err(|status| status_to_error(&status))?
            .into_inner();
        Ok(match response.partial_success {
            Some(partial) => SendOutcome::partial(
                u64::try_from(partial.rejected).unwrap_or(0),
                partial.error_message,
            ),
            None => SendOutcome::accepted(),
        })
    }

    fn max_request_bytes(&self) -> Option<usize> {
        Some(MAX_REQUEST_BYTES)
    }
}

/// The common shape of `Export{Trace,Metrics,Logs}ServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) partial_success: Option<PartialSuccess>,
}

/// `Export*PartialSuccess`: `rejected_{spans,data_points,log_records}` and
/// `error_message` share their field numbers across signals.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartialSuccess {
    #[prost(int64, tag = "1")]
    pub(crate) rejected: i64,
    #[prost(string, tag = "2")]
    pub(crate) error_message: String,
}

/// Encodes requests by copying already-encoded protobuf bytes into the
/// frame; decodes the export response.
#[derive(Clone, Copy, Debug, Default)]
struct PassThroughCodec;

#[derive(Clone, Copy, Debug, Default)]
struct BytesEncoder;

#[derive(Clone, Copy, Debug, Default)]
struct ResponseDecoder;

impl Codec for PassThroughCodec {
    type Encode = Vec<Bytes>;
    type Decode = ExportResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Vec<Bytes>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<Bytes>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.reserve(item.iter().map(Bytes::len).sum());
        for segment in &item {
            dst.put_slice(segment);
        }
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportResponse>, Self::Error> {
        <ExportResponse as prost::Message>::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("invalid export response: {e}")))
    }
}
