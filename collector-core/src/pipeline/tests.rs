//! The graph with small recording components: who gets what, in which
//! order things start and stop, and which configs are refused.

use super::{Pipelines, plan};
use crate::component::*;
use crate::config::{Config, ConfigError, load};
use crate::consumer::{BoxConsumer, Capabilities, ConsumeError, Consumer};
use crate::pdata::{Payload, Signal, Telemetry, Traces};
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lifecycle events and received batches, shared by every test component.
#[derive(Default)]
struct Journal {
    events: Mutex<Vec<String>>,
    received: Mutex<Vec<(String, Telemetry)>>,
    receivers: Mutex<Vec<(String, ReceiverConsumers)>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

struct Recorder {
    name: String,
    journal: Arc<Journal>,
    next: Option<BoxConsumer>,
    mutates: bool,
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, mut telemetry: Telemetry) -> Result<(), ConsumeError> {
        match &self.next {
            // A processor: tags the spans with its name and forwards.
            Some(next) => {
                if let Payload::Traces(traces) = &mut telemetry.payload {
                    traces.modify(|resources| {
                        for span in resources
                            .iter_mut()
                            .flat_map(|r| &mut r.scope_spans)
                            .flat_map(|s| &mut s.spans)
                        {
                            span.attributes.push(KeyValue {
                                key: "seen_by".into(),
                                value: Some(AnyValue {
                                    value: Some(Value::StringValue(self.name.clone())),
                                }),
                                ..Default::default()
                            });
                        }
                    });
                }
                next.consume(telemetry).await
            }
            // An exporter: records what arrived.
            None => {
                self.journal
                    .received
                    .lock()
                    .push((self.name.clone(), telemetry));
                Ok(())
            }
        }
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mutates_data: self.mutates,
        }
    }
}

#[async_trait]
impl Lifecycle for Recorder {
    async fn start(&self) -> Result<(), ComponentError> {
        self.journal
            .events
            .lock()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        self.journal
            .events
            .lock()
            .push(format!("stop {}", self.name));
        Ok(())
    }
}

struct TestReceiver(Arc<Journal>);
impl Factory for TestReceiver {
    type Config = Empty;
    fn type_name(&self) -> &'static str {
        "src"
    }
}
impl ReceiverFactory for TestReceiver {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }
    fn create(
        &self,
        ctx: &CreateContext,
        _: &Empty,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        self.0
            .receivers
            .lock()
            .push((ctx.id.to_string(), consumers));
        Ok(Box::new(Recorder {
            name: ctx.id.to_string(),
            journal: self.0.clone(),
            next: None,
            mutates: false,
        }))
    }
}

/// A traces-only processor that tags spans (and says it mutates data).
struct TagProcessor(Arc<Journal>);
impl Factory for TagProcessor {
    type Config = Empty;
    fn type_name(&self) -> &'static str {
        "tag"
    }
}
impl ProcessorFactory for TagProcessor {
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }
    fn create(
        &self,
        ctx: &CreateContext,
        _: &Empty,
        _signal: Signal,
        next: BoxConsumer,
    ) -> Result<Arc<dyn Processor>, ComponentError> {
        Ok(Arc::new(Recorder {
            name: ctx.id.to_string(),
            journal: self.0.clone(),
            next: Some(next),
            mutates: true,
        }))
    }
}

struct SinkExporter(Arc<Journal>);
impl Factory for SinkExporter {
    type Config = Empty;
    fn type_name(&self) -> &'static str {
        "sink"
    }
}
impl ExporterFactory for SinkExporter {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }
    fn create(&self, ctx: &CreateContext, _: &Empty) -> Result<Arc<dyn Exporter>, ComponentError> {
        Ok(Arc::new(Recorder {
            name: ctx.id.to_string(),
            journal: self.0.clone(),
            next: None,
            mutates: false,
        }))
    }
}

fn factories(journal: &Arc<Journal>) -> Factories {
    let mut f = Factories::new();
    f.receiver(TestReceiver(journal.clone()))
        .and_then(|f| f.processor(TagProcessor(journal.clone())))
        .and_then(|f| f.exporter(SinkExporter(journal.clone())))
        .expect("register");
    f
}

fn config(yaml: &str) -> Config {
    let value = load::parse_yaml("test", yaml).expect("yaml");
    Config::from_value(value).expect("config")
}

fn one_span() -> Telemetry {
    Telemetry::from(Traces::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "s".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

const GRAPH: &str = r#"
receivers: {src/a: , src/b: }
processors: {tag/one: , tag/two: }
exporters: {sink/shared: , sink/only_two: }
service:
  pipelines:
    traces/one: {receivers: [src/a], processors: [tag/one], exporters: [sink/shared]}
    traces/two: {receivers: [src/a, src/b], processors: [tag/two], exporters: [sink/shared, sink/only_two]}
"#;

#[tokio::test]
async fn receivers_fan_out_to_pipelines_and_pipelines_to_exporters() {
    let journal = Arc::new(Journal::default());
    let factories = factories(&journal);
    let plan = plan(&config(GRAPH), &factories).expect("plan");
    let pipelines = Pipelines::build(&plan, &factories, &Host::new()).expect("build");
    pipelines.start().await.expect("start");

    let consumers = journal.receivers.lock().clone();
    let src_a = consumers
        .iter()
        .find(|(id, _)| id == "src/a")
        .and_then(|(_, c)| c.traces.clone())
        .expect("src/a feeds traces");
    assert!(
        consumers.iter().all(|(_, c)| c.metrics.is_none()),
        "no metrics pipeline"
    );
    src_a.consume(one_span()).await.expect("consume");

    let received = journal.received.lock().clone();
    let tags = |exporter: &str| -> Vec<Vec<String>> {
        received
            .iter()
            .filter(|(name, _)| name == exporter)
            .map(|(_, t)| match &t.payload {
                Payload::Traces(traces) => traces.resources()[0].scope_spans[0].spans[0]
                    .attributes
                    .iter()
                    .filter_map(
                        |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        },
                    )
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    // Each pipeline's processor saw its own copy: no pipeline sees another's change.
    let mut shared = tags("sink/shared");
    shared.sort();
    assert_eq!(
        shared,
        vec![vec!["tag/one".to_string()], vec!["tag/two".to_string()]]
    );
    assert_eq!(tags("sink/only_two"), vec![vec!["tag/two".to_string()]]);

    pipelines
        .shutdown(Instant::now() + Duration::from_secs(1))
        .await;
    let events = journal.events.lock().clone();
    let position = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("no {e} in {events:?}"))
    };
    // Downstream starts first; upstream stops first.
    assert!(position("start sink/shared") < position("start tag/one"));
    assert!(position("start tag/two") < position("start src/a"));
    assert!(position("stop src/b") < position("stop tag/two"));
    assert!(position("stop tag/one") < position("stop sink/shared"));
}

#[test]
fn a_component_in_a_pipeline_of_a_signal_it_lacks_is_refused() {
    let journal = Arc::new(Journal::default());
    let yaml = "receivers: {src: }\nprocessors: {tag: }\nexporters: {sink: }\nservice: {pipelines: {metrics: {receivers: [src], processors: [tag], exporters: [sink]}}}";
    let errors = plan(&config(yaml), &factories(&journal)).expect_err("tag is traces-only");
    assert_eq!(
        errors.0,
        vec![ConfigError::new(
            "service.pipelines.metrics.processors[0]",
            "processor \"tag\" does not support metrics; it supports: traces"
        )]
    );
}
