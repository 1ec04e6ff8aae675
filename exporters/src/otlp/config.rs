//! Config of the `otlp` exporter: otelcol's `configgrpc.ClientConfig` plus
//! the exporter helper's `timeout`, `retry_on_failure` and `sending_queue`.

use crate::helper::{DEFAULT_TIMEOUT, HelperConfig, QueueConfig, RetryConfig};
use collector_core::config::{ConfigError, duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `exporters.otlp`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// `host:port`, or an `http://` (plaintext) / `https://` (TLS) URL.
    pub endpoint: String,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Sent as gRPC metadata with every request.
    pub headers: BTreeMap<String, String>,
    /// Request compression (default gzip).
    pub compression: Compression,
    /// Compression settings (otelcol's `configcompression`): `level`.
    pub compression_params: CompressionParams,
    /// Limit of one send attempt (default 5s; 0 = none).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// HTTP/2 keepalive pings; `null` turns them off.
    pub keepalive: Option<KeepaliveConfig>,
    /// gRPC load-balancing policy name. Accepted; a connection goes to one
    /// resolved address at a time.
    pub balancer_name: String,
    /// Accepted for compatibility: requests wait for the lazy connection.
    pub wait_for_ready: bool,
    /// Overrides the `:authority` of requests.
    pub authority: String,
    /// Accepted for compatibility; ignored.
    pub read_buffer_size: usize,
    /// Accepted for compatibility; ignored.
    pub write_buffer_size: usize,
    /// Retry policy.
    pub retry_on_failure: RetryConfig,
    /// Sending queue.
    pub sending_queue: QueueConfig,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            compression_params: CompressionParams::default(),
            timeout: DEFAULT_TIMEOUT,
            keepalive: Some(KeepaliveConfig::default()),
            balancer_name: String::new(),
            wait_for_ready: false,
            authority: String::new(),
            read_buffer_size: 0,
            write_buffer_size: 0,
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

/// `tls` of a gRPC client (otelcol's `configtls.ClientConfig`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plaintext (h2c) instead of TLS.
    pub insecure: bool,
    /// Encrypt, but accept any server certificate.
    pub insecure_skip_verify: bool,
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: String,
    /// PEM CA certificates, inline.
    pub ca_pem: String,
    /// Client certificate (PEM file) for mutual TLS.
    pub cert_file: String,
    /// Client certificate, inline PEM.
    pub cert_pem: String,
    /// Client key (PEM file) for mutual TLS.
    pub key_file: String,
    /// Client key, inline PEM.
    pub key_pem: String,
    /// Server name to verify and send in SNI instead of the endpoint's host.
    pub server_name_override: String,
    /// Also trust the system roots when a CA is given.
    pub include_system_ca_certs_pool: bool,
    /// Accepted; rustls negotiates TLS 1.2 or 1.3.
    pub min_version: String,
    /// Accepted; rustls negotiates TLS 1.2 or 1.3.
    pub max_version: String,
    /// Accepted; certificates are read once at start.
    #[serde(with = "duration::option")]
    pub reload_interval: Option<Duration>,
}

/// `compression` of requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (otelcol's default).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression (`none` or `""`).
    None,
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        match text.as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "" | "none" => Ok(Compression::None),
            "snappy" | "zlib" | "deflate" | "lz4" => Err(serde::de::Error::custom(format!(
                "compression {text:?} is not supported by this collector's gRPC client (use gzip, zstd or none)"
            ))),
            other => Err(serde::de::Error::custom(format!(
                "unknown compression {other:?} (expected gzip, zstd or none)"
            ))),
        }
    }
}

/// `compression_params` (otelcol's `configcompression.CompressionParams`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// Compression level; 0 (or absent) means this exporter's default, 1.
    /// gzip: 1 (fastest) to 9 (smallest), or -1 for zlib's default (6).
    /// zstd: zstd's levels, 1 to 22 (negative levels are faster still).
    pub level: i32,
}

/// gzip and zstd level used when `compression_params.level` is not set.
/// otelcol's default gzip level is zlib's 6; this exporter defaults to 1,
/// which compresses about twice as fast for a slightly larger request.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// `keepalive` of a gRPC client.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    /// Ping after this long without activity (default 10s).
    #[serde(with = "duration")]
    pub time: Duration,
    /// Close the connection when a ping is not answered within this (default 10s).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Ping even without active streams.
    pub permit_without_stream: bool,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            permit_without_stream: false,
        }
    }
}

/// Where to connect, after reading the endpoint and `tls.insecure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URI for the channel (`http://host:port` or `https://host:port`).
    pub uri: String,
    /// Whether to use TLS.
    pub tls: bool,
}

impl OtlpConfig {
    /// The exporter helper settings of this config.
    pub fn helper(&self) -> HelperConfig {
        HelperConfig {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// Checks the config; paths are relative to the exporter's section.
    /// `endpoint` may be empty when `require_endpoint` is false (the
    /// loadbalancing exporter's `protocol.otlp` has none).
    pub fn validate(&self, require_endpoint: bool) -> Result<(), ConfigError> {
        if require_endpoint || !self.endpoint.is_empty() {
            self.target(&self.endpoint)
                .map_err(|message| ConfigError::new("endpoint", message))?;
        }
        self.tls.validate().map_err(|e| e.under("tls"))?;
        self.compression_level()
            .map_err(|message| ConfigError::new("compression_params.level", message))?;
        for (key, value) in &self.headers {
            check_header(key, value).map_err(|m| ConfigError::new(format!("headers.{key}"), m))?;
        }
        if !self.authority.is_empty() && self.authority.parse::<http::uri::Authority>().is_err() {
            return Err(ConfigError::new("authority", "not a valid host[:port]"));
        }
        self.helper().validate()
    }

    /// The compression level to use for `compression`: `None` without
    /// compression, else `compression_params.level` checked against the
    /// algorithm's range (0 picks [`DEFAULT_COMPRESSION_LEVEL`]).
    pub fn compression_level(&self) -> Result<Option<i32>, String> {
        let level = self.compression_params.level;
        match self.compression {
            Compression::None if level == 0 => Ok(None),
            Compression::None => Err(format!(
                "level {level} is set, but compression is none (set compression: gzip or zstd)"
            )),
            Compression::Gzip => match level {
                0 => Ok(Some(DEFAULT_COMPRESSION_LEVEL)),
                -1 => Ok(Some(6)),
                1..=9 => Ok(Some(level)),
                _ => Err(format!(
                    "gzip level {level} is not supported (expected 1 (fastest) to 9 (smallest), \
                     or -1 for zlib's default, 6)"
                )),
            },
            Compression::Zstd => {
                let range = zstd::compression_level_range();
                match level {
                    0 => Ok(Some(DEFAULT_COMPRESSION_LEVEL)),
                    level if range.contains(&level) => Ok(Some(level)),
                    _ => Err(format!(
                        "zstd level {level} is not supported (expected {} to {}; 1 is the fastest \
                         of the usual levels)",
                        range.start(),
                        range.end()
                    )),
                }
            }
        }
    }

    /// The channel URI and TLS choice for `endpoint`, as otelcol's
    /// `configgrpc` reads it: `http://` means plaintext, `https://` means
    /// TLS, and a bare `host:port` uses TLS unless `tls.insecure` is set.
    pub fn target(&self, endpoint: &str) -> Result<Target, String> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Err("must be set (host:port or an http:// or https:// URL)".into());
        }
        let (rest, tls) = if let Some(rest) = endpoint.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = endpoint.strip_prefix("dns:///") {
            (rest, !self.tls.insecure)
        } else if endpoint.contains("://") {
            return Err(format!(
                "unsupported scheme in {endpoint:?} (expected host:port, http:// or https://)"
            ));
        } else {
            (endpoint, !self.tls.insecure)
        };
        let authority = rest.trim_end_matches('/');
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|_| format!("{endpoint:?} is not a valid host:port"))?;
        if parsed.port_u16().is_none() {
            return Err(format!("{endpoint:?} has no port (expected host:port)"));
        }
        if parsed.host().is_empty() {
            return Err(format!("{endpoint:?} has no host (expected host:port)"));
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(Target {
            uri: format!("{scheme}://{authority}"),
            tls,
        })
    }
}

impl TlsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.ca_file.is_empty() && !self.ca_pem.is_empty() {
            return Err(ConfigError::new(
                "ca_pem",
                "set either ca_file or ca_pem, not both",
            ));
        }
        let has_cert = !self.cert_file.is_empty() || !self.cert_pem.is_empty();
        let has_key = !self.key_file.is_empty() || !self.key_pem.is_empty();
        if has_cert != has_key {
            return Err(ConfigError::new(
                if has_cert { "key_file" } else { "cert_file" },
                "a client certificate needs both a certificate and a key",
            ));
        }
        for (field, value) in [
            ("min_version", &self.min_version),
            ("max_version", &self.max_version),
        ] {
            if !matches!(value.as_str(), "" | "1.2" | "1.3") {
                return Err(ConfigError::new(
                    field,
                    format!("TLS version {value:?} is not supported (expected 1.2 or 1.3)"),
                ));
            }
        }
        Ok(())
    }
}

fn check_header(key: &str, value: &str) -> Result<(), String> {
    let lower = key.to_ascii_lowercase();
    if lower.ends_with("-bin") {
        tonic::metadata::MetadataKey::<tonic::metadata::Binary>::from_bytes(lower.as_bytes())
            .map_err(|_| "not a valid gRPC metadata key".to_string())?;
        return Ok(());
    }
    tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(lower.as_bytes())
        .map_err(|_| "not a valid gRPC metadata key".to_string())?;
    tonic::metadata::MetadataValue::<tonic::metadata::Ascii>::try_from(value)
        .map_err(|_| "not a valid gRPC metadata value (printable ASCII only)".to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> OtlpConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_the_charts_config() {
        let config = parse(
            "endpoint: ollyscale-otlp-receiver.ollyscale.svc.cluster.local:4343\ntls:\n  insecure: true\n",
        );
        config.validate(true).unwrap();
        assert_eq!(config.compression, Compression::Gzip);
        assert_eq!(
            config.target(&config.endpoint).unwrap(),
            Target {
                uri: "http://ollyscale-otlp-receiver.ollyscale.svc.cluster.local:4343".into(),
                tls: false
            }
        );
    }

    #[test]
    fn endpoint_forms() {
        let secure = OtlpConfig::default();
        assert!(secure.target("collector:4317").unwrap().tls);
        assert!(!secure.target("http://collector:4317").unwrap().tls);
        assert!(secure.target("https://collector:4317/").unwrap().tls);
        assert_eq!(
            secure.target("[::1]:4317").unwrap().uri,
            "https://[::1]:4317"
        );
        assert!(secure.target("collector").is_err());
        assert!(secure.target("unix:///tmp/sock").is_err());
        let err = OtlpConfig::default().validate(true).unwrap_err();
        assert_eq!(err.path, "endpoint");
        OtlpConfig::default().validate(false).unwrap();
    }

    #[test]
    fn accepts_otelcol_keys_and_rejects_unknown_ones() {
        let config = parse(
            r#"
endpoint: gw:4317
compression: zstd
timeout: 10s
headers: {x-scope-orgid: tenant-a}
keepalive: {time: 30s, timeout: 5s, permit_without_stream: true}
balancer_name: round_robin
wait_for_ready: true
tls: {insecure: false, ca_file: /etc/ca.pem, server_name_override: gw.example.com}
retry_on_failure: {enabled: true, max_elapsed_time: 0s}
sending_queue: {queue_size: 5000, num_consumers: 4}
"#,
        );
        config.validate(true).unwrap();
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(
            config.keepalive.as_ref().map(|k| k.time),
            Some(Duration::from_secs(30))
        );
        assert_eq!(config.helper().queue.queue_size, 5000);
        assert!(serde_yaml_ng::from_str::<OtlpConfig>("endpoint: a:1\nbogus: 1").is_err());
        assert_eq!(parse("compression: none").compression, Compression::None);
        assert_eq!(parse("compression: ''").compression, Compression::None);
        assert!(serde_yaml_ng::from_str::<OtlpConfig>("compression: brotli").is_err());
    }

    #[test]
    fn rejects_bad_headers_and_tls() {
        let mut config = parse("endpoint: gw:4317\nheaders: {\"bad key\": x}");
        assert_eq!(config.validate(true).unwrap_err().path, "headers.bad key");
        config = parse("endpoint: gw:4317\ntls: {cert_file: /c.pem}");
        assert_eq!(config.validate(true).unwrap_err().path, "tls.key_file");
        config =
            parse("endpoint: gw:4317\nsending_queue: {storage: file_storage/q, enabled: false}");
        assert_eq!(
            config.validate(true).unwrap_err().path,
            "sending_queue.storage"
        );
    }
}
