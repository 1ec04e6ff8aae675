//! The command line shared by the three binaries.

use crate::components;
use crate::role::Role;
use anyhow::Context;
use clap::{Parser, Subcommand};
use collector_core::config::{ConfigSource, duration};
use collector_core::pipeline;
use collector_core::service::{Service, ServiceOptions};
use std::process::ExitCode;
use std::time::Duration;

/// An OpenTelemetry collector of the ollyscale-otel telemetry plane.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Config file (repeatable; merged in order, later wins on maps). Also
    /// `file:<path>` or `yaml:<inline yaml>`. Default: the role's embedded config.
    #[arg(long = "config", global = true, value_name = "PATH")]
    pub config: Vec<String>,

    /// Override one setting: `--set processors.batch.timeout=2s`
    /// (`::` also separates keys). Applied after the config files.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// How long shutdown may take to drain and flush (Go duration).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// What to do (default: run the collector).
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
    fn options(&self, role: Role) -> ServiceOptions {
        let sources = if self.config.is_empty() {
            vec![ConfigSource::Text {
                label: format!("{} embedded config", role.binary()),
                yaml: role.default_config().to_string(),
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
        }
    }
}

/// Parses the command line and runs the role; the process exit code.
pub fn main(role: Role) -> ExitCode {
    let cli = Cli::parse();
    match run(role, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e:#}", role.binary());
            ExitCode::FAILURE
        }
    }
}

fn run(role: Role, cli: Cli) -> anyhow::Result<ExitCode> {
    let factories = components::all().context("registering components")?;
    let options = cli.options(role);
    match cli.command {
        Some(Command::Components) => {
            for line in factories.describe() {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::PrintDefaultConfig) => {
            print!("{}", role.default_config());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Validate) => {
            let result = collector_core::config::load(&options.sources, &options.overrides)
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
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name(role.binary())
                .build()
                .context("starting the async runtime")?;
            let service = Service::new(factories, options);
            runtime.block_on(service.run())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
