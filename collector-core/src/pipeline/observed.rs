//! Counts items entering and leaving a processor
//! (`otelcol_processor_incoming_items` / `otelcol_processor_outgoing_items`).

use crate::component::{ComponentError, Lifecycle, Processor};
use crate::consumer::{BoxConsumer, Capabilities, ConsumeError, Consumer};
use crate::observe::Counter;
use crate::pdata::Telemetry;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

/// Counts items, then forwards to the inner consumer.
pub(crate) struct Counted {
    pub(crate) inner: BoxConsumer,
    pub(crate) items: Counter,
}

#[async_trait]
impl Consumer for Counted {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.items.add(telemetry.item_count() as u64);
        self.inner.consume(telemetry).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// A processor with its incoming items counted.
pub(crate) struct CountedProcessor {
    pub(crate) inner: Arc<dyn Processor>,
    pub(crate) incoming: Counter,
}

#[async_trait]
impl Consumer for CountedProcessor {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.incoming.add(telemetry.item_count() as u64);
        self.inner.consume(telemetry).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[async_trait]
impl Lifecycle for CountedProcessor {
    async fn start(&self) -> Result<(), ComponentError> {
        self.inner.start().await
    }
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        self.inner.shutdown(deadline).await
    }
}
