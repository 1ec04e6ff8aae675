//! The `memory_limiter` processor (otelcol `memory_limiter`): refuses data
//! while the collector uses too much memory, so senders back off before it
//! runs out.
//!
//! - otelcol type: `memory_limiter`
//! - signals: traces, metrics, logs
//! - stability: beta
//!
//! Data path: batch -> refused with `UNAVAILABLE` ("data refused due to high
//! memory usage", retryable: gRPC UNAVAILABLE / HTTP 503) while the process's
//! resident memory, measured every `check_interval`, is at or above the soft
//! limit (limit - spike) -> otherwise the next stage, unchanged. Put it first
//! in a pipeline.
//!
//! Differences from otelcol: memory is the process RSS (there is no Go heap
//! or GC to force); `limit_mib` and `limit_percentage` are exclusive, and a
//! spike limit of the other kind is a config error;
//! `min_gc_interval_when_*` are accepted and ignored.

mod config;
mod limiter;
mod memory;
#[cfg(test)]
mod tests;

pub use config::{MemoryLimiterConfig, MemoryLimits};
pub use limiter::{MemoryLimiter, MemoryReader};
pub use memory::total_memory;

use crate::component::{
    ComponentError, CreateContext, Factory, Processor, ProcessorFactory, Stability,
};
use crate::config::ConfigError;
use crate::consumer::BoxConsumer;
use crate::observe::rss_bytes;
use crate::pdata::Signal;
use std::sync::Arc;

/// Builds `memory_limiter` processors that measure the process RSS.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryLimiterFactory;

impl Factory for MemoryLimiterFactory {
    type Config = MemoryLimiterConfig;

    fn type_name(&self) -> &'static str {
        "memory_limiter"
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &MemoryLimiterConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ProcessorFactory for MemoryLimiterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &MemoryLimiterConfig,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        let limits = config.limits(total_memory).map_err(ComponentError::new)?;
        let id = ctx.id.to_string();
        let refused = ctx.host.metrics.counter(
            &format!("otelcol_processor_refused_{}", signal.item_metric_suffix()),
            "Number of items the processor refused to accept.",
            &[("processor", id.as_str())],
        );
        Ok(Arc::new(MemoryLimiter::new(
            id,
            limits,
            config.check_interval,
            Arc::new(rss_bytes),
            signal,
            next,
            refused,
        )))
    }
}
