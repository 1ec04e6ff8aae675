//! The `batch` processor (otelcol `batch`): groups items into larger batches
//! before they go on, by size or after a timeout.
//!
//! - otelcol type: `batch`
//! - signals: traces, metrics, logs
//! - stability: beta
//!
//! Data path: `consume` queues into a bounded buffer (waiting up to 1 s for
//! room when it is full, then refusing with `RESOURCE_EXHAUSTED`) -> a
//! worker per metadata combination cuts batches on `send_batch_size` or
//! `timeout`, split at `send_batch_max_size` -> next stage, retried while it
//! refuses with a retryable error.
//!
//! Differences from otelcol: otelcol's `consume` blocks until the batcher
//! takes the data, for as long as that takes; ours waits at most 1 s and
//! then refuses, so backpressure reaches the sender bounded in time. The
//! buffer holds 4 batches of `max(send_batch_size, send_batch_max_size,
//! 8192)` items and at most 64 MiB. Batches the next stage refuses with a
//! retryable error are retried (capped exponential backoff) until accepted
//! or until the shutdown deadline, instead of being dropped. Metadata
//! combinations beyond `metadata_cardinality_limit` are refused with a
//! non-retryable error, as in otelcol.

mod config;
mod deliver;
mod processor;
mod shard;
#[cfg(test)]
mod tests;

pub use config::BatchConfig;
pub use processor::BatchProcessor;

use crate::component::{
    ComponentError, CreateContext, Factory, Processor, ProcessorFactory, Stability,
};
use crate::config::ConfigError;
use crate::consumer::BoxConsumer;
use crate::pdata::Signal;
use std::sync::Arc;

/// Builds `batch` processors.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchFactory;

impl Factory for BatchFactory {
    type Config = BatchConfig;

    fn type_name(&self) -> &'static str {
        "batch"
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &BatchConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ProcessorFactory for BatchFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &BatchConfig,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        Ok(Arc::new(BatchProcessor::new(ctx, config, signal, next)))
    }
}
