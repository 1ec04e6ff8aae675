//! The `debug` exporter: writes what it receives to the log or stdout.
//!
//! Signals: traces, metrics, logs. Stability: development.
//!
//! Data path: `consume` -> count items -> (sampled per second, when logging
//! through the collector's logger) -> render at `verbosity` -> `tracing`
//! info event or stdout.

mod text;

#[cfg(test)]
mod tests;

use crate::helper::ExporterMetrics;
use async_trait::async_trait;
use collector_core::component::{
    ComponentError, CreateContext, Exporter, ExporterFactory, Factory, Lifecycle, Stability,
};
use collector_core::config::ConfigError;
use collector_core::consumer::{ConsumeError, Consumer};
use collector_core::pdata::{Signal, Telemetry};
use parking_lot::Mutex;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use text::{render, summary};

/// `exporters.debug`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// How much to write (default basic).
    pub verbosity: Verbosity,
    /// Messages logged per second before sampling starts (default 2).
    pub sampling_initial: u64,
    /// After that, every n-th message per second is logged (default 1).
    pub sampling_thereafter: u64,
    /// Log through the collector's logger (true, default) or write to stdout.
    pub use_internal_logger: bool,
}

impl Default for DebugConfig {
    fn default() -> Self {
        Self {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
            use_internal_logger: true,
        }
    }
}

/// `verbosity` of the debug exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch with counts.
    #[default]
    Basic,
    /// Also one line per span, data point or log record.
    Normal,
    /// Every field, attributes included.
    Detailed,
}

/// Factory of the `debug` exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugExporterFactory;

impl Factory for DebugExporterFactory {
    type Config = DebugConfig;

    fn type_name(&self) -> &'static str {
        "debug"
    }

    fn stability(&self) -> Stability {
        Stability::Development
    }

    fn validate(&self, _config: &DebugConfig) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl ExporterFactory for DebugExporterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &DebugConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        let output = if config.use_internal_logger {
            Output::Logger
        } else {
            Output::Writer(Mutex::new(Box::new(std::io::stdout())))
        };
        Ok(Arc::new(DebugExporter::new(ctx, config, output)))
    }
}

/// Where the text goes.
enum Output {
    /// `tracing` info events.
    Logger,
    /// A writer (stdout, or a buffer in tests).
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// The `debug` exporter.
pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    output: Output,
    /// Per signal, when logging through the logger (as otelcol samples only there).
    samplers: Option<[Mutex<Sampler>; 3]>,
    metrics: ExporterMetrics,
}

impl std::fmt::Debug for DebugExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugExporter")
            .field("id", &self.id)
            .field("verbosity", &self.verbosity)
            .finish_non_exhaustive()
    }
}

impl DebugExporter {
    fn new(ctx: &CreateContext, config: &DebugConfig, output: Output) -> Self {
        let sampler = || {
            Mutex::new(Sampler::new(
                config.sampling_initial,
                config.sampling_thereafter,
            ))
        };
        let samplers = matches!(output, Output::Logger).then(|| [sampler(), sampler(), sampler()]);
        Self {
            id: ctx.id.to_string(),
            verbosity: config.verbosity,
            output,
            samplers,
            metrics: ExporterMetrics::new(&ctx.host.metrics, &ctx.id.to_string()),
        }
    }

    fn write(&self, text: &str) {
        match &self.output {
            Output::Logger => tracing::info!(exporter = %self.id, "{text}"),
            Output::Writer(writer) => {
                let mut writer = writer.lock();
                // Writing debug output must not fail the pipeline.
                let _ = writer.write_all(text.as_bytes());
                let _ = writer.write_all(b"\n");
                let _ = writer.flush();
            }
        }
    }
}

#[async_trait]
impl Consumer for DebugExporter {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let payload = &telemetry.payload;
        let signal = payload.signal();
        let sampled_in = match &self.samplers {
            Some(samplers) => samplers[signal as usize].lock().allow(Instant::now()),
            None => true,
        };
        if sampled_in {
            self.write(&summary(payload));
            if self.verbosity != Verbosity::Basic {
                let body = render(payload, self.verbosity);
                if !body.is_empty() {
                    self.write(body.trim_end_matches('\n'));
                }
            }
        }
        self.metrics.sent(signal, payload.item_count() as u64);
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for DebugExporter {}

/// zap's sampler: in each one-second window the first `initial` messages
/// pass, then every `thereafter`-th (none when it is 0).
#[derive(Debug)]
struct Sampler {
    initial: u64,
    thereafter: u64,
    window: Option<Instant>,
    count: u64,
}

impl Sampler {
    fn new(initial: u64, thereafter: u64) -> Self {
        Self {
            initial,
            thereafter,
            window: None,
            count: 0,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        if self.count <= self.initial {
            return true;
        }
        self.thereafter > 0 && (self.count - self.initial).is_multiple_of(self.thereafter)
    }
}
