//! The `resource` processor (otelcol `resource`): inserts, updates, deletes,
//! hashes, extracts and converts resource attributes.
//!
//! - otelcol type: `resource`
//! - signals: traces, metrics, logs
//! - stability: beta
//!
//! Data path: batch -> every resource's attributes get the `attributes`
//! actions in order (values from the config, another attribute or the
//! client) -> next stage. The batch's original encoding is dropped when it
//! has at least one resource.
//!
//! Differences from otelcol: `from_context: auth.*` is a config error rather
//! than a silent no-op (this collector has no authenticators); `metadata.<key>`,
//! a bare `<key>` (metadata too, as otelcol keeps for compatibility) and
//! `client.address` work as in otelcol.

mod actions;
mod config;
mod processor;
#[cfg(test)]
mod tests;

pub use config::{AttributeActionConfig, ResourceConfig};
pub use processor::ResourceProcessor;

use crate::component::{
    ComponentError, CreateContext, Factory, Processor, ProcessorFactory, Stability,
};
use crate::config::ConfigError;
use crate::consumer::BoxConsumer;
use crate::pdata::Signal;
use std::sync::Arc;

/// Builds `resource` processors.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResourceFactory;

impl Factory for ResourceFactory {
    type Config = ResourceConfig;

    fn type_name(&self) -> &'static str {
        "resource"
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &ResourceConfig) -> Result<(), ConfigError> {
        config.compile().map(|_| ())
    }
}

impl ProcessorFactory for ResourceFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        _ctx: &CreateContext,
        config: &ResourceConfig,
        _signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        let actions = config
            .compile()
            .map_err(|e| ComponentError::new(e.to_string()))?;
        Ok(Arc::new(ResourceProcessor::new(actions, next)))
    }
}
