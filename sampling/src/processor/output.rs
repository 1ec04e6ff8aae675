//! Sampled spans on their way out: each shard's output queue of encoded
//! requests, bounded for the whole processor, and the delivery task that
//! hands them to the next stage, so that a shard never waits for it.
//!
//! The bound holds at admission: while the queues hold
//! [`OutputBudget::is_full`] bytes, `consume` refuses new spans with
//! `RESOURCE_EXHAUSTED`. The shards themselves never wait and never drop: a
//! decided trace always goes into the queue, so the queues can exceed the
//! bound by what was accepted before it was reached (the shards' input
//! queues and buffered traces, both bounded themselves).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use collector_core::pdata::{Telemetry, Traces};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::shared::Shared;

/// Spans and encoded bytes in the output queues of a processor (queued, or
/// taken by a delivery task and not delivered yet), against its bound.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    max_bytes: usize,
    spans: AtomicUsize,
    bytes: AtomicUsize,
}

impl OutputBudget {
    pub(crate) fn new(max_bytes: usize) -> Self {
        OutputBudget {
            max_bytes,
            spans: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// True when the queues hold their bound or more: new spans are refused.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    /// Spans and bytes held.
    pub(crate) fn used(&self) -> (usize, usize) {
        (
            self.spans.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn add(&self, spans: usize, bytes: usize) {
        self.spans.fetch_add(spans, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&self, spans: usize, bytes: usize) {
        let sub = |counter: &AtomicUsize, n: usize| {
            // Never below 0, also after `clear`.
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.spans, spans);
        sub(&self.bytes, bytes);
    }

    /// Forgets everything held (the tasks were stopped); the spans it held.
    pub(crate) fn clear(&self) -> usize {
        self.bytes.store(0, Ordering::Relaxed);
        self.spans.swap(0, Ordering::Relaxed)
    }
}

/// One encoded `ExportTraceServiceRequest`.
#[derive(Debug)]
struct Encoded {
    bytes: Bytes,
    spans: usize,
}

#[derive(Debug, Default)]
struct Queue {
    requests: VecDeque<Encoded>,
    closed: bool,
}

/// A shard's output queue, drained by its delivery task ([`deliver`]).
#[derive(Debug)]
pub(crate) struct Output {
    queue: Mutex<Queue>,
    wake: Notify,
    budget: Arc<OutputBudget>,
}

impl Output {
    pub(crate) fn new(budget: Arc<OutputBudget>) -> Self {
        Output {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            budget,
        }
    }

    /// Queues an encoded request of `spans` spans. Never waits.
    pub(crate) fn push(&self, bytes: Bytes, spans: usize) {
        if spans == 0 {
            return;
        }
        self.budget.add(spans, bytes.len());
        self.queue
            .lock()
            .requests
            .push_back(Encoded { bytes, spans });
        self.wake.notify_one();
    }

    /// No more requests: the delivery task ends once it delivered the rest.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.wake.notify_one();
    }

    /// Waits for requests and takes the oldest ones, together at most
    /// `max_spans` spans (at least one request); `None` once the queue is
    /// closed and empty. What is taken stays in the budget until released.
    async fn take(&self, max_spans: usize) -> Option<Vec<Encoded>> {
        loop {
            {
                let mut queue = self.queue.lock();
                if !queue.requests.is_empty() {
                    let mut taken = Vec::new();
                    let mut spans = 0;
                    while let Some(next) = queue.requests.front() {
                        if !taken.is_empty() && spans + next.spans > max_spans {
                            break;
                        }
                        spans += next.spans;
                        taken.extend(queue.requests.pop_front());
                    }
                    return Some(taken);
                }
                if queue.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

/// A shard's delivery task: takes what its shard queued, several requests
/// at a time up to `max_spans` spans (their bytes kept as they are, no
/// copy), and hands them to the next stage, which retries retryable
/// refusals; what cannot be delivered is counted as dropped. Ends once the
/// queue is closed and empty.
pub(crate) async fn deliver(output: Arc<Output>, shared: Arc<Shared>, max_spans: usize) {
    while let Some(requests) = output.take(max_spans).await {
        let spans: usize = requests.iter().map(|r| r.spans).sum();
        let bytes: usize = requests.iter().map(|r| r.bytes.len()).sum();
        let mut batch = Traces::default();
        let mut unreadable = 0;
        for request in requests {
            match Traces::decode(request.bytes) {
                Ok(part) => batch.append(part),
                Err(e) => {
                    unreadable += request.spans;
                    shared.dropped(request.spans, &format!("cannot read them back: {e}"));
                }
            }
        }
        if spans > unreadable
            && let Err(reason) = shared.next.deliver(Telemetry::from(batch)).await
        {
            shared.dropped(spans - unreadable, &reason.to_string());
        }
        output.budget.release(spans, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_groups_the_oldest_requests_up_to_the_span_limit() {
        let budget = Arc::new(OutputBudget::new(100));
        let output = Output::new(budget.clone());
        for spans in [3, 4, 5, 20] {
            output.push(Bytes::from(vec![0u8; spans]), spans);
        }
        output.push(Bytes::new(), 0);
        assert_eq!(budget.used(), (32, 32));
        let sizes = |taken: Vec<Encoded>| taken.iter().map(|e| e.spans).collect::<Vec<_>>();
        assert_eq!(sizes(output.take(10).await.unwrap()), [3, 4]);
        // One request larger than the limit goes alone.
        assert_eq!(sizes(output.take(10).await.unwrap()), [5]);
        assert_eq!(sizes(output.take(10).await.unwrap()), [20]);
        output.close();
        assert!(output.take(10).await.is_none());
        // Taken is still held until released.
        assert_eq!(budget.used(), (32, 32));
        assert!(!budget.is_full());
        budget.release(32, 32);
        assert_eq!(budget.used(), (0, 0));
        budget.release(1, 1);
        assert_eq!(budget.used(), (0, 0));
    }

    #[test]
    fn the_budget_is_full_at_its_bound() {
        let budget = OutputBudget::new(10);
        budget.add(1, 9);
        assert!(!budget.is_full());
        budget.add(1, 1);
        assert!(budget.is_full());
        assert_eq!(budget.clear(), 2);
        assert!(!budget.is_full());
    }
}
