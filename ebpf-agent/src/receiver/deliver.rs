//! Hands what the receiver produced to its pipeline: retries retryable
//! refusals with backoff until the shutdown deadline, counts the rest.

use collector_core::consumer::BoxConsumer;
use collector_core::observe::{Counter, RateLimitedLog};
use collector_core::pdata::{Payload, Telemetry as Data};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where refusals are counted.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) accepted: Counter,
    pub(crate) refused: Counter,
}

/// Delivers one batch. `deadline` (set at shutdown) bounds the retries.
pub(crate) async fn deliver(
    consumer: &BoxConsumer,
    payload: Payload,
    outcome: &Outcome,
    deadline: &mut watch::Receiver<Option<Instant>>,
    log: &RateLimitedLog,
) {
    let items = payload.item_count() as u64;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match consumer.consume(Data::new(payload.clone())).await {
            Ok(()) => {
                outcome.accepted.add(items);
                return;
            }
            Err(e) => e,
        };
        let give_up_at = *deadline.borrow();
        let wait = error.retry_after().unwrap_or(backoff);
        let past_deadline = give_up_at.is_some_and(|d| Instant::now() + wait > d);
        if !error.is_retryable() || past_deadline {
            outcome.refused.add(items);
            if let Some(suppressed) = log.check() {
                tracing::warn!(
                    items,
                    suppressed,
                    error = %error,
                    retryable = error.is_retryable(),
                    "the pipeline refused telemetry from the kernel; dropped"
                );
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Shutdown began: re-check the deadline now.
            changed = deadline.changed() => {
                if changed.is_err() {
                    // The receiver is gone: nobody waits for this batch.
                    outcome.refused.add(items);
                    return;
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
