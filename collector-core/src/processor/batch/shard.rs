//! One batcher: the queue `consume` fills and the worker task that turns it
//! into batches for the next stage.

use super::deliver::{Shared, Trigger};
use crate::pdata::{ClientInfo, Payload};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The batcher of one client-metadata combination (or the only one, without
/// `metadata_keys`).
#[derive(Debug)]
pub(super) struct Shard {
    queue: Mutex<Queue>,
    wake: Notify,
    /// What every batch sent from this shard carries as its client.
    pub(super) client: ClientInfo,
}

/// Data accepted by `consume` that the worker has not taken yet.
#[derive(Debug, Default)]
struct Queue {
    parts: Vec<Payload>,
    items: usize,
    bytes: usize,
    closed: bool,
}

impl Shard {
    /// A shard whose batches carry `client`.
    pub(super) fn new(client: ClientInfo) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            client,
        }
    }

    /// Queues accepted data for the worker; hands it back once the shard is
    /// closed (the worker has made or is making its final pass).
    pub(super) fn push(&self, payload: Payload, items: usize, bytes: usize) -> Result<(), Payload> {
        {
            let mut queue = self.queue.lock();
            if queue.closed {
                return Err(payload);
            }
            queue.parts.push(payload);
            queue.items += items;
            queue.bytes += bytes;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Refuses further data and wakes the worker for its final flush.
    pub(super) fn close(&self) {
        self.queue.lock().closed = true;
        self.wake.notify_one();
    }

    /// Moves everything queued into `held`; true when the shard is closed.
    /// Data pushed before `close` is always seen by the pass that sees `closed`.
    fn drain_into(&self, held: &mut Held) -> bool {
        let mut queue = self.queue.lock();
        held.parts.append(&mut queue.parts);
        held.items += std::mem::take(&mut queue.items);
        held.bytes += std::mem::take(&mut queue.bytes);
        queue.closed
    }
}

/// What the worker holds: parts in arrival order, merged only when a batch
/// is cut (so a trickle of small requests is not re-copied on every arrival).
#[derive(Default)]
struct Held {
    parts: Vec<Payload>,
    items: usize,
    /// Bytes reserved in the budget for these parts.
    bytes: usize,
}

/// A batch cut from what the worker holds, with its share of the budget.
pub(super) struct Chunk {
    pub(super) payload: Payload,
    pub(super) items: usize,
    pub(super) bytes: usize,
}

impl Held {
    /// Cuts the oldest `max_items` items (all when `max_items` is 0).
    fn take_chunk(&mut self, max_items: usize, shared: &Shared) -> Option<Chunk> {
        let merged = shared.merge(std::mem::take(&mut self.parts));
        let Some(mut merged) = merged.filter(|m| m.item_count() > 0) else {
            shared.budget.release(
                std::mem::take(&mut self.items),
                std::mem::take(&mut self.bytes),
            );
            return None;
        };
        let total = merged.item_count();
        if total < self.items {
            // Parts merge refused (and counted as dropped) leave the budget too.
            shared.budget.release(self.items - total, 0);
        }
        let payload = if max_items > 0 && total > max_items {
            let front = merged.split_front(max_items);
            self.parts.push(merged);
            front
        } else {
            merged
        };
        let items = payload.item_count();
        let left = total - items;
        // Bytes leave in proportion to items; the last chunk takes the rest,
        // so the budget always returns to what it was.
        let bytes = if left == 0 {
            self.bytes
        } else {
            let share = (self.bytes as u128 * items as u128) / (total.max(1) as u128);
            usize::try_from(share).unwrap_or(self.bytes).min(self.bytes)
        };
        self.bytes -= bytes;
        self.items = left;
        if left == 0 && self.bytes > 0 {
            // Nothing left to attribute them to.
            shared.budget.release(0, std::mem::take(&mut self.bytes));
        }
        Some(Chunk {
            payload,
            items,
            bytes,
        })
    }
}

/// The worker of one shard: cuts batches when `send_batch_size` is reached or
/// the timeout expires, and on close flushes everything it holds.
pub(super) async fn run(shared: Arc<Shared>, shard: Arc<Shard>) {
    let settings = shared.settings;
    let mut held = Held::default();
    let mut deadline: Option<Instant> = None;
    loop {
        if shard.drain_into(&mut held) {
            while let Some(chunk) = next_chunk(&mut held, settings.max_items, &shared) {
                shared.deliver(&shard, chunk, Trigger::Shutdown).await;
            }
            return;
        }

        let mut sent = false;
        while held.items > 0 && held.items >= settings.size_trigger {
            let Some(chunk) = held.take_chunk(settings.max_items, &shared) else {
                break;
            };
            shared.deliver(&shard, chunk, Trigger::Size).await;
            sent = true;
        }
        if settings.timeout.is_zero() {
            while let Some(chunk) = next_chunk(&mut held, settings.max_items, &shared) {
                shared.deliver(&shard, chunk, Trigger::Size).await;
                sent = true;
            }
        }
        if sent {
            // As otelcol resets its timer after a size-triggered send.
            deadline = (held.items > 0).then(|| Instant::now() + settings.timeout);
            continue;
        }
        if held.items > 0 && deadline.is_none() {
            deadline = Some(Instant::now() + settings.timeout);
        }

        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shard.wake.notified() => {}
            () = timer => {
                deadline = None;
                if !shard.drain_into(&mut held) {
                    while let Some(chunk) = next_chunk(&mut held, settings.max_items, &shared) {
                        shared.deliver(&shard, chunk, Trigger::Timeout).await;
                    }
                }
                // When closed, the next pass flushes.
            }
        }
    }
}

fn next_chunk(held: &mut Held, max_items: usize, shared: &Shared) -> Option<Chunk> {
    if held.items == 0 && held.parts.is_empty() {
        return None;
    }
    held.take_chunk(max_items, shared)
}
