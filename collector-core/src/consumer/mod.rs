//! The consumer contract between pipeline stages.
//!
//! Every processor and exporter is a [`Consumer`]; receivers hold one per
//! signal. `consume` returning `Ok` means the next stage *accepted* the data
//! (took responsibility for it); only then may a receiver acknowledge.
//! Components that accept data into their own buffers send it on from
//! their own tasks through a [`NextStage`], which retries refusals.

mod error;
mod fanout;
mod next_stage;

pub use error::{ConsumeError, ErrorKind};
pub use fanout::Fanout;
pub use next_stage::{NextStage, RETRY_INITIAL, RETRY_MAX, Undelivered};

use crate::pdata::Telemetry;
use async_trait::async_trait;
use std::sync::Arc;

/// What a consumer does with the data it gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The consumer changes the data in place, so a fanout must hand it a
    /// copy of its own when others see the same batch.
    pub mutates_data: bool,
}

/// A stage that accepts telemetry.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Hands a batch to this stage. `Ok` means accepted; an error says whether
    /// the sender may retry (see [`ConsumeError::is_retryable`]).
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError>;

    /// What this consumer does with data.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// A shared consumer handle.
pub type BoxConsumer = Arc<dyn Consumer>;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + ?Sized>() {}

    #[test]
    fn consumer_handles_are_send_and_sync() {
        assert_send_sync::<dyn Consumer>();
        assert_send_sync::<BoxConsumer>();
        assert_send_sync::<ConsumeError>();
    }
}
