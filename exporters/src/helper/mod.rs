//! The exporter helper every network exporter uses, after otelcol's
//! `exporterhelper`: a bounded sending queue drained by worker tasks, a
//! timeout per attempt, and retries with exponential backoff.
//!
//! Data path: `consume` -> bounded queue per signal (by requests, items or
//! bytes) -> `num_consumers` workers -> split to the sender's size limit ->
//! timeout -> [`Sender::send`] -> retry with backoff -> self-metrics.
//!
//! With `sending_queue.storage` naming a storage extension (`file_storage`),
//! the queue is persistent: a request is stored before `consume` returns and
//! deleted once sent or given up on; requests left stored by a crash or a
//! shutdown are queued again at start (see `persistent.rs`).
//!
//! An exporter plugs in by implementing [`Sender`] and wrapping it in a
//! [`QueuedExporter`], which is a complete [`Exporter`](collector_core::component::Exporter).

mod config;
mod exporter;
mod metrics;
mod persistent;
pub(crate) mod queue;
pub(crate) mod retry;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_TIMEOUT, HelperConfig, QueueBatchConfig, QueueConfig, RetryConfig, Sizer,
};
pub use exporter::QueuedExporter;
pub use metrics::ExporterMetrics;

use async_trait::async_trait;
use collector_core::consumer::ConsumeError;
use collector_core::pdata::Payload;

/// What the destination said about a request it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Items the destination rejected (OTLP `partial_success`); counted as
    /// failed, the rest as sent.
    pub rejected: u64,
    /// The destination's explanation of a partial success.
    pub error_message: String,
}

impl SendOutcome {
    /// Everything was accepted.
    pub fn accepted() -> Self {
        Self::default()
    }

    /// Part was rejected.
    pub fn partial(rejected: u64, error_message: impl Into<String>) -> Self {
        Self {
            rejected,
            error_message: error_message.into(),
        }
    }

    /// True when the destination reported a partial success.
    pub fn is_partial(&self) -> bool {
        self.rejected > 0 || !self.error_message.is_empty()
    }
}

/// Sends one request to a destination; the transport of an exporter.
///
/// The helper calls it again for retries, so it takes the payload by
/// reference; an implementation should send `payload.to_protobuf()` (the
/// original bytes of an unmodified batch) rather than encode anew.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// One attempt. Errors say whether a retry may help
    /// ([`ConsumeError::is_retryable`]) and how long to wait
    /// ([`ConsumeError::retry_after`]).
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError>;

    /// The largest protobuf encoding the destination takes in one request;
    /// bigger payloads are split by items before sending. `None`: no limit.
    fn max_request_bytes(&self) -> Option<usize> {
        None
    }

    /// An attempt got no answer within the exporter's `timeout`. That says
    /// nothing about whether its connection is alive: after a blackhole (a
    /// path that swallows bytes without resetting anything) it is dead, yet
    /// nothing closes it. A sender that keeps a connection drops it here, so
    /// the next attempt dials a new one (attempts still on the old one end
    /// as they would). Default: nothing to drop.
    fn unanswered(&self) {}
}
