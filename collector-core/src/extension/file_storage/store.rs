//! The files behind `file_storage`: one directory per client, one file per
//! key, written to a temporary file and renamed into place (so a key holds
//! the old or the new value, never a torn one), with a small header that
//! carries the length and a CRC-32 of the value.
//!
//! Layout: `<directory>/.lock` (held with `flock` while the storage is in
//! use), `<directory>/<owner>/<key>`, and `<directory>/<owner>/.<key>.tmp`
//! while a write is in progress (removed when a client opens, since such a
//! write never completed).

use crate::component::storage::{Storage, StorageClient, StorageError, valid_name};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

/// First bytes of every value file.
const MAGIC: &[u8; 4] = b"OSV1";
/// Magic, length (u64 LE), CRC-32 (u32 LE).
const HEADER_LEN: usize = 16;
/// How often a held lock is tried again while waiting for it.
const LOCK_POLL: Duration = Duration::from_millis(10);

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { what, source }
}

/// The exclusive lock on a storage directory. Shared by every storage of
/// this process on the same directory (a reload's new generation takes over
/// from the old one without waiting), exclusive against other processes.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

/// Locks held by this process, by canonical directory.
static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Weak<DirLock>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl DirLock {
    /// Locks `dir` (canonical), waiting up to `timeout` for another process
    /// to let go. Blocking: call from a blocking thread.
    pub(super) fn acquire(dir: &Path, timeout: Duration) -> Result<Arc<DirLock>, StorageError> {
        let mut locks = LOCKS.lock();
        if let Some(lock) = locks.get(dir).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(format!("opening {}", path.display())))?;
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() >= deadline {
                return Err(StorageError::Io {
                    what: format!(
                        "locking {} (is another collector using this directory?)",
                        path.display()
                    ),
                    source: error,
                });
            }
            std::thread::sleep(LOCK_POLL);
        }
        let lock = Arc::new(DirLock { _file: file });
        locks.retain(|_, weak| weak.strong_count() > 0);
        locks.insert(dir.to_path_buf(), Arc::downgrade(&lock));
        Ok(lock)
    }
}

/// A storage rooted in one directory.
#[derive(Debug)]
pub(super) struct FileStorage {
    root: PathBuf,
    fsync: bool,
    lock: Arc<DirLock>,
    clients: Mutex<HashMap<String, Arc<FileClient>>>,
}

impl FileStorage {
    pub(super) fn new(root: PathBuf, fsync: bool, lock: Arc<DirLock>) -> Self {
        Self {
            root,
            fsync,
            lock,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Storage for FileStorage {
    async fn client(&self, owner: &str) -> Result<Arc<dyn StorageClient>, StorageError> {
        if !valid_name(owner) {
            return Err(StorageError::InvalidName(owner.into()));
        }
        if let Some(client) = self.clients.lock().get(owner) {
            return Ok(client.clone());
        }
        let dir = self.root.join(owner);
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || open_client_dir(&dir))
                .await
                .map_err(|e| StorageError::Io {
                    what: "opening a storage client".into(),
                    source: std::io::Error::other(e),
                })?
        };
        opened?;
        let client = Arc::new(FileClient {
            location: dir.display().to_string(),
            dir,
            fsync: self.fsync,
            _lock: self.lock.clone(),
        });
        Ok(self
            .clients
            .lock()
            .entry(owner.to_string())
            .or_insert(client)
            .clone())
    }
}

/// Creates a client's directory and removes writes that never completed.
fn open_client_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    let entries = std::fs::read_dir(dir).map_err(io_error(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed an incomplete write"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an incomplete write")
                }
            }
        }
    }
    Ok(())
}

/// One owner's directory.
#[derive(Debug)]
pub(super) struct FileClient {
    dir: PathBuf,
    location: String,
    fsync: bool,
    _lock: Arc<DirLock>,
}

impl FileClient {
    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        if valid_name(key) {
            Ok(self.dir.join(key))
        } else {
            Err(StorageError::InvalidName(key.into()))
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StorageError::Io {
            what: "a storage task".into(),
            source: std::io::Error::other(e),
        })
    })
}

#[async_trait]
impl StorageClient for FileClient {
    fn location(&self) -> &str {
        &self.location
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || match std::fs::read(&path) {
            Ok(data) => decode_record(&key, data).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            }),
        })
        .await
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let temp = self.dir.join(format!(".{key}.tmp"));
        let (dir, fsync) = (self.dir.clone(), self.fsync);
        blocking(move || write_record(&dir, &temp, &path, &value, fsync)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            }),
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.dir.clone();
        blocking(move || {
            let entries =
                std::fs::read_dir(&dir).map_err(io_error(format!("listing {}", dir.display())))?;
            let mut keys: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| valid_name(name))
                .collect();
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

/// Writes `value` to `temp`, syncs it when asked, renames it to `path` and
/// syncs the directory (so the rename itself survives a power loss).
fn write_record(
    dir: &Path,
    temp: &Path,
    path: &Path,
    value: &[u8],
    fsync: bool,
) -> Result<(), StorageError> {
    let write = || -> std::io::Result<()> {
        let mut file = File::create(temp)?;
        file.write_all(&header(value))?;
        file.write_all(value)?;
        if fsync {
            file.sync_data()?;
        }
        drop(file);
        std::fs::rename(temp, path)?;
        if fsync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(temp);
        StorageError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        }
    })
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

pub(crate) fn header(value: &[u8]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&(value.len() as u64).to_le_bytes());
    out[12..].copy_from_slice(&crc32(value).to_le_bytes());
    out
}

/// Checks a file's header and returns its value.
pub(crate) fn decode_record(key: &str, data: Vec<u8>) -> Result<Bytes, StorageError> {
    let corrupt = |reason: &str| StorageError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if data.len() < HEADER_LEN || &data[..4] != MAGIC {
        return Err(corrupt("no valid header"));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[4..12]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&data[12..16]);
    let value = Bytes::from(data).slice(HEADER_LEN..);
    if u64::try_from(value.len()).ok() != Some(u64::from_le_bytes(len)) {
        return Err(corrupt("length does not match the header (torn write?)"));
    }
    if crc32(&value) != u32::from_le_bytes(crc) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path, fsync: bool) -> FileStorage {
        let root = dir.canonicalize().expect("canonical");
        let lock = DirLock::acquire(&root, Duration::from_millis(50)).expect("lock");
        FileStorage::new(root, fsync, lock)
    }

    #[tokio::test]
    async fn set_get_delete_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = storage(dir.path(), true);
        let client = storage
            .client("exporter_otlp_traces")
            .await
            .expect("client");
        assert_eq!(client.get("a").await.expect("get"), None);
        client
            .set("b", Bytes::from_static(b"second"))
            .await
            .expect("set");
        client
            .set("a", Bytes::from_static(b"first"))
            .await
            .expect("set");
        client
            .set("a", Bytes::from_static(b"again"))
            .await
            .expect("replace");
        assert_eq!(client.keys().await.expect("keys"), ["a", "b"]);
        assert_eq!(
            client.get("a").await.expect("get"),
            Some(Bytes::from_static(b"again"))
        );
        client.delete("a").await.expect("delete");
        client.delete("a").await.expect("delete twice");
        assert_eq!(client.keys().await.expect("keys"), ["b"]);
        assert!(client.set("../x", Bytes::new()).await.is_err());
        assert!(storage.client("a/b").await.is_err());
        // Another owner sees none of it.
        let other = storage.client("exporter_otlp_logs").await.expect("client");
        assert!(other.keys().await.expect("keys").is_empty());
    }

    #[tokio::test]
    async fn damaged_and_incomplete_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = storage(dir.path(), false);
        let client = storage.client("q").await.expect("client");
        client
            .set("k", Bytes::from_static(b"0123456789"))
            .await
            .expect("set");
        let path = dir.path().join("q").join("k");
        let mut data = std::fs::read(&path).expect("read");
        data.truncate(data.len() - 3);
        std::fs::write(&path, &data).expect("truncate");
        assert!(matches!(
            client.get("k").await,
            Err(StorageError::Corrupt { .. })
        ));
        let last = data.len() - 1;
        data.extend_from_slice(b"xyz");
        data[last] ^= 0xff;
        std::fs::write(&path, &data).expect("flip");
        assert!(matches!(
            client.get("k").await,
            Err(StorageError::Corrupt { .. })
        ));

        // A write cut short before its rename is cleaned up at the next open.
        std::fs::write(dir.path().join("q2-dir-marker"), b"").expect("marker");
        std::fs::create_dir_all(dir.path().join("q2")).expect("dir");
        std::fs::write(dir.path().join("q2").join(".7.tmp"), b"partial").expect("tmp");
        let client = storage.client("q2").await.expect("client");
        assert!(client.keys().await.expect("keys").is_empty());
        assert!(!dir.path().join("q2").join(".7.tmp").exists());
    }

    #[test]
    fn the_lock_is_shared_in_process_and_exclusive_across_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let first = DirLock::acquire(&root, Duration::ZERO).expect("lock");
        let second = DirLock::acquire(&root, Duration::ZERO).expect("same process");
        assert!(Arc::ptr_eq(&first, &second));
        // Another open file description stands for another process.
        let other = File::options()
            .write(true)
            .open(root.join(".lock"))
            .expect("open");
        // SAFETY: flock(2) on a descriptor this test owns.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "held by the first");
        drop((first, second));
        // SAFETY: as above.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "released when the last user is gone");
    }
}
