//! A file that rotates by size the way lumberjack (otelcol's file exporter)
//! does: `<name>-<timestamp>.<ext>` backups, at most `max_backups` kept.

use crate::civil::Civil;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Rotation limits, resolved.
#[derive(Clone, Debug)]
pub(super) struct Rotation {
    pub(super) max_bytes: u64,
    pub(super) max_backups: u64,
    pub(super) max_age: Option<Duration>,
    pub(super) local_time: bool,
}

/// A buffered file that moves itself aside to `<name>-<timestamp>.<ext>`
/// before growing past its limit, keeping a bounded number of backups.
pub(super) struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
    rotation: Option<Rotation>,
}

impl RotatingFile {
    pub(super) fn open(
        path: PathBuf,
        append: bool,
        rotation: Option<Rotation>,
    ) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_file(&path, append)?;
        let written = if append { file.metadata()?.len() } else { 0 };
        Ok(Self {
            path,
            file: BufWriter::with_capacity(256 * 1024, file),
            written,
            rotation,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        if let Some(rotation) = &self.rotation
            && self.written > 0
            && self.written + len > rotation.max_bytes
        {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.written += len;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let Some(rotation) = self.rotation.clone() else {
            return Ok(());
        };
        self.sync()?;
        let backup = self.backup_name(rotation.local_time);
        std::fs::rename(&self.path, &backup)?;
        self.file = BufWriter::with_capacity(256 * 1024, open_file(&self.path, false)?);
        self.written = 0;
        self.remove_old_backups(&rotation)
    }

    /// `(directory, prefix + "-", extension)` of backup names.
    fn backup_parts(&self) -> (PathBuf, String, String) {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        (dir, format!("{stem}-"), ext)
    }

    fn backup_name(&self, local: bool) -> PathBuf {
        let (dir, prefix, ext) = self.backup_parts();
        let mut time = SystemTime::now();
        // Two rotations within one millisecond would collide: move on a
        // millisecond, keeping lumberjack's name format.
        for _ in 0..1000 {
            let stamp = Civil::from_system(time, local).backup_stamp();
            let candidate = dir.join(format!("{prefix}{stamp}{ext}"));
            if !candidate.exists() {
                return candidate;
            }
            time += Duration::from_millis(1);
        }
        dir.join(format!(
            "{prefix}{}{ext}",
            Civil::from_system(time, local).backup_stamp()
        ))
    }

    fn remove_old_backups(&self, rotation: &Rotation) -> std::io::Result<()> {
        let (dir, prefix, ext) = self.backup_parts();
        let mut backups: Vec<(String, PathBuf, Option<SystemTime>)> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
                // `2006-01-02T15-04-05.000`
                if stamp.len() != 23 || stamp.as_bytes().get(10) != Some(&b'T') {
                    return None;
                }
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                Some((stamp.to_string(), entry.path(), modified))
            })
            .collect();
        // Newest first: the timestamp format sorts lexicographically.
        backups.sort_by(|a, b| b.0.cmp(&a.0));
        let now = SystemTime::now();
        for (i, (_, path, modified)) in backups.iter().enumerate() {
            let too_many = rotation.max_backups > 0 && i as u64 >= rotation.max_backups;
            let too_old = rotation.max_age.is_some_and(|age| {
                modified
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|d| d > age)
            });
            if too_many || too_old {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

fn open_file(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.open(path)
}
