//! The contenders: what each one is, and the command that starts it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use super::Layout;
use super::probe::free_address;
use super::rotel::Rotel;

/// Batch settings given to every collector: Rotel's defaults, and the
/// `batch` processor's (otelcol's). Rotel's size is a maximum; ours is the
/// trigger (`send_batch_size`) with no `send_batch_max_size`, so our batches
/// end at the first request that reaches it (8200 spans here) and keep the
/// received bytes instead of splitting a request.
const BATCH_SIZE: usize = 8192;
const BATCH_TIMEOUT: &str = "200ms";

/// One thing measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ContenderId {
    /// TCP byte relay (no parsing).
    Floor,
    /// Rotel, gzip export.
    Rotel,
    /// Our agent-collector, gzip export at its default level (1).
    AgentGzip,
    /// Our agent-collector, gzip export at zlib's default level (6), the
    /// level Rotel compresses at: the fair row to set against Rotel's.
    AgentGzip6,
    /// Our agent-collector, uncompressed export.
    AgentNone,
    /// Our agent-collector with the `loadbalancing` exporter over three
    /// counting sinks, uncompressed export (compared with `agent-none`).
    Loadbalancing,
    /// The same with gzip (compared with `agent-gzip`).
    LoadbalancingGzip,
    /// Our gateway-collector with tail_sampling (its own section, after the table).
    Gateway,
    /// The eBPF agent (its own section, after the gateway's).
    Ebpf,
    /// Our browser-collector's OTLP/JSON intake, limiter on and off (its
    /// own section, after the eBPF agent's).
    Browser,
}

impl ContenderId {
    pub(crate) const ALL: [ContenderId; 10] = [
        ContenderId::Floor,
        ContenderId::Rotel,
        ContenderId::AgentGzip,
        ContenderId::AgentGzip6,
        ContenderId::AgentNone,
        ContenderId::Loadbalancing,
        ContenderId::LoadbalancingGzip,
        ContenderId::Gateway,
        ContenderId::Ebpf,
        ContenderId::Browser,
    ];

    /// The name on the command line and in results.json.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ContenderId::Floor => "floor",
            ContenderId::Rotel => "rotel",
            ContenderId::AgentGzip => "agent-gzip",
            ContenderId::AgentGzip6 => "agent-gzip6",
            ContenderId::AgentNone => "agent-none",
            ContenderId::Loadbalancing => "loadbalancing",
            ContenderId::LoadbalancingGzip => "loadbalancing-gzip",
            ContenderId::Gateway => "gateway",
            ContenderId::Ebpf => "ebpf",
            ContenderId::Browser => "browser",
        }
    }

    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ContenderId::Floor => "floor (byte relay)",
            ContenderId::Rotel => "rotel (gzip)",
            ContenderId::AgentGzip => "agent (gzip 1)",
            ContenderId::AgentGzip6 => "agent (gzip 6)",
            ContenderId::AgentNone => "agent (none)",
            ContenderId::Loadbalancing => "loadbalancing (none)",
            ContenderId::LoadbalancingGzip => "loadbalancing (gzip)",
            ContenderId::Gateway => "gateway (tail_sampling)",
            ContenderId::Ebpf => "ebpf agent",
            ContenderId::Browser => "browser (OTLP/JSON intake)",
        }
    }

    pub(crate) fn is_rotel(self) -> bool {
        self == ContenderId::Rotel
    }

    /// Measured in its own section after the table (`gateway.rs`,
    /// `ebpf.rs`, `browser.rs`).
    pub(crate) fn has_own_section(self) -> bool {
        matches!(
            self,
            ContenderId::Gateway | ContenderId::Ebpf | ContenderId::Browser
        )
    }

    /// Sends to the [`LB_BACKENDS`] backend sinks instead of the one sink.
    pub(crate) fn uses_backends(self) -> bool {
        matches!(
            self,
            ContenderId::Loadbalancing | ContenderId::LoadbalancingGzip
        )
    }

    /// The pass-through row this one's CPU per span is compared with (the
    /// same agent and load, one `otlp` exporter instead of the split); it
    /// runs whenever this one does.
    pub(crate) fn baseline(self) -> Option<ContenderId> {
        match self {
            ContenderId::Loadbalancing => Some(ContenderId::AgentNone),
            ContenderId::LoadbalancingGzip => Some(ContenderId::AgentGzip),
            _ => None,
        }
    }

    /// The export compression of our agent's rows.
    fn compression(self) -> &'static str {
        match self {
            ContenderId::AgentGzip | ContenderId::AgentGzip6 | ContenderId::LoadbalancingGzip => {
                "gzip"
            }
            _ => "none",
        }
    }

    /// `compression_params.level` of our agent's rows (`None`: the
    /// exporter's default, level 1).
    fn compression_level(self) -> Option<u32> {
        match self {
            ContenderId::AgentGzip6 => Some(ROTEL_GZIP_LEVEL),
            _ => None,
        }
    }
}

/// The gzip level Rotel exports at: it compresses with flate2's
/// `Compression::default()`, zlib's level 6.
pub(crate) const ROTEL_GZIP_LEVEL: u32 = 6;

/// Backends of the loadbalancing rows: one counting sink each, as the
/// gateways an agent spreads its traces over.
pub(crate) const LB_BACKENDS: usize = 3;

/// What runs, in a sentence.
pub(crate) fn describe(id: ContenderId) -> String {
    match id {
        ContenderId::Floor => "otel-sink --relay: TCP bytes copied both ways, no parsing".into(),
        ContenderId::Rotel => format!(
            "rotel-agent: OTLP/gRPC -> batch {BATCH_SIZE}/{BATCH_TIMEOUT} -> OTLP/gRPC, compression gzip"
        ),
        ContenderId::AgentGzip | ContenderId::AgentGzip6 | ContenderId::AgentNone => format!(
            "agent-collector: otlp -> batch {BATCH_SIZE}/{BATCH_TIMEOUT} -> otlp exporter, compression {}{}",
            id.compression(),
            id.compression_level()
                .map_or(String::new(), |level| format!(" level {level}"))
        ),
        ContenderId::Loadbalancing | ContenderId::LoadbalancingGzip => format!(
            "agent-collector: otlp -> batch {BATCH_SIZE}/{BATCH_TIMEOUT} -> loadbalancing (routing_key traceID, \
             static resolver, {LB_BACKENDS} counting sinks), compression {}",
            id.compression()
        ),
        ContenderId::Gateway => super::gateway::describe(),
        ContenderId::Ebpf => super::ebpf::describe(),
        ContenderId::Browser => super::browser::describe(),
    }
}

fn rotel_command(
    rotel: &Rotel,
    listen: SocketAddr,
    sink: SocketAddr,
    out_dir: &Path,
) -> Result<Command> {
    let http = free_address()?;
    let mut command = rotel.command();
    command
        .arg("start")
        .arg("--otlp-grpc-endpoint")
        .arg(listen.to_string())
        .arg("--otlp-http-endpoint")
        .arg(http.to_string())
        .args(["--exporter", "otlp", "--otlp-exporter-protocol", "grpc"])
        .arg("--otlp-exporter-endpoint")
        .arg(format!("http://{sink}"))
        .args(["--otlp-exporter-compression", "gzip"])
        .arg("--batch-max-size")
        .arg(BATCH_SIZE.to_string())
        .arg("--batch-timeout")
        .arg(BATCH_TIMEOUT)
        .arg("--pid-file")
        .arg(out_dir.join("rotel-agent.pid"))
        .arg("--log-file")
        .arg(out_dir.join("rotel-agent.log"));
    Ok(command)
}

/// The agent's config around one exporter: otlp receiver on `listen` ->
/// batch -> the exporter named `exporter`, configured by `exporter_yaml`
/// (indented under `exporters:`); loopback only, self-metrics on `metrics`.
fn pipeline_config(
    listen: SocketAddr,
    metrics: SocketAddr,
    exporter: &str,
    exporter_yaml: &str,
) -> String {
    format!(
        "# Written by `cargo xtask bench`.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {listen}
processors:
  batch:
    send_batch_size: {BATCH_SIZE}
    timeout: {BATCH_TIMEOUT}
exporters:
  {exporter}:
{exporter_yaml}service:
  telemetry:
    metrics:
      address: {metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [{exporter}]
"
    )
}

/// The pass-through agent's config: the `otlp` exporter to the sink.
fn agent_config(
    listen: SocketAddr,
    metrics: SocketAddr,
    sink: SocketAddr,
    compression: &str,
    level: Option<u32>,
) -> String {
    let params = level.map_or(String::new(), |level| {
        format!("    compression_params:\n      level: {level}\n")
    });
    let exporter = format!(
        "    endpoint: {sink}
    compression: {compression}
{params}    tls:
      insecure: true
"
    );
    pipeline_config(listen, metrics, "otlp", &exporter)
}

/// The loadbalancing agent's config: the pass-through's, with the
/// `loadbalancing` exporter (its defaults: `routing_key: traceID`, each
/// backend's `otlp` exporter with otelcol's default sending queue) over the
/// `backends` as a static list.
fn loadbalancing_config(
    listen: SocketAddr,
    metrics: SocketAddr,
    backends: &[SocketAddr],
    compression: &str,
) -> String {
    let hostnames = backends
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let exporter = format!(
        "    resolver:
      static:
        hostnames: [{hostnames}]
    protocol:
      otlp:
        compression: {compression}
        tls:
          insecure: true
"
    );
    pipeline_config(listen, metrics, "loadbalancing", &exporter)
}

/// The command that starts contender `id` listening for OTLP/gRPC on
/// `listen` and sending to the sink's `sink` (the loadbalancing rows: to
/// the `backends`), with its files under `layout`.
pub(crate) fn command(
    id: ContenderId,
    listen: SocketAddr,
    sink: SocketAddr,
    backends: &[SocketAddr],
    layout: &Layout,
    rotel: Option<&Rotel>,
) -> Result<Command> {
    Ok(match id {
        ContenderId::Floor => {
            let mut command = Command::new(&layout.sink);
            command
                .arg("--relay")
                .arg(listen.to_string())
                .arg(sink.to_string())
                .arg("--exit-with-parent");
            command
        }
        ContenderId::Rotel => {
            let rotel = rotel.context("rotel is unavailable")?;
            rotel_command(rotel, listen, sink, &layout.out_dir)?
        }
        ContenderId::AgentGzip
        | ContenderId::AgentGzip6
        | ContenderId::AgentNone
        | ContenderId::Loadbalancing
        | ContenderId::LoadbalancingGzip => {
            let metrics = free_address()?;
            let text = if id.uses_backends() {
                if backends.len() != LB_BACKENDS {
                    bail!("{} needs {LB_BACKENDS} backend sinks", id.name());
                }
                loadbalancing_config(listen, metrics, backends, id.compression())
            } else {
                agent_config(
                    listen,
                    metrics,
                    sink,
                    id.compression(),
                    id.compression_level(),
                )
            };
            let config = layout.out_dir.join(format!("{}.yaml", id.name()));
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
            let mut command = Command::new(&layout.agent);
            command.arg("--config").arg(&config);
            command
        }
        ContenderId::Gateway | ContenderId::Ebpf | ContenderId::Browser => {
            bail!("{} is measured in its own section", id.name())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_config_is_loopback_only() {
        let config = agent_config(
            "127.0.0.1:1000".parse().expect("address"),
            "127.0.0.1:1001".parse().expect("address"),
            "127.0.0.1:1002".parse().expect("address"),
            "none",
            None,
        );
        assert!(config.contains("endpoint: 127.0.0.1:1000"));
        assert!(config.contains("address: 127.0.0.1:1001"));
        assert!(config.contains("endpoint: 127.0.0.1:1002"));
        assert!(config.contains("compression: none"));
        assert!(!config.contains("0.0.0.0"));
        assert!(!config.contains("compression_params"));
    }

    #[test]
    fn level_six_row_sets_the_level_rotel_uses() {
        let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let id = ContenderId::AgentGzip6;
        let config = agent_config(
            address(1000),
            address(1001),
            address(1002),
            id.compression(),
            id.compression_level(),
        );
        assert!(
            config.contains("compression: gzip\n    compression_params:\n      level: 6\n    tls:")
        );
    }

    #[test]
    fn loadbalancing_config_lists_every_backend() {
        let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let config = loadbalancing_config(
            address(1000),
            address(1001),
            &[address(2000), address(2001), address(2002)],
            "gzip",
        );
        assert!(config.contains("hostnames: [127.0.0.1:2000, 127.0.0.1:2001, 127.0.0.1:2002]"));
        assert!(config.contains("compression: gzip"));
        assert!(config.contains("exporters: [loadbalancing]"));
        assert!(!config.contains("0.0.0.0"));
    }

    #[test]
    fn loadbalancing_rows_have_their_pass_through_baseline() {
        for id in ContenderId::ALL {
            assert_eq!(id.uses_backends(), id.baseline().is_some());
            if let Some(base) = id.baseline() {
                assert_eq!(base.compression(), id.compression());
                assert!(!base.uses_backends());
            }
        }
    }
}
