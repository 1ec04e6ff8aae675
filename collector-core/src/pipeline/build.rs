//! Building a [`Plan`] into running components, and their start/stop order.

use super::observed::{Counted, CountedProcessor};
use super::plan::Plan;
use crate::component::{
    ComponentError, ComponentId, CreateContext, Exporter, Extension, Factories, Host, Kind,
    Processor, Receiver, ReceiverConsumers,
};
use crate::config::PipelineId;
use crate::consumer::{BoxConsumer, Fanout};
use crate::pdata::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A pipeline's processors, in pipeline order.
type ProcessorChain = Vec<(ComponentId, Arc<dyn Processor>)>;

/// One generation of built components: everything a config describes.
pub struct Pipelines {
    extensions: Vec<(ComponentId, Arc<dyn Extension>)>,
    exporters: Vec<(ComponentId, Arc<dyn Exporter>)>,
    /// Per pipeline, processors in pipeline order.
    processors: Vec<(PipelineId, ProcessorChain)>,
    receivers: Vec<(ComponentId, Box<dyn Receiver>)>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field(
                "receivers",
                &self
                    .receivers
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>(),
            )
            .field(
                "pipelines",
                &self
                    .processors
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>(),
            )
            .field(
                "exporters",
                &self
                    .exporters
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn build_error(kind: Kind, id: &ComponentId, e: ComponentError) -> ComponentError {
    ComponentError::new(format!("{}.{id}: {e}", kind.section()))
}

impl Pipelines {
    /// Builds every component of `plan`, exporters first so that each stage's
    /// downstream exists when it is built.
    pub fn build(
        plan: &Plan,
        factories: &Factories,
        host: &Arc<Host>,
    ) -> Result<Self, ComponentError> {
        let ctx = |id: &ComponentId| CreateContext {
            id: id.clone(),
            host: host.clone(),
        };
        let parsed = |kind: Kind, id: &ComponentId| {
            plan.configs
                .get(&(kind, id.clone()))
                .ok_or_else(|| build_error(kind, id, ComponentError::new("not in the plan")))
        };
        let missing =
            |kind: Kind, id: &ComponentId| build_error(kind, id, ComponentError::new("no factory"));

        let mut extensions = Vec::new();
        for id in &plan.extensions {
            let factory = factories
                .get_extension(id.type_name())
                .ok_or_else(|| missing(Kind::Extension, id))?;
            let ext = factory
                .create(&ctx(id), parsed(Kind::Extension, id)?)
                .map_err(|e| build_error(Kind::Extension, id, e))?;
            extensions.push((id.clone(), ext));
        }

        let mut exporters: BTreeMap<ComponentId, Arc<dyn Exporter>> = BTreeMap::new();
        for (_, pipeline) in &plan.pipelines {
            for id in &pipeline.exporters {
                if exporters.contains_key(id) {
                    continue;
                }
                let factory = factories
                    .get_exporter(id.type_name())
                    .ok_or_else(|| missing(Kind::Exporter, id))?;
                let exporter = factory
                    .create(&ctx(id), parsed(Kind::Exporter, id)?)
                    .map_err(|e| build_error(Kind::Exporter, id, e))?;
                exporters.insert(id.clone(), exporter);
            }
        }

        let mut processors = Vec::new();
        // Pipeline entry points each receiver feeds, by signal.
        let mut feeds: BTreeMap<(ComponentId, Signal), Vec<BoxConsumer>> = BTreeMap::new();
        for (pid, pipeline) in &plan.pipelines {
            let signal = pid.signal;
            let outputs: Vec<BoxConsumer> = pipeline
                .exporters
                .iter()
                .filter_map(|id| exporters.get(id).map(|e| e.clone() as BoxConsumer))
                .collect();
            let mut next = Fanout::over(outputs);
            let mut built = Vec::new();
            for id in pipeline.processors.iter().rev() {
                let labels = [
                    ("processor", id.to_string()),
                    ("otel_signal", signal.as_str().to_string()),
                    ("pipeline", pid.to_string()),
                ];
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let outgoing = host.metrics.counter(
                    "otelcol_processor_outgoing_items",
                    "Items the processor passed on.",
                    &labels,
                );
                let incoming = host.metrics.counter(
                    "otelcol_processor_incoming_items",
                    "Items the processor received.",
                    &labels,
                );
                let next_counted: BoxConsumer = Arc::new(Counted {
                    inner: next,
                    items: outgoing,
                });
                let factory = factories
                    .get_processor(id.type_name())
                    .ok_or_else(|| missing(Kind::Processor, id))?;
                let processor = factory
                    .create(&ctx(id), parsed(Kind::Processor, id)?, signal, next_counted)
                    .map_err(|e| build_error(Kind::Processor, id, e))?;
                let processor: Arc<dyn Processor> = Arc::new(CountedProcessor {
                    inner: processor,
                    incoming,
                });
                next = processor.clone();
                built.push((id.clone(), processor));
            }
            built.reverse();
            processors.push((pid.clone(), built));
            for id in &pipeline.receivers {
                feeds
                    .entry((id.clone(), signal))
                    .or_default()
                    .push(next.clone());
            }
        }
        let mut receiver_consumers: BTreeMap<ComponentId, ReceiverConsumers> = BTreeMap::new();
        for ((id, signal), entries) in feeds {
            receiver_consumers
                .entry(id)
                .or_default()
                .set(signal, Fanout::over(entries));
        }

        let mut receivers = Vec::new();
        for (id, consumers) in receiver_consumers {
            let factory = factories
                .get_receiver(id.type_name())
                .ok_or_else(|| missing(Kind::Receiver, &id))?;
            let receiver = factory
                .create(&ctx(&id), parsed(Kind::Receiver, &id)?, consumers)
                .map_err(|e| build_error(Kind::Receiver, &id, e))?;
            receivers.push((id, receiver));
        }

        Ok(Self {
            extensions,
            exporters: exporters.into_iter().collect(),
            processors,
            receivers,
        })
    }

    /// Starts extensions, exporters, processors (each pipeline from its end)
    /// and receivers last, so nothing receives data before its downstream runs.
    /// On failure, whatever started is shut down again.
    pub async fn start(&self) -> Result<(), ComponentError> {
        let result = self.start_all().await;
        if result.is_err() {
            self.shutdown(Instant::now() + std::time::Duration::from_secs(5))
                .await;
        }
        result
    }

    async fn start_all(&self) -> Result<(), ComponentError> {
        for (id, ext) in &self.extensions {
            ext.start()
                .await
                .map_err(|e| build_error(Kind::Extension, id, e))?;
        }
        for (id, exporter) in &self.exporters {
            exporter
                .start()
                .await
                .map_err(|e| build_error(Kind::Exporter, id, e))?;
        }
        for (_, processors) in &self.processors {
            for (id, processor) in processors.iter().rev() {
                processor
                    .start()
                    .await
                    .map_err(|e| build_error(Kind::Processor, id, e))?;
            }
        }
        for (id, receiver) in &self.receivers {
            receiver
                .start()
                .await
                .map_err(|e| build_error(Kind::Receiver, id, e))?;
        }
        Ok(())
    }

    /// Stops receivers first, then each pipeline's processors in order (each
    /// flushes into the next), then exporters (which drain their queues), then
    /// extensions. Errors are logged; shutdown always goes on.
    pub async fn shutdown(&self, deadline: Instant) {
        for (id, receiver) in &self.receivers {
            if let Err(e) = receiver.shutdown(deadline).await {
                tracing::warn!(receiver = %id, error = %e, "receiver shutdown failed");
            }
        }
        for (_, processors) in &self.processors {
            for (id, processor) in processors {
                if let Err(e) = processor.shutdown(deadline).await {
                    tracing::warn!(processor = %id, error = %e, "processor shutdown failed");
                }
            }
        }
        for (id, exporter) in &self.exporters {
            if let Err(e) = exporter.shutdown(deadline).await {
                tracing::warn!(exporter = %id, error = %e, "exporter shutdown failed");
            }
        }
        for (id, ext) in self.extensions.iter().rev() {
            if let Err(e) = ext.shutdown(deadline).await {
                tracing::warn!(extension = %id, error = %e, "extension shutdown failed");
            }
        }
    }
}
