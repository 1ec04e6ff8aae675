//! Components and their factories.
//!
//! A factory knows one otelcol component type (`otlp`, `batch`, ...): it
//! type-checks the component's config section, says which signals it
//! supports, and builds instances. [`Factories`] is the set a binary offers.

pub mod control;
mod factory;
mod host;
mod id;
mod kind;
mod registry;
pub mod storage;

pub use factory::{
    AnyExporterFactory, AnyExtensionFactory, AnyProcessorFactory, AnyReceiverFactory,
    CreateContext, ErasedExporter, ErasedExtension, ErasedProcessor, ErasedReceiver,
    ExporterFactory, ExtensionFactory, Factory, ParsedConfig, ProcessorFactory, ReceiverConsumers,
    ReceiverFactory, Stability,
};
pub use host::{BuildInfo, HealthState, HealthStatus, Host, ListenerPool, ServiceDirectory};
pub use id::ComponentId;
pub use kind::Kind;
pub use registry::{Factories, FactoryError};

use crate::consumer::Consumer;
use async_trait::async_trait;
use std::time::Instant;

/// A component failed to build, start or stop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

impl ComponentError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Start and stop of a running component.
#[async_trait]
pub trait Lifecycle: Send + Sync + 'static {
    /// Starts the component (binds ports, spawns tasks). Called once, after
    /// everything downstream of it started.
    async fn start(&self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Stops the component: receivers stop accepting, processors flush,
    /// exporters drain their queues, each by `deadline` at the latest.
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let _ = deadline;
        Ok(())
    }
}

/// A receiver: takes data in and hands it to its pipelines' consumers.
pub trait Receiver: Lifecycle {}
impl<T: Lifecycle> Receiver for T {}

/// A processor: a consumer with a lifecycle, built once per pipeline.
pub trait Processor: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> Processor for T {}

/// An exporter: a consumer with a lifecycle, shared by every pipeline that lists it.
pub trait Exporter: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> Exporter for T {}

/// An extension: runs beside the pipelines.
pub trait Extension: Lifecycle {}
impl<T: Lifecycle> Extension for T {}
