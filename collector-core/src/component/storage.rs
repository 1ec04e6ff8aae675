//! Storage that an extension (e.g. `file_storage`) offers to other
//! components, after otelcol's `storage.Extension`: a key-value store split
//! into clients, one per owner (`exporter_otlp_traces`), so that owners never
//! see each other's keys.
//!
//! An extension publishes a [`StorageService`] in [`Host::services`] under its
//! id; a component that names the extension in its config (e.g.
//! `sending_queue.storage: file_storage/queue`) finds it with
//! [`StorageService::find`] once started.

use super::Host;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing the medium failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `writing /var/lib/q/exporter_otlp_traces/0001`.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored value failed its integrity check (torn or damaged write).
    #[error("stored value {key:?} is damaged: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What did not check out.
        reason: String,
    },
    /// The key or owner name cannot be used (empty, or characters outside
    /// `[A-Za-z0-9._-]`, or starting with `.`).
    #[error(
        "invalid storage name {0:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    InvalidName(String),
}

/// Whether `name` is usable as a key or owner: non-empty, `[A-Za-z0-9._-]`,
/// not starting with `.` (so it can be a file name as it is).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Turns any text (a component id such as `otlp/backup`) into a valid name by
/// replacing every other character with `_`.
pub fn sanitize_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// A storage extension's service: hands out clients by owner.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// The client of `owner` (a [`valid_name`]), created on first use. Two
    /// calls with the same owner reach the same data.
    async fn client(&self, owner: &str) -> Result<Arc<dyn StorageClient>, StorageError>;
}

/// One owner's key-value store. Keys are [`valid_name`]s.
#[async_trait]
pub trait StorageClient: Send + Sync + std::fmt::Debug + 'static {
    /// Where the data lives (e.g. a directory path): equal for two clients
    /// that reach the same data, so users can coordinate within a process.
    fn location(&self) -> &str;

    /// The value of `key`, `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;

    /// Stores `value` under `key`, replacing an older value atomically (a
    /// reader sees the old or the new value, never a mix). Returns once the
    /// value is as durable as the extension is configured to make it.
    async fn set(&self, key: &str, value: Bytes) -> Result<(), StorageError>;

    /// Removes `key`; absent keys are fine.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Every key, sorted.
    async fn keys(&self) -> Result<Vec<String>, StorageError>;
}

/// What a storage extension publishes in [`Host::services`].
#[derive(Debug, Clone)]
pub struct StorageService {
    storage: Arc<dyn Storage>,
}

impl StorageService {
    /// Wraps a storage for publishing.
    pub fn new(storage: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Self { storage })
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The storage the extension `extension_id` (`file_storage/queue`)
    /// published, when it runs.
    pub fn find(host: &Host, extension_id: &str) -> Option<Arc<dyn Storage>> {
        host.services
            .get::<StorageService>(extension_id)
            .map(|service| service.storage.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    #[async_trait]
    impl Storage for Nothing {
        async fn client(&self, owner: &str) -> Result<Arc<dyn StorageClient>, StorageError> {
            Err(StorageError::InvalidName(owner.into()))
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("exporter_otlp_traces"));
        assert!(valid_name("00000000000000000001-5-120"));
        assert!(!valid_name(""));
        assert!(!valid_name(".tmp"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("../x"));
        assert_eq!(sanitize_name("otlp/back up"), "otlp_back_up");
        assert_eq!(sanitize_name(".x"), "_.x");
        assert!(valid_name(&sanitize_name("")));
    }

    #[tokio::test]
    async fn published_and_found_by_extension_id() {
        let host = Host::new();
        assert!(StorageService::find(&host, "file_storage").is_none());
        let service = StorageService::new(Arc::new(Nothing));
        host.services.publish("file_storage/q", service.clone());
        let found = StorageService::find(&host, "file_storage/q").expect("published");
        assert!(found.client("x").await.is_err());
        host.services.withdraw("file_storage/q", &service);
        assert!(StorageService::find(&host, "file_storage/q").is_none());
    }
}
