//! The `resource` processor instance: applies the actions to every resource
//! of a batch.

use super::actions::{self, Action};
use crate::component::Lifecycle;
use crate::consumer::{BoxConsumer, Capabilities, ConsumeError, Consumer};
use crate::pdata::{Batch, ClientInfo, Payload, SignalRequest, Telemetry};
use async_trait::async_trait;
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Applies the configured attribute actions to the resource of every
/// resource element, then hands the batch on.
pub struct ResourceProcessor {
    actions: Vec<Action>,
    next: BoxConsumer,
}

impl std::fmt::Debug for ResourceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceProcessor")
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

impl ResourceProcessor {
    pub(super) fn new(actions: Vec<Action>, next: BoxConsumer) -> Self {
        Self { actions, next }
    }

    fn process<R>(&self, batch: &mut Batch<R>, client: &ClientInfo)
    where
        R: SignalRequest,
    {
        // Only touch (and so forget the original encoding of) batches with
        // something to change.
        if batch.resources().is_empty() {
            return;
        }
        batch.modify(|elements| {
            for element in elements.iter_mut() {
                let resource = R::resource_mut(element).get_or_insert_with(Resource::default);
                actions::apply(&self.actions, &mut resource.attributes, client);
            }
        });
    }
}

#[async_trait]
impl Consumer for ResourceProcessor {
    async fn consume(&self, mut telemetry: Telemetry) -> Result<(), ConsumeError> {
        let client = &telemetry.client;
        match &mut telemetry.payload {
            Payload::Traces(b) => self.process(b, client),
            Payload::Metrics(b) => self.process(b, client),
            Payload::Logs(b) => self.process(b, client),
        }
        self.next.consume(telemetry).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { mutates_data: true }
    }
}

#[async_trait]
impl Lifecycle for ResourceProcessor {}
