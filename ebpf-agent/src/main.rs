//! `ebpf-agent`: HTTP spans and RED metrics from kernel probes, without
//! code changes in the instrumented services. See the README's "eBPF agent"
//! section.
//!
//! It is a collector whose receiver is `ebpf`: the same command line, config
//! schema, processors and exporters as the collectors.

mod attributes;
mod clock;
mod config;
mod default_config;
mod events;
mod http;
mod pods;
mod probe;
mod process;
mod receiver;
mod red;
mod resource;
mod span;

use collector_core::cli::Distribution;
use collector_core::component::{Factories, FactoryError};
use collector_core::extension::health_check::HealthCheckFactory;
use collector_core::processor::{BatchFactory, MemoryLimiterFactory, ResourceFactory};
use std::process::ExitCode;

/// Instrumentation scope of everything the agent produces.
pub(crate) const SCOPE_NAME: &str = "ollyscale-otel/ebpf-agent";

/// The agent's components: the `ebpf` receiver, the processors and
/// exporters of the collectors.
fn components() -> Result<Factories, FactoryError> {
    let mut factories = Factories::new();
    factories.receiver(receiver::EbpfReceiverFactory)?;
    factories.processor(BatchFactory)?;
    factories.processor(ResourceFactory)?;
    factories.processor(MemoryLimiterFactory)?;
    factories.extension(HealthCheckFactory)?;
    exporters::register(&mut factories).map_err(|exporters::Error::Register(e)| e)?;
    Ok(factories)
}

fn main() -> ExitCode {
    let default_config = match default_config::from_env() {
        Ok(config) => config,
        Err(reason) => {
            eprintln!("ebpf-agent: {reason}");
            return ExitCode::FAILURE;
        }
    };
    collector_core::cli::main(Distribution {
        binary: "ebpf-agent",
        version: env!("CARGO_PKG_VERSION"),
        about: "HTTP spans and RED metrics from kernel probes, exported as OTLP.",
        default_config,
        factories: components,
    })
}
