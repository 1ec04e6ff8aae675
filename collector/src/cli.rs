//! The command line of the three collectors: collector-core's, with the
//! role's name, components and embedded config.

use crate::components;
use crate::role::Role;
use collector_core::cli::Distribution;
use std::process::ExitCode;

/// Parses the command line and runs the role; the process exit code.
pub fn main(role: Role) -> ExitCode {
    collector_core::cli::main(Distribution {
        binary: role.binary(),
        version: env!("CARGO_PKG_VERSION"),
        about: "An OpenTelemetry collector of the ollyscale-otel telemetry plane.",
        default_config: role.default_config().to_string(),
        factories: components::all,
        worker_threads: None,
    })
}
