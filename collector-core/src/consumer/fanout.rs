//! Hands one batch to several consumers.

use super::{Capabilities, ConsumeError, Consumer};
use crate::pdata::Telemetry;
use async_trait::async_trait;
use std::sync::Arc;

/// Sends every batch to each of its consumers. Consumers are tried in order and
/// all of them get the data even when an earlier one refuses it; the first
/// error is returned. The last consumer gets the original, the others a copy.
#[derive(Clone)]
pub struct Fanout {
    consumers: Vec<Arc<dyn Consumer>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

impl Fanout {
    /// A fanout over `consumers`. With a single consumer, prefer that consumer itself.
    pub fn new(consumers: Vec<Arc<dyn Consumer>>) -> Self {
        Self { consumers }
    }

    /// One consumer as-is, or a fanout over several.
    pub fn over(mut consumers: Vec<Arc<dyn Consumer>>) -> Arc<dyn Consumer> {
        if consumers.len() == 1
            && let Some(only) = consumers.pop()
        {
            return only;
        }
        Arc::new(Self::new(consumers))
    }
}

#[async_trait]
impl Consumer for Fanout {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.consumers.split_last() else {
            return Ok(());
        };
        let mut first_error = None;
        for consumer in rest {
            if let Err(e) = consumer.consume(telemetry.clone()).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = last.consume(telemetry).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn capabilities(&self) -> Capabilities {
        // Each consumer but the last gets its own copy, so only the last one's
        // mutation can be seen upstream.
        self.consumers
            .last()
            .map(|c| c.capabilities())
            .unwrap_or_default()
    }
}
