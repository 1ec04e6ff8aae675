//! A bounded FIFO measured in caller-chosen units (requests, items or bytes)
//! and, whatever the units, in bytes of encoded data; shared by producers
//! (`consume`) and the sending workers.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::pin::pin;
use tokio::sync::Notify;

/// Why an entry was not queued; the entry is handed back.
#[derive(Debug)]
pub(crate) enum PushError<T> {
    /// No room for it now.
    Full(T),
    /// Bigger than the whole queue: it can never fit.
    TooLarge(T),
    /// The queue is closed (shutting down).
    Closed(T),
}

/// What an entry takes from the queue's two budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Weight {
    /// Units of the configured sizer.
    pub(crate) units: u64,
    /// Encoded bytes held in memory.
    pub(crate) bytes: u64,
}

#[derive(Debug)]
struct State<T> {
    entries: VecDeque<(T, Weight)>,
    used: u64,
    bytes: u64,
    closed: bool,
}

/// A bounded multi-producer, multi-consumer queue.
#[derive(Debug)]
pub(crate) struct BoundedQueue<T> {
    state: Mutex<State<T>>,
    capacity: u64,
    /// Bytes the queue may hold (0 = no byte bound). A single entry larger
    /// than this is still taken when the queue is empty, so nothing becomes
    /// impossible to send; the bound keeps a request-counted queue of large
    /// batches from holding gigabytes.
    byte_capacity: u64,
    not_empty: Notify,
    not_full: Notify,
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` units and `byte_capacity` bytes (0 = unbounded bytes).
    pub(crate) fn new(capacity: u64, byte_capacity: u64) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                used: 0,
                bytes: 0,
                closed: false,
            }),
            capacity,
            byte_capacity,
            not_empty: Notify::new(),
            not_full: Notify::new(),
        }
    }

    /// Capacity in units.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Units in use.
    pub(crate) fn used(&self) -> u64 {
        self.state.lock().used
    }

    /// Whether `weight` would pass the byte bound (an empty queue always takes one entry).
    fn over_bytes(&self, state: &State<T>, weight: Weight) -> bool {
        self.byte_capacity > 0
            && !state.entries.is_empty()
            && state.bytes + weight.bytes > self.byte_capacity
    }

    /// Whether `weight` fits next to what `state` holds.
    fn room(&self, state: &State<T>, weight: Weight) -> Result<(), PushError<()>> {
        if state.closed {
            Err(PushError::Closed(()))
        } else if weight.units > self.capacity {
            Err(PushError::TooLarge(()))
        } else if state.used + weight.units > self.capacity || self.over_bytes(state, weight) {
            Err(PushError::Full(()))
        } else {
            Ok(())
        }
    }

    /// Queues `entry` if there is room now.
    pub(crate) fn try_push(&self, entry: T, weight: Weight) -> Result<(), PushError<T>> {
        let mut state = self.state.lock();
        match self.room(&state, weight) {
            Ok(()) => {}
            Err(PushError::Closed(())) => return Err(PushError::Closed(entry)),
            Err(PushError::TooLarge(())) => return Err(PushError::TooLarge(entry)),
            Err(PushError::Full(())) => return Err(PushError::Full(entry)),
        }
        state.used += weight.units;
        state.bytes += weight.bytes;
        state.entries.push_back((entry, weight));
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Whether `size` units would be taken now: `Ok` when they fit, else
    /// the reason a push would fail (with no entry to hand back).
    pub(crate) fn check(&self, weight: Weight) -> Result<(), PushError<()>> {
        self.room(&self.state.lock(), weight)
    }

    /// Queues `entry` whatever the room (it was accepted earlier, e.g. a
    /// request recovered from storage); only a closed queue refuses it.
    pub(crate) fn push_unbounded(&self, entry: T, weight: Weight) -> Result<(), PushError<T>> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed(entry));
        }
        state.used += weight.units;
        state.bytes += weight.bytes;
        state.entries.push_back((entry, weight));
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Queues `entry`, waiting for room while the queue is full.
    pub(crate) async fn push_wait(&self, mut entry: T, weight: Weight) -> Result<(), PushError<T>> {
        loop {
            let mut notified = pin!(self.not_full.notified());
            notified.as_mut().enable();
            match self.try_push(entry, weight) {
                Err(PushError::Full(back)) => entry = back,
                other => return other,
            }
            notified.await;
        }
    }

    /// The oldest entry, waiting while the queue is empty; `None` once the
    /// queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<T> {
        loop {
            let mut notified = pin!(self.not_empty.notified());
            notified.as_mut().enable();
            {
                let mut state = self.state.lock();
                if let Some((entry, weight)) = state.entries.pop_front() {
                    state.used -= weight.units;
                    state.bytes -= weight.bytes;
                    let more = !state.entries.is_empty();
                    drop(state);
                    self.not_full.notify_waiters();
                    if more {
                        // Pass the wake-up on so another worker takes the next one.
                        self.not_empty.notify_one();
                    }
                    return Some(entry);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Refuses new entries and wakes every waiter; queued entries stay
    /// for `pop` and `drain`.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.not_empty.notify_waiters();
        self.not_full.notify_waiters();
    }

    /// Removes and returns everything queued.
    pub(crate) fn drain(&self) -> Vec<T> {
        let mut state = self.state.lock();
        state.used = 0;
        state.bytes = 0;
        let out = state.entries.drain(..).map(|(e, _)| e).collect();
        drop(state);
        self.not_full.notify_waiters();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(units: u64) -> Weight {
        Weight { units, bytes: 0 }
    }
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_by_units() {
        let q = BoundedQueue::new(10, 0);
        assert!(q.try_push("a", w(6)).is_ok());
        assert!(matches!(q.try_push("b", w(5)), Err(PushError::Full("b"))));
        assert!(matches!(
            q.try_push("c", w(11)),
            Err(PushError::TooLarge("c"))
        ));
        assert!(q.try_push("d", w(4)).is_ok());
        assert_eq!(q.used(), 10);
        assert!(matches!(q.check(w(1)), Err(PushError::Full(()))));
        assert_eq!(q.pop().await, Some("a"));
        assert_eq!(q.used(), 4);
        assert!(q.check(w(4)).is_ok());
        assert!(q.push_unbounded("x", w(20)).is_ok());
        assert_eq!(q.used(), 24);
        assert_eq!(q.drain(), ["d", "x"]);
        assert!(q.try_push("d", w(4)).is_ok());
        q.close();
        assert!(matches!(q.try_push("e", w(1)), Err(PushError::Closed("e"))));
        assert!(matches!(
            q.push_unbounded("f", w(1)),
            Err(PushError::Closed("f"))
        ));
        assert_eq!(q.pop().await, Some("d"));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn push_wait_waits_for_room() {
        let q = Arc::new(BoundedQueue::new(1, 0));
        q.try_push(1, w(1)).unwrap();
        let pusher = tokio::spawn({
            let q = q.clone();
            async move { q.push_wait(2, w(1)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        assert_eq!(q.pop().await, Some(1));
        assert!(pusher.await.unwrap());
        assert_eq!(q.pop().await, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_blocked_pushers_and_poppers() {
        let q = Arc::new(BoundedQueue::<u32>::new(1, 0));
        let popper = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(popper.await.unwrap(), None);
    }

    #[test]
    fn bounded_by_bytes_too_but_never_refuses_into_an_empty_queue() {
        let q = BoundedQueue::new(1000, 100);
        let big = |bytes| Weight { units: 1, bytes };
        assert!(q.try_push("a", big(60)).is_ok());
        assert!(
            matches!(q.try_push("b", big(50)), Err(PushError::Full("b"))),
            "units fit, bytes do not"
        );
        assert!(q.try_push("c", big(40)).is_ok());
        let empty = BoundedQueue::new(1000, 100);
        assert!(
            empty.try_push("huge", big(500)).is_ok(),
            "a lone oversized request still goes"
        );
    }
}
