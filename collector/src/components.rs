//! The one place that knows every component, like otelcol's generated
//! `components.go`: each factory is registered under its otelcol type name.

use collector_core::component::{Factories, FactoryError};
use collector_core::extension::file_storage::FileStorageFactory;
use collector_core::extension::health_check::HealthCheckFactory;
use collector_core::extension::opamp::OpampFactory;
use collector_core::processor::{BatchFactory, MemoryLimiterFactory, ResourceFactory};
use collector_core::receiver::otlp::OtlpReceiverFactory;

/// Every component this distribution offers.
pub fn all() -> Result<Factories, FactoryError> {
    let mut factories = Factories::new();
    factories.receiver(OtlpReceiverFactory)?;
    factories.processor(BatchFactory)?;
    factories.processor(ResourceFactory)?;
    factories.processor(MemoryLimiterFactory)?;
    factories.processor(sampling::processor::TailSamplingFactory)?;
    factories.extension(HealthCheckFactory)?;
    factories.extension(FileStorageFactory)?;
    factories.extension(OpampFactory)?;
    exporters::register(&mut factories).map_err(|exporters::Error::Register(e)| e)?;
    Ok(factories)
}
