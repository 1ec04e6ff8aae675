//! The OTLP/gRPC transport: a lazily connected tonic channel as the HTTP/2
//! client, with this exporter's own gRPC framing and compression (see
//! [`super::codec`]) and response handling (see [`super::response`]).
//!
//! tonic's codec compression is not used: it gzips at a fixed level 6,
//! which took most of the agent's CPU. Here gzip and zstd run at
//! `compression_params.level` (default 1), straight from the request's
//! protobuf segments into the frame.

use super::codec::FrameEncoder;
use super::config::{OtlpConfig, Target};
use super::response;
use crate::helper::{SendOutcome, Sender};
use async_trait::async_trait;
use collector_core::component::ComponentError;
use collector_core::consumer::ConsumeError;
use collector_core::pdata::rpc::grpc_retry_delay;
use collector_core::pdata::{Payload, Signal};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tower_service::Service;

/// gRPC method of each signal's `Export`.
pub const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// gRPC method of the metrics `Export`.
pub const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// gRPC method of the logs `Export`.
pub const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Requests are split to stay within the 4 MiB a gRPC server accepts by
/// default (grpc-go, grpc-python, otelcol's receiver), with some headroom.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024 - 16 * 1024;

/// Largest response message read (the gRPC default receive limit).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Sends OTLP export requests over one gRPC channel.
#[derive(Clone, Debug)]
pub struct GrpcSender {
    /// The channel (one connection); replaced by a new one when a request
    /// goes unanswered (see [`Sender::unanswered`]).
    channel: Arc<Mutex<Channel>>,
    /// What a new channel is built from.
    config: Arc<OtlpConfig>,
    target: Target,
    /// Every request's headers: gRPC's, then the configured `headers`.
    headers: HeaderMap,
    encoder: FrameEncoder,
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
        let level = config
            .compression_level()
            .map_err(|e| ComponentError::new(format!("compression_params.level: {e}")))?;
        let encoder = FrameEncoder::new(config.compression, level);
        let channel = build_channel(config, &target)?;
        Ok(Self {
            channel: Arc::new(Mutex::new(channel)),
            config: Arc::new(config.clone()),
            target,
            headers: request_headers(config, encoder.encoding())?,
            encoder,
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

/// Headers the gRPC protocol sets; configured `headers` cannot replace them.
const RESERVED: [&str; 8] = [
    "te",
    "content-type",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-timeout",
    "grpc-message",
    "grpc-message-type",
    "grpc-status",
];

/// The headers of every request: the configured `headers` as gRPC metadata
/// (`-bin` keys base64-encoded), then the protocol's own.
fn request_headers(
    config: &OtlpConfig,
    encoding: Option<&'static str>,
) -> Result<HeaderMap, ComponentError> {
    let mut map = MetadataMap::new();
    for (key, value) in &config.headers {
        let bad = || ComponentError::new(format!("headers.{key}: not valid gRPC metadata"));
        let lower = key.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            continue;
        }
        if lower.ends_with("-bin") {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad())?;
            map.append_bin(key, BinaryMetadataValue::from_bytes(value.as_bytes()));
        } else {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad())?;
            let value: AsciiMetadataValue = value.parse().map_err(|_| bad())?;
            map.append(key, value);
        }
    }
    let mut headers = map.into_headers();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if let Some(encoding) = encoding {
        headers.insert(
            HeaderName::from_static("grpc-encoding"),
            HeaderValue::from_static(encoding),
        );
    }
    headers.insert(
        HeaderName::from_static("grpc-accept-encoding"),
        HeaderValue::from_static("gzip"),
    );
    if !config.timeout.is_zero() {
        let value = HeaderValue::try_from(grpc_timeout(config.timeout))
            .map_err(|e| ComponentError::new(format!("timeout: {e}")))?;
        headers.insert(HeaderName::from_static("grpc-timeout"), value);
    }
    Ok(headers)
}

/// A `grpc-timeout` value: at most 8 digits and a unit, in milliseconds
/// when they fit (`5000m`).
pub(super) fn grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let millis = timeout.as_millis();
    if millis == 0 {
        return format!("{}u", timeout.as_micros().max(1));
    }
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = u128::from(timeout.as_secs());
    if secs <= MAX {
        return format!("{secs}S");
    }
    if secs / 60 <= MAX {
        return format!("{}M", secs / 60);
    }
    format!("{}H", (secs / 3600).min(MAX))
}

fn path(signal: Signal) -> Uri {
    Uri::from_static(match signal {
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

/// An error and its sources, `outer: inner: ...`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[async_trait]
impl Sender for GrpcSender {
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        // The received bytes, as segments: sent as they are, or each byte
        // compressed once, into the frame.
        let frame = self
            .encoder
            .encode(&payload.protobuf_segments())
            .map_err(ConsumeError::invalid)?;
        let mut request = http::Request::new(tonic::body::Body::new(frame));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path(payload.signal());
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = self.headers.clone();

        let mut channel = self.channel.lock().clone();
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|e| {
                ConsumeError::unavailable(format!(
                    "cannot connect to {}: {}",
                    self.endpoint,
                    chain(&e)
                ))
            })?;
        // Whatever fails before a response arrives (connecting, TLS, a reset
        // connection) is a transport error, retryable.
        let response = channel.call(request).await.map_err(|e| {
            ConsumeError::unavailable(format!("sending to {}: {}", self.endpoint, chain(&e)))
        })?;
        response::read(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|error| match error {
                response::Error::Status(status) => status_to_error(&status),
                response::Error::Transport(message) => ConsumeError::unavailable(format!(
                    "transport error reading the response from {}: {message}",
                    self.endpoint
                )),
            })
    }

    fn max_request_bytes(&self) -> Option<usize> {
        Some(MAX_REQUEST_BYTES)
    }

    /// Drops the connection: the next attempt dials a new one, and the old
    /// one closes once the requests still on it end. Without this, the
    /// attempts after a blackhole went to the dead connection, each timing
    /// out, until a keepalive ping went unanswered (`keepalive.time` then
    /// `keepalive.timeout`: 18s in the test with the defaults, and never
    /// when no request stays open long enough for a ping, since none is
    /// sent without one). otelcol (grpc-go) keeps a connection whose RPC
    /// passed its deadline and relies on keepalive alone.
    fn unanswered(&self) {
        match build_channel(&self.config, &self.target) {
            Ok(channel) => {
                *self.channel.lock() = channel;
                tracing::info!(
                    endpoint = %self.endpoint,
                    "A request went unanswered within the timeout: its connection is dropped, the next attempt dials a new one"
                );
            }
            Err(e) => tracing::error!(
                endpoint = %self.endpoint,
                error = %e,
                "cannot build a new connection; keeping the one a request went unanswered on"
            ),
        }
    }
}
