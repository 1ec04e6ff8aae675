//! `cargo xtask soak [--minutes N] [--restart-every M] [--spans-per-second S]`:
//! builds the release binaries and runs `otel-soak` (testkit) with the
//! original chart's configs (`collector/tests/data/original-*.yaml`):
//! agent -> 3 gateways -> sink in a network namespace, steady load of every
//! signal, a gateway rotated out and back every M minutes. Writes
//! `target/soak/soak.json` and `target/soak/soak.svg`. Root (namespaces)
//! and dnsmasq; not part of `ci`.

use anyhow::Result;

use crate::{cmd, paths};

#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Minutes between gateway rotations.
    #[arg(long, default_value_t = 4.0)]
    restart_every: f64,
    /// Spans per second sent to the agent.
    #[arg(long, default_value_t = 5_000)]
    spans_per_second: u64,
    /// Metric data points per second.
    #[arg(long, default_value_t = 1_000)]
    points_per_second: u64,
    /// Log records per second.
    #[arg(long, default_value_t = 1_000)]
    logs_per_second: u64,
}

pub(crate) fn run(args: SoakArgs) -> Result<()> {
    let root = paths::repo_root();
    eprintln!("soak: building release binaries");
    cmd::run_inherited(
        cmd::cargo()
            .current_dir(&root)
            .args(["build", "--release", "-p", "collector", "-p", "loadgen"])
            .args([
                "-p",
                "testkit",
                "--bin",
                "otel-soak",
                "--bin",
                "opamp-test-server",
            ])
            .args(["--bin", "agent-collector", "--bin", "gateway-collector"])
            .args(["--bin", "otel-loadgen", "--bin", "otel-sink"]),
    )?;
    let release = root.join("target/release");
    cmd::run_inherited(
        std::process::Command::new(release.join("otel-soak"))
            .arg("--bin")
            .arg(&release)
            .arg("--configs")
            .arg(root.join("collector/tests/data"))
            .arg("--out")
            .arg(root.join("target/soak"))
            .args(["--minutes", &args.minutes.to_string()])
            .args(["--restart-every", &args.restart_every.to_string()])
            .args(["--spans-per-second", &args.spans_per_second.to_string()])
            .args(["--points-per-second", &args.points_per_second.to_string()])
            .args(["--logs-per-second", &args.logs_per_second.to_string()]),
    )
}
