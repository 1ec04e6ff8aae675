//! The agent's instance UID: from the config, else generated once (UUIDv7)
//! and kept in the state directory so a pod with a volume keeps its identity
//! across restarts, else generated per process.

use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The file under `state_directory` holding the generated UID.
const UID_FILE: &str = "instance_uid";

/// Resolves the UID. Errors say which file could not be read or written.
pub(crate) fn instance_uid(configured: &str, state: Option<&Path>) -> Result<Uuid, String> {
    if !configured.is_empty() {
        return Uuid::parse_str(configured).map_err(|e| format!("instance_uid: {e}"));
    }
    let Some(dir) = state else {
        return Ok(Uuid::now_v7());
    };
    let path = dir.join(UID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match Uuid::parse_str(text.trim()) {
            Ok(uid) => return Ok(uid),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "the kept instance UID is not a UUID; generating a new one"
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let uid = Uuid::now_v7();
    store(dir, &uid)?;
    Ok(uid)
}

/// Keeps `uid` (generated, or assigned by the server) under `dir`.
pub(crate) fn store(dir: &Path, uid: &Uuid) -> Result<(), String> {
    write_atomically(&dir.join(UID_FILE), uid.to_string().as_bytes())
}

/// Writes `path` through a temporary file and a rename, so a crash leaves the
/// old content or the new, never half of it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_uid_wins() {
        let uid = "0190f3a4-7b1c-7cde-8f00-1234567890ab";
        assert_eq!(instance_uid(uid, None).expect("uid").to_string(), uid);
        assert!(instance_uid("not-a-uuid", None).is_err());
    }

    #[test]
    fn generated_uid_is_v7_and_kept_in_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = instance_uid("", Some(dir.path())).expect("first");
        assert_eq!(first.get_version_num(), 7);
        let again = instance_uid("", Some(dir.path())).expect("again");
        assert_eq!(first, again, "kept across restarts");
        let elsewhere = instance_uid("", None).expect("per process");
        assert_ne!(first, elsewhere);
    }

    #[test]
    fn a_damaged_uid_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(UID_FILE), "garbage").expect("write");
        let uid = instance_uid("", Some(dir.path())).expect("uid");
        let kept = std::fs::read_to_string(dir.path().join(UID_FILE)).expect("read");
        assert_eq!(kept, uid.to_string());
    }
}
