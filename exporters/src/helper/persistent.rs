//! The persistent part of a sending queue (`sending_queue.storage`): each
//! accepted request is stored under its own key before `consume` returns,
//! and its key is deleted once the request was sent or given up on. A key
//! left at start belongs to a request accepted before a crash or a shutdown
//! that could not deliver it; it is queued again.
//!
//! Keys are `<sequence>-<items>-<bytes>` (sequence zero-padded, so key order
//! is acceptance order), so a recovered request can be sized for the queue
//! without reading it. Values are the request's protobuf encoding. There is
//! one storage client per exporter and signal (`exporter_<id>_<signal>`).
//!
//! Within one process, a reload runs two generations of the same exporter on
//! the same client for a while. They share a [`KeyRegistry`] (found by the
//! client's location) that says which keys a live queue holds, so the new
//! generation never sends what the old one still has in flight, and picks up
//! what the old one leaves behind when it stops.

use bytes::Bytes;
use collector_core::component::storage::{Storage, StorageClient, StorageError, sanitize_name};
use collector_core::pdata::{Batch, Payload, Signal};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Weak};
use tokio::sync::watch;

/// A stored request's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StoredKey {
    /// Acceptance order.
    pub(crate) seq: u64,
    /// Spans, data points or log records in it.
    pub(crate) items: u64,
    /// Size of its protobuf encoding.
    pub(crate) bytes: u64,
}

impl StoredKey {
    pub(crate) fn name(&self) -> String {
        format!("{:020}-{}-{}", self.seq, self.items, self.bytes)
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('-');
        let key = StoredKey {
            seq: parts.next()?.parse().ok()?,
            items: parts.next()?.parse().ok()?,
            bytes: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(key)
    }
}

/// Which keys of one storage client live queues of this process hold, the
/// next sequence number, and a counter bumped whenever keys are let go.
#[derive(Debug)]
struct KeyRegistry {
    state: Mutex<KeyState>,
    released: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct KeyState {
    next_seq: u64,
    claimed: HashSet<u64>,
}

/// Registries by storage location.
static REGISTRIES: LazyLock<Mutex<HashMap<String, Weak<KeyRegistry>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry(location: &str) -> Arc<KeyRegistry> {
    let mut all = REGISTRIES.lock();
    if let Some(found) = all.get(location).and_then(Weak::upgrade) {
        return found;
    }
    let made = Arc::new(KeyRegistry {
        state: Mutex::new(KeyState::default()),
        released: watch::Sender::new(0),
    });
    all.retain(|_, weak| weak.strong_count() > 0);
    all.insert(location.to_string(), Arc::downgrade(&made));
    made
}

/// A stored request could not be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The bytes are not an export request.
    #[error("stored request {key} is not a valid export request: {reason}")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The stored requests of one exporter and signal.
#[derive(Debug)]
pub(crate) struct PersistentStore {
    client: Arc<dyn StorageClient>,
    registry: Arc<KeyRegistry>,
    signal: Signal,
}

impl PersistentStore {
    /// Opens the client of exporter `exporter_id` for `signal`.
    pub(crate) async fn open(
        storage: &dyn Storage,
        exporter_id: &str,
        signal: Signal,
    ) -> Result<Self, StorageError> {
        let owner = owner_name(exporter_id, signal);
        let client = storage.client(&owner).await?;
        Ok(Self {
            registry: registry(client.location()),
            client,
            signal,
        })
    }

    /// The signal of the requests.
    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// Where the requests are stored.
    pub(crate) fn location(&self) -> &str {
        self.client.location()
    }

    /// Claims every stored request no live queue of this process holds,
    /// oldest first. Keys that are not ours are left alone.
    pub(crate) async fn claim_unclaimed(&self) -> Result<Vec<StoredKey>, StorageError> {
        let mut keys = Vec::new();
        for name in self.client.keys().await? {
            match StoredKey::parse(&name) {
                Some(key) => keys.push(key),
                None => tracing::warn!(
                    location = self.location(),
                    key = %name,
                    "ignoring an unknown file in the persistent queue's directory"
                ),
            }
        }
        keys.sort();
        let mut state = self.registry.state.lock();
        if let Some(last) = keys.last() {
            state.next_seq = state.next_seq.max(last.seq.saturating_add(1));
        }
        Ok(keys
            .into_iter()
            .filter(|key| state.claimed.insert(key.seq))
            .collect())
    }

    /// Stores `payload` under a new key, claimed by the caller.
    pub(crate) async fn store(&self, payload: &Payload) -> Result<StoredKey, StorageError> {
        let key = {
            let mut state = self.registry.state.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.claimed.insert(seq);
            StoredKey {
                seq,
                items: payload.item_count() as u64,
                bytes: payload.encoded_len() as u64,
            }
        };
        match self.client.set(&key.name(), payload.to_protobuf()).await {
            Ok(()) => Ok(key),
            Err(e) => {
                self.registry.state.lock().claimed.remove(&key.seq);
                Err(e)
            }
        }
    }

    /// Reads a stored request back; `None` when it is gone.
    pub(crate) async fn load(&self, key: StoredKey) -> Result<Option<Payload>, LoadError> {
        let Some(bytes) = self.client.get(&key.name()).await? else {
            return Ok(None);
        };
        decode(self.signal, bytes)
            .map(Some)
            .map_err(|reason| LoadError::Decode {
                key: key.name(),
                reason,
            })
    }

    /// Deletes a request that is done with (sent or given up on). When the
    /// delete fails the key stays claimed, so this process does not send it
    /// again; the next start will (at-least-once).
    pub(crate) async fn remove(&self, key: StoredKey) {
        match self.client.delete(&key.name()).await {
            Ok(()) => {
                self.registry.state.lock().claimed.remove(&key.seq);
            }
            Err(e) => tracing::error!(
                location = self.location(),
                key = %key.name(),
                error = %e,
                "cannot delete a delivered request from the persistent queue; it will be sent again after a restart"
            ),
        }
    }

    /// Lets go of requests that stay stored (not delivered by this queue),
    /// for a newer generation or the next start to send.
    pub(crate) fn release(&self, keys: &[StoredKey]) {
        if keys.is_empty() {
            return;
        }
        {
            let mut state = self.registry.state.lock();
            for key in keys {
                state.claimed.remove(&key.seq);
            }
        }
        self.registry.released.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever some queue releases requests.
    pub(crate) fn released(&self) -> watch::Receiver<u64> {
        self.registry.released.subscribe()
    }
}

/// The storage client of an exporter and signal: `exporter_<type>_<signal>`
/// or `exporter_<type>-<name>_<signal>` (a type has no `-`, so ids never
/// collide; a name with characters a file name cannot hold gets them
/// replaced and a hash of the original appended).
pub(crate) fn owner_name(exporter_id: &str, signal: Signal) -> String {
    let (kind, name) = match exporter_id.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (exporter_id, None),
    };
    let mut owner = format!("exporter_{}", sanitize_name(kind));
    if let Some(name) = name {
        let clean = sanitize_name(name);
        owner.push('-');
        owner.push_str(&clean);
        if clean != name {
            // FNV-1a: stable across runs and builds.
            let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            owner.push_str(&format!("-{:08x}", hash as u32));
        }
    }
    owner.push('_');
    owner.push_str(signal.as_str());
    owner
}

fn decode(signal: Signal, bytes: Bytes) -> Result<Payload, String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    Ok(match signal {
        Signal::Traces => Payload::Traces(Batch::decode(bytes).map_err(|e| error(&e))?),
        Signal::Metrics => Payload::Metrics(Batch::decode(bytes).map_err(|e| error(&e))?),
        Signal::Logs => Payload::Logs(Batch::decode(bytes).map_err(|e| error(&e))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_do_not_collide() {
        assert_eq!(owner_name("otlp", Signal::Traces), "exporter_otlp_traces");
        assert_eq!(
            owner_name("otlp/backup", Signal::Logs),
            "exporter_otlp-backup_logs"
        );
        let a = owner_name("otlp/a_b", Signal::Traces);
        let b = owner_name("otlp_a/b", Signal::Traces);
        let c = owner_name("otlp/a b", Signal::Traces);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(c, owner_name("otlp/a b", Signal::Traces), "stable");
        assert!(collector_core::component::storage::valid_name(&c), "{c}");
    }

    #[test]
    fn keys_round_trip_and_sort_in_acceptance_order() {
        let key = StoredKey {
            seq: 42,
            items: 7,
            bytes: 1234,
        };
        assert_eq!(key.name(), "00000000000000000042-7-1234");
        assert_eq!(StoredKey::parse(&key.name()), Some(key));
        assert_eq!(StoredKey::parse("42-7"), None);
        assert_eq!(StoredKey::parse("42-7-1-2"), None);
        assert_eq!(StoredKey::parse("x-7-1"), None);
        let (a, b) = (
            StoredKey {
                seq: 9,
                items: 1,
                bytes: 1,
            },
            StoredKey {
                seq: 10,
                items: 1,
                bytes: 1,
            },
        );
        assert!(a.name() < b.name());
    }
}
