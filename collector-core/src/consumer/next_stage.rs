//! The next stage of a pipeline as a processor's own tasks hand data to it:
//! retried with capped exponential backoff while it refuses the data with a
//! retryable error, until it takes them, refuses them for good, or the
//! shutdown deadline passes.
//!
//! The `batch` and `tail_sampling` processors accept data into their own
//! buffers and send it on from background tasks; this is how those tasks
//! send. The caller counts and logs what comes back as [`Undelivered`].

use super::{BoxConsumer, ConsumeError};
use crate::observe::RateLimitedLog;
use crate::pdata::{Batch, BatchError, Payload, Signal, SignalRequest, Telemetry};
use bytes::Bytes;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// First wait before another attempt after a retryable refusal.
pub const RETRY_INITIAL: Duration = Duration::from_millis(10);
/// Longest wait between two attempts, whatever the next stage's hint.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// The next consumer, seen from a task that owns the data it sends.
///
/// [`NextStage::deliver`] returns once the next stage accepted the data, or
/// with [`Undelivered`] when it refused them permanently or when the
/// shutdown deadline ([`NextStage::shut_down_by`]) passed first, including
/// while an attempt was still running.
pub struct NextStage {
    /// The owning component's id, for logs.
    component: String,
    next: BoxConsumer,
    /// The shutdown deadline, once shutdown started.
    deadline: watch::Sender<Option<Instant>>,
    retry_log: RateLimitedLog,
}

impl fmt::Debug for NextStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NextStage")
            .field("component", &self.component)
            .field("deadline", &*self.deadline.borrow())
            .finish_non_exhaustive()
    }
}

/// Why [`NextStage::deliver`] gave up; the data are lost and the caller
/// counts them.
#[derive(Debug)]
pub enum Undelivered {
    /// The next stage refused them with a non-retryable error.
    Refused(ConsumeError),
    /// The shutdown deadline passed first; the last refusal, if any.
    DeadlinePassed(Option<ConsumeError>),
    /// The copy kept for another attempt could not be read back.
    Restore(BatchError),
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undelivered::Refused(e) => write!(f, "the next stage refused them permanently: {e}"),
            Undelivered::DeadlinePassed(None) => {
                f.write_str("the shutdown deadline passed before the next stage took them")
            }
            Undelivered::DeadlinePassed(Some(e)) => write!(
                f,
                "the shutdown deadline passed while the next stage refused them: {e}"
            ),
            Undelivered::Restore(e) => write!(f, "cannot restore the batch for a retry: {e}"),
        }
    }
}

impl std::error::Error for Undelivered {}

impl NextStage {
    /// Sends to `next` on behalf of the component `component` (its id, for logs).
    pub fn new(component: impl Into<String>, next: BoxConsumer) -> Self {
        Self {
            component: component.into(),
            next,
            deadline: watch::Sender::new(None),
            retry_log: RateLimitedLog::default(),
        }
    }

    /// Starts the shutdown: deliveries, running or not, give up at `deadline`.
    pub fn shut_down_by(&self, deadline: Instant) {
        self.deadline.send_replace(Some(deadline));
    }

    /// The shutdown deadline, once shutdown started.
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        *self.deadline.borrow()
    }

    /// True once shutdown started and its deadline passed.
    pub fn deadline_passed(&self) -> bool {
        self.shutdown_deadline()
            .is_some_and(|at| Instant::now() >= at)
    }

    /// Hands `telemetry` to the next stage, retrying while it refuses them
    /// with a retryable error: after [`RETRY_INITIAL`], doubling up to
    /// [`RETRY_MAX`], or after the next stage's retry hint when it is longer
    /// (capped the same way).
    ///
    /// A retry resends the batch's protobuf bytes when it still has them (a
    /// reference count, no copy), else a clone made before the attempt.
    pub async fn deliver(&self, telemetry: Telemetry) -> Result<(), Undelivered> {
        let Telemetry {
            mut payload,
            client,
        } = telemetry;
        let mut backoff = RETRY_INITIAL;
        loop {
            if self.deadline_passed() {
                return Err(Undelivered::DeadlinePassed(None));
            }
            let backup = Backup::of(&payload);
            let signal = payload.signal();
            let attempt = Telemetry {
                payload,
                client: client.clone(),
            };
            let error = match self.attempt(attempt).await {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => e,
                None => return Err(Undelivered::DeadlinePassed(None)),
            };
            if !error.is_retryable() {
                return Err(Undelivered::Refused(error));
            }
            payload = backup.restore().map_err(Undelivered::Restore)?;
            if let Some(suppressed) = self.retry_log.check() {
                tracing::warn!(
                    component = %self.component,
                    %signal,
                    suppressed,
                    "next stage refused data, retrying: {error}"
                );
            }
            if !self.pause(retry_wait(&error, backoff)).await {
                return Err(Undelivered::DeadlinePassed(Some(error)));
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// One attempt; `None` when the shutdown deadline passed first.
    async fn attempt(&self, telemetry: Telemetry) -> Option<Result<(), ConsumeError>> {
        let mut deadline = self.deadline.subscribe();
        let consume = self.next.consume(telemetry);
        tokio::pin!(consume);
        loop {
            let current = *deadline.borrow_and_update();
            let expiry = async {
                match current {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = &mut consume => return Some(result),
                () = expiry => return None,
                // `self` owns the sender, so this cannot fail while it runs.
                _ = deadline.changed() => {}
            }
        }
    }

    /// Waits `wait`; false when the shutdown deadline comes first.
    async fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut deadline = self.deadline.subscribe();
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
                _ = deadline.changed() => {}
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

/// A copy of a batch kept for a retry: the protobuf segments it was merged
/// from when it still has them (reference counts, no copy), else a clone.
enum Backup {
    Encoded(Signal, Vec<Bytes>),
    Copy(Payload),
}

impl Backup {
    fn of(payload: &Payload) -> Self {
        let encoded = match payload {
            Payload::Traces(b) => b.has_original_encoding(),
            Payload::Metrics(b) => b.has_original_encoding(),
            Payload::Logs(b) => b.has_original_encoding(),
        };
        if encoded {
            Backup::Encoded(payload.signal(), payload.protobuf_segments())
        } else {
            Backup::Copy(payload.clone())
        }
    }

    fn restore(self) -> Result<Payload, BatchError> {
        Ok(match self {
            Backup::Copy(payload) => payload,
            Backup::Encoded(Signal::Traces, segments) => Payload::Traces(rebuild(segments)?),
            Backup::Encoded(Signal::Metrics, segments) => Payload::Metrics(rebuild(segments)?),
            Backup::Encoded(Signal::Logs, segments) => Payload::Logs(rebuild(segments)?),
        })
    }
}

/// A batch of the given segments again, each kept as it is.
fn rebuild<R: SignalRequest>(segments: Vec<Bytes>) -> Result<Batch<R>, BatchError> {
    let mut batch = Batch::<R>::default();
    for segment in segments {
        batch.append(Batch::decode(segment)?);
    }
    Ok(batch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::consumer::{Consumer, ErrorKind};
    use crate::pdata::Traces;
    use async_trait::async_trait;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use parking_lot::Mutex;
    use prost::Message;
    use std::sync::Arc;

    /// Answers each attempt with the next scripted result (then accepts),
    /// recording when each attempt came and what it carried.
    struct Scripted {
        answers: Mutex<Vec<Result<(), ConsumeError>>>,
        attempts: Mutex<Vec<(Instant, usize)>>,
    }

    impl Scripted {
        fn new(mut answers: Vec<Result<(), ConsumeError>>) -> Arc<Self> {
            answers.reverse();
            Arc::new(Self {
                answers: Mutex::new(answers),
                attempts: Mutex::new(Vec::new()),
            })
        }

        fn gaps(&self) -> Vec<Duration> {
            let attempts = self.attempts.lock();
            attempts.windows(2).map(|w| w[1].0 - w[0].0).collect()
        }
    }

    #[async_trait]
    impl Consumer for Scripted {
        async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
            self.attempts
                .lock()
                .push((Instant::now(), telemetry.item_count()));
            self.answers.lock().pop().unwrap_or(Ok(()))
        }
    }

    /// Never answers.
    struct Stuck;

    #[async_trait]
    impl Consumer for Stuck {
        async fn consume(&self, _: Telemetry) -> Result<(), ConsumeError> {
            std::future::pending().await
        }
    }

    fn spans(n: usize, encoded: bool) -> Telemetry {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..n)
                        .map(|i| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![u8::try_from(i + 1).unwrap(); 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = if encoded {
            Traces::decode(Bytes::from(request.encode_to_vec())).unwrap()
        } else {
            Traces::new(request)
        };
        Telemetry::from(batch)
    }

    fn busy(hint: Option<Duration>) -> Result<(), ConsumeError> {
        Err(ConsumeError::resource_exhausted("busy", hint))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_doubling_and_honour_longer_hints() {
        let next = Scripted::new(vec![
            busy(None),
            busy(None),
            busy(Some(Duration::from_millis(300))),
            busy(Some(Duration::from_secs(60))),
            busy(None),
        ]);
        let stage = NextStage::new("p", next.clone());
        stage.deliver(spans(3, true)).await.unwrap();
        assert_eq!(
            next.gaps(),
            [10, 20, 300, 1000, 160].map(Duration::from_millis)
        );
        // Every attempt carried the whole batch.
        assert!(next.attempts.lock().iter().all(|(_, n)| *n == 3));

        // A batch merged from several requests is retried as the same segments.
        let next = Scripted::new(vec![busy(None)]);
        let mut merged = spans(3, true);
        merged.payload.append(spans(4, true).payload).unwrap();
        NextStage::new("p", next.clone())
            .deliver(merged)
            .await
            .unwrap();
        assert!(next.attempts.lock().iter().all(|(_, n)| *n == 7));

        // A decoded batch is retried from a clone.
        let next = Scripted::new(vec![busy(None)]);
        NextStage::new("p", next.clone())
            .deliver(spans(2, false))
            .await
            .unwrap();
        assert_eq!(next.attempts.lock().len(), 2);
        assert!(next.attempts.lock().iter().all(|(_, n)| *n == 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_not_retried() {
        let next = Scripted::new(vec![Err(ConsumeError::invalid("bad"))]);
        let stage = NextStage::new("p", next.clone());
        let error = stage.deliver(spans(1, true)).await.unwrap_err();
        assert!(
            matches!(&error, Undelivered::Refused(e) if e.kind() == ErrorKind::InvalidArgument),
            "{error}"
        );
        assert_eq!(next.attempts.lock().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_shutdown_deadline_ends_retries_and_running_attempts() {
        // Refused until the deadline, which comes during a pause.
        let next = Scripted::new(vec![busy(Some(Duration::from_secs(1))); 100]);
        let stage = Arc::new(NextStage::new("p", next.clone()));
        let started = Instant::now();
        let sending = tokio::spawn({
            let stage = stage.clone();
            async move { stage.deliver(spans(1, true)).await }
        });
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        stage.shut_down_by(Instant::now() + Duration::from_millis(200));
        let error = sending.await.unwrap().unwrap_err();
        assert!(
            matches!(error, Undelivered::DeadlinePassed(Some(_))),
            "{error}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(2_700));
        assert!(stage.deadline_passed());
        // Once it passed, nothing is attempted.
        let attempts = next.attempts.lock().len();
        assert!(matches!(
            stage.deliver(spans(1, true)).await,
            Err(Undelivered::DeadlinePassed(None))
        ));
        assert_eq!(next.attempts.lock().len(), attempts);

        // An attempt the next stage never answers ends at the deadline set
        // while it runs.
        let stage = Arc::new(NextStage::new("p", Arc::new(Stuck)));
        let sending = tokio::spawn({
            let stage = stage.clone();
            async move { stage.deliver(spans(1, true)).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let at = Instant::now() + Duration::from_secs(1);
        stage.shut_down_by(at);
        assert!(matches!(
            sending.await.unwrap(),
            Err(Undelivered::DeadlinePassed(None))
        ));
        assert_eq!(Instant::now(), at);
    }
}
