//! The `otlp` exporter (alias `otlp_grpc`): OTLP over gRPC.
//!
//! Signals: traces, metrics, logs. Stability: beta.
//!
//! Data path: `consume` -> sending queue -> worker -> split to 4 MiB ->
//! [`GrpcSender`] writes `payload.to_protobuf()` (the received bytes when no
//! processor changed the batch) into a gRPC frame, gzip/zstd, unary `Export`
//! -> status mapped to retry or failure, `partial_success` counted.

mod config;
mod grpc;
mod tls;

#[cfg(test)]
mod tests;

pub use config::{Compression, KeepaliveConfig, OtlpConfig, Target, TlsConfig};
pub use grpc::{
    GrpcSender, LOGS_PATH, MAX_REQUEST_BYTES, METRICS_PATH, TRACES_PATH, status_to_error,
};

use crate::helper::QueuedExporter;
use collector_core::component::{
    ComponentError, CreateContext, Exporter, ExporterFactory, Factory, Stability,
};
use collector_core::config::ConfigError;
use collector_core::pdata::Signal;
use std::sync::Arc;

/// The `otlp` exporter: the exporter helper around a [`GrpcSender`].
pub type OtlpExporter = QueuedExporter<GrpcSender>;

/// Factory of the `otlp` exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtlpExporterFactory;

impl Factory for OtlpExporterFactory {
    type Config = OtlpConfig;

    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["otlp_grpc"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &OtlpConfig) -> Result<(), ConfigError> {
        config.validate(true)
    }
}

impl ExporterFactory for OtlpExporterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &OtlpConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        let sender = GrpcSender::new(config, &config.endpoint)?;
        Ok(Arc::new(OtlpExporter::new(ctx, config.helper(), sender)))
    }
}
