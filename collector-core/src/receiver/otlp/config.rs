//! `receivers.otlp` settings, as otelcol's OTLP receiver reads them.

use crate::config::{ConfigError, duration};
use crate::receiver::tls::ServerTls;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// `receivers.otlp`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// `protocols`: at least one of `grpc` and `http`.
    pub protocols: Protocols,
}

/// `receivers.otlp.protocols`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    /// OTLP/gRPC; `grpc:` with no settings enables it with defaults.
    #[serde(deserialize_with = "present_means_enabled")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP; `http:` with no settings enables it with defaults.
    #[serde(deserialize_with = "present_means_enabled")]
    pub http: Option<HttpConfig>,
}

/// A key that is present but null (`grpc:`) enables the protocol with defaults.
fn present_means_enabled<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// `protocols.grpc`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address (default `localhost:4317`).
    pub endpoint: String,
    /// Only `tcp` is supported.
    pub transport: String,
    /// Largest accepted message after decompression, in MiB (default 4, like grpc-go).
    pub max_recv_msg_size_mib: u64,
    /// HTTP/2 concurrent streams per connection (0 = unlimited).
    pub max_concurrent_streams: u32,
    /// Accepted for compatibility.
    pub read_buffer_size: Option<u64>,
    /// Accepted for compatibility.
    pub write_buffer_size: Option<u64>,
    /// Keepalive settings.
    pub keepalive: Option<Keepalive>,
    /// TLS, mutual when `client_ca_file` is set; plaintext when absent.
    pub tls: Option<ServerTls>,
    /// Pass gRPC metadata along with the data (for `batch.metadata_keys`).
    pub include_metadata: bool,
    /// Authentication extension: not supported.
    pub auth: Option<serde_yaml_ng::Value>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 0,
            read_buffer_size: None,
            write_buffer_size: None,
            keepalive: None,
            tls: None,
            include_metadata: false,
            auth: None,
        }
    }
}

/// `protocols.grpc.keepalive`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    /// Server-side keepalive pings.
    pub server_parameters: Option<KeepaliveServerParameters>,
    /// Accepted for compatibility.
    pub enforcement_policy: Option<BTreeMap<String, serde_yaml_ng::Value>>,
}

/// `protocols.grpc.keepalive.server_parameters`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// Ping interval.
    #[serde(with = "duration::option")]
    pub time: Option<Duration>,
    /// Ping ack timeout.
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub max_connection_idle: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub max_connection_age: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub max_connection_age_grace: Option<Duration>,
}

/// `protocols.http`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (default `localhost:4318`).
    pub endpoint: String,
    /// Path for traces (default `/v1/traces`).
    pub traces_url_path: String,
    /// Path for metrics (default `/v1/metrics`).
    pub metrics_url_path: String,
    /// Path for logs (default `/v1/logs`).
    pub logs_url_path: String,
    /// Largest accepted body, compressed and decompressed, in bytes (default 20 MiB).
    pub max_request_body_size: u64,
    /// Pass request headers along with the data.
    pub include_metadata: bool,
    /// Cross-origin settings for browsers.
    pub cors: Option<CorsConfig>,
    /// TLS, mutual when `client_ca_file` is set; plaintext when absent.
    pub tls: Option<ServerTls>,
    /// Accepted content encodings; empty = all supported ones.
    pub compression_algorithms: Vec<String>,
    /// Headers added to every response.
    pub response_headers: BTreeMap<String, String>,
    /// Per-client rate limit (ollyscale-otel); off when absent.
    pub rate_limit: Option<RateLimitConfig>,
    /// Requests served at once by this server; beyond it 503 (0 = unlimited), ollyscale-otel.
    pub max_concurrent_requests: u32,
    /// Body bytes being read and decoded at once (declared `Content-Length`,
    /// else `max_request_body_size`); beyond it 503 (0 = unlimited), ollyscale-otel.
    pub max_decoding_bytes: u64,
    /// Read `text/plain` bodies as OTLP/JSON (`navigator.sendBeacon`), ollyscale-otel.
    pub accept_text_plain_json: bool,
    /// Per-request limits on items, attributes, events, links and
    /// timestamps (ollyscale-otel); off when absent.
    pub limits: Option<RequestLimitsConfig>,
    /// Add the resource attribute `client.address`: the client as the rate
    /// limiter resolves it (through `rate_limit.trusted_proxies`), else the
    /// connection's peer (ollyscale-otel). Personal data: off by default.
    pub add_client_address: bool,
    /// Add the resource attribute `user_agent.original` from the request's
    /// `User-Agent` header (ollyscale-otel). Off by default.
    pub add_user_agent: bool,
    /// Authentication extension: not supported.
    pub auth: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub read_header_timeout: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub read_timeout: Option<Duration>,
    /// Accepted for compatibility.
    #[serde(with = "duration::option")]
    pub write_timeout: Option<Duration>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:4318".into(),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            max_request_body_size: 20 * 1024 * 1024,
            include_metadata: false,
            cors: None,
            tls: None,
            compression_algorithms: Vec::new(),
            response_headers: BTreeMap::new(),
            rate_limit: None,
            accept_text_plain_json: false,
            limits: None,
            add_client_address: false,
            add_user_agent: false,
            max_concurrent_requests: 0,
            max_decoding_bytes: 0,
            auth: None,
            read_header_timeout: None,
            idle_timeout: None,
            read_timeout: None,
            write_timeout: None,
        }
    }
}

/// `protocols.http.cors`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins; `*` is a wildcard inside a pattern (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Request headers a browser may send besides the default ones; `*` = any.
    pub allowed_headers: Vec<String>,
    /// Response headers a browser may read.
    pub exposed_headers: Vec<String>,
    /// Seconds a preflight answer may be cached (0 = no header).
    pub max_age: u64,
}

/// `protocols.http.rate_limit`: token buckets per client address.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per client (0 = no request limit).
    pub requests_per_second: f64,
    /// Requests a client may send at once (default 2x the rate, at least 1).
    pub request_burst: Option<f64>,
    /// Spans per second per client (0 = no span limit).
    pub spans_per_second: f64,
    /// Spans a client may send at once (default 2x the rate, at least 1).
    pub span_burst: Option<f64>,
    /// Clients remembered at most; the least recently seen are forgotten first.
    pub max_clients: usize,
    /// CIDR blocks (or addresses) of proxies whose `Forwarded` /
    /// `X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 0.0,
            request_burst: None,
            spans_per_second: 0.0,
            span_burst: None,
            max_clients: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimitConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let rates = [
            ("requests_per_second", Some(self.requests_per_second)),
            ("request_burst", self.request_burst),
            ("spans_per_second", Some(self.spans_per_second)),
            ("span_burst", self.span_burst),
        ];
        for (key, value) in rates {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(ConfigError::new(
                    format!("{path}.{key}"),
                    "must be a number >= 0",
                ));
            }
        }
        for (key, burst) in [
            ("request_burst", self.request_burst),
            ("span_burst", self.span_burst),
        ] {
            if burst.is_some_and(|b| b < 1.0) {
                return Err(ConfigError::new(format!("{path}.{key}"), "must be >= 1"));
            }
        }
        if self.requests_per_second == 0.0 && self.spans_per_second == 0.0 {
            return Err(ConfigError::new(
                path,
                "set requests_per_second and/or spans_per_second",
            ));
        }
        if self.max_clients < 2 {
            return Err(ConfigError::new(
                format!("{path}.max_clients"),
                "must be >= 2",
            ));
        }
        for (i, cidr) in self.trusted_proxies.iter().enumerate() {
            super::rate_limit::Cidr::parse(cidr)
                .map_err(|e| ConfigError::new(format!("{path}.trusted_proxies[{i}]"), e))?;
        }
        Ok(())
    }
}

/// `protocols.http.limits`: what one request may carry. Like the SDKs' span
/// limits, attributes and values beyond a limit are cut (and counted in
/// `dropped_attributes_count` etc.), not refused; items beyond the request's
/// limit and items with absurd timestamps are refused (partial success).
/// 0 = no limit.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimitsConfig {
    /// Spans, metric data points or log records per request; the rest of the
    /// request is refused.
    pub max_items_per_request: usize,
    /// Attributes per resource, scope, span, event, link, log record and
    /// data point; the later ones are dropped.
    pub max_attributes: usize,
    /// Characters of a string attribute value (and of each string in an
    /// array or map value); longer values are truncated.
    pub max_attribute_value_length: usize,
    /// Events per span; the later ones are dropped.
    pub max_events_per_span: usize,
    /// Links per span; the later ones are dropped.
    pub max_links_per_span: usize,
    /// Spans and log records whose timestamps are further than this from
    /// the collector's clock are refused (a browser's clock may be wrong,
    /// by this much it is broken or forged). Off when absent.
    #[serde(with = "duration::option")]
    pub max_timestamp_skew: Option<Duration>,
}

impl Default for RequestLimitsConfig {
    /// The SDKs' default span limits (128 attributes, events and links);
    /// no item, value-length or timestamp limit.
    fn default() -> Self {
        Self {
            max_items_per_request: 0,
            max_attributes: 128,
            max_attribute_value_length: 0,
            max_events_per_span: 128,
            max_links_per_span: 128,
            max_timestamp_skew: None,
        }
    }
}

impl RequestLimitsConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.max_timestamp_skew.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                format!("{path}.max_timestamp_skew"),
                "must be more than 0 (leave it out for no check)",
            ));
        }
        Ok(())
    }
}

fn check_tls(path: &str, tls: &Option<ServerTls>) -> Result<(), ConfigError> {
    match tls {
        Some(tls) => tls.validate().map_err(|e| e.under(&format!("{path}.tls"))),
        None => Ok(()),
    }
}

fn check_path(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("{value:?} must start with '/'"),
        ))
    }
}

impl OtlpReceiverConfig {
    /// Checks what the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            return Err(ConfigError::new(
                "protocols",
                "must specify at least one protocol (grpc or http)",
            ));
        }
        if let Some(grpc) = &p.grpc {
            if grpc.transport != "tcp" {
                return Err(ConfigError::new(
                    "protocols.grpc.transport",
                    format!("{:?} is not supported; expected tcp", grpc.transport),
                ));
            }
            if grpc.max_recv_msg_size_mib == 0 {
                return Err(ConfigError::new(
                    "protocols.grpc.max_recv_msg_size_mib",
                    "must be > 0",
                ));
            }
            if grpc.auth.is_some() {
                return Err(ConfigError::new(
                    "protocols.grpc.auth",
                    "authentication extensions are not supported",
                ));
            }
            crate::config::service::resolve_listen_address(&grpc.endpoint)
                .map_err(|e| ConfigError::new("protocols.grpc.endpoint", e))?;
            check_tls("protocols.grpc", &grpc.tls)?;
        }
        if let Some(http) = &p.http {
            check_path("protocols.http.traces_url_path", &http.traces_url_path)?;
            check_path("protocols.http.metrics_url_path", &http.metrics_url_path)?;
            check_path("protocols.http.logs_url_path", &http.logs_url_path)?;
            if http.max_request_body_size == 0 {
                return Err(ConfigError::new(
                    "protocols.http.max_request_body_size",
                    "must be > 0",
                ));
            }
            if http.auth.is_some() {
                return Err(ConfigError::new(
                    "protocols.http.auth",
                    "authentication extensions are not supported",
                ));
            }
            for (i, name) in http.compression_algorithms.iter().enumerate() {
                if crate::compression::Encoding::from_header(name).is_none() {
                    return Err(ConfigError::new(
                        format!("protocols.http.compression_algorithms[{i}]"),
                        format!(
                            "unsupported {name:?}; expected gzip, zstd, deflate, zlib, snappy, x-snappy-framed, lz4"
                        ),
                    ));
                }
            }
            if let Some(cors) = &http.cors {
                for (i, origin) in cors.allowed_origins.iter().enumerate() {
                    if origin.is_empty() {
                        return Err(ConfigError::new(
                            format!("protocols.http.cors.allowed_origins[{i}]"),
                            "must not be empty",
                        ));
                    }
                }
            }
            if http.max_decoding_bytes > 0 && http.max_decoding_bytes < http.max_request_body_size {
                return Err(ConfigError::new(
                    "protocols.http.max_decoding_bytes",
                    format!(
                        "must be 0 or >= max_request_body_size ({})",
                        http.max_request_body_size
                    ),
                ));
            }
            if let Some(limit) = &http.rate_limit {
                limit.validate("protocols.http.rate_limit")?;
            }
            if let Some(limits) = &http.limits {
                limits.validate("protocols.http.limits")?;
            }
            crate::config::service::resolve_listen_address(&http.endpoint)
                .map_err(|e| ConfigError::new("protocols.http.endpoint", e))?;
            check_tls("protocols.http", &http.tls)?;
        }
        Ok(())
    }
}
