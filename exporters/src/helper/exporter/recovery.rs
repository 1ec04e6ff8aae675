//! The persistent queue's side of [`QueuedExporter`](super::QueuedExporter):
//! opening the storage at start, queueing what an earlier run left stored,
//! taking over what an older generation leaves behind, and finishing with a
//! stored request (deleted once done with, kept when a shutdown interrupts it).

use super::{Delivery, Entry, Shared, lane_index};
use crate::helper::Sender;
use crate::helper::persistent::{PersistentStore, StoredKey};
use collector_core::component::ComponentError;
use collector_core::component::storage::{StorageError, StorageService};
use collector_core::pdata::{Payload, Signal};
use std::sync::Arc;

impl<S: Sender> Shared<S> {
    /// Opens the storage of `sending_queue.storage` (when set) for every
    /// signal and queues what is left there.
    pub(super) async fn open_storage(self: Arc<Self>) -> Result<(), ComponentError> {
        let Some(storage_id) = self.config.queue.storage.clone() else {
            return Ok(());
        };
        let storage = StorageService::find(&self.host, &storage_id).ok_or_else(|| {
            ComponentError::new(format!(
                "sending_queue.storage: no storage extension {storage_id:?} is running \
                 (configure it under extensions and list it in service.extensions)"
            ))
        })?;
        for signal in Signal::ALL {
            let store = PersistentStore::open(storage.as_ref(), &self.id, signal)
                .await
                .map_err(|e| ComponentError::new(format!("sending_queue.storage: {e}")))?;
            let store = Arc::new(store);
            self.stores.lock()[lane_index(signal)] = Some(store.clone());
            self.recover(signal, &store)
                .await
                .map_err(|e| ComponentError::new(format!("sending_queue.storage: {e}")))?;
            // A reload's older generation may leave requests behind when it
            // stops: take them over then.
            let mut released = store.released();
            let shared = self.clone();
            self.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = shared.draining.cancelled() => return,
                        changed = released.changed() => if changed.is_err() { return },
                    }
                    if let Err(e) = shared.recover(signal, &store).await {
                        tracing::error!(exporter = %shared.id, error = %e, "cannot read the persistent queue");
                    }
                }
            });
        }
        Ok(())
    }

    /// Queues the stored requests of `signal` that no live queue holds.
    pub(super) async fn recover(
        self: &Arc<Self>,
        signal: Signal,
        store: &PersistentStore,
    ) -> Result<(), StorageError> {
        let keys = store.claim_unclaimed().await?;
        if keys.is_empty() {
            return Ok(());
        }
        let Some(lane) = self.lane(signal) else {
            store.release(&keys);
            return Ok(());
        };
        let items: u64 = keys.iter().map(|k| k.items).sum();
        let requests = keys.len();
        for (i, key) in keys.iter().enumerate() {
            let entry = Entry {
                payload: None,
                stored: Some(*key),
            };
            if lane
                .push_unbounded(entry, self.size_of(key.items, key.bytes))
                .is_err()
            {
                store.release(&keys[i..]);
                break;
            }
        }
        tracing::info!(
            exporter = %self.id,
            data_type = signal.as_str(),
            requests,
            items,
            location = store.location(),
            "requests left in the persistent queue are queued again"
        );
        Ok(())
    }

    /// Sends a stored request; deletes it once done with, keeps what a
    /// shutdown interrupted.
    pub(super) async fn process_stored(
        &self,
        signal: Signal,
        key: StoredKey,
        payload: Option<Payload>,
    ) {
        let Some(store) = self.store(signal) else {
            return;
        };
        let payload = match payload {
            Some(payload) => payload,
            None => match store.load(key).await {
                Ok(Some(payload)) => payload,
                Ok(None) => {
                    tracing::debug!(exporter = %self.id, key = %key.name(), "stored request is gone");
                    store.release(&[key]);
                    return;
                }
                Err(e) => {
                    self.metrics.send_failed(signal, key.items);
                    tracing::error!(
                        exporter = %self.id,
                        data_type = signal.as_str(),
                        dropped_items = key.items,
                        error = %e,
                        "cannot read a request back from the persistent queue. Dropping data."
                    );
                    store.remove(key).await;
                    return;
                }
            },
        };
        match self.deliver(payload, true).await {
            Delivery::Done(_) => store.remove(key).await,
            Delivery::Kept { unsent, progressed } => {
                self.keep(&store, key, unsent, progressed).await;
            }
        }
    }

    /// Leaves an interrupted request stored. When part of it was delivered,
    /// only the rest is stored (under a new key), so nothing is sent twice.
    pub(super) async fn keep(
        &self,
        store: &PersistentStore,
        key: StoredKey,
        unsent: Vec<Payload>,
        progressed: bool,
    ) {
        {
            let mut kept = self.kept.lock();
            let counts = &mut kept[lane_index(store.signal())];
            counts.0 += 1;
            counts.1 += unsent.iter().map(|p| p.item_count() as u64).sum::<u64>();
        }
        if !progressed {
            store.release(&[key]);
            return;
        }
        let mut parts = unsent.into_iter();
        let Some(mut rest) = parts.next() else {
            store.remove(key).await;
            return;
        };
        for part in parts {
            let _ = rest.append(part);
        }
        match store.store(&rest).await {
            Ok(new_key) => {
                store.remove(key).await;
                store.release(&[new_key]);
            }
            Err(e) => {
                tracing::warn!(
                    exporter = %self.id,
                    error = %e,
                    "cannot store the undelivered rest of a request; all of it stays stored and part of it will be sent twice"
                );
                store.release(&[key]);
            }
        }
    }
}
