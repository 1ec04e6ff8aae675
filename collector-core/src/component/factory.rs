//! Factory traits: a typed one for implementers, an object-safe one for the registry.

use super::{ComponentError, ComponentId, Exporter, Extension, Host, Processor, Receiver};
use crate::config::{ConfigError, deserialize_at};
use crate::consumer::BoxConsumer;
use crate::pdata::Signal;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::any::Any;
use std::sync::Arc;

/// How mature a component is, as otelcol labels them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    /// Still changing.
    Development,
    /// Usable, may change.
    Alpha,
    /// Feature-complete.
    Beta,
    /// Settled.
    Stable,
}

impl Stability {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stability::Development => "development",
            Stability::Alpha => "alpha",
            Stability::Beta => "beta",
            Stability::Stable => "stable",
        }
    }
}

/// What every factory has: its type name and typed config.
pub trait Factory: Send + Sync + 'static {
    /// The typed config section. Unknown keys must be rejected
    /// (`#[serde(deny_unknown_fields)]`) and absent ones defaulted.
    type Config: DeserializeOwned + Send + Sync + 'static;

    /// The type name users write in YAML (`otlp`, `batch`, ...).
    fn type_name(&self) -> &'static str;

    /// Other names accepted for the same type (`otlp_grpc` for `otlp`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Stability level.
    fn stability(&self) -> Stability {
        Stability::Beta
    }

    /// Checks the config beyond what its types express; paths are relative to
    /// the component's section.
    fn validate(&self, config: &Self::Config) -> Result<(), ConfigError> {
        let _ = config;
        Ok(())
    }
}

/// Everything a component gets when it is built.
#[derive(Clone, Debug)]
pub struct CreateContext {
    /// The component's id.
    pub id: ComponentId,
    /// Shared services: listeners, self-metrics, health.
    pub host: Arc<Host>,
}

/// The consumers a receiver feeds, one per signal it is used for.
#[derive(Clone, Default)]
pub struct ReceiverConsumers {
    /// Consumer of spans, when some traces pipeline lists the receiver.
    pub traces: Option<BoxConsumer>,
    /// Consumer of metrics.
    pub metrics: Option<BoxConsumer>,
    /// Consumer of logs.
    pub logs: Option<BoxConsumer>,
}

impl std::fmt::Debug for ReceiverConsumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConsumers")
            .field("traces", &self.traces.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("logs", &self.logs.is_some())
            .finish()
    }
}

impl ReceiverConsumers {
    /// The consumer for a signal.
    pub fn get(&self, signal: Signal) -> Option<&BoxConsumer> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    /// Sets the consumer for a signal.
    pub fn set(&mut self, signal: Signal, consumer: BoxConsumer) {
        match signal {
            Signal::Traces => self.traces = Some(consumer),
            Signal::Metrics => self.metrics = Some(consumer),
            Signal::Logs => self.logs = Some(consumer),
        }
    }
}

/// Builds receivers of one type.
pub trait ReceiverFactory: Factory {
    /// Signals the receiver can produce.
    fn signals(&self) -> &'static [Signal];
    /// Builds a receiver that feeds `consumers`.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &Self::Config,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError>;
}

/// Builds processors of one type; one instance per pipeline.
pub trait ProcessorFactory: Factory {
    /// Signals the processor handles.
    fn signals(&self) -> &'static [Signal];
    /// Builds a processor for a pipeline of `signal` that forwards to `next`.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &Self::Config,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError>;
}

/// Builds exporters of one type; one instance per id, shared by pipelines.
pub trait ExporterFactory: Factory {
    /// Signals the exporter can send.
    fn signals(&self) -> &'static [Signal];
    /// Builds an exporter.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &Self::Config,
    ) -> Result<Arc<dyn Exporter>, ComponentError>;
}

/// Builds extensions of one type.
pub trait ExtensionFactory: Factory {
    /// Builds an extension.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &Self::Config,
    ) -> Result<Arc<dyn Extension>, ComponentError>;
}

/// A component config that passed its factory's checks, type-erased.
#[derive(Clone)]
pub struct ParsedConfig(Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for ParsedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedConfig")
    }
}

impl ParsedConfig {
    fn typed<T: 'static>(&self) -> Result<&T, ComponentError> {
        self.0
            .downcast_ref::<T>()
            .ok_or_else(|| ComponentError::new("config was parsed by another factory"))
    }
}

fn parse_typed<F: Factory>(
    factory: &F,
    path: &str,
    raw: &Value,
) -> Result<ParsedConfig, ConfigError> {
    let config: F::Config = deserialize_at(path, raw.clone())?;
    factory.validate(&config).map_err(|e| e.under(path))?;
    Ok(ParsedConfig(Arc::new(config)))
}

macro_rules! any_factory {
    ($any:ident, $typed:ident) => {
        /// Object-safe view of a factory, for the registry.
        pub trait $any: Send + Sync {
            /// The type name.
            fn type_name(&self) -> &'static str;
            /// Alternative type names.
            fn aliases(&self) -> &'static [&'static str];
            /// Stability level.
            fn stability(&self) -> Stability;
            /// Type-checks and validates a config section found at `path`.
            fn parse(&self, path: &str, raw: &Value) -> Result<ParsedConfig, ConfigError>;
        }
        impl<F: $typed> $any for F {
            fn type_name(&self) -> &'static str {
                Factory::type_name(self)
            }
            fn aliases(&self) -> &'static [&'static str] {
                Factory::aliases(self)
            }
            fn stability(&self) -> Stability {
                Factory::stability(self)
            }
            fn parse(&self, path: &str, raw: &Value) -> Result<ParsedConfig, ConfigError> {
                parse_typed(self, path, raw)
            }
        }
    };
}

mod erased {
    use super::*;
    any_factory!(ErasedReceiver, ReceiverFactory);
    any_factory!(ErasedProcessor, ProcessorFactory);
    any_factory!(ErasedExporter, ExporterFactory);
    any_factory!(ErasedExtension, ExtensionFactory);
}
pub use erased::{ErasedExporter, ErasedExtension, ErasedProcessor, ErasedReceiver};

/// Object-safe receiver factory.
pub trait AnyReceiverFactory: ErasedReceiver {
    /// Signals the receiver can produce.
    fn signals(&self) -> &'static [Signal];
    /// Builds from a parsed config.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError>;
}
impl<F: ReceiverFactory> AnyReceiverFactory for F {
    fn signals(&self) -> &'static [Signal] {
        ReceiverFactory::signals(self)
    }
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        ReceiverFactory::create(self, ctx, config.typed::<F::Config>()?, consumers)
    }
}

/// Object-safe processor factory.
pub trait AnyProcessorFactory: ErasedProcessor {
    /// Signals the processor handles.
    fn signals(&self) -> &'static [Signal];
    /// Builds from a parsed config.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError>;
}
impl<F: ProcessorFactory> AnyProcessorFactory for F {
    fn signals(&self) -> &'static [Signal] {
        ProcessorFactory::signals(self)
    }
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
        signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        ProcessorFactory::create(self, ctx, config.typed::<F::Config>()?, signal, next)
    }
}

/// Object-safe exporter factory.
pub trait AnyExporterFactory: ErasedExporter {
    /// Signals the exporter can send.
    fn signals(&self) -> &'static [Signal];
    /// Builds from a parsed config.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError>;
}
impl<F: ExporterFactory> AnyExporterFactory for F {
    fn signals(&self) -> &'static [Signal] {
        ExporterFactory::signals(self)
    }
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        ExporterFactory::create(self, ctx, config.typed::<F::Config>()?)
    }
}

/// Object-safe extension factory.
pub trait AnyExtensionFactory: ErasedExtension {
    /// Builds from a parsed config.
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
    ) -> Result<Arc<dyn Extension>, ComponentError>;
}
impl<F: ExtensionFactory> AnyExtensionFactory for F {
    fn create(
        &self,
        ctx: &CreateContext,
        config: &ParsedConfig,
    ) -> Result<Arc<dyn Extension>, ComponentError> {
        ExtensionFactory::create(self, ctx, config.typed::<F::Config>()?)
    }
}
