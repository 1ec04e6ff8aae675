//! Tests of the queue, workers, retry and shutdown, on tokio's paused clock.

use super::*;
use crate::test_support::{ctx, traces};
use collector_core::component::{CreateContext, Lifecycle};
use collector_core::consumer::{Consumer, ErrorKind};
use collector_core::pdata::{Signal, Telemetry};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// A sender that answers from a script, can be held at a gate, and reports
/// each attempt (its virtual time and item count) on a channel.
struct ScriptedSender {
    results: Mutex<VecDeque<Result<SendOutcome, ConsumeError>>>,
    gate: Option<Arc<Semaphore>>,
    attempts: mpsc::UnboundedSender<(Instant, usize)>,
    limit: Option<usize>,
    /// This many first attempts never answer.
    hang: AtomicUsize,
}

#[async_trait]
impl Sender for ScriptedSender {
    async fn send(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        let _ = self.attempts.send((Instant::now(), payload.item_count()));
        if self
            .hang
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.results
            .lock()
            .pop_front()
            .unwrap_or(Ok(SendOutcome::accepted()))
    }

    fn max_request_bytes(&self) -> Option<usize> {
        self.limit
    }
}

struct Harness {
    exporter: QueuedExporter<ScriptedSender>,
    attempts: mpsc::UnboundedReceiver<(Instant, usize)>,
    ctx: CreateContext,
}

impl Harness {
    fn new(
        config: HelperConfig,
        results: Vec<Result<SendOutcome, ConsumeError>>,
        gate: Option<Arc<Semaphore>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = ctx("otlp/test");
        let sender = ScriptedSender {
            results: Mutex::new(results.into()),
            gate,
            attempts: tx,
            limit: None,
            hang: AtomicUsize::new(0),
        };
        Self {
            exporter: QueuedExporter::new(&ctx, config, sender),
            attempts: rx,
            ctx,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        self.ctx
            .host
            .metrics
            .value(name, &[("exporter", "otlp/test")])
            .unwrap_or(0.0)
    }

    async fn consume(&self, spans: usize) -> Result<(), ConsumeError> {
        self.exporter.consume(Telemetry::new(traces(spans))).await
    }
}

fn no_jitter(enabled_queue: bool) -> HelperConfig {
    HelperConfig {
        timeout: Duration::from_secs(5),
        retry: RetryConfig {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(8),
            max_elapsed_time: Duration::from_secs(60),
            multiplier: 2.0,
            randomization_factor: 0.0,
            ..RetryConfig::default()
        },
        queue: QueueConfig {
            enabled: enabled_queue,
            num_consumers: 1,
            queue_size: 1,
            ..QueueConfig::default()
        },
    }
}

fn far_deadline() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(3600)
}

#[tokio::test(start_paused = true)]
async fn full_queue_refuses_with_resource_exhausted_and_counts() {
    let gate = Arc::new(Semaphore::new(0));
    let mut h = Harness::new(no_jitter(true), vec![], Some(gate.clone()));
    h.consume(2).await.unwrap();
    // The worker took the first request and is held at the gate.
    h.attempts.recv().await.unwrap();
    h.consume(3).await.unwrap();
    assert_eq!(h.exporter.queue_size(Signal::Traces), 1);
    let err = h.consume(4).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    assert!(err.message().contains("sending queue is full"), "{err}");
    assert_eq!(h.metric("otelcol_exporter_enqueue_failed_spans"), 4.0);
    let gauge = h.ctx.host.metrics.value(
        "otelcol_exporter_queue_size",
        &[("exporter", "otlp/test"), ("data_type", "traces")],
    );
    assert_eq!(gauge, Some(1.0));
    let capacity = h.ctx.host.metrics.value(
        "otelcol_exporter_queue_capacity",
        &[("exporter", "otlp/test"), ("data_type", "traces")],
    );
    assert_eq!(capacity, Some(1.0));

    gate.add_permits(10);
    h.exporter.shutdown(far_deadline()).await.unwrap();
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 5.0);
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn items_sizer_counts_items() {
    let gate = Arc::new(Semaphore::new(0));
    let mut config = no_jitter(true);
    config.queue.sizer = Sizer::Items;
    config.queue.queue_size = 10;
    let mut h = Harness::new(config, vec![], Some(gate.clone()));
    h.consume(1).await.unwrap();
    h.attempts.recv().await.unwrap();
    h.consume(6).await.unwrap();
    assert_eq!(h.exporter.queue_size(Signal::Traces), 6);
    assert_eq!(
        h.consume(5).await.unwrap_err().kind(),
        ErrorKind::ResourceExhausted
    );
    h.consume(4).await.unwrap();
    // Larger than the whole queue: can never fit.
    assert_eq!(
        h.consume(11).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    gate.add_permits(10);
    h.exporter.shutdown(far_deadline()).await.unwrap();
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 11.0);
    assert_eq!(h.metric("otelcol_exporter_enqueue_failed_spans"), 16.0);
}

#[tokio::test(start_paused = true)]
async fn block_on_overflow_waits_for_room() {
    let gate = Arc::new(Semaphore::new(0));
    let mut config = no_jitter(true);
    config.queue.block_on_overflow = true;
    let mut h = Harness::new(config, vec![], Some(gate.clone()));
    h.consume(1).await.unwrap();
    h.attempts.recv().await.unwrap();
    h.consume(1).await.unwrap();
    let exporter = Arc::new(h.exporter);
    let blocked = tokio::spawn({
        let exporter = exporter.clone();
        async move { exporter.consume(Telemetry::new(traces(1))).await }
    });
    // However long we wait, it stays blocked while the queue is full.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!blocked.is_finished());
    // Let the first send finish: the worker takes the second, making room.
    gate.add_permits(1);
    blocked.await.unwrap().unwrap();
    gate.add_permits(10);
    exporter.shutdown(far_deadline()).await.unwrap();
    assert_eq!(
        h.ctx
            .host
            .metrics
            .value("otelcol_exporter_sent_spans", &[("exporter", "otlp/test")]),
        Some(3.0)
    );
    assert_eq!(
        h.ctx.host.metrics.value(
            "otelcol_exporter_enqueue_failed_spans",
            &[("exporter", "otlp/test")]
        ),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn retries_with_backoff_then_succeeds() {
    let mut h = Harness::new(
        no_jitter(true),
        vec![
            Err(ConsumeError::unavailable("down")),
            Err(ConsumeError::unavailable("still down")),
        ],
        None,
    );
    h.consume(3).await.unwrap();
    let (t0, _) = h.attempts.recv().await.unwrap();
    let (t1, _) = h.attempts.recv().await.unwrap();
    let (t2, _) = h.attempts.recv().await.unwrap();
    assert_eq!(t1 - t0, Duration::from_secs(1));
    assert_eq!(t2 - t1, Duration::from_secs(2));
    h.exporter.shutdown(far_deadline()).await.unwrap();
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 3.0);
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn permanent_error_is_not_retried() {
    let mut h = Harness::new(
        no_jitter(false),
        vec![Err(ConsumeError::invalid("bad data"))],
        None,
    );
    let err = h.consume(2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    h.attempts.recv().await.unwrap();
    assert!(h.attempts.try_recv().is_err(), "sent only once");
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 2.0);
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn synchronous_send_returns_the_final_result_after_retries() {
    let mut config = no_jitter(false);
    config.retry.max_elapsed_time = Duration::from_secs(5);
    let mut h = Harness::new(
        config,
        (0..10)
            .map(|_| Err(ConsumeError::unavailable("down")))
            .collect(),
        None,
    );
    let start = Instant::now();
    let err = h.consume(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    // Waits 1s, 2s, then the next 4s wait would pass the 5s budget.
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
    let mut count = 0;
    while h.attempts.try_recv().is_ok() {
        count += 1;
    }
    assert_eq!(count, 3);
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn server_retry_delay_is_honoured() {
    let mut h = Harness::new(
        no_jitter(true),
        vec![Err(ConsumeError::resource_exhausted(
            "slow down",
            Some(Duration::from_secs(20)),
        ))],
        None,
    );
    h.consume(1).await.unwrap();
    let (t0, _) = h.attempts.recv().await.unwrap();
    let (t1, _) = h.attempts.recv().await.unwrap();
    assert_eq!(t1 - t0, Duration::from_secs(20));
    h.exporter.shutdown(far_deadline()).await.unwrap();
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn timeout_is_retryable() {
    let mut h = Harness::new(no_jitter(false), vec![], None);
    h.exporter.sender().hang.store(1, Ordering::SeqCst);
    let exporter = Arc::new(h.exporter);
    let call = tokio::spawn({
        let exporter = exporter.clone();
        async move { exporter.consume(Telemetry::new(traces(1))).await }
    });
    let (t0, _) = h.attempts.recv().await.unwrap();
    // The first attempt times out after 5s; the retry comes 1s later.
    let (t1, _) = h.attempts.recv().await.unwrap();
    assert_eq!(t1 - t0, Duration::from_secs(6));
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_and_counts_what_is_left() {
    let gate = Arc::new(Semaphore::new(0));
    let mut config = no_jitter(true);
    config.queue.queue_size = 10;
    let mut h = Harness::new(config, vec![], Some(gate.clone()));
    for _ in 0..4 {
        h.consume(1).await.unwrap();
    }
    h.attempts.recv().await.unwrap();
    // Two sends get through, then the destination hangs until the deadline.
    gate.add_permits(2);
    let start = Instant::now();
    h.exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(Instant::now() - start >= Duration::from_secs(2));
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 2.0);
    // One in flight when the deadline passed, one still queued.
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 2.0);
    let err = h.consume(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn shutdown_skips_backoffs_past_the_deadline() {
    let mut h = Harness::new(
        no_jitter(true),
        vec![Err(ConsumeError::resource_exhausted(
            "later",
            Some(Duration::from_secs(100)),
        ))],
        None,
    );
    h.consume(5).await.unwrap();
    h.attempts.recv().await.unwrap();
    let start = Instant::now();
    h.exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    // It gave up at once instead of waiting 100s or until the deadline.
    assert_eq!(Instant::now() - start, Duration::ZERO);
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 5.0);
}

#[tokio::test(start_paused = true)]
async fn partial_success_counts_rejected_items_as_failed() {
    let h = Harness::new(
        no_jitter(false),
        vec![Ok(SendOutcome::partial(2, "2 spans had invalid ids"))],
        None,
    );
    h.consume(5).await.unwrap();
    assert_eq!(h.metric("otelcol_exporter_sent_spans"), 3.0);
    assert_eq!(h.metric("otelcol_exporter_send_failed_spans"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn large_payloads_are_split_to_the_senders_limit() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctx = ctx("otlp/split");
    let whole = traces(100);
    let limit = whole.encoded_len() / 3;
    let sender = ScriptedSender {
        results: Mutex::new(VecDeque::new()),
        gate: None,
        attempts: tx,
        limit: Some(limit),
        hang: AtomicUsize::new(0),
    };
    let exporter = QueuedExporter::new(&ctx, no_jitter(false), sender);
    exporter.consume(Telemetry::new(whole)).await.unwrap();
    let mut sizes = Vec::new();
    while let Ok((_, items)) = rx.try_recv() {
        sizes.push(items);
    }
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 100);

    let parts = exporter::split_to_fit(traces(100), Some(limit));
    assert!(parts.iter().all(|p| p.encoded_len() <= limit));
    assert_eq!(parts.iter().map(|p| p.item_count()).sum::<usize>(), 100);
}

mod persistent_queue {
    //! The persistent queue on a real `file_storage` extension, in real time.

    use super::*;
    use collector_core::component::{ComponentId, Extension, ExtensionFactory, Host};
    use collector_core::extension::file_storage::{FileStorageConfig, FileStorageFactory};
    use std::path::{Path, PathBuf};

    const STORAGE: &str = "file_storage/q";

    async fn storage(dir: &Path) -> (Arc<Host>, Arc<dyn Extension>) {
        let host = Host::new();
        let ctx = CreateContext {
            id: STORAGE.parse().unwrap(),
            host: host.clone(),
        };
        let config = FileStorageConfig {
            directory: dir.display().to_string(),
            ..FileStorageConfig::default()
        };
        let extension = FileStorageFactory.create(&ctx, &config).unwrap();
        extension.start().await.unwrap();
        (host, extension)
    }

    fn config() -> HelperConfig {
        HelperConfig {
            timeout: Duration::from_secs(5),
            retry: RetryConfig {
                initial_interval: Duration::from_millis(10),
                max_interval: Duration::from_millis(10),
                max_elapsed_time: Duration::ZERO,
                randomization_factor: 0.0,
                ..RetryConfig::default()
            },
            queue: QueueConfig {
                num_consumers: 1,
                queue_size: 100,
                storage: Some(STORAGE.into()),
                ..QueueConfig::default()
            },
        }
    }

    struct Generation {
        exporter: QueuedExporter<ScriptedSender>,
        attempts: mpsc::UnboundedReceiver<(Instant, usize)>,
        host: Arc<Host>,
    }

    impl Generation {
        async fn start(
            host: &Arc<Host>,
            results: Vec<Result<SendOutcome, ConsumeError>>,
            limit: Option<usize>,
        ) -> Self {
            let (tx, rx) = mpsc::unbounded_channel();
            let ctx = CreateContext {
                id: ComponentId::new("otlp", Some("test")),
                host: host.clone(),
            };
            let sender = ScriptedSender {
                results: Mutex::new(results.into()),
                gate: None,
                attempts: tx,
                limit,
                hang: AtomicUsize::new(0),
            };
            let exporter = QueuedExporter::new(&ctx, config(), sender);
            exporter.start().await.unwrap();
            Self {
                exporter,
                attempts: rx,
                host: host.clone(),
            }
        }

        fn metric(&self, name: &str) -> f64 {
            self.host
                .metrics
                .value(name, &[("exporter", "otlp/test")])
                .unwrap_or(0.0)
        }

        /// Waits until `sent_spans` reaches `n` (real time, bounded).
        async fn sent(&self, n: f64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.metric("otelcol_exporter_sent_spans") < n {
                assert!(
                    Instant::now() < deadline,
                    "sent {} of {n}",
                    self.metric("otelcol_exporter_sent_spans")
                );
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn failing(n: usize) -> Vec<Result<SendOutcome, ConsumeError>> {
        (0..n)
            .map(|_| Err(ConsumeError::unavailable("down")))
            .collect()
    }

    fn stored(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir.join("exporter_otlp-test_traces")) else {
            return Vec::new();
        };
        entries.flatten().map(|e| e.path()).collect()
    }

    fn soon() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_millis(100)
    }

    #[tokio::test]
    async fn requests_are_stored_before_acceptance_and_sent_once_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (host, extension) = storage(dir.path()).await;
        let mut first = Generation::start(&host, failing(100_000), None).await;
        for n in [2, 3, 4] {
            first
                .exporter
                .consume(Telemetry::new(traces(n)))
                .await
                .unwrap();
        }
        assert_eq!(
            stored(dir.path()).len(),
            3,
            "stored before consume returned"
        );
        first.attempts.recv().await.unwrap();
        first.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(first.metric("otelcol_exporter_send_failed_spans"), 0.0);
        assert_eq!(first.metric("otelcol_exporter_sent_spans"), 0.0);
        assert_eq!(stored(dir.path()).len(), 3, "kept for the next start");
        extension.shutdown(soon()).await.unwrap();

        let (host, _extension) = storage(dir.path()).await;
        let mut second = Generation::start(&host, vec![], None).await;
        second.sent(9.0).await;
        second.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(second.metric("otelcol_exporter_sent_spans"), 9.0);
        let mut sizes = Vec::new();
        while let Ok((_, items)) = second.attempts.try_recv() {
            sizes.push(items);
        }
        assert_eq!(sizes, [2, 3, 4], "oldest first, each once");
        assert!(stored(dir.path()).is_empty(), "deleted once sent");
    }

    #[tokio::test]
    async fn permanent_failures_are_counted_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _extension) = storage(dir.path()).await;
        let generation =
            Generation::start(&host, vec![Err(ConsumeError::invalid("bad data"))], None).await;
        generation
            .exporter
            .consume(Telemetry::new(traces(5)))
            .await
            .unwrap();
        generation
            .exporter
            .consume(Telemetry::new(traces(1)))
            .await
            .unwrap();
        generation.sent(1.0).await;
        generation.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(generation.metric("otelcol_exporter_send_failed_spans"), 5.0);
        assert!(stored(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_newer_generation_takes_over_what_the_older_one_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _extension) = storage(dir.path()).await;
        let mut old = Generation::start(&host, failing(100_000), None).await;
        old.exporter
            .consume(Telemetry::new(traces(2)))
            .await
            .unwrap();
        old.exporter
            .consume(Telemetry::new(traces(3)))
            .await
            .unwrap();
        old.attempts.recv().await.unwrap();
        // A reload: the new generation starts while the old one still runs;
        // it must not send what the old one holds.
        let new = Generation::start(&host, vec![], None).await;
        assert_eq!(new.exporter.queue_size(Signal::Traces), 0);
        new.exporter
            .consume(Telemetry::new(traces(4)))
            .await
            .unwrap();
        new.sent(4.0).await;
        old.exporter.shutdown(soon()).await.unwrap();
        new.sent(9.0).await;
        new.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(new.metric("otelcol_exporter_sent_spans"), 9.0);
        assert_eq!(new.metric("otelcol_exporter_send_failed_spans"), 0.0);
        assert!(stored(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn an_interrupted_split_request_keeps_only_its_unsent_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _extension) = storage(dir.path()).await;
        let whole = traces(30);
        let limit = whole.encoded_len() / 3;
        let mut script = vec![Ok(SendOutcome::accepted())];
        script.extend(failing(100_000));
        let mut first = Generation::start(&host, script, Some(limit)).await;
        first.exporter.consume(Telemetry::new(whole)).await.unwrap();
        let (_, first_part) = first.attempts.recv().await.unwrap();
        first.attempts.recv().await.unwrap();
        first.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(
            first.metric("otelcol_exporter_sent_spans"),
            first_part as f64
        );
        assert_eq!(stored(dir.path()).len(), 1);

        let (host, _extension) = storage(dir.path()).await;
        let second = Generation::start(&host, vec![], Some(limit)).await;
        second.sent((30 - first_part) as f64).await;
        second.exporter.shutdown(soon()).await.unwrap();
        assert_eq!(
            second.metric("otelcol_exporter_sent_spans"),
            (30 - first_part) as f64,
            "the part sent before the shutdown is not sent again"
        );
        assert!(stored(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_missing_storage_extension_fails_the_start() {
        let host = Host::new();
        let (tx, _rx) = mpsc::unbounded_channel();
        let ctx = CreateContext {
            id: ComponentId::new("otlp", Some("test")),
            host,
        };
        let sender = ScriptedSender {
            results: Mutex::new(VecDeque::new()),
            gate: None,
            attempts: tx,
            limit: None,
            hang: AtomicUsize::new(0),
        };
        let exporter = QueuedExporter::new(&ctx, config(), sender);
        let error = exporter.start().await.unwrap_err();
        assert!(error.0.contains("file_storage/q"), "{error}");
        let refused = exporter
            .consume(Telemetry::new(traces(1)))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert_eq!(
            ctx.host.metrics.value(
                "otelcol_exporter_enqueue_failed_spans",
                &[("exporter", "otlp/test")]
            ),
            Some(1.0)
        );
    }
}
