//! The `tail_sampling` processor for the collector runtime (feature
//! `collector`).
//!
//! - otelcol type: `tail_sampling`
//! - signals: traces
//! - stability: beta
//!
//! Data path: `consume` splits each request by trace ID into one part per
//! shard (resource and scope kept) and puts the parts into the shards'
//! bounded queues, all or nothing (`RESOURCE_EXHAUSTED` when one is full)
//! -> each shard, a task owning a [`Sampler`](crate::Sampler), ingests its
//! parts and, on a timer set to the next due trace (checked before every
//! input, so ingestion cannot starve it), decides traces -> sampled traces
//! and late spans of sampled traces go to the next stage, several traces per
//! request, retried while it refuses them with a retryable error.
//!
//! Settings: the engine's (see [`SamplerConfig`](crate::SamplerConfig)) plus
//! two of ours, `num_shards` (0 = one per CPU, at most 16) and
//! `record_policy` (the `tailsampling.policy` scope attribute, off by
//! default). The limits `num_traces`, `max_memory_mib`, explicit
//! `decision_cache` sizes and the rates of `rate_limiting`, `bytes_limiting`
//! and `composite` hold for the whole processor: each shard gets its share,
//! rounded up (see [`TailSamplingConfig::shard_config`]).
//!
//! Shutdown: new data is refused (`UNAVAILABLE`); the shards take what is
//! queued, decide every buffered trace (or drop them with
//! `drop_pending_traces_on_shutdown`) and deliver the sampled ones until the
//! deadline; what is left then is counted in `otelcol_processor_dropped_items`
//! and logged.

mod config;
mod instance;
mod metrics;
mod output;
mod shard;
mod shared;
mod split;
#[cfg(test)]
mod tests;

pub use config::{MAX_SHARDS, TailSamplingConfig, TailSamplingSection};
pub use instance::TailSamplingProcessor;

use std::sync::Arc;

use collector_core::component::{
    ComponentError, CreateContext, Factory, Processor, ProcessorFactory, Stability,
};
use collector_core::config::ConfigError as CollectorConfigError;
use collector_core::consumer::BoxConsumer;
use collector_core::pdata::Signal;

use crate::ConfigError;

/// Builds `tail_sampling` processors. Register it with
/// `factories.processor(TailSamplingFactory)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TailSamplingFactory;

/// The engine's errors as one collector config error: the first problem's
/// path (relative to the component) and message, followed by the others.
fn to_collector_error(error: &ConfigError) -> CollectorConfigError {
    let issues = error.issues();
    let Some(first) = issues.first() else {
        return CollectorConfigError::new("", "invalid configuration");
    };
    let mut message = first.message.clone();
    if issues.len() > 1 {
        let others: Vec<String> = issues[1..].iter().map(ToString::to_string).collect();
        message.push_str(&format!(" (also: {})", others.join("; ")));
    }
    CollectorConfigError::new(first.path.clone(), message)
}

impl Factory for TailSamplingFactory {
    type Config = TailSamplingSection;

    fn type_name(&self) -> &'static str {
        "tail_sampling"
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, section: &TailSamplingSection) -> Result<(), CollectorConfigError> {
        let config = TailSamplingConfig::from_value(section.0.clone())
            .map_err(|e| to_collector_error(&e))?;
        config.validate().map_err(|e| to_collector_error(&e))
    }
}

impl ProcessorFactory for TailSamplingFactory {
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }

    fn create(
        &self,
        ctx: &CreateContext,
        section: &TailSamplingSection,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        if signal != Signal::Traces {
            return Err(ComponentError::new(format!(
                "tail_sampling handles traces only, not {signal}"
            )));
        }
        let config = TailSamplingConfig::from_value(section.0.clone())
            .map_err(|e| ComponentError::new(format!("invalid tail_sampling config: {e}")))?;
        Ok(Arc::new(TailSamplingProcessor::new(ctx, &config, next)?))
    }
}
