//! Config of the `otlphttp` exporter: otelcol's `confighttp.ClientConfig`
//! plus `encoding`, the per-signal endpoints and the exporter helper's
//! `retry_on_failure` and `sending_queue`.

use crate::helper::{HelperConfig, QueueConfig, RetryConfig};
use crate::otlp::TlsConfig;
use collector_core::compression::Encoding;
use collector_core::config::{ConfigError, duration};
use collector_core::pdata::Signal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// otelcol's default `timeout` of the HTTP client.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// `exporters.otlphttp`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Base URL (`https://host:4318`); `/v1/traces`, `/v1/metrics` and
    /// `/v1/logs` are appended per signal.
    pub endpoint: String,
    /// Full URL for traces, instead of `endpoint` + `/v1/traces`.
    pub traces_endpoint: String,
    /// Full URL for metrics, instead of `endpoint` + `/v1/metrics`.
    pub metrics_endpoint: String,
    /// Full URL for logs, instead of `endpoint` + `/v1/logs`.
    pub logs_endpoint: String,
    /// Accepted for compatibility (profiles are not a signal here).
    pub profiles_endpoint: String,
    /// Body encoding: `proto` (default) or `json`.
    pub encoding: BodyEncoding,
    /// Request compression (default gzip).
    pub compression: HttpCompression,
    /// Accepted for compatibility (`level`): each codec's fast level is used.
    pub compression_params: Option<serde::de::IgnoredAny>,
    /// Sent with every request.
    pub headers: BTreeMap<String, String>,
    /// TLS for `https://` URLs (the same keys as the `otlp` exporter's).
    pub tls: TlsConfig,
    /// Limit of one request (default 30s; 0 = none).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Accepted for compatibility; ignored.
    pub read_buffer_size: usize,
    /// Accepted for compatibility; ignored.
    pub write_buffer_size: usize,
    /// Idle connections kept in the pool (per host; default unlimited).
    pub max_idle_conns: Option<usize>,
    /// Idle connections kept per host.
    pub max_idle_conns_per_host: Option<usize>,
    /// Accepted for compatibility; ignored.
    pub max_conns_per_host: Option<usize>,
    /// How long an idle pooled connection is kept (default 90s).
    #[serde(with = "duration::option")]
    pub idle_conn_timeout: Option<Duration>,
    /// Open a new connection for every request.
    pub disable_keep_alives: bool,
    /// Accepted for compatibility; ignored.
    #[serde(with = "duration::option")]
    pub http2_read_idle_timeout: Option<Duration>,
    /// Accepted for compatibility; ignored.
    #[serde(with = "duration::option")]
    pub http2_ping_timeout: Option<Duration>,
    /// Retry policy.
    pub retry_on_failure: RetryConfig,
    /// Sending queue.
    pub sending_queue: QueueConfig,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            traces_endpoint: String::new(),
            metrics_endpoint: String::new(),
            logs_endpoint: String::new(),
            profiles_endpoint: String::new(),
            encoding: BodyEncoding::Proto,
            compression: HttpCompression(Encoding::Gzip),
            compression_params: None,
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
            timeout: DEFAULT_HTTP_TIMEOUT,
            read_buffer_size: 0,
            write_buffer_size: 0,
            max_idle_conns: None,
            max_idle_conns_per_host: None,
            max_conns_per_host: None,
            idle_conn_timeout: None,
            disable_keep_alives: false,
            http2_read_idle_timeout: None,
            http2_ping_timeout: None,
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

/// `encoding` of request bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// `application/x-protobuf`.
    #[default]
    Proto,
    /// `application/json` (OTLP/JSON).
    Json,
}

impl BodyEncoding {
    /// The `Content-Type` of a body.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyEncoding::Proto => "application/x-protobuf",
            BodyEncoding::Json => "application/json",
        }
    }
}

/// `compression` of request bodies: gzip (default), zstd, deflate (zlib),
/// snappy, lz4, or none (`none` or `""`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpCompression(pub Encoding);

impl<'de> Deserialize<'de> for HttpCompression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        let encoding = match text.to_ascii_lowercase().as_str() {
            "" | "none" => Encoding::Identity,
            "gzip" => Encoding::Gzip,
            "zstd" => Encoding::Zstd,
            "deflate" | "zlib" => Encoding::Deflate,
            "snappy" => Encoding::Snappy,
            "x-snappy-framed" => Encoding::SnappyFramed,
            "lz4" => Encoding::Lz4,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown compression {other:?} (expected gzip, zstd, deflate, snappy, lz4 or none)"
                )));
            }
        };
        Ok(HttpCompression(encoding))
    }
}

/// Parses and checks an `http://` or `https://` URL.
pub(crate) fn parse_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!("{text:?} must start with http:// or https://"));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(uri)
}

impl OtlpHttpConfig {
    /// The exporter helper settings of this config.
    pub fn helper(&self) -> HelperConfig {
        HelperConfig {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// The URL `signal` is sent to: its own endpoint when set, else
    /// `endpoint` with `/v1/<signal>` appended; `None` when neither is set.
    pub fn signal_url(&self, signal: Signal) -> Option<String> {
        let own = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
        };
        if !own.trim().is_empty() {
            return Some(own.trim().to_string());
        }
        let base = self.endpoint.trim();
        if base.is_empty() {
            return None;
        }
        let path = format!("v1/{}", signal.as_str());
        Some(if base.ends_with('/') {
            format!("{base}{path}")
        } else {
            format!("{base}/{path}")
        })
    }

    /// Checks the config; paths are relative to the exporter's section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let endpoints = [
            ("endpoint", &self.endpoint),
            ("traces_endpoint", &self.traces_endpoint),
            ("metrics_endpoint", &self.metrics_endpoint),
            ("logs_endpoint", &self.logs_endpoint),
        ];
        if endpoints.iter().all(|(_, v)| v.trim().is_empty()) {
            return Err(ConfigError::new(
                "endpoint",
                "must be set (a base URL such as https://host:4318), or traces_endpoint, metrics_endpoint or logs_endpoint",
            ));
        }
        for (key, value) in endpoints {
            if !value.trim().is_empty() {
                parse_url(value).map_err(|m| ConfigError::new(key, m))?;
            }
        }
        for signal in Signal::ALL {
            if let Some(url) = self.signal_url(signal) {
                parse_url(&url).map_err(|m| ConfigError::new("endpoint", m))?;
            }
        }
        crate::otlp::TlsConfig::validate(&self.tls).map_err(|e| e.under("tls"))?;
        for (key, value) in &self.headers {
            let name = http::HeaderName::from_bytes(key.as_bytes());
            let value = http::HeaderValue::from_str(value);
            if name.is_err() || value.is_err() {
                return Err(ConfigError::new(
                    format!("headers.{key}"),
                    "not a valid HTTP header name and value",
                ));
            }
        }
        self.helper().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> OtlpHttpConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_match_otelcol() {
        let config = parse("endpoint: https://gw:4318");
        config.validate().unwrap();
        assert_eq!(config.encoding, BodyEncoding::Proto);
        assert_eq!(config.compression, HttpCompression(Encoding::Gzip));
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.helper().queue.queue_size, 1000);
    }

    #[test]
    fn signal_urls() {
        let config = parse("endpoint: http://gw:4318\nlogs_endpoint: http://logs:9000/ingest");
        assert_eq!(
            config.signal_url(Signal::Traces).as_deref(),
            Some("http://gw:4318/v1/traces")
        );
        assert_eq!(
            config.signal_url(Signal::Logs).as_deref(),
            Some("http://logs:9000/ingest")
        );
        let slash = parse("endpoint: http://gw:4318/prefix/");
        assert_eq!(
            slash.signal_url(Signal::Metrics).as_deref(),
            Some("http://gw:4318/prefix/v1/metrics")
        );
        let only = parse("traces_endpoint: http://t:1/x");
        only.validate().unwrap();
        assert_eq!(only.signal_url(Signal::Metrics), None);
    }

    #[test]
    fn accepts_otelcol_keys_and_rejects_bad_ones() {
        let config = parse(
            r#"
endpoint: https://gw:4318
encoding: json
compression: zstd
compression_params: {level: 3}
headers: {x-scope-orgid: tenant-a}
tls: {ca_file: /etc/ca.pem, insecure_skip_verify: false}
timeout: 10s
read_buffer_size: 123
write_buffer_size: 512
max_idle_conns: 10
max_idle_conns_per_host: 2
max_conns_per_host: 5
idle_conn_timeout: 1m
disable_keep_alives: false
http2_read_idle_timeout: 10s
http2_ping_timeout: 5s
retry_on_failure: {max_elapsed_time: 0s}
sending_queue: {queue_size: 10}
"#,
        );
        config.validate().unwrap();
        assert_eq!(config.encoding, BodyEncoding::Json);
        assert_eq!(config.compression, HttpCompression(Encoding::Zstd));
        for (text, encoding) in [
            ("none", Encoding::Identity),
            ("''", Encoding::Identity),
            ("deflate", Encoding::Deflate),
            ("snappy", Encoding::Snappy),
        ] {
            assert_eq!(
                parse(&format!("compression: {text}")).compression.0,
                encoding
            );
        }
        assert!(serde_yaml_ng::from_str::<OtlpHttpConfig>("compression: brotli").is_err());
        assert!(serde_yaml_ng::from_str::<OtlpHttpConfig>("encoding: xml").is_err());
        assert!(serde_yaml_ng::from_str::<OtlpHttpConfig>("bogus: 1").is_err());
        assert_eq!(parse("{}").validate().unwrap_err().path, "endpoint");
        assert_eq!(
            parse("endpoint: gw:4318").validate().unwrap_err().path,
            "endpoint"
        );
        assert_eq!(
            parse("endpoint: http://gw:4318\ntraces_endpoint: ftp://x")
                .validate()
                .unwrap_err()
                .path,
            "traces_endpoint"
        );
        assert_eq!(
            parse("endpoint: http://gw:4318\nheaders: {\"bad key\": x}")
                .validate()
                .unwrap_err()
                .path,
            "headers.bad key"
        );
        assert_eq!(
            parse("endpoint: http://gw:4318\ntls: {cert_file: /c}")
                .validate()
                .unwrap_err()
                .path,
            "tls.key_file"
        );
    }
}
