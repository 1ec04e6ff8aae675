//! The `otlphttp` exporter (alias `otlp_http`): OTLP over HTTP.
//!
//! Signals: traces, metrics, logs. Stability: beta.
//!
//! Data path: `consume` -> sending queue -> worker -> [`HttpSender`]:
//! `payload.to_protobuf()` (the received bytes when no processor changed
//! the batch) or OTLP/JSON -> compression -> `POST <endpoint>/v1/<signal>`
//! -> status mapped to success (with `partial_success` counted), retry
//! (429/502/503/504, after `Retry-After`) or permanent failure.

mod client;
mod config;
mod sender;

pub use config::{BodyEncoding, DEFAULT_HTTP_TIMEOUT, HttpCompression, OtlpHttpConfig};
pub use sender::HttpSender;

use crate::helper::QueuedExporter;
use collector_core::component::{
    ComponentError, CreateContext, Exporter, ExporterFactory, Factory, Stability,
};
use collector_core::config::ConfigError;
use collector_core::pdata::Signal;
use std::sync::Arc;

/// The `otlphttp` exporter: the exporter helper around an [`HttpSender`].
pub type OtlpHttpExporter = QueuedExporter<HttpSender>;

/// Factory of the `otlphttp` exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtlpHttpExporterFactory;

impl Factory for OtlpHttpExporterFactory {
    type Config = OtlpHttpConfig;

    fn type_name(&self) -> &'static str {
        "otlphttp"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["otlp_http"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &OtlpHttpConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ExporterFactory for OtlpHttpExporterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &OtlpHttpConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        let sender = HttpSender::new(config)?;
        Ok(Arc::new(OtlpHttpExporter::new(
            ctx,
            config.helper(),
            sender,
        )))
    }
}
