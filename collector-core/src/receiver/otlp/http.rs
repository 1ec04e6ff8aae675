//! OTLP/HTTP: `POST` protobuf or JSON to the per-signal paths, answered the
//! way otelcol answers (status mapping, `google.rpc.Status` error bodies in
//! the request's encoding, `Retry-After` on 429/503, CORS for browsers).

use super::client_attributes::ClientAttributes;
use super::cors::Cors;
use super::grpc::response_bytes;
use super::ingest::{Ingest, Transport};
use super::limits::{self, RequestLimits};
use super::rate_limit::{RateLimit, RateLimited};
use crate::compression::{DecompressError, Encoding};
use crate::consumer::ConsumeError;
use crate::pdata::{
    ClientInfo, Logs, Metrics, Payload, Rejected, Signal, Traces, json, rpc::RpcStatus,
};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;

/// The two OTLP/HTTP body encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFormat {
    Protobuf,
    Json,
}

impl BodyFormat {
    fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Protobuf => "application/x-protobuf",
            BodyFormat::Json => "application/json",
        }
    }
}

/// Settings shared by every connection of one HTTP server.
#[derive(Debug)]
pub(crate) struct HttpSettings {
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) traces_path: String,
    pub(crate) metrics_path: String,
    pub(crate) logs_path: String,
    pub(crate) max_body: usize,
    pub(crate) include_metadata: bool,
    pub(crate) cors: Option<Cors>,
    /// Accepted encodings; empty = every supported one.
    pub(crate) encodings: Vec<Encoding>,
    pub(crate) response_headers: Vec<(header::HeaderName, HeaderValue)>,
    /// `text/plain` bodies are OTLP/JSON (sendBeacon).
    pub(crate) accept_text_plain_json: bool,
    /// Requests in progress, when capped.
    pub(crate) concurrent_requests: Option<Arc<tokio::sync::Semaphore>>,
    /// Body bytes being read and decoded, when capped (one permit a byte).
    pub(crate) decoding_bytes: Option<Arc<tokio::sync::Semaphore>>,
    /// Per-client rate limit, when configured.
    pub(crate) rate_limit: Option<RateLimit>,
    /// Per-request limits, when configured.
    pub(crate) limits: Option<RequestLimits>,
    /// Add `client.address` to every resource.
    pub(crate) add_client_address: bool,
    /// Add `user_agent.original` to every resource.
    pub(crate) add_user_agent: bool,
}

/// A response under construction.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    retry_after: Option<std::time::Duration>,
    allow_post: bool,
}

impl Reply {
    fn text(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(message.into()),
            retry_after: None,
            allow_post: false,
        }
    }

    /// An error body as `google.rpc.Status` in the request's encoding.
    fn status(
        status: StatusCode,
        format: BodyFormat,
        grpc_code: tonic::Code,
        message: &str,
    ) -> Self {
        let body = match format {
            BodyFormat::Protobuf => RpcStatus::new(grpc_code as i32, message, None).encode_to_vec(),
            BodyFormat::Json => json::encode_status(grpc_code as i32, message),
        };
        Self {
            status,
            content_type: format.content_type(),
            body: Bytes::from(body),
            retry_after: None,
            allow_post: false,
        }
    }

    /// 429 from the rate limiter.
    fn rate_limited(format: BodyFormat, limited: RateLimited, what: &str) -> Self {
        let mut reply = Self::status(
            StatusCode::TOO_MANY_REQUESTS,
            format,
            tonic::Code::ResourceExhausted,
            &format!("rate limit exceeded: too many {what} from this client"),
        );
        reply.retry_after = Some(limited.retry_after);
        reply
    }

    /// 503 for a server at its global caps.
    fn overloaded(format: BodyFormat, what: &str) -> Self {
        let mut reply = Self::status(
            StatusCode::SERVICE_UNAVAILABLE,
            format,
            tonic::Code::Unavailable,
            &format!("server busy: too many {what} in progress"),
        );
        reply.retry_after = Some(std::time::Duration::from_secs(1));
        reply
    }

    fn from_consume_error(format: BodyFormat, e: &ConsumeError) -> Self {
        let mut reply = Self::status(e.http_status(), format, e.grpc_code(), e.message());
        if matches!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            reply.retry_after = e.retry_after();
        }
        reply
    }
}

impl HttpSettings {
    fn signal_for(&self, path: &str) -> Option<Signal> {
        if path == self.traces_path {
            Some(Signal::Traces)
        } else if path == self.metrics_path {
            Some(Signal::Metrics)
        } else if path == self.logs_path {
            Some(Signal::Logs)
        } else {
            None
        }
    }

    /// Serves one request.
    pub(crate) async fn serve(
        self: Arc<Self>,
        peer: Option<SocketAddr>,
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
        let request_headers = request.headers().clone();
        let is_preflight = request.method() == Method::OPTIONS;
        let reply = self.handle(peer, request).await;
        let mut response = http::Response::new(Full::new(reply.body));
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(reply.content_type) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        if reply.allow_post {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if let Some(delay) = reply.retry_after {
            let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        for (name, value) in &self.response_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(cors) = &self.cors {
            if is_preflight {
                cors.preflight_headers(&request_headers, headers);
            } else {
                cors.response_headers(&request_headers, headers);
            }
        }
        Ok(response)
    }

    async fn handle(
        &self,
        peer: Option<SocketAddr>,
        request: http::Request<hyper::body::Incoming>,
    ) -> Reply {
        let ingest = &self.ingest;
        let Some(signal) = self.signal_for(request.uri().path()) else {
            ingest.refuse_request(Transport::Http, "not_found", request.uri().path());
            return Reply::text(StatusCode::NOT_FOUND, "404 page not found");
        };
        if request.method() == Method::OPTIONS && self.cors.is_some() {
            return Reply {
                status: StatusCode::NO_CONTENT,
                ..Reply::text(StatusCode::NO_CONTENT, "")
            };
        }
        if request.method() != Method::POST {
            ingest.refuse_request(Transport::Http, "method", request.method().as_str());
            let mut reply = Reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} method not allowed, supported: [POST]", request.method()),
            );
            reply.allow_post = true;
            return reply;
        }
        if let Some(origin) = self
            .cors
            .as_ref()
            .and_then(|cors| cors.disallowed_origin(request.headers()))
        {
            ingest.refuse_request(
                Transport::Http,
                "origin",
                &format!("origin {origin:?} is not in cors.allowed_origins"),
            );
            return Reply::text(
                StatusCode::FORBIDDEN,
                format!("origin {origin:?} is not allowed"),
            );
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let format = match content_type.as_str() {
            "application/x-protobuf" => BodyFormat::Protobuf,
            "application/json" => BodyFormat::Json,
            "text/plain" if self.accept_text_plain_json => BodyFormat::Json,
            other => {
                ingest.refuse_request(Transport::Http, "content_type", other);
                return Reply::text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "{other:?} is not supported, supported: [application/json, application/x-protobuf]"
                    ),
                );
            }
        };
        // The client: the peer, or whom a trusted proxy names.
        let client_ip = peer.map(|peer| match &self.rate_limit {
            Some(limit) => limit.limiter.client_address(peer.ip(), request.headers()),
            None => peer.ip(),
        });
        if let (Some(limit), Some(ip)) = (&self.rate_limit, client_ip)
            && let Err(limited) = limit.limiter.check_request(ip)
        {
            limit.limited_requests.inc();
            ingest.refuse_request(
                Transport::Http,
                "rate_limited",
                &format!("client {ip} is over its request rate"),
            );
            return Reply::rate_limited(format, limited, "requests");
        }
        let user_agent = self
            .add_user_agent
            .then(|| request.headers().get(header::USER_AGENT))
            .flatten()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bad = |reason: &'static str, status: StatusCode, message: String| {
            ingest.refuse_request(Transport::Http, reason, &message);
            Reply::status(status, format, tonic::Code::InvalidArgument, &message)
        };

        let encoding_header = request
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let encoding = match Encoding::from_header(encoding_header) {
            Some(e)
                if e == Encoding::Identity
                    || self.encodings.is_empty()
                    || self.encodings.contains(&e) =>
            {
                e
            }
            _ => {
                return bad(
                    "encoding",
                    StatusCode::BAD_REQUEST,
                    format!("unsupported Content-Encoding {encoding_header:?}"),
                );
            }
        };

        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body as u64) {
            return bad(
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {} bytes", self.max_body),
            );
        }
        let _request_permit = match &self.concurrent_requests {
            Some(cap) => match cap.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    ingest.refuse_request(Transport::Http, "overloaded", "concurrent requests");
                    return Reply::overloaded(format, "requests");
                }
            },
            None => None,
        };
        let bytes_permit = match &self.decoding_bytes {
            Some(cap) => {
                let bytes = declared.unwrap_or(self.max_body as u64).max(1);
                match u32::try_from(bytes)
                    .ok()
                    .and_then(|n| cap.clone().try_acquire_many_owned(n).ok())
                {
                    Some(permit) => Some(permit),
                    None => {
                        ingest.refuse_request(Transport::Http, "overloaded", "decoding bytes");
                        return Reply::overloaded(format, "bytes being decoded");
                    }
                }
            }
            None => None,
        };
        let client = if self.include_metadata {
            let pairs = request
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            ClientInfo::with_metadata(peer, pairs)
        } else {
            ClientInfo::from_addr(peer)
        };
        let body = match Limited::new(request.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return bad(
                    "too_large",
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds {} bytes", self.max_body),
                );
            }
            Err(e) => {
                return bad(
                    "decode",
                    StatusCode::BAD_REQUEST,
                    format!("failed to read request body: {e}"),
                );
            }
        };
        let body = if encoding == Encoding::Identity {
            body
        } else {
            match encoding.decompress(&body, self.max_body) {
                Ok(plain) => Bytes::from(plain),
                Err(e @ DecompressError::TooLarge { .. }) => {
                    return bad("too_large", StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
                }
                Err(e) => return bad("decode", StatusCode::BAD_REQUEST, e.to_string()),
            }
        };
        let mut payload = match decode(signal, format, body) {
            Ok(payload) => payload,
            Err(e) => return bad("decode", StatusCode::BAD_REQUEST, e.to_string()),
        };
        drop(bytes_permit);
        let refused = match &self.limits {
            Some(limits) => {
                let cuts = limits.apply(&mut payload, limits::now_unix_nanos());
                let refused = limits.rejected(signal, &cuts);
                ingest.count_cuts(signal, &cuts, refused.as_ref());
                refused
            }
            None => None,
        };
        if let (Some(limit), Some(ip), Payload::Traces(traces)) =
            (&self.rate_limit, client_ip, &payload)
        {
            let spans = traces.item_count();
            if let Err(limited) = limit.limiter.check_spans(ip, spans) {
                limit.limited_spans.inc();
                ingest.refuse_items(
                    Transport::Http,
                    Signal::Traces,
                    "rate_limited",
                    spans,
                    &format!("client {ip} is over its span rate"),
                );
                return Reply::rate_limited(format, limited, "spans");
            }
        }
        if self.add_client_address || user_agent.is_some() {
            let address = client_ip
                .filter(|_| self.add_client_address)
                .map(|ip| ip.to_canonical().to_string());
            let user_agent = match (&self.limits, user_agent) {
                (Some(limits), Some(agent)) => Some(limits.cut_string(agent)),
                (_, agent) => agent,
            };
            ClientAttributes::new(address, user_agent).apply(&mut payload);
        }
        match ingest
            .export(Transport::Http, payload, client, refused)
            .await
        {
            Ok(rejected) => Reply {
                status: StatusCode::OK,
                content_type: format.content_type(),
                body: success_body(signal, format, rejected),
                retry_after: None,
                allow_post: false,
            },
            Err(e) => Reply::from_consume_error(format, &e),
        }
    }
}

fn decode(
    signal: Signal,
    format: BodyFormat,
    body: Bytes,
) -> Result<Payload, crate::pdata::BatchError> {
    Ok(match (signal, format) {
        (Signal::Traces, BodyFormat::Protobuf) => Payload::Traces(Traces::decode(body)?),
        (Signal::Metrics, BodyFormat::Protobuf) => Payload::Metrics(Metrics::decode(body)?),
        (Signal::Logs, BodyFormat::Protobuf) => Payload::Logs(Logs::decode(body)?),
        (Signal::Traces, BodyFormat::Json) => {
            Payload::Traces(Traces::new(json::decode_traces(&body)?))
        }
        (Signal::Metrics, BodyFormat::Json) => {
            Payload::Metrics(Metrics::new(json::decode_metrics(&body)?))
        }
        (Signal::Logs, BodyFormat::Json) => Payload::Logs(Logs::new(json::decode_logs(&body)?)),
    })
}

fn success_body(signal: Signal, format: BodyFormat, rejected: Option<Rejected>) -> Bytes {
    match format {
        BodyFormat::Protobuf => response_bytes(signal, rejected),
        BodyFormat::Json => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let (count, message) = rejected
                .map(|r| (r.items as i64, r.message))
                .unwrap_or_default();
            Bytes::from(json::encode_partial_success(count, &message, field))
        }
    }
}

/// Builds the per-server settings' response header list, skipping invalid ones.
pub(crate) fn response_header_list(
    headers: &std::collections::BTreeMap<String, String>,
) -> Vec<(header::HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                header::HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}
