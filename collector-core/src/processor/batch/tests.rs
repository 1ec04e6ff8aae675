use super::processor::BufferLimits;
use super::*;
use crate::component::{ComponentId, ErasedProcessor, Host, Lifecycle};
use crate::consumer::{ConsumeError, Consumer, ErrorKind};
use crate::pdata::{ClientInfo, Payload, Telemetry, Traces};
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(10);

fn request(names: &[String]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|name| Span {
                        name: name.clone(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn names(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// A decoded batch of `n` spans named `tag-0..`, without its encoding.
fn spans(tag: &str, n: usize) -> Telemetry {
    Telemetry::from(Traces::new(request(&names(tag, n))))
}

/// The same, decoded from protobuf bytes so it keeps them (the pass-through path).
fn encoded_spans(tag: &str, n: usize) -> Telemetry {
    let bytes = request(&names(tag, n)).encode_to_vec();
    match Traces::decode(bytes.into()) {
        Ok(batch) => Telemetry::from(batch),
        Err(e) => panic!("{e}"),
    }
}

fn with_metadata(mut telemetry: Telemetry, pairs: &[(&str, &str)]) -> Telemetry {
    telemetry.client = ClientInfo::with_metadata(
        None,
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    telemetry
}

fn span_names(telemetry: &Telemetry) -> Vec<String> {
    match &telemetry.payload {
        Payload::Traces(batch) => batch
            .resources()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect(),
        other => panic!("expected traces, got {:?}", other.signal()),
    }
}

/// Records every batch it accepts.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Telemetry>>,
    changed: Notify,
}

impl Recorder {
    fn sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .iter()
            .map(Telemetry::item_count)
            .collect()
    }

    fn items(&self) -> usize {
        self.sizes().iter().sum()
    }

    fn all_names(&self) -> Vec<String> {
        self.batches.lock().iter().flat_map(span_names).collect()
    }

    async fn wait_items(&self, n: usize) {
        let waiting = async {
            loop {
                let changed = self.changed.notified();
                if self.items() >= n {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(WAIT, waiting).await.is_err() {
            panic!("expected {n} items, got {:?}", self.sizes());
        }
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.batches.lock().push(telemetry);
        self.changed.notify_waiters();
        Ok(())
    }
}

/// Refuses (retryably) while closed or for its first `refusals` attempts,
/// then hands batches to a recorder.
struct Gate {
    open: AtomicBool,
    refusals: AtomicUsize,
    attempts: AtomicUsize,
    error: ConsumeError,
    inner: Arc<Recorder>,
}

impl Gate {
    fn new(open: bool, refusals: usize, error: ConsumeError) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicBool::new(open),
            refusals: AtomicUsize::new(refusals),
            attempts: AtomicUsize::new(0),
            error,
            inner: Arc::new(Recorder::default()),
        })
    }
}

#[async_trait]
impl Consumer for Gate {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if !self.open.load(Ordering::SeqCst) {
            return Err(self.error.clone());
        }
        let refuse = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Err(self.error.clone());
        }
        self.inner.consume(telemetry).await
    }
}

struct Fixture {
    processor: BatchProcessor,
    host: Arc<Host>,
}

fn build(config: BatchConfig, next: BoxConsumer) -> Fixture {
    let limits = BufferLimits::for_config(&config);
    build_with(config, next, limits)
}

fn build_with(config: BatchConfig, next: BoxConsumer, limits: BufferLimits) -> Fixture {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("batch", None),
        host: host.clone(),
    };
    Fixture {
        processor: BatchProcessor::with_limits(&ctx, &config, Signal::Traces, next, limits),
        host,
    }
}

/// A buffer of `items`, 64 MiB, that waits `admission_wait` for room.
fn limits(items: usize, admission_wait: Duration) -> BufferLimits {
    BufferLimits {
        items,
        bytes: 64 << 20,
        admission_wait,
    }
}

impl Fixture {
    async fn consume(&self, telemetry: Telemetry) {
        if let Err(e) = self.processor.consume(telemetry).await {
            panic!("consume refused: {e}");
        }
    }

    fn metric(&self, name: &str) -> f64 {
        self.host
            .metrics
            .value(name, &[("processor", "batch")])
            .unwrap_or(0.0)
    }

    fn dropped(&self) -> f64 {
        self.host
            .metrics
            .value(
                "otelcol_processor_dropped_items",
                &[("processor", "batch"), ("otel_signal", "traces")],
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

    /// Waits until the processor holds `items` (e.g. after a delivery released them).
    async fn wait_held(&self, items: usize) {
        wait_until(|| self.processor.held().0 == items).await;
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    let polling = async {
        while !done() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(WAIT, polling).await.is_err() {
        panic!("condition not reached");
    }
}

async fn expect_ok<F: Future<Output = Result<(), ConsumeError>>>(f: F) {
    if let Err(e) = f.await {
        panic!("refused: {e}");
    }
}

fn config(send_batch_size: usize, send_batch_max_size: usize, timeout: Duration) -> BatchConfig {
    BatchConfig {
        send_batch_size,
        send_batch_max_size,
        timeout,
        ..BatchConfig::default()
    }
}

const NEVER: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn sends_when_size_is_reached() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(10, 0, NEVER), recorder.clone());
    for tag in ["a", "b", "c"] {
        f.consume(spans(tag, 3)).await;
    }
    assert!(recorder.sizes().is_empty(), "9 items < 10 must wait");
    f.consume(spans("d", 3)).await;
    recorder.wait_items(12).await;
    // Without send_batch_max_size, everything held goes in one batch.
    assert_eq!(recorder.sizes(), vec![12]);
    let want: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .flat_map(|t| names(t, 3))
        .collect();
    assert_eq!(recorder.all_names(), want);
    f.wait_held(0).await;
    assert_eq!(
        f.metric("otelcol_processor_batch_batch_size_trigger_send"),
        1.0
    );
    assert_eq!(
        f.metric("otelcol_processor_batch_timeout_trigger_send"),
        0.0
    );
    // Histograms report their observation count through `value`.
    assert_eq!(f.metric("otelcol_processor_batch_batch_send_size"), 1.0);
    assert_eq!(
        f.metric("otelcol_processor_batch_batch_send_size_bytes"),
        1.0
    );
    assert_eq!(
        f.host.metrics.sum(
            "otelcol_processor_batch_batch_send_size",
            &[("processor", "batch")]
        ),
        12.0
    );
}

#[tokio::test]
async fn sends_on_timeout() {
    let recorder = Arc::new(Recorder::default());
    let timeout = Duration::from_millis(50);
    let f = build(config(100, 0, timeout), recorder.clone());
    let started = tokio::time::Instant::now();
    f.consume(spans("a", 3)).await;
    f.consume(spans("b", 2)).await;
    recorder.wait_items(5).await;
    assert!(started.elapsed() >= timeout, "sent before the timeout");
    assert_eq!(recorder.sizes(), vec![5]);
    f.wait_held(0).await;
    assert_eq!(
        f.metric("otelcol_processor_batch_timeout_trigger_send"),
        1.0
    );
    assert_eq!(
        f.metric("otelcol_processor_batch_batch_size_trigger_send"),
        0.0
    );
}

#[tokio::test]
async fn zero_timeout_sends_at_once() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(100, 0, Duration::ZERO), recorder.clone());
    f.consume(spans("a", 3)).await;
    recorder.wait_items(3).await;
    assert_eq!(recorder.all_names(), names("a", 3));
}

#[tokio::test]
async fn splits_at_max_size_in_order() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(5, 10, NEVER), recorder.clone());
    f.consume(spans("x", 25)).await;
    recorder.wait_items(25).await;
    assert_eq!(recorder.sizes(), vec![10, 10, 5]);
    assert_eq!(recorder.all_names(), names("x", 25));
    assert_eq!(
        f.metric("otelcol_processor_batch_batch_size_trigger_send"),
        3.0
    );
}

#[tokio::test]
async fn keeps_the_remainder_below_send_batch_size_for_later() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(10, 10, NEVER), recorder.clone());
    f.consume(spans("x", 25)).await;
    recorder.wait_items(20).await;
    f.wait_held(5).await;
    assert_eq!(recorder.sizes(), vec![10, 10]);
    f.shutdown_within(Duration::from_secs(5)).await;
    assert_eq!(recorder.sizes(), vec![10, 10, 5]);
    assert_eq!(recorder.all_names(), names("x", 25));
}

#[tokio::test]
async fn merges_encoded_requests_and_keeps_their_bytes() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(4, 0, NEVER), recorder.clone());
    f.consume(encoded_spans("a", 2)).await;
    f.consume(encoded_spans("b", 2)).await;
    recorder.wait_items(4).await;
    let batches = recorder.batches.lock();
    let Payload::Traces(batch) = &batches[0].payload else {
        panic!("expected traces");
    };
    assert!(batch.has_original_encoding());
    let mut want = names("a", 2);
    want.extend(names("b", 2));
    assert_eq!(span_names(&batches[0]), want);
}

#[tokio::test]
async fn shards_by_metadata_and_keeps_it() {
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config(100, 0, NEVER);
    cfg.metadata_keys = vec!["Tenant".into()];
    let f = build(cfg, recorder.clone());
    f.consume(with_metadata(spans("a1", 2), &[("tenant", "a")]))
        .await;
    f.consume(with_metadata(
        spans("b1", 3),
        &[("tenant", "b"), ("other", "x")],
    ))
    .await;
    // Keys are case-insensitive.
    f.consume(with_metadata(spans("a2", 2), &[("TENANT", "a")]))
        .await;
    assert_eq!(
        f.metric("otelcol_processor_batch_metadata_cardinality"),
        2.0
    );
    f.shutdown_within(Duration::from_secs(5)).await;
    let batches = recorder.batches.lock();
    assert_eq!(batches.len(), 2);
    for batch in batches.iter() {
        let tenant = batch.client.get("tenant");
        match tenant.as_slice() {
            ["a"] => {
                let mut want = names("a1", 2);
                want.extend(names("a2", 2));
                assert_eq!(span_names(batch), want);
            }
            ["b"] => assert_eq!(span_names(batch), names("b1", 3)),
            other => panic!("unexpected tenant {other:?}"),
        }
        // Only the configured keys travel with the batch.
        assert!(batch.client.get("other").is_empty());
    }
    drop(batches);
    assert_eq!(
        f.metric("otelcol_processor_batch_metadata_cardinality"),
        0.0
    );
}

#[tokio::test]
async fn refuses_metadata_combinations_beyond_the_limit() {
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config(100, 0, NEVER);
    cfg.metadata_keys = vec!["tenant".into()];
    cfg.metadata_cardinality_limit = 2;
    let f = build(cfg, recorder.clone());
    f.consume(with_metadata(spans("a", 1), &[("tenant", "a")]))
        .await;
    f.consume(with_metadata(spans("b", 1), &[("tenant", "b")]))
        .await;
    let refused = f
        .processor
        .consume(with_metadata(spans("c", 4), &[("tenant", "c")]))
        .await;
    let Err(e) = refused else {
        panic!("a third combination must be refused");
    };
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.message().contains("metadata"), "{e}");
    assert_eq!(f.metric("otelcol_processor_refused_spans"), 4.0);
    // Known combinations still get in.
    f.consume(with_metadata(spans("a2", 1), &[("tenant", "a")]))
        .await;
    f.shutdown_within(Duration::from_secs(5)).await;
    assert_eq!(recorder.items(), 3);
}

#[tokio::test]
async fn full_buffer_refuses_until_downstream_frees_it() {
    let gate = Gate::new(
        false,
        0,
        ConsumeError::resource_exhausted("exporter queue is full", None),
    );
    let f = build_with(
        config(10, 0, NEVER),
        gate.clone(),
        limits(40, Duration::from_millis(20)),
    );
    for tag in ["a", "b", "c", "d"] {
        f.consume(spans(tag, 10)).await;
    }
    wait_until(|| gate.attempts.load(Ordering::SeqCst) >= 2).await;
    let asked = Instant::now();
    let Err(e) = f.processor.consume(spans("e", 1)).await else {
        panic!("a full buffer must refuse");
    };
    assert!(
        asked.elapsed() >= Duration::from_millis(20),
        "it waits first"
    );
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
    assert!(e.retry_after().is_some());
    assert_eq!(f.metric("otelcol_processor_refused_spans"), 1.0);
    assert_eq!(f.processor.held().0, 40);

    gate.open.store(true, Ordering::SeqCst);
    gate.inner.wait_items(40).await;
    f.wait_held(0).await;
    expect_ok(f.processor.consume(spans("e", 10))).await;
    gate.inner.wait_items(50).await;
    let want: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .flat_map(|t| names(t, 10))
        .collect();
    assert_eq!(gate.inner.all_names(), want);
    assert_eq!(f.dropped(), 0.0);
}

#[tokio::test]
async fn a_full_buffer_admits_once_the_worker_makes_room_within_the_wait() {
    let gate = Gate::new(
        false,
        0,
        ConsumeError::resource_exhausted("exporter queue is full", None),
    );
    let f = Arc::new(build_with(
        config(10, 0, NEVER),
        gate.clone(),
        limits(20, WAIT),
    ));
    f.consume(spans("a", 10)).await;
    f.consume(spans("b", 10)).await;
    let waiting = tokio::spawn({
        let f = f.clone();
        async move { f.processor.consume(spans("c", 10)).await }
    });
    // The worker keeps retrying "a" and "b" while "c" waits for room.
    wait_until(|| gate.attempts.load(Ordering::SeqCst) >= 4).await;
    assert!(!waiting.is_finished());
    gate.open.store(true, Ordering::SeqCst);
    match waiting.await {
        Ok(result) => expect_ok(async { result }).await,
        Err(e) => panic!("{e}"),
    }
    gate.inner.wait_items(30).await;
    let want: Vec<String> = ["a", "b", "c"].iter().flat_map(|t| names(t, 10)).collect();
    assert_eq!(gate.inner.all_names(), want);
    assert_eq!(f.metric("otelcol_processor_refused_spans"), 0.0);
    f.shutdown_within(Duration::from_secs(5)).await;
    assert_eq!(f.dropped(), 0.0);
}

#[test]
fn the_buffer_takes_four_batches_of_at_least_the_default_size() {
    let small = BufferLimits::for_config(&config(256, 0, NEVER));
    assert_eq!(small.items, 4 * 8192);
    let large = BufferLimits::for_config(&config(10_000, 20_000, NEVER));
    assert_eq!(large.items, 80_000);
    assert_eq!(large.bytes, 64 << 20);
}

#[tokio::test]
async fn retries_retryable_refusals_without_loss_or_duplicates() {
    for encoded in [false, true] {
        let gate = Gate::new(true, 3, ConsumeError::unavailable("not now"));
        let f = build(config(10, 0, NEVER), gate.clone());
        let make = if encoded { encoded_spans } else { spans };
        f.consume(make("a", 6)).await;
        f.consume(make("b", 6)).await;
        gate.inner.wait_items(12).await;
        f.wait_held(0).await;
        assert_eq!(gate.attempts.load(Ordering::SeqCst), 4, "encoded={encoded}");
        assert_eq!(gate.inner.sizes(), vec![12], "encoded={encoded}");
        let mut want = names("a", 6);
        want.extend(names("b", 6));
        assert_eq!(gate.inner.all_names(), want, "encoded={encoded}");
        assert_eq!(f.dropped(), 0.0);
    }
}

#[tokio::test]
async fn drops_and_counts_permanent_refusals() {
    let gate = Gate::new(false, 0, ConsumeError::invalid("bad data"));
    let f = build(config(5, 0, NEVER), gate.clone());
    f.consume(spans("a", 5)).await;
    wait_until(|| f.dropped() == 5.0).await;
    f.wait_held(0).await;
    assert_eq!(gate.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_flushes_everything_then_refuses() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(1000, 300, NEVER), recorder.clone());
    f.consume(spans("a", 3)).await;
    f.consume(spans("b", 500)).await;
    f.consume(spans("c", 7)).await;
    f.shutdown_within(Duration::from_secs(5)).await;
    let mut want = names("a", 3);
    want.extend(names("b", 500));
    want.extend(names("c", 7));
    assert_eq!(recorder.all_names(), want);
    assert_eq!(recorder.sizes(), vec![300, 210]);
    assert_eq!(f.processor.held(), (0, 0));
    let Err(e) = f.processor.consume(spans("late", 1)).await else {
        panic!("consume after shutdown must be refused");
    };
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn shutdown_gives_up_at_the_deadline_and_counts_the_loss() {
    let gate = Gate::new(false, 0, ConsumeError::unavailable("down"));
    let f = build(config(100, 0, NEVER), gate.clone());
    f.consume(spans("a", 5)).await;
    f.consume(spans("b", 2)).await;
    f.shutdown_within(Duration::from_millis(100)).await;
    assert!(gate.attempts.load(Ordering::SeqCst) >= 1);
    assert_eq!(f.dropped(), 7.0);
    assert_eq!(f.processor.held(), (0, 0));
}

#[tokio::test]
async fn empty_batches_are_accepted_and_not_sent() {
    let recorder = Arc::new(Recorder::default());
    let f = build(config(1, 0, NEVER), recorder.clone());
    f.consume(Telemetry::from(Traces::default())).await;
    f.shutdown_within(Duration::from_secs(1)).await;
    assert!(recorder.sizes().is_empty());
}

#[tokio::test]
async fn factory_builds_a_working_processor() {
    let recorder = Arc::new(Recorder::default());
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("batch", Some("x")),
        host,
    };
    let processor = match ProcessorFactory::create(
        &BatchFactory,
        &ctx,
        &config(2, 0, NEVER),
        Signal::Traces,
        recorder.clone(),
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    expect_ok(processor.consume(spans("a", 2))).await;
    recorder.wait_items(2).await;
    let shutdown = processor.shutdown(Instant::now() + Duration::from_secs(1));
    assert!(shutdown.await.is_ok());
}

fn parse(yaml: &str) -> Result<BatchConfig, crate::config::ConfigError> {
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    BatchFactory.parse("processors.batch", &value)?;
    crate::config::deserialize_at("processors.batch", value)
}

#[test]
fn config_defaults_match_otelcol() {
    let cfg = parse("~").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.send_batch_size, 8192);
    assert_eq!(cfg.timeout, Duration::from_millis(200));
    assert_eq!(cfg.send_batch_max_size, 0);
    assert!(cfg.metadata_keys.is_empty());
    assert_eq!(cfg.metadata_cardinality_limit, 1000);

    let cfg = parse("timeout: 5s\nsend_batch_size: 256").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.timeout, Duration::from_secs(5));
    assert_eq!(cfg.send_batch_size, 256);
}

#[test]
fn config_errors_name_their_path() {
    let cases = [
        (
            "send_batch_max_size: 100",
            "processors.batch.send_batch_max_size: must be >= send_batch_size (8192) or 0",
        ),
        (
            "metadata_keys: [tenant, Tenant]",
            "processors.batch.metadata_keys[1]: duplicate entry \"tenant\" (keys are case-insensitive)",
        ),
        (
            "metadata_keys: [tenant]\nmetadata_cardinality_limit: 0",
            "processors.batch.metadata_cardinality_limit: must be > 0 when metadata_keys are set",
        ),
    ];
    for (yaml, want) in cases {
        match parse(yaml) {
            Ok(_) => panic!("{yaml:?} should be rejected"),
            Err(e) => assert_eq!(e.to_string(), want, "{yaml}"),
        }
    }
    for yaml in ["send_batch_sise: 10", "timeout: fast"] {
        let Err(e) = parse(yaml) else {
            panic!("{yaml:?} should be rejected");
        };
        assert!(e.path.starts_with("processors.batch"), "{e}");
    }
    assert!(parse("send_batch_size: 100\nsend_batch_max_size: 100").is_ok());
    assert!(parse("send_batch_size: 100\nsend_batch_max_size: 0").is_ok());
}

/// Refuses every third attempt (retryably), records the rest.
#[derive(Default)]
struct Choppy {
    attempts: AtomicUsize,
    inner: Recorder,
}

#[async_trait]
impl Consumer for Choppy {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            return Err(ConsumeError::resource_exhausted("busy", None));
        }
        self.inner.consume(telemetry).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_lose_and_duplicate_nothing() {
    const SENDERS: usize = 4;
    const BATCHES: usize = 40;
    const ITEMS: usize = 7;
    let downstream = Arc::new(Choppy::default());
    // A buffer of 4 x 32 items that waits briefly: senders both wait and
    // get refused.
    let f = Arc::new(build_with(
        config(20, 32, Duration::from_millis(5)),
        downstream.clone(),
        limits(128, Duration::from_millis(1)),
    ));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let telemetry = spans(&format!("s{sender}-b{batch}"), ITEMS);
                // A sender retries what the full buffer refused, as a client would.
                while let Err(e) = f.processor.consume(telemetry.clone()).await {
                    assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            panic!("{e}");
        }
    }
    f.shutdown_within(Duration::from_secs(10)).await;
    let got = downstream.inner.all_names();
    assert_eq!(got.len(), SENDERS * BATCHES * ITEMS);
    assert!(downstream.inner.sizes().iter().all(|&n| n <= 32));
    for sender in 0..SENDERS {
        // Each sender's items arrive once each, in the order it sent them.
        let prefix = format!("s{sender}-");
        let mine: Vec<&String> = got.iter().filter(|n| n.starts_with(&prefix)).collect();
        let want: Vec<String> = (0..BATCHES)
            .flat_map(|b| names(&format!("s{sender}-b{b}"), ITEMS))
            .collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
    assert_eq!(f.dropped(), 0.0);
}
