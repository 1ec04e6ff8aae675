//! Log setup from `service.telemetry.logs`.

use crate::config::{LogEncoding, TelemetryConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber: level and encoding from the
/// config, overridable with `RUST_LOG`. Logs go to stderr. Calling it again
/// (after a reload) is a no-op: the first subscriber stays.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.logs.level.as_filter()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.logs.encoding {
        LogEncoding::Json => builder.json().flatten_event(true).try_init(),
        LogEncoding::Console => builder.try_init(),
    };
    // An error means a subscriber is already installed (tests, reloads): keep it.
    drop(result);
}
