//! The workers of a backend: send what its queue holds, retry on the same
//! backend while it is still the data's owner, and hand data back to the
//! router when the backend cannot take it.
//!
//! A failure is handled by its kind:
//! - permanent (InvalidArgument, ...): dropped, counted, logged;
//! - the connection failed (refused, reset, cannot connect) or the attempt
//!   timed out (the backend accepts connections but does not answer, e.g.
//!   it is frozen): the backend is quarantined (left out of the ring for a
//!   while) and the data re-routed to the trace's new owner at once; after
//!   a timeout the backend also gets a new connection (see
//!   `Balancer::reconnect`);
//! - other retryable failures (Unavailable or ResourceExhausted from the
//!   server: it is alive and pushing back): retried on the same backend with
//!   `protocol.otlp.retry_on_failure`; when those retries run out the
//!   backend is quarantined and the data re-routed. A retry wait ends early
//!   when the backend leaves the ring (resolver change or quarantine), and
//!   the data is re-routed then.

use super::backend::{Backend, Item};
use super::balancer::Balancer;
use super::routing::split_to_fit;
use crate::helper::retry::Backoff;
use crate::helper::{SendOutcome, Sender};
use collector_core::config::duration;
use collector_core::consumer::{ConsumeError, ErrorKind};
use std::pin::pin;
use std::sync::Arc;
use tokio::time::Instant;

/// How one part's delivery ended.
enum Delivered {
    /// Sent or given up on (counted).
    Done,
    /// To be routed again.
    Reroute(Item),
    /// The shutdown deadline passed.
    Stopped(Item),
}

/// Whether an error means the backend could not be reached, or the
/// connection broke (as opposed to a server that answered with an error).
/// The gRPC transport reports these as Unavailable ("tcp connect error")
/// or, when the connection dies mid-request, as Unknown ("transport
/// error"), which reads as Internal and would otherwise be final.
pub(crate) fn is_connection_failure(error: &ConsumeError) -> bool {
    if !matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
        return false;
    }
    let message = error.message().to_ascii_lowercase();
    [
        "cannot connect",
        "connection refused",
        "tcp connect",
        "error trying to connect",
        "transport error",
        "connection reset",
        "broken pipe",
        "connection closed",
        "connection aborted",
        "no route to host",
        "network is unreachable",
        "host is unreachable",
        "dns error",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// A worker of `backend`: runs until the backend is closed and empty, or the
/// shutdown deadline passed.
pub(crate) async fn work(balancer: Arc<Balancer>, backend: Arc<Backend>) {
    loop {
        let item = tokio::select! {
            biased;
            _ = balancer.hard_stop.cancelled() => return,
            next = backend.pop() => match next {
                Some(item) => item,
                None => return,
            },
        };
        deliver(&balancer, &backend, item).await;
    }
}

/// Sends an item, in parts that fit the transport's request limit.
async fn deliver(balancer: &Arc<Balancer>, backend: &Arc<Backend>, mut item: Item) {
    let limit = backend.sender().max_request_bytes();
    let payload = std::mem::replace(
        &mut item.payload,
        collector_core::pdata::Payload::empty(collector_core::pdata::Signal::Traces),
    );
    let mut pieces = split_to_fit(payload, limit).into_iter();
    let Some(first) = pieces.next() else {
        return;
    };
    let siblings: Vec<Item> = pieces.map(|p| item.sibling(p)).collect();
    balancer.add_held(&item, siblings.len());
    item.payload = first;
    let mut parts = std::iter::once(item).chain(siblings);
    while let Some(part) = parts.next() {
        match deliver_one(balancer, backend, part).await {
            Delivered::Done => {}
            Delivered::Reroute(part) => {
                balancer.reroute(std::iter::once(part).chain(parts).collect());
                return;
            }
            Delivered::Stopped(part) => {
                let error =
                    ConsumeError::unavailable(format!("exporter {} is shutting down", balancer.id));
                for part in std::iter::once(part).chain(parts) {
                    balancer.finish_failed(
                        part,
                        &error,
                        "the shutdown deadline passed while sending",
                    );
                }
                return;
            }
        }
    }
}

async fn deliver_one(balancer: &Balancer, backend: &Backend, mut item: Item) -> Delivered {
    let mut backoff: Option<Backoff> = None;
    loop {
        let mut changed = pin!(backend.changed.notified());
        changed.as_mut().enable();
        if backend.is_removed() || !backend.is_eligible() {
            return Delivered::Reroute(item);
        }
        if let Some(at) = item.not_before {
            if at > Instant::now() {
                tokio::select! {
                    biased;
                    _ = balancer.hard_stop.cancelled() => return Delivered::Stopped(item),
                    _ = changed.as_mut() => continue,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            item.not_before = None;
            continue;
        }
        let started = Instant::now();
        let sender = backend.sender();
        let result = tokio::select! {
            biased;
            _ = balancer.hard_stop.cancelled() => return Delivered::Stopped(item),
            result = attempt(balancer, &sender, &item) => result,
        };
        // Nothing came back within the attempt timeout, whichever timer
        // ended the attempt: ours, or tonic's enforcement of the
        // `grpc-timeout` header (the same duration), which reports itself as
        // a transport error ("Timeout expired") and may fire first.
        let timeout = balancer.settings.attempt_timeout;
        let unanswered = result.is_err() && !timeout.is_zero() && started.elapsed() >= timeout;
        backend.metrics.attempt(result.is_ok(), started);
        let error = match result {
            Ok(outcome) => {
                balancer.healthy(backend);
                balancer.finish_sent(item, &outcome);
                return Delivered::Done;
            }
            Err(error) => error,
        };
        if is_connection_failure(&error) || error.kind() == ErrorKind::DeadlineExceeded {
            balancer.quarantine(backend, &error);
            if unanswered {
                balancer.reconnect(backend, &sender);
            }
            return Delivered::Reroute(item);
        }
        if !error.is_retryable() {
            balancer.finish_failed(item, &error, "not retryable");
            return Delivered::Done;
        }
        let retry = &balancer.settings.backend_retry;
        let delay = if retry.enabled {
            backoff
                .get_or_insert_with(|| Backoff::new(retry))
                .next_delay(error.retry_after())
        } else {
            None
        };
        let Some(delay) = delay else {
            balancer.quarantine(backend, &error);
            return Delivered::Reroute(item);
        };
        if let Some(suppressed) = balancer.retry_log.check() {
            tracing::debug!(
                exporter = %balancer.id,
                endpoint = %backend.endpoint.dial,
                data_type = item.payload.signal().as_str(),
                error = %error,
                interval = %duration::format(delay),
                suppressed,
                "Exporting failed. Will retry the request after interval."
            );
        }
        tokio::select! {
            biased;
            _ = balancer.hard_stop.cancelled() => return Delivered::Stopped(item),
            _ = changed.as_mut() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One send over `sender`, bounded by the attempt timeout.
async fn attempt(
    balancer: &Balancer,
    sender: &Arc<dyn Sender>,
    item: &Item,
) -> Result<SendOutcome, ConsumeError> {
    let timeout = balancer.settings.attempt_timeout;
    let send = sender.send(&item.payload);
    if timeout.is_zero() {
        return send.await;
    }
    match tokio::time::timeout(timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(ConsumeError::new(
            ErrorKind::DeadlineExceeded,
            format!("request timed out after {}", duration::format(timeout)),
        )),
    }
}
