//! The command line every binary of the plane shares (the three collectors
//! and the eBPF agent): `--config`, `--set`, `--shutdown-timeout`, and the
//! `validate`, `components` and `print-default-config` subcommands, as
//! otelcol offers them.

use crate::component::{Factories, FactoryError};
use crate::config::{ConfigSource, duration};
use crate::pipeline;
use crate::service::{Service, ServiceOptions};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// What makes one binary: its name, its components, its default config.
#[derive(Debug)]
pub struct Distribution {
    /// The binary's name, for messages and thread names.
    pub binary: &'static str,
    /// One line on what it is (`--help`).
    pub about: &'static str,
    /// The release (`--version`, and what OpAMP reports).
    pub version: &'static str,
    /// The config used when no `--config` is given.
    pub default_config: String,
    /// Every component it offers.
    pub factories: fn() -> Result<Factories, FactoryError>,
    /// Async worker threads when neither `--worker-threads` nor
    /// `TOKIO_WORKER_THREADS` says; `None`: one per CPU (tokio's default).
    /// Each worker costs a stack and, with glibc, an allocator arena whose
    /// freed memory is rarely returned: a node agent on a 64-core node
    /// should not start 64.
    pub worker_threads: Option<usize>,
}

/// The arguments.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Config file (repeatable; merged in order, later wins on maps). Also
    /// `file:<path>` or `yaml:<inline yaml>`. Default: the embedded config.
    #[arg(long = "config", global = true, value_name = "PATH")]
    pub config: Vec<String>,

    /// Override one setting: `--set processors.batch.timeout=2s`
    /// (`::` also separates keys). Applied after the config files.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// How long shutdown may take to drain and flush (Go duration).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Async worker threads. Default: `TOKIO_WORKER_THREADS`, else the
    /// binary's own default (the eBPF agent: 2), else one per CPU.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and exit: 0 when valid, 1 with every problem otherwise.
    Validate,
    /// List the components built into this binary.
    Components,
    /// Print the embedded default configuration.
    PrintDefaultConfig,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text)
}

impl Cli {
    fn options(&self, distribution: &Distribution) -> ServiceOptions {
        let sources = if self.config.is_empty() {
            vec![ConfigSource::Text {
                label: format!("{} embedded config", distribution.binary),
                yaml: distribution.default_config.clone(),
            }]
        } else {
            self.config
                .iter()
                .map(|arg| ConfigSource::from_arg(arg))
                .collect()
        };
        ServiceOptions {
            sources,
            overrides: self.set.clone(),
            shutdown_timeout: self.shutdown_timeout,
            build: crate::component::BuildInfo {
                binary: distribution.binary.to_string(),
                version: distribution.version.to_string(),
            },
        }
    }
}

/// Parses the command line and runs the binary; the process exit code.
pub fn main(distribution: Distribution) -> ExitCode {
    let command = <Cli as clap::CommandFactory>::command()
        .name(distribution.binary)
        .about(distribution.about);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(&distribution, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e:#}", distribution.binary);
            ExitCode::FAILURE
        }
    }
}

fn run(distribution: &Distribution, cli: Cli) -> anyhow::Result<ExitCode> {
    let factories = (distribution.factories)().context("registering components")?;
    let options = cli.options(distribution);
    match cli.command {
        Some(Command::Components) => {
            for line in factories.describe() {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::PrintDefaultConfig) => {
            print!("{}", distribution.default_config);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Validate) => {
            let result = crate::config::load(&options.sources, &options.overrides)
                .and_then(|config| pipeline::plan(&config, &factories).map(|_| ()));
            match result {
                Ok(()) => {
                    println!("configuration is valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        None => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all().thread_name(distribution.binary);
            let from_env = std::env::var_os("TOKIO_WORKER_THREADS").is_some();
            let workers = cli.worker_threads.map(usize::from).or(if from_env {
                // tokio reads it itself (and reports a bad value).
                None
            } else {
                distribution.worker_threads
            });
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            let runtime = builder.build().context("starting the async runtime")?;
            let service = Service::new(factories, options);
            runtime.block_on(service.run())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
