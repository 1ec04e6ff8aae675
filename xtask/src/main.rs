//! `cargo xtask`: the project's developer and CI tasks.
//!
//! - `cargo xtask setup` installs what the test-suite needs (idempotent).
//! - `cargo xtask ci` runs everything CI runs, in order, stopping at the first failure.
//! - `cargo xtask demo` runs the collectors on loopback with traffic (see demo.rs).
//! - `cargo xtask loadgen -- ...` runs the load generator.
//! - `cargo xtask bench` measures our agent against Rotel and a byte-relay floor (see bench.rs).
//! - `cargo xtask fuzz [--seconds N]` runs the fuzz targets of `fuzz/` (see fuzz.rs).
//! - `cargo xtask soak [--minutes N]` runs the plane under steady load for a long time (see soak.rs).
//! - `cargo xtask env` prints the `OLLY_*` variables that the tests read, as shell exports.
//!
//! This crate uses std, clap, anyhow and serde_yaml_ng (the bench adapts a
//! collector's YAML config) only, and none of the project's crates, so it
//! builds (and can install things) before the rest of the workspace compiles.

mod bench;
mod ci;
mod cmd;
mod demo;
mod dist;
mod fuzz;
mod paths;
mod setup;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "ollyscale-otel developer and CI tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install everything the test-suite needs (apt packages, Python venv, Helm, nextest).
    /// Safe to run again: items already present are skipped.
    Setup,
    /// Run the CI pipeline: setup, fmt, clippy, build, tests, doc tests.
    Ci {
        /// Don't run `setup` first (for development, when the machine is already set up).
        #[arg(long)]
        skip_setup: bool,
    },
    /// Run agent -> gateway and the browser collector on loopback, drive traffic
    /// through them and print what each stage did; they run until Ctrl-C.
    Demo {
        /// Stop the collectors after printing the table instead of waiting for Ctrl-C.
        #[arg(long)]
        no_wait: bool,
    },
    /// Measure spans per CPU-second, throughput and peak RSS of our agent, Rotel and
    /// a byte-relay floor side by side (release build; writes target/bench/results.json).
    Bench(bench::BenchArgs),
    /// Send OTLP load with `otel-loadgen` (built in release mode); arguments
    /// after `--` go to it, e.g. `cargo xtask loadgen -- --rate 10000 --duration 5s`.
    Loadgen {
        /// Arguments for otel-loadgen (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Static (musl) release binaries and, with a Docker daemon, the images
    /// (`deploy/docker`), each run once; prints their sizes.
    Dist(dist::DistArgs),
    /// Render the Helm chart and run it without a cluster: every rendered
    /// collector in a network namespace standing for its pod, dnsmasq for the
    /// cluster names, the Python SDK and OTLP/JSON through agent and browser
    /// to a receiver, scaling the gateways from 1 to 3 (root; the
    /// `chart_e2e` test, which `ci` also runs), plus the chart's Helm tests.
    E2e,
    /// Run every fuzz target (fuzz/, cargo fuzz on the probe's nightly) for
    /// `--seconds` each from its committed seeds; CI runs it for 20 s each.
    Fuzz(fuzz::FuzzArgs),
    /// Agent -> 3 gateways -> sink with the original chart's configs under
    /// steady load for `--minutes`, a gateway rotated every few minutes:
    /// RSS and throughput each minute, a ledger of every item at the end
    /// (root; writes target/soak/soak.json and soak.svg). Not part of `ci`.
    Soak(soak::SoakArgs),
    /// Print `export OLLY_...=...` lines for the tools the tests use
    /// (use as `eval "$(cargo xtask env)"`).
    Env,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Ci { skip_setup } => ci::run(skip_setup),
        Command::Demo { no_wait } => demo::run(no_wait),
        Command::Bench(args) => bench::run(args),
        Command::Loadgen { args } => {
            let mut command = cmd::cargo();
            command
                .args([
                    "run",
                    "--quiet",
                    "--release",
                    "-p",
                    "loadgen",
                    "--bin",
                    "otel-loadgen",
                    "--",
                ])
                .args(args);
            cmd::run_inherited(&mut command)
        }
        Command::Dist(args) => dist::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Soak(args) => soak::run(args),
        Command::E2e => {
            let mut command = cmd::cargo();
            command
                .args([
                    "nextest",
                    "run",
                    "-p",
                    "collector",
                    "--test",
                    "chart",
                    "--test",
                    "chart_e2e",
                    "--no-fail-fast",
                ])
                .current_dir(paths::repo_root())
                .envs(paths::test_env());
            cmd::run_inherited(&mut command)
        }
        Command::Env => {
            paths::print_exports();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
