//! `file_storage` extension: a key-value store on the local file system for
//! other components (the exporter helper's persistent `sending_queue`).
//! Stability: beta.
//!
//! Data path: none of its own. On start it creates (when asked) and locks its
//! directory, then publishes a [`StorageService`] under its id; a component
//! asks it for a client named after itself and reads and writes keys. Each
//! key is one file, written to a temporary name, synced when `fsync` is on,
//! and renamed into place (see `store.rs`). otelcol keeps a bbolt database
//! per client instead; the keys and guarantees a client sees are the same,
//! and since deleting a file frees its space there is nothing to compact.

pub(crate) mod store;

use crate::component::storage::StorageService;
use crate::component::{
    ComponentError, CreateContext, Extension, ExtensionFactory, Factory, Host, Lifecycle, Stability,
};
use crate::config::{ConfigError, duration};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `extensions.file_storage`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where the data lives (default `/var/lib/otelcol/file_storage`, as otelcol).
    pub directory: String,
    /// How long to wait for another process to release the directory's lock
    /// (default 1s).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Sync every write (and the directory after the rename) to disk before
    /// acknowledging it (default false: a write survives a crash of the
    /// collector, not a power loss).
    pub fsync: bool,
    /// Create `directory` when missing (default true; otelcol's default is false).
    pub create_directory: bool,
    /// Permissions of a directory created here, octal (default `0750`).
    pub directory_permissions: String,
    /// Accepted for compatibility: one file per key needs no compaction.
    pub compaction: CompactionConfig,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        Self {
            directory: "/var/lib/otelcol/file_storage".into(),
            timeout: Duration::from_secs(1),
            fsync: false,
            create_directory: true,
            directory_permissions: "0750".into(),
            compaction: CompactionConfig::default(),
        }
    }
}

/// `extensions.file_storage.compaction`: accepted, not acted on.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Accepted.
    pub on_start: bool,
    /// Accepted.
    pub on_rebound: bool,
    /// Accepted.
    pub directory: String,
    /// Accepted.
    pub max_transaction_size: u64,
    /// Accepted.
    pub rebound_needed_threshold_mib: u64,
    /// Accepted.
    pub rebound_trigger_threshold_mib: u64,
    /// Accepted.
    #[serde(with = "duration::option")]
    pub check_interval: Option<Duration>,
    /// Accepted.
    pub cleanup_on_start: bool,
}

impl FileStorageConfig {
    fn permissions(&self) -> Result<u32, String> {
        let text = self.directory_permissions.trim();
        let digits = text.strip_prefix("0o").unwrap_or(text);
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|mode| *mode <= 0o7777)
            .ok_or_else(|| format!("{text:?} is not an octal file mode such as 0750"))
    }
}

/// Builds `file_storage` extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStorageFactory;

impl Factory for FileStorageFactory {
    type Config = FileStorageConfig;

    fn type_name(&self) -> &'static str {
        "file_storage"
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &FileStorageConfig) -> Result<(), ConfigError> {
        if config.directory.trim().is_empty() {
            return Err(ConfigError::new("directory", "must be set"));
        }
        config
            .permissions()
            .map_err(|m| ConfigError::new("directory_permissions", m))?;
        Ok(())
    }
}

impl ExtensionFactory for FileStorageFactory {
    fn create(
        &self,
        ctx: &CreateContext,
        config: &FileStorageConfig,
    ) -> Result<Arc<dyn Extension>, ComponentError> {
        Ok(Arc::new(FileStorageExtension {
            id: ctx.id.to_string(),
            config: config.clone(),
            host: ctx.host.clone(),
            published: Mutex::new(None),
        }))
    }
}

/// A running `file_storage` extension.
#[derive(Debug)]
pub struct FileStorageExtension {
    id: String,
    config: FileStorageConfig,
    host: Arc<Host>,
    published: Mutex<Option<Arc<StorageService>>>,
}

/// Creates (when asked) and checks the directory, then locks it.
fn open_directory(config: &FileStorageConfig) -> Result<store::FileStorage, ComponentError> {
    use std::os::unix::fs::DirBuilderExt;
    let directory = PathBuf::from(&config.directory);
    if config.create_directory && !directory.exists() {
        let mode = config.permissions().map_err(ComponentError::new)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&directory)
            .map_err(|e| {
                ComponentError::new(format!("cannot create {}: {e}", directory.display()))
            })?;
    }
    let root = directory.canonicalize().map_err(|e| {
        ComponentError::new(format!(
            "directory {} is not usable: {e}{}",
            directory.display(),
            if config.create_directory {
                ""
            } else {
                " (set create_directory: true to create it)"
            }
        ))
    })?;
    if !root.is_dir() {
        return Err(ComponentError::new(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let lock = store::DirLock::acquire(&root, config.timeout)
        .map_err(|e| ComponentError::new(e.to_string()))?;
    Ok(store::FileStorage::new(root, config.fsync, lock))
}

#[async_trait]
impl Lifecycle for FileStorageExtension {
    async fn start(&self) -> Result<(), ComponentError> {
        let config = self.config.clone();
        let storage = tokio::task::spawn_blocking(move || open_directory(&config))
            .await
            .map_err(|e| ComponentError::new(e.to_string()))??;
        tracing::info!(
            component = %self.id,
            directory = %self.config.directory,
            fsync = self.config.fsync,
            "file storage ready"
        );
        let service = StorageService::new(Arc::new(storage));
        self.host.services.publish(&self.id, service.clone());
        *self.published.lock() = Some(service);
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        let published = self.published.lock().take();
        if let Some(service) = published {
            self.host.services.withdraw(&self.id, &service);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ComponentId;
    use crate::component::storage::StorageService;
    use bytes::Bytes;

    fn ctx(host: &Arc<Host>, name: Option<&str>) -> CreateContext {
        CreateContext {
            id: ComponentId::new("file_storage", name),
            host: host.clone(),
        }
    }

    #[test]
    fn config_defaults_and_keys() {
        let config: FileStorageConfig = serde_yaml_ng::from_str("{}").expect("parse");
        assert_eq!(config.directory, "/var/lib/otelcol/file_storage");
        assert_eq!(config.timeout, Duration::from_secs(1));
        assert!(!config.fsync);
        assert!(config.create_directory);
        let config: FileStorageConfig = serde_yaml_ng::from_str(
            "{directory: /tmp/q, fsync: true, timeout: 2s, create_directory: false, \
             directory_permissions: '0700', compaction: {on_start: true, on_rebound: true, \
             directory: /tmp, max_transaction_size: 65536, rebound_needed_threshold_mib: 100, \
             rebound_trigger_threshold_mib: 10, check_interval: 5s, cleanup_on_start: true}}",
        )
        .expect("parse");
        FileStorageFactory.validate(&config).expect("valid");
        assert!(serde_yaml_ng::from_str::<FileStorageConfig>("{bogus: 1}").is_err());
        let bad: FileStorageConfig =
            serde_yaml_ng::from_str("{directory_permissions: rwx}").expect("parse");
        assert_eq!(
            FileStorageFactory
                .validate(&bad)
                .expect_err("bad mode")
                .path,
            "directory_permissions"
        );
    }

    #[tokio::test]
    async fn publishes_a_storage_in_a_created_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host::new();
        let config = FileStorageConfig {
            directory: dir.path().join("a/b").display().to_string(),
            ..Default::default()
        };
        let extension = FileStorageFactory
            .create(&ctx(&host, Some("q")), &config)
            .expect("create");
        extension.start().await.expect("start");
        let storage = StorageService::find(&host, "file_storage/q").expect("published");
        let client = storage
            .client("exporter_otlp_traces")
            .await
            .expect("client");
        client
            .set("1", Bytes::from_static(b"x"))
            .await
            .expect("set");
        assert!(dir.path().join("a/b/exporter_otlp_traces/1").exists());
        extension
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await
            .expect("shutdown");
        assert!(StorageService::find(&host, "file_storage/q").is_none());
    }

    #[tokio::test]
    async fn a_missing_directory_without_create_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host::new();
        let config = FileStorageConfig {
            directory: dir.path().join("missing").display().to_string(),
            create_directory: false,
            ..Default::default()
        };
        let extension = FileStorageFactory
            .create(&ctx(&host, None), &config)
            .expect("create");
        let error = extension.start().await.expect_err("missing");
        assert!(error.0.contains("create_directory"), "{error}");
    }
}
