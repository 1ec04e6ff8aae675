//! What the shards share: the next stage, self-metrics, the shutdown
//! deadline, and delivery of sampled spans with retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use collector_core::consumer::{BoxConsumer, ConsumeError};
use collector_core::observe::RateLimitedLog;
use collector_core::pdata::{Telemetry, Traces};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::Metrics;

/// First wait before retrying spans the next stage refused for now.
const RETRY_INITIAL: Duration = Duration::from_millis(10);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The next consumer, with a `Debug` that says what it is.
pub(crate) struct Next(pub(crate) BoxConsumer);

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consumer")
    }
}

/// State shared by the processor and its shards.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The processor's id, for logs.
    pub(crate) id: String,
    next: Next,
    /// Self-metrics.
    pub(crate) metrics: Metrics,
    /// The shutdown deadline, once shutdown started.
    pub(crate) shutdown: watch::Sender<Option<Instant>>,
    /// Spans this instance dropped after accepting them.
    pub(crate) dropped_total: AtomicU64,
    drop_log: RateLimitedLog,
    retry_log: RateLimitedLog,
}

impl Shared {
    pub(crate) fn new(id: String, next: BoxConsumer, metrics: Metrics) -> Self {
        Shared {
            id,
            next: Next(next),
            metrics,
            shutdown: watch::Sender::new(None),
            dropped_total: AtomicU64::new(0),
            drop_log: RateLimitedLog::default(),
            retry_log: RateLimitedLog::default(),
        }
    }

    /// Counts and logs (rate-limited) spans lost after they were accepted.
    pub(crate) fn dropped(&self, spans: usize, reason: &str) {
        if spans == 0 {
            return;
        }
        self.metrics.dropped_items.add(spans as u64);
        self.dropped_total
            .fetch_add(spans as u64, Ordering::Relaxed);
        if let Some(suppressed) = self.drop_log.check() {
            tracing::error!(
                processor = %self.id,
                spans,
                suppressed,
                "tail_sampling dropped sampled spans: {reason}"
            );
        }
    }

    /// Hands sampled spans to the next stage, retrying while it refuses them
    /// with a retryable error, until it takes them or the shutdown deadline
    /// passes; what cannot be delivered is counted as dropped.
    ///
    /// The spans are encoded once: each attempt hands on a batch that keeps
    /// those bytes (a reference count, no copy), so a retry costs no clone
    /// and the exporter sends them without encoding again.
    pub(crate) async fn deliver(&self, resource_spans: Vec<ResourceSpans>, spans: usize) {
        if spans == 0 {
            return;
        }
        let encoded = Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec());
        if let Err(reason) = self.send_with_retry(encoded).await {
            self.dropped(spans, &reason);
        }
    }

    async fn send_with_retry(&self, encoded: Bytes) -> Result<(), String> {
        let mut backoff = RETRY_INITIAL;
        loop {
            let deadline = *self.shutdown.borrow();
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err("the shutdown deadline passed before the next stage took them".into());
            }
            let batch = Traces::decode(encoded.clone())
                .map_err(|e| format!("cannot rebuild the batch: {e}"))?;
            let sent = self.next.0.consume(Telemetry::from(batch));
            let result = match deadline {
                Some(at) => match tokio::time::timeout_at(at, sent).await {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(
                            "the shutdown deadline passed while the next stage held them".into(),
                        );
                    }
                },
                None => sent.await,
            };
            let error = match result {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Err(format!("the next stage refused them permanently: {error}"));
            }
            if let Some(suppressed) = self.retry_log.check() {
                tracing::warn!(
                    processor = %self.id,
                    suppressed,
                    "next stage refused sampled spans, retrying: {error}"
                );
            }
            if !self.pause(retry_wait(&error, backoff)).await {
                return Err(format!(
                    "the shutdown deadline passed while the next stage refused them: {error}"
                ));
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// Waits `wait`; false when the shutdown deadline comes first.
    async fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut deadline = self.shutdown.subscribe();
        loop {
            let current = *deadline.borrow_and_update();
            if let Some(at) = current
                && at <= until
            {
                tokio::time::sleep_until(at).await;
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                changed = deadline.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(until).await;
                        return true;
                    }
                }
            }
        }
    }
}

/// The wait before the next attempt: the next stage's hint when it gives one
/// (never shorter than the backoff), capped at [`RETRY_MAX`].
fn retry_wait(error: &ConsumeError, backoff: Duration) -> Duration {
    error
        .retry_after()
        .map_or(backoff, |hint| hint.max(backoff))
        .min(RETRY_MAX)
}
