//! A bounded FIFO measured in caller-chosen units (requests, items or bytes),
//! shared by producers (`consume`) and the sending workers.

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

#[derive(Debug)]
struct State<T> {
    entries: VecDeque<(T, u64)>,
    used: u64,
    closed: bool,
}

/// A bounded multi-producer, multi-consumer queue.
#[derive(Debug)]
pub(crate) struct BoundedQueue<T> {
    state: Mutex<State<T>>,
    capacity: u64,
    not_empty: Notify,
    not_full: Notify,
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` units.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                used: 0,
                closed: false,
            }),
            capacity,
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

    /// Queues `entry` of `size` units if there is room now.
    pub(crate) fn try_push(&self, entry: T, size: u64) -> Result<(), PushError<T>> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed(entry));
        }
        if size > self.capacity {
            return Err(PushError::TooLarge(entry));
        }
        if state.used + size > self.capacity {
            return Err(PushError::Full(entry));
        }
        state.used += size;
        state.entries.push_back((entry, size));
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Queues `entry`, waiting for room while the queue is full.
    pub(crate) async fn push_wait(&self, mut entry: T, size: u64) -> Result<(), PushError<T>> {
        loop {
            let mut notified = pin!(self.not_full.notified());
            notified.as_mut().enable();
            match self.try_push(entry, size) {
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
                if let Some((entry, size)) = state.entries.pop_front() {
                    state.used -= size;
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
        let out = state.entries.drain(..).map(|(e, _)| e).collect();
        drop(state);
        self.not_full.notify_waiters();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_by_units() {
        let q = BoundedQueue::new(10);
        assert!(q.try_push("a", 6).is_ok());
        assert!(matches!(q.try_push("b", 5), Err(PushError::Full("b"))));
        assert!(matches!(q.try_push("c", 11), Err(PushError::TooLarge("c"))));
        assert!(q.try_push("d", 4).is_ok());
        assert_eq!(q.used(), 10);
        assert_eq!(q.pop().await, Some("a"));
        assert_eq!(q.used(), 4);
        q.close();
        assert!(matches!(q.try_push("e", 1), Err(PushError::Closed("e"))));
        assert_eq!(q.pop().await, Some("d"));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn push_wait_waits_for_room() {
        let q = Arc::new(BoundedQueue::new(1));
        q.try_push(1, 1).unwrap();
        let pusher = tokio::spawn({
            let q = q.clone();
            async move { q.push_wait(2, 1).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        assert_eq!(q.pop().await, Some(1));
        assert!(pusher.await.unwrap());
        assert_eq!(q.pop().await, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_blocked_pushers_and_poppers() {
        let q = Arc::new(BoundedQueue::<u32>::new(1));
        let popper = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(popper.await.unwrap(), None);
    }
}
