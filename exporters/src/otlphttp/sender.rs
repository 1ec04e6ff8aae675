//! The OTLP/HTTP transport: one `POST` per request, body in protobuf (the
//! batch's own bytes when unchanged) or OTLP/JSON, compressed, and the answer
//! read as the OTLP/HTTP spec says: 2xx is success (a `partial_success` in
//! the body is counted), 429/502/503/504 are retried (after `Retry-After`
//! when given), every other status is permanent; an error body is a
//! `google.rpc.Status` in the response's encoding.

use super::client::{self, HttpClient};
use super::config::{BodyEncoding, OtlpHttpConfig};
use crate::helper::{SendOutcome, Sender};
use async_trait::async_trait;
use bytes::Bytes;
use collector_core::component::ComponentError;
use collector_core::compression::Encoding;
use collector_core::consumer::{ConsumeError, ErrorKind};
use collector_core::pdata::rpc::RpcStatus;
use collector_core::pdata::{Payload, Signal, json};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::Mutex;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Largest response body read (a status or partial success is tiny).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest error message kept from a response.
const MAX_MESSAGE_CHARS: usize = 512;

/// Sends OTLP export requests over HTTP.
#[derive(Clone, Debug)]
pub struct HttpSender {
    /// The pooled client; replaced by a new one (a new pool) when an
    /// attempt goes unanswered (see [`Sender::unanswered`]).
    client: Arc<Mutex<HttpClient>>,
    /// What the client is built from.
    config: Arc<OtlpHttpConfig>,
    /// URL per signal (`None`: not configured for that signal).
    urls: [Option<http::Uri>; 3],
    headers: HeaderMap,
    encoding: BodyEncoding,
    compression: Encoding,
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl HttpSender {
    /// A sender for `config`. Must be called inside a tokio runtime.
    pub fn new(config: &OtlpHttpConfig) -> Result<Self, ComponentError> {
        let mut urls = [None, None, None];
        for signal in Signal::ALL {
            if let Some(url) = config.signal_url(signal) {
                let uri = super::config::parse_url(&url)
                    .map_err(|e| ComponentError::new(format!("endpoint: {e}")))?;
                urls[index(signal)] = Some(uri);
            }
        }
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let name = http::HeaderName::from_bytes(key.as_bytes())
                .map_err(|e| ComponentError::new(format!("headers.{key}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ComponentError::new(format!("headers.{key}: {e}")))?;
            headers.append(name, value);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(config.encoding.content_type()),
        );
        if config.compression.0 != Encoding::Identity {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(config.compression.0.as_str()),
            );
        }
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("ollyscale-otel/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Self {
            client: Arc::new(Mutex::new(client::build(config)?)),
            config: Arc::new(config.clone()),
            urls,
            headers,
            encoding: config.encoding,
            compression: config.compression.0,
        })
    }

    /// The URL `signal` goes to.
    pub fn url(&self, signal: Signal) -> Option<&http::Uri> {
        self.urls[index(signal)].as_ref()
    }

    fn body(&self, payload: &Payload) -> Result<Bytes, ConsumeError> {
        let raw: Bytes = match self.encoding {
            BodyEncoding::Proto => payload.to_protobuf(),
            BodyEncoding::Json => match payload {
                Payload::Traces(batch) => json::encode_traces(batch.request()),
                Payload::Metrics(batch) => json::encode_metrics(batch.request()),
                Payload::Logs(batch) => json::encode_logs(batch.request()),
            }
            .into(),
        };
        if self.compression == Encoding::Identity {
            return Ok(raw);
        }
        self.compression
            .compress(&raw)
            .map(Bytes::from)
            .map_err(|e| {
                ConsumeError::new(
                    ErrorKind::Internal,
                    format!("{} compression failed: {e}", self.compression.as_str()),
                )
            })
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        let signal = payload.signal();
        let Some(url) = self.url(signal) else {
            return Err(ConsumeError::invalid(format!(
                "no endpoint for {signal}: set endpoint or {signal}_endpoint"
            )));
        };
        let mut request = http::Request::new(Full::new(self.body(payload)?));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = url.clone();
        *request.headers_mut() = self.headers.clone();
        let client = self.client.lock().clone();
        let response = client.request(request).await.map_err(|e| {
            ConsumeError::unavailable(format!("sending to {url} failed: {}", error_chain(&e)))
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes());
        if parts.status.is_success() {
            // The data was taken; an unreadable answer does not change that.
            let body = body.unwrap_or_default();
            return Ok(partial_success(&parts.headers, &body));
        }
        let body = body.unwrap_or_default();
        Err(status_error(
            parts.status,
            &parts.headers,
            &body,
            SystemTime::now(),
        ))
    }

    /// A request got no answer within the timeout. Over HTTP/1.1 its
    /// connection is closed already (an unfinished exchange cannot be
    /// reused), but an HTTP/2 connection (negotiated by ALPN) carries every
    /// request, and the pool keeps it while it looks open: after a
    /// blackhole (a peer gone without a reset) every attempt would time out
    /// on it until TCP gives up, since nothing pings it unless
    /// `http2_read_idle_timeout` is set. A new client has a new pool, so the
    /// next attempt dials; requests still on the old one end as they would.
    fn unanswered(&self) {
        match client::build(&self.config) {
            Ok(client) => {
                *self.client.lock() = client;
                tracing::info!(
                    "A request went unanswered within the timeout: its connections are dropped, the next attempt dials a new one"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "cannot build a new HTTP client; keeping the one a request went unanswered on"
            ),
        }
    }
}

/// The error and its sources, joined (hyper's top-level messages are terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// The common shape of `Export{Trace,Metrics,Logs}ServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

/// `rejected_{spans,data_points,log_records}` and `error_message` share
/// their field numbers across signals.
#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

fn json_field<'a>(object: &'a serde_json::Value, names: &[&str]) -> Option<&'a serde_json::Value> {
    names.iter().find_map(|name| object.get(name))
}

/// Reads a `partial_success` from a 2xx body (protobuf or JSON).
pub(crate) fn partial_success(headers: &HeaderMap, body: &[u8]) -> SendOutcome {
    if body.is_empty() {
        return SendOutcome::accepted();
    }
    if is_json(headers) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return SendOutcome::accepted();
        };
        let Some(partial) = json_field(&value, &["partialSuccess", "partial_success"]) else {
            return SendOutcome::accepted();
        };
        let rejected = json_field(
            partial,
            &[
                "rejectedSpans",
                "rejectedDataPoints",
                "rejectedLogRecords",
                "rejected_spans",
                "rejected_data_points",
                "rejected_log_records",
            ],
        )
        .and_then(|v| match v {
            serde_json::Value::String(s) => s.parse::<u64>().ok(),
            other => other.as_u64(),
        })
        .unwrap_or(0);
        let message = json_field(partial, &["errorMessage", "error_message"])
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        return SendOutcome::partial(rejected, truncate(message));
    }
    match ExportResponse::decode(body) {
        Ok(ExportResponse {
            partial_success: Some(partial),
        }) => SendOutcome::partial(
            u64::try_from(partial.rejected).unwrap_or(0),
            truncate(&partial.error_message),
        ),
        _ => SendOutcome::accepted(),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// The message and retry delay of an error body.
fn decode_status(headers: &HeaderMap, body: &[u8]) -> (String, Option<Duration>) {
    if body.is_empty() {
        return (String::new(), None);
    }
    if is_json(headers) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(message) = value.get("message").and_then(|m| m.as_str())
        {
            return (truncate(message), None);
        }
    } else if let Ok(status) = RpcStatus::decode(body)
        && (status.code != 0 || !status.message.is_empty())
    {
        return (truncate(&status.message), status.retry_delay());
    }
    (truncate(String::from_utf8_lossy(body).trim()), None)
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a non-2xx answer to a consume error, as the OTLP/HTTP spec says:
/// 429, 502, 503 and 504 are retryable, everything else is permanent.
pub(crate) fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ConsumeError {
    let (message, detail_delay) = decode_status(headers, body);
    let text = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    let kind = match status.as_u16() {
        429 => ErrorKind::ResourceExhausted,
        502..=504 => ErrorKind::Unavailable,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        400..=499 => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    };
    let error = ConsumeError::new(kind, text);
    if !error.is_retryable() {
        return error;
    }
    match retry_after(headers, now).or(detail_delay) {
        Some(delay) => error.with_retry_after(delay),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_map_per_the_spec() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        for (code, kind, retryable) in [
            (429, ErrorKind::ResourceExhausted, true),
            (502, ErrorKind::Unavailable, true),
            (503, ErrorKind::Unavailable, true),
            (504, ErrorKind::Unavailable, true),
            (400, ErrorKind::InvalidArgument, false),
            (404, ErrorKind::InvalidArgument, false),
            (413, ErrorKind::InvalidArgument, false),
            (401, ErrorKind::Unauthenticated, false),
            (403, ErrorKind::PermissionDenied, false),
            (500, ErrorKind::Internal, false),
            (501, ErrorKind::Internal, false),
        ] {
            let error = status_error(StatusCode::from_u16(code).unwrap(), &none, b"", now);
            assert_eq!(error.kind(), kind, "{code}");
            assert_eq!(error.is_retryable(), retryable, "{code}");
        }
        let error = status_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", "3")]),
            b"",
            now,
        );
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        // A permanent error ignores Retry-After.
        let error = status_error(
            StatusCode::BAD_REQUEST,
            &headers(&[("retry-after", "3")]),
            b"",
            now,
        );
        assert_eq!(error.retry_after(), None);
    }

    #[test]
    fn error_bodies_in_both_encodings() {
        let now = SystemTime::now();
        let proto = RpcStatus::new(8, "queue full", Some(Duration::from_secs(2))).encode_to_vec();
        let error = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("content-type", "application/x-protobuf")]),
            &proto,
            now,
        );
        assert_eq!(error.message(), "HTTP 429 Too Many Requests: queue full");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        let error = status_error(
            StatusCode::BAD_REQUEST,
            &headers(&[("content-type", "application/json")]),
            br#"{"code":3,"message":"bad span id"}"#,
            now,
        );
        assert_eq!(error.message(), "HTTP 400 Bad Request: bad span id");
        let error = status_error(
            StatusCode::BAD_GATEWAY,
            &headers(&[("content-type", "text/html")]),
            b"<html>proxy error</html>",
            now,
        );
        assert!(error.message().contains("proxy error"), "{error}");
    }

    #[test]
    fn partial_success_in_both_encodings() {
        let proto = ExportResponse {
            partial_success: Some(PartialSuccess {
                rejected: 3,
                error_message: "bad ids".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            partial_success(
                &headers(&[("content-type", "application/x-protobuf")]),
                &proto
            ),
            SendOutcome::partial(3, "bad ids")
        );
        let json_headers = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(
            partial_success(
                &json_headers,
                br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"x"}}"#
            ),
            SendOutcome::partial(2, "x")
        );
        assert_eq!(
            partial_success(
                &json_headers,
                br#"{"partial_success":{"rejected_spans":4}}"#
            ),
            SendOutcome::partial(4, "")
        );
        assert_eq!(
            partial_success(&json_headers, b"{}"),
            SendOutcome::accepted()
        );
        assert_eq!(
            partial_success(&HeaderMap::new(), b""),
            SendOutcome::accepted()
        );
        assert_eq!(
            partial_success(&HeaderMap::new(), b"\xff\xff not proto"),
            SendOutcome::accepted()
        );
    }
}
