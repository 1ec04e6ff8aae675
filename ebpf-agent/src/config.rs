//! The `ebpf` receiver's settings. Unset keys fall back to the environment
//! variables the chart sets (`OTEL_EBPF_OPEN_PORT`, `OTEL_EBPF_SERVICE_NAME`,
//! `OTEL_EBPF_KUBE_METADATA_ENABLE`, `KUBE_NODE_NAME`), then to defaults.

use crate::process::PortSet;
use collector_core::config::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// Executables never instrumented unless `exclude_executables` is set:
/// the agent itself and the collectors (their own OTLP traffic would
/// otherwise become spans about spans).
pub(crate) const DEFAULT_EXCLUDES: &[&str] = &[
    "*/ebpf-agent",
    "*/agent-collector",
    "*/gateway-collector",
    "*/browser-collector",
    "*/otelcol*",
];

/// `receivers.ebpf`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EbpfReceiverConfig {
    /// Ports whose listeners are instrumented (`80,443,8000-8999`).
    /// Default: `OTEL_EBPF_OPEN_PORT`.
    pub(crate) open_ports: Option<String>,
    /// When set, only executables whose path matches one of these globs.
    pub(crate) executable_paths: Vec<String>,
    /// Executables never instrumented (globs on the path).
    pub(crate) exclude_executables: Option<Vec<String>>,
    /// Bytes captured from the start of each read/write (request line and
    /// headers); at most 4096.
    pub(crate) header_capture_bytes: u32,
    /// `service.name` of every instrumented process. Default:
    /// `OTEL_EBPF_SERVICE_NAME`, else each process's own.
    pub(crate) service_name: Option<String>,
    /// How often /proc is scanned for processes to instrument.
    #[serde(with = "collector_core::config::duration")]
    pub(crate) scan_interval: Duration,
    /// How the probes attach to the syscall tracepoints: `btf` (BTF
    /// tracepoints, the cheaper; needs a kernel with BTF), `raw` (raw
    /// tracepoints, any 5.8+ kernel) or `auto` (`btf` when the kernel has
    /// BTF and accepts the programs, else `raw`).
    pub(crate) syscall_tracepoints: SyscallTracepoints,
    /// Ring buffer between the probes and the agent, MiB (power of two).
    pub(crate) ring_buffer_size_mib: u32,
    /// Fill of the ring buffer, KiB, at which the probes wake the agent.
    /// Below it the agent reads the ring every `ring_buffer_poll_interval`:
    /// a wake-up per event would cost more than the probe itself at modest
    /// rates. 0 wakes the agent on every event (and disables polling).
    pub(crate) ring_buffer_wakeup_kib: u32,
    /// How often the agent reads the ring buffer when the probes have not
    /// woken it; bounds how long an event waits in the ring.
    #[serde(with = "collector_core::config::duration")]
    pub(crate) ring_buffer_poll_interval: Duration,
    /// Spans waiting for the pipeline; beyond it new spans are dropped and
    /// counted.
    pub(crate) queue_size: usize,
    /// Connections followed at once by the HTTP assembler.
    pub(crate) max_connections: usize,
    /// A request unanswered on an idle connection this long is reported
    /// without a response.
    #[serde(with = "collector_core::config::duration")]
    pub(crate) idle_timeout: Duration,
    /// RED metrics.
    pub(crate) metrics: MetricsConfig,
    /// Kubernetes pod metadata on the resource.
    pub(crate) kube_metadata: KubeMetadataConfig,
}

/// `receivers.ebpf.syscall_tracepoints`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SyscallTracepoints {
    /// BTF tracepoints where the kernel has BTF and accepts them, else raw.
    #[default]
    Auto,
    /// BTF tracepoints, or fail to start.
    Btf,
    /// Raw tracepoints.
    Raw,
}

/// `receivers.ebpf.metrics`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// Whether duration histograms are produced (when a metrics pipeline
    /// lists the receiver).
    pub(crate) enabled: bool,
    /// How often the cumulative histograms are exported.
    #[serde(with = "collector_core::config::duration")]
    pub(crate) interval: Duration,
    /// Most series kept (process x method x route x status).
    pub(crate) max_series: usize,
}

/// `receivers.ebpf.kube_metadata`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KubeMetadataConfig {
    /// Default: `OTEL_EBPF_KUBE_METADATA_ENABLE` is `true`.
    pub(crate) enabled: Option<bool>,
    /// The node whose pods are watched. Default: `KUBE_NODE_NAME`.
    pub(crate) node_name: Option<String>,
}

impl Default for EbpfReceiverConfig {
    fn default() -> Self {
        EbpfReceiverConfig {
            open_ports: None,
            executable_paths: Vec::new(),
            exclude_executables: None,
            header_capture_bytes: ebpf_probe::DEFAULT_CAPTURE,
            service_name: None,
            scan_interval: Duration::from_secs(1),
            syscall_tracepoints: SyscallTracepoints::Auto,
            ring_buffer_size_mib: 4,
            ring_buffer_wakeup_kib: 256,
            ring_buffer_poll_interval: Duration::from_millis(50),
            queue_size: 65_536,
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(60),
            metrics: MetricsConfig::default(),
            kube_metadata: KubeMetadataConfig::default(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            interval: Duration::from_secs(15),
            max_series: 10_000,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The settings with environment defaults applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) ports: PortSet,
    pub(crate) executable_paths: Vec<String>,
    pub(crate) exclude_executables: Vec<String>,
    pub(crate) capture_bytes: u32,
    pub(crate) service_name: Option<String>,
    /// The node whose pods are watched, when `kube_metadata` is enabled.
    pub(crate) kube_node: Option<String>,
}

impl EbpfReceiverConfig {
    /// Applies the environment defaults and checks the values.
    pub(crate) fn resolve(&self) -> Result<Resolved, ConfigError> {
        let ports_text = self
            .open_ports
            .clone()
            .or_else(|| env("OTEL_EBPF_OPEN_PORT"))
            .unwrap_or_default();
        let ports = PortSet::parse(&ports_text)
            .map_err(|e| ConfigError::new("open_ports", e.to_string()))?;
        if ports.is_empty() {
            return Err(ConfigError::new(
                "open_ports",
                "no ports to instrument: set open_ports or OTEL_EBPF_OPEN_PORT (e.g. 80,443,8000-8999)",
            ));
        }
        if self.header_capture_bytes == 0
            || self.header_capture_bytes as usize > ebpf_probe::MAX_CAPTURE
        {
            return Err(ConfigError::new(
                "header_capture_bytes",
                format!("must be 1..={}", ebpf_probe::MAX_CAPTURE),
            ));
        }
        if !self.ring_buffer_size_mib.is_power_of_two() || self.ring_buffer_size_mib > 1024 {
            return Err(ConfigError::new(
                "ring_buffer_size_mib",
                "must be a power of two, at most 1024",
            ));
        }
        // Waking at half the ring or later leaves the probes too little room
        // for the events written while the agent gets going.
        if u64::from(self.ring_buffer_wakeup_kib) * 2 > u64::from(self.ring_buffer_size_mib) * 1024
        {
            return Err(ConfigError::new(
                "ring_buffer_wakeup_kib",
                format!(
                    "must be at most half the ring buffer ({} KiB)",
                    self.ring_buffer_size_mib * 512
                ),
            ));
        }
        if self.ring_buffer_wakeup_kib > 0 && self.ring_buffer_poll_interval.is_zero() {
            return Err(ConfigError::new(
                "ring_buffer_poll_interval",
                "must be positive when ring_buffer_wakeup_kib is set",
            ));
        }
        if self.scan_interval.is_zero() {
            return Err(ConfigError::new("scan_interval", "must be positive"));
        }
        if self.metrics.enabled && self.metrics.interval.is_zero() {
            return Err(ConfigError::new("metrics.interval", "must be positive"));
        }
        if self.queue_size == 0 {
            return Err(ConfigError::new("queue_size", "must be positive"));
        }
        let kube_enabled = self.kube_metadata.enabled.unwrap_or_else(|| {
            env("OTEL_EBPF_KUBE_METADATA_ENABLE").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        });
        let kube_node = if kube_enabled {
            let node = self
                .kube_metadata
                .node_name
                .clone()
                .or_else(|| env("KUBE_NODE_NAME"))
                .ok_or_else(|| {
                    ConfigError::new(
                        "kube_metadata.node_name",
                        "the node whose pods to watch is needed with kube_metadata enabled: set node_name or KUBE_NODE_NAME (the chart sets it from spec.nodeName)",
                    )
                })?;
            Some(node)
        } else {
            None
        };
        Ok(Resolved {
            ports,
            executable_paths: self.executable_paths.clone(),
            exclude_executables: self
                .exclude_executables
                .clone()
                .unwrap_or_else(|| DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect()),
            capture_bytes: self.header_capture_bytes,
            service_name: self
                .service_name
                .clone()
                .or_else(|| env("OTEL_EBPF_SERVICE_NAME")),
            kube_node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> EbpfReceiverConfig {
        serde_yaml_ng::from_str(yaml).expect("config parses")
    }

    #[test]
    fn the_ring_buffer_wake_up_defaults_to_a_quarter_mib_and_polling() {
        let c = config("open_ports: '8080'");
        assert_eq!(c.ring_buffer_wakeup_kib, 256);
        assert_eq!(c.ring_buffer_poll_interval, Duration::from_millis(50));
        assert!(c.resolve().is_ok());
    }

    #[test]
    fn a_wake_up_past_half_the_ring_or_without_polling_is_refused() {
        let past_half =
            config("open_ports: '8080'\nring_buffer_size_mib: 1\nring_buffer_wakeup_kib: 600");
        let error = past_half.resolve().expect_err("past half").to_string();
        assert!(error.contains("ring_buffer_wakeup_kib"), "{error}");
        let no_poll =
            config("open_ports: '8080'\nring_buffer_wakeup_kib: 64\nring_buffer_poll_interval: 0s");
        let error = no_poll.resolve().expect_err("no polling").to_string();
        assert!(error.contains("ring_buffer_poll_interval"), "{error}");
        // Waking on every event needs no polling.
        let every_event =
            config("open_ports: '8080'\nring_buffer_wakeup_kib: 0\nring_buffer_poll_interval: 0s");
        assert!(every_event.resolve().is_ok());
    }

    #[test]
    fn syscall_tracepoints_default_to_auto_and_name_their_choices() {
        assert_eq!(
            config("open_ports: '8080'").syscall_tracepoints,
            SyscallTracepoints::Auto
        );
        assert_eq!(
            config("open_ports: '8080'\nsyscall_tracepoints: raw").syscall_tracepoints,
            SyscallTracepoints::Raw
        );
        let error = serde_yaml_ng::from_str::<EbpfReceiverConfig>("syscall_tracepoints: fast")
            .expect_err("unknown choice")
            .to_string();
        assert!(error.contains("auto") && error.contains("btf"), "{error}");
    }
}
