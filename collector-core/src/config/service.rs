//! The `service` section: pipelines, enabled extensions, self-telemetry.

use crate::component::ComponentId;
use crate::pdata::Signal;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// `service:`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Extensions to start, in order.
    #[serde(deserialize_with = "component_ids")]
    pub extensions: Vec<ComponentId>,
    /// Pipelines by id (`traces`, `metrics/internal`, ...).
    pub pipelines: BTreeMap<PipelineId, PipelineConfig>,
    /// The collector's own logs and metrics.
    pub telemetry: TelemetryConfig,
}

/// A pipeline id: a signal and an optional name (`traces/sampled`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    /// The signal the pipeline carries.
    pub signal: Signal,
    /// The part after `/`.
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.signal, name),
            None => write!(f, "{}", self.signal),
        }
    }
}

impl<'de> Deserialize<'de> for PipelineId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let (signal, name) = match text.split_once('/') {
            Some((s, n)) => (s, Some(n)),
            None => (text.as_str(), None),
        };
        let signal = Signal::parse(signal).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid pipeline id {text:?}: the type must be traces, metrics or logs"
            ))
        })?;
        if name.is_some_and(str::is_empty) {
            return Err(serde::de::Error::custom(format!(
                "invalid pipeline id {text:?}: empty name"
            )));
        }
        Ok(PipelineId {
            signal,
            name: name.map(str::to_string),
        })
    }
}

/// `service.pipelines.<id>`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Receivers feeding the pipeline.
    #[serde(deserialize_with = "component_ids")]
    pub receivers: Vec<ComponentId>,
    /// Processors, applied in order.
    #[serde(deserialize_with = "component_ids")]
    pub processors: Vec<ComponentId>,
    /// Exporters; each gets every item.
    #[serde(deserialize_with = "component_ids")]
    pub exporters: Vec<ComponentId>,
}

fn component_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ComponentId>, D::Error> {
    let texts = Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default();
    texts
        .iter()
        .map(|t| t.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// `service.telemetry`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `service.telemetry.logs`
    pub logs: LogsTelemetry,
    /// `service.telemetry.metrics`
    pub metrics: MetricsTelemetry,
    /// `service.telemetry.resource`: accepted, attributes for self-telemetry.
    pub resource: BTreeMap<String, Option<String>>,
    /// `service.telemetry.traces`: accepted and ignored (no self-tracing).
    pub traces: Option<serde_yaml_ng::Value>,
}

/// `service.telemetry.logs`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `debug`, `info` (default), `warn`, `error`.
    pub level: LogLevel,
    /// `console` (default, human-readable) or `json`.
    pub encoding: LogEncoding,
    /// Accepted for compatibility; logs go to stderr.
    pub output_paths: Option<Vec<String>>,
    /// Accepted for compatibility; logs go to stderr.
    pub error_output_paths: Option<Vec<String>>,
    /// Accepted for compatibility.
    pub development: Option<bool>,
    /// Accepted for compatibility.
    pub disable_caller: Option<bool>,
    /// Accepted for compatibility.
    pub disable_stacktrace: Option<bool>,
    /// Accepted for compatibility (zap's log sampling).
    pub sampling: Option<serde_yaml_ng::Value>,
    /// Fields added to every log line.
    pub initial_fields: BTreeMap<String, String>,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            encoding: LogEncoding::Console,
            output_paths: None,
            error_output_paths: None,
            development: None,
            disable_caller: None,
            disable_stacktrace: None,
            sampling: None,
            initial_fields: BTreeMap::new(),
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including per-batch details.
    Debug,
    /// Start-up, shutdown, reloads and rate-limited problems.
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// Human-readable text.
    Console,
    /// One JSON object per line.
    Json,
}

/// `service.telemetry.metrics`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// `none` turns the self-metrics endpoint off; other levels keep it on.
    pub level: MetricsLevel,
    /// Old form: `address: 0.0.0.0:8888`.
    pub address: Option<String>,
    /// New form: `readers: [{pull: {exporter: {prometheus: {host, port}}}}]`.
    pub readers: Option<Vec<MetricReader>>,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        Self {
            level: MetricsLevel::Normal,
            address: None,
            readers: None,
        }
    }
}

/// Self-metrics detail level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// No self-metrics endpoint.
    None,
    /// Accepted; same as normal.
    Basic,
    /// The default.
    Normal,
    /// Accepted; same as normal.
    Detailed,
}

/// One entry of `service.telemetry.metrics.readers`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    /// A pull reader (the only kind supported: a Prometheus endpoint).
    pub pull: PullReader,
}

/// `readers[].pull`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    /// `readers[].pull.exporter`
    pub exporter: PullExporter,
}

/// `readers[].pull.exporter`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    /// `readers[].pull.exporter.prometheus`
    pub prometheus: PrometheusPull,
}

/// `readers[].pull.exporter.prometheus`
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PrometheusPull {
    /// Listen host (default `localhost`).
    #[serde(default = "default_prometheus_host")]
    pub host: String,
    /// Listen port (default 8888).
    #[serde(default = "default_prometheus_port")]
    pub port: u16,
    /// Other OTel SDK Prometheus options, accepted and ignored.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

fn default_prometheus_host() -> String {
    "localhost".into()
}
fn default_prometheus_port() -> u16 {
    8888
}

impl MetricsTelemetry {
    /// Where to serve Prometheus self-metrics, or `None` when turned off.
    /// Default `localhost:8888` when neither `address` nor `readers` is set
    /// (newer otelcol's default). A `:8888` address means all interfaces.
    pub fn listen_address(&self) -> Result<Option<String>, String> {
        if self.level == MetricsLevel::None {
            return Ok(None);
        }
        if let Some(readers) = &self.readers {
            return Ok(readers.first().map(|r| {
                let p = &r.pull.exporter.prometheus;
                join_host_port(&p.host, p.port)
            }));
        }
        match &self.address {
            Some(address) if address.starts_with(':') => Ok(Some(format!("0.0.0.0{address}"))),
            Some(address) => Ok(Some(address.clone())),
            None => Ok(Some("localhost:8888".into())),
        }
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host:port` text (`localhost:4317`, `0.0.0.0:4317`, `[::]:4317`,
/// `:4317`) to socket addresses to listen on.
pub fn resolve_listen_address(endpoint: &str) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    let endpoint = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    let addrs: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("invalid endpoint {endpoint:?}: {e} (expected host:port)"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("endpoint {endpoint:?} resolves to no address"));
    }
    Ok(addrs)
}
