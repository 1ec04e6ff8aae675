//! Telemetry batches ("pdata"): the unit of data that flows through pipelines.
//!
//! A batch is one OTLP export request of a single signal, kept as the
//! `opentelemetry-proto` wire type. It can also carry the protobuf bytes it was
//! decoded from: as long as nothing modifies it, an exporter sends those bytes
//! instead of encoding again (protobuf repeated fields concatenate, so two
//! unmodified batches still merge without re-encoding).
//!
//! The representation is private to [`signal`] so it can change for speed
//! without touching components.

mod client;
pub mod json;
mod logs;
mod metrics;
pub mod protowire;
pub mod rpc;
mod signal;
mod telemetry;
mod traces;
mod validate;
pub(crate) mod wire;

pub use client::ClientInfo;
pub use signal::{Batch, BatchError, SignalRequest};
pub use telemetry::{Payload, Signal, Telemetry};
pub use validate::Rejected;
pub use wire::{LEADING_TRACE_ID, WireError};

/// A batch of spans.
pub type Traces =
    Batch<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>;
/// A batch of metric data points.
pub type Metrics =
    Batch<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>;
/// A batch of log records.
pub type Logs = Batch<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>;
