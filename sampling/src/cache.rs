//! A bounded least-recently-used map, used for the decision caches (trace ID
//! -> decision) and for `string_attribute`'s regex results (value -> matched).
//!
//! Entries live in one `Vec` linked into a recency list by index, with a hash
//! map from key to index; a full cache reuses the least recently used slot, so
//! it never allocates after reaching its capacity. Capacity 0 is a disabled
//! cache: it stores nothing.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use crate::clock::Timestamp;
use crate::trace_id::TraceId;

const NIL: u32 = u32::MAX;

struct Node<K, V> {
    key: K,
    value: V,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
}

/// A map of at most `capacity` entries that forgets the least recently used.
pub(crate) struct LruCache<K, V> {
    map: HashMap<K, u32>,
    nodes: Vec<Node<K, V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    capacity: usize,
}

impl<K, V> fmt::Debug for LruCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LruCache")
            .field("len", &self.nodes.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V> LruCache<K, V> {
    /// A cache of `capacity` entries (capped at `u32::MAX - 1`); 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        LruCache {
            map: HashMap::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.min(NIL as usize - 1),
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Looks `key` up and marks it most recently used.
    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let index = *self.map.get(key)?;
        self.touch(index);
        Some(&self.nodes[index as usize].value)
    }

    /// Looks `key` up without changing recency.
    #[cfg(test)]
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let index = *self.map.get(key)?;
        Some(&self.nodes[index as usize].value)
    }

    /// Inserts or replaces `key`, evicting the least recently used entry when
    /// full. Does nothing when the cache is disabled.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some(&index) = self.map.get(&key) {
            self.nodes[index as usize].value = value;
            self.touch(index);
            return;
        }
        let index = if self.nodes.len() < self.capacity {
            let index = self.nodes.len() as u32;
            self.nodes.push(Node {
                key: key.clone(),
                value,
                prev: NIL,
                next: NIL,
            });
            index
        } else {
            // Reuse the least recently used slot.
            let index = self.tail;
            self.unlink(index);
            let node = &mut self.nodes[index as usize];
            let old = std::mem::replace(&mut node.key, key.clone());
            node.value = value;
            self.map.remove(&old);
            index
        };
        self.map.insert(key, index);
        self.push_front(index);
    }

    fn touch(&mut self, index: u32) {
        if self.head != index {
            self.unlink(index);
            self.push_front(index);
        }
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let n = &self.nodes[index as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, index: u32) {
        let old_head = self.head;
        {
            let n = &mut self.nodes[index as usize];
            n.prev = NIL;
            n.next = old_head;
        }
        if old_head == NIL {
            self.tail = index;
        } else {
            self.nodes[old_head as usize].prev = index;
        }
        self.head = index;
    }
}

/// What a decision cache remembers about a decided trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CachedDecision {
    /// When the decision was made (for `sampling_late_span_age`).
    pub(crate) decided_at: Timestamp,
    /// Config index of the policy that sampled it, if any.
    pub(crate) policy: Option<u32>,
}

/// Trace IDs with their decision, one cache for sampled and one for not
/// sampled traces, as in otelcol.
pub(crate) type DecisionCache = LruCache<TraceId, CachedDecision>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut c: LruCache<String, u32> = LruCache::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        assert_eq!(c.get("a"), Some(&1)); // a is now most recent
        c.insert("c".into(), 3); // evicts b
        assert_eq!(c.peek("b"), None);
        assert_eq!(c.peek("a"), Some(&1));
        assert_eq!(c.peek("c"), Some(&3));
        c.insert("a".into(), 10); // replace, a most recent
        c.insert("d".into(), 4); // evicts c
        assert_eq!(c.peek("c"), None);
        assert_eq!(c.peek("a"), Some(&10));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let mut c: LruCache<u8, u8> = LruCache::new(0);
        c.insert(1, 1);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn long_run_keeps_the_most_recent() {
        let mut c: LruCache<u32, u32> = LruCache::new(100);
        for i in 0..10_000u32 {
            c.insert(i, i);
            if i % 7 == 0 {
                // keep touching an old key: it must survive
                assert_eq!(c.get(&0), Some(&0));
            }
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.peek(&0), Some(&0));
        assert_eq!(c.peek(&9_999), Some(&9_999));
        assert_eq!(c.peek(&9_800), None);
    }
}
