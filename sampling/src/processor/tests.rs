use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use collector_core::component::{ComponentId, ErasedProcessor, Host, Lifecycle};
use collector_core::consumer::{ConsumeError, Consumer, ErrorKind};
use collector_core::pdata::{Payload, Telemetry, Traces};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use parking_lot::Mutex;

use super::instance::QueueLimits;
use super::*;

/// Backpressure, and delivery that never holds decisions back.
mod delivery;

const WAIT: Duration = Duration::from_secs(10);

fn trace_id(trace: u64) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[8..].copy_from_slice(&trace.to_be_bytes());
    id
}

fn trace_of(span: &Span) -> u64 {
    let mut last = [0u8; 8];
    last.copy_from_slice(&span.trace_id[8..16]);
    u64::from_be_bytes(last)
}

fn span(trace: u64, name: &str, code: StatusCode) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: vec![7; 8],
        name: name.into(),
        status: Some(Status {
            code: code as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> Telemetry {
    Telemetry::from(Traces::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

/// `(trace, span name)` of every span in a delivered batch.
fn spans_of(telemetry: &Telemetry) -> Vec<(u64, String)> {
    match &telemetry.payload {
        Payload::Traces(batch) => batch
            .resources()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| (trace_of(s), s.name.clone()))
            .collect(),
        other => panic!("expected traces, got {:?}", other.signal()),
    }
}

/// Records what it accepts; refuses (retryably) while closed.
struct Recorder {
    open: AtomicBool,
    attempts: AtomicUsize,
    batches: Mutex<Vec<Telemetry>>,
}

impl Recorder {
    fn new(open: bool) -> Arc<Self> {
        Arc::new(Recorder {
            open: AtomicBool::new(open),
            attempts: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
        })
    }

    fn deliveries(&self) -> Vec<Vec<(u64, String)>> {
        self.batches.lock().iter().map(spans_of).collect()
    }

    fn spans(&self) -> Vec<(u64, String)> {
        let mut all: Vec<_> = self.deliveries().into_iter().flatten().collect();
        all.sort();
        all
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if !self.open.load(Ordering::SeqCst) {
            return Err(ConsumeError::resource_exhausted("closed", None));
        }
        self.batches.lock().push(telemetry);
        Ok(())
    }
}

struct Fixture {
    processor: TailSamplingProcessor,
    host: Arc<Host>,
}

fn build(yaml: &str, next: Arc<Recorder>, limits: QueueLimits) -> Fixture {
    let config = TailSamplingConfig::from_yaml(yaml).unwrap();
    config.validate().unwrap();
    let host = Host::new();
    let ctx = collector_core::component::CreateContext {
        id: ComponentId::new("tail_sampling", None),
        host: host.clone(),
    };
    let processor = TailSamplingProcessor::with_limits(&ctx, &config, next, limits).unwrap();
    Fixture { processor, host }
}

impl Fixture {
    async fn start(yaml: &str, next: Arc<Recorder>) -> Fixture {
        Self::start_with(yaml, next, QueueLimits::default()).await
    }

    async fn start_with(yaml: &str, next: Arc<Recorder>, limits: QueueLimits) -> Fixture {
        let f = build(yaml, next, limits);
        f.processor.start().await.unwrap();
        f
    }

    async fn consume(&self, telemetry: Telemetry) {
        if let Err(e) = self.processor.consume(telemetry).await {
            panic!("refused: {e}");
        }
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.host.metrics.sum(
            &format!("otelcol_processor_tail_sampling_{name}"),
            &[&[("processor", "tail_sampling")], labels].concat(),
        )
    }

    fn dropped(&self) -> f64 {
        self.host
            .metrics
            .value(
                "otelcol_processor_dropped_items",
                &[("processor", "tail_sampling"), ("otel_signal", "traces")],
            )
            .unwrap_or(0.0)
    }

    async fn shutdown_within(&self, grace: Duration) {
        let result =
            tokio::time::timeout(WAIT, self.processor.shutdown(Instant::now() + grace)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("shutdown failed: {e}"),
            Err(_) => panic!("shutdown did not return"),
        }
    }
}

/// Lets the shard tasks run what they have to without moving paused time.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Waits (in real time) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let polling = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(WAIT, polling).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

const ERRORS: &str = r#"
decision_wait: 10s
num_shards: 3
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"#;

#[tokio::test(start_paused = true)]
async fn a_trace_split_across_requests_is_decided_once_and_whole() {
    let next = Recorder::new(true);
    let f = Fixture::start(ERRORS, next.clone()).await;
    // Trace 1 gets an error in its second part; trace 2 never does. Parts
    // come from different services, 3 s apart.
    f.consume(request(
        "front",
        vec![span(1, "1a", StatusCode::Ok), span(2, "2a", StatusCode::Ok)],
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.consume(request(
        "back",
        vec![
            span(2, "2b", StatusCode::Unset),
            span(1, "1b", StatusCode::Error),
        ],
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.consume(request("db", vec![span(1, "1c", StatusCode::Unset)]))
        .await;
    settle().await;
    assert_eq!(f.metric("sampling_traces_on_memory", &[]), 2.0);
    assert!(f.metric("sampling_buffered_bytes", &[]) > 0.0);

    // Due 10 s after the first span: nothing before.
    tokio::time::sleep(Duration::from_millis(3_990)).await;
    assert!(next.deliveries().is_empty(), "{:?}", next.deliveries());
    tokio::time::sleep(Duration::from_millis(20)).await;
    settle().await;

    let deliveries = next.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(
        next.spans(),
        [(1, "1a".to_string()), (1, "1b".into()), (1, "1c".into())]
    );
    // Three resources, one per service: the trace's spans kept theirs.
    match &next.batches.lock()[0].payload {
        Payload::Traces(batch) => assert_eq!(batch.resources().len(), 3),
        other => panic!("{:?}", other.signal()),
    }

    assert_eq!(
        f.metric("global_count_traces_sampled", &[("sampled", "true")]),
        1.0
    );
    assert_eq!(
        f.metric("global_count_traces_sampled", &[("sampled", "false")]),
        1.0
    );
    assert_eq!(
        f.metric(
            "count_traces_sampled",
            &[
                ("policy", "errors"),
                ("sampled", "true"),
                ("decision", "sampled")
            ]
        ),
        1.0
    );
    assert_eq!(
        f.metric(
            "count_traces_sampled",
            &[("policy", "errors"), ("sampled", "false")]
        ),
        1.0
    );
    assert_eq!(f.metric("new_trace_id_received", &[]), 2.0);
    assert_eq!(f.metric("sampling_traces_on_memory", &[]), 0.0);
    assert_eq!(f.metric("sampling_buffered_bytes", &[]), 0.0);
    // Decided on time: within the first latency bucket (0 ms late).
    let text = f.host.metrics.render_prometheus();
    assert!(
        text.contains(
            "otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor=\"tail_sampling\",le=\"0\"} 2"
        ),
        "{text}"
    );
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn late_spans_follow_the_decision_at_once() {
    let next = Recorder::new(true);
    let f = Fixture::start(ERRORS, next.clone()).await;
    f.consume(request(
        "svc",
        vec![
            span(1, "1a", StatusCode::Error),
            span(2, "2a", StatusCode::Ok),
        ],
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(next.spans(), [(1, "1a".to_string())]);

    // Late: one span of each, 5 s after the decision.
    tokio::time::sleep(Duration::from_secs(5)).await;
    f.consume(request(
        "svc",
        vec![
            span(2, "2late", StatusCode::Error),
            span(1, "1late", StatusCode::Ok),
        ],
    ))
    .await;
    settle().await;
    assert_eq!(
        next.spans(),
        [(1, "1a".to_string()), (1, "1late".to_string())]
    );
    assert_eq!(
        f.metric("early_releases_from_cache_decision", &[("sampled", "true")]),
        1.0
    );
    assert_eq!(
        f.metric(
            "early_releases_from_cache_decision",
            &[("sampled", "false")]
        ),
        1.0
    );
    assert_eq!(f.metric("new_trace_id_received", &[]), 2.0);
    let age = f.host.metrics.render_prometheus();
    assert!(
        age.contains("otelcol_processor_tail_sampling_sampling_late_span_age_sum{processor=\"tail_sampling\"} 12"),
        "{age}"
    );
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_decides_every_buffered_trace_and_delivers_the_sampled_ones() {
    let next = Recorder::new(true);
    let yaml = r#"
decision_wait: 1h
num_shards: 4
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"#;
    let f = Fixture::start(yaml, next.clone()).await;
    for t in 0..40u64 {
        let code = if t % 4 == 0 {
            StatusCode::Error
        } else {
            StatusCode::Ok
        };
        f.consume(request(
            "svc",
            vec![
                span(t, &format!("{t}-x"), code),
                span(t, &format!("{t}-y"), StatusCode::Ok),
            ],
        ))
        .await;
    }
    f.shutdown_within(Duration::from_secs(5)).await;
    let spans = next.spans();
    assert_eq!(spans.len(), 20, "{spans:?}");
    assert!(spans.iter().all(|(t, _)| t % 4 == 0), "{spans:?}");
    assert_eq!(
        f.metric("global_count_traces_sampled", &[("sampled", "true")]),
        10.0
    );
    assert_eq!(
        f.metric("global_count_traces_sampled", &[("sampled", "false")]),
        30.0
    );
    assert_eq!(f.metric("sampling_traces_on_memory", &[]), 0.0);
    assert_eq!(f.dropped(), 0.0);
    assert_eq!(f.processor.held_spans(), 0);

    let after = f
        .processor
        .consume(request("svc", vec![span(99, "late", StatusCode::Error)]))
        .await
        .expect_err("closed");
    assert_eq!(after.kind(), ErrorKind::Unavailable);
    // A second shutdown is a no-op.
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_with_drop_pending_traces_delivers_nothing_and_counts_them() {
    let next = Recorder::new(true);
    let yaml = r#"
decision_wait: 1h
num_shards: 2
drop_pending_traces_on_shutdown: true
policies: [{name: all, type: always_sample}]
"#;
    let f = Fixture::start(yaml, next.clone()).await;
    for t in 0..6u64 {
        f.consume(request("svc", vec![span(t, "s", StatusCode::Ok)]))
            .await;
    }
    f.shutdown_within(Duration::from_secs(5)).await;
    assert!(next.spans().is_empty());
    assert_eq!(f.metric("sampling_trace_dropped_too_early", &[]), 6.0);
    assert_eq!(f.dropped(), 0.0);
}

#[tokio::test]
async fn shutdown_stops_at_the_deadline_and_counts_what_was_not_delivered() {
    let next = Recorder::new(false);
    let yaml = "decision_wait: 1h\nnum_shards: 2\npolicies: [{name: all, type: always_sample}]";
    let f = Fixture::start(yaml, next.clone()).await;
    for t in 0..5u64 {
        f.consume(request(
            "svc",
            vec![span(t, "x", StatusCode::Ok), span(t, "y", StatusCode::Ok)],
        ))
        .await;
    }
    let started = Instant::now();
    f.shutdown_within(Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(next.attempts.load(Ordering::SeqCst) >= 1);
    assert_eq!(f.dropped(), 10.0);
    assert_eq!(f.processor.held_spans(), 0);
}

#[tokio::test]
async fn sampled_spans_carry_the_policy_with_record_policy() {
    let next = Recorder::new(true);
    let yaml = r#"
decision_wait: 1h
num_shards: 1
record_policy: true
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"#;
    let f = Fixture::start(yaml, next.clone()).await;
    f.consume(request("svc", vec![span(1, "x", StatusCode::Error)]))
        .await;
    f.shutdown_within(Duration::from_secs(5)).await;
    let batches = next.batches.lock();
    let Payload::Traces(batch) = &batches[0].payload else {
        panic!("traces expected");
    };
    let scope = batch.resources()[0].scope_spans[0].scope.as_ref().unwrap();
    let attr = scope
        .attributes
        .iter()
        .find(|kv| kv.key == crate::POLICY_ATTRIBUTE)
        .expect("tailsampling.policy");
    assert_eq!(
        attr.value,
        Some(AnyValue {
            value: Some(Value::StringValue("errors".into()))
        })
    );
}

#[tokio::test]
async fn ingestion_keeps_going_while_traces_are_decided() {
    // Real time, several shards, many small requests: every trace is
    // decided and the sampled ones arrive whole.
    let next = Recorder::new(true);
    let yaml = r#"
decision_wait: 50ms
num_shards: 4
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"#;
    let f = Fixture::start(yaml, next.clone()).await;
    for t in 0..400u64 {
        let code = if t % 10 == 0 {
            StatusCode::Error
        } else {
            StatusCode::Unset
        };
        f.consume(request(
            "svc",
            vec![span(t, "a", code), span(t, "b", StatusCode::Unset)],
        ))
        .await;
    }
    wait_until("every decision", || {
        f.metric("global_count_traces_sampled", &[]) >= 400.0
    })
    .await;
    wait_until("the sampled spans", || next.spans().len() >= 80).await;
    let spans = next.spans();
    assert_eq!(spans.len(), 80);
    assert!(spans.iter().all(|(t, _)| t % 10 == 0));
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[test]
fn the_factory_reports_config_errors_with_their_full_path() {
    let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        r#"
decision_wait: 10s
policies:
  - {name: ok, type: always_sample}
  - {name: bad, type: string_attribute, string_attribute: {key: k, values: ['(unclosed'], enabled_regex_matching: true}}
"#,
    )
    .unwrap();
    let error = ErasedProcessor::parse(&TailSamplingFactory, "processors.tail_sampling", &raw)
        .expect_err("invalid regex");
    assert_eq!(
        error.path,
        "processors.tail_sampling.policies[1].string_attribute.values[0]"
    );
    assert!(error.message.contains("regex"), "{}", error.message);

    let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        "num_shards: -1\nnum_traces: 0\npolicies: [{name: a, type: always_sample}]",
    )
    .unwrap();
    let error = ErasedProcessor::parse(&TailSamplingFactory, "processors.tail_sampling/x", &raw)
        .expect_err("negative shards");
    assert_eq!(error.path, "processors.tail_sampling/x.num_shards");

    let raw: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("num_traces: 0\npolicies: [{name: a, type: always_sample}]")
            .unwrap();
    let error = ErasedProcessor::parse(&TailSamplingFactory, "processors.tail_sampling", &raw)
        .expect_err("no traces");
    assert_eq!(error.path, "processors.tail_sampling.num_traces");

    ErasedProcessor::parse(
        &TailSamplingFactory,
        "processors.tail_sampling",
        &serde_yaml_ng::from_str("policies: [{name: a, type: always_sample}]").unwrap(),
    )
    .unwrap();
}
