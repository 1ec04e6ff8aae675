//! The `file` exporter: writes each export request to a file, as OTLP/JSON
//! lines or length-prefixed protobuf, with optional size-based rotation.
//!
//! Signals: traces, metrics, logs. Stability: alpha.
//!
//! Data path: `consume` -> bounded channel (by messages and bytes; full =
//! resource exhausted) -> writer thread: encode (JSON, or the batch's
//! original protobuf bytes), optionally zstd -> buffered file, rotated by
//! size -> flushed every `flush_interval`, flushed and fsynced at shutdown.

mod rotate;

#[cfg(test)]
mod tests;

use crate::helper::ExporterMetrics;
use async_trait::async_trait;
use collector_core::component::{
    ComponentError, CreateContext, Exporter, ExporterFactory, Factory, Lifecycle, Stability,
};
use collector_core::config::{ConfigError, duration};
use collector_core::consumer::{ConsumeError, Consumer};
use collector_core::observe::RateLimitedLog;
use collector_core::pdata::{Payload, Signal, Telemetry, json};
use parking_lot::Mutex;
use rotate::{RotatingFile, Rotation};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Requests waiting for the writer, at most.
const CHANNEL_MESSAGES: usize = 1024;
/// Protobuf bytes waiting for the writer, at most.
const CHANNEL_BYTES: usize = 64 * 1024 * 1024;

/// `exporters.file`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The file to write (required).
    pub path: String,
    /// `json` (default) or `proto`.
    pub format: FileFormat,
    /// Append to an existing file instead of truncating it at start.
    pub append: bool,
    /// Size-based rotation; off unless the section is present.
    pub rotation: Option<RotationConfig>,
    /// How often buffered data is flushed to the file (default 1s; 0 flushes
    /// after every request).
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// `""` (none) or `zstd`: each message compressed and written with a
    /// 4-byte length prefix, whatever the format.
    pub compression: FileCompression,
    /// One file per resource attribute value. Not supported yet.
    pub group_by: GroupByConfig,
    /// An encoding extension. Not supported yet.
    pub encoding: Option<String>,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            format: FileFormat::Json,
            append: false,
            rotation: None,
            flush_interval: Duration::from_secs(1),
            compression: FileCompression::None,
            group_by: GroupByConfig::default(),
            encoding: None,
        }
    }
}

/// `format` of the file exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// OTLP/JSON, one export request per line.
    #[default]
    Json,
    /// Protobuf, each request behind a 4-byte big-endian length.
    Proto,
}

/// `compression` of the file exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileCompression {
    /// None (`""` or absent).
    #[default]
    None,
    /// zstd per message.
    Zstd,
}

impl<'de> Deserialize<'de> for FileCompression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(deserializer)?.as_deref() {
            None | Some("") => Ok(FileCompression::None),
            Some("zstd") => Ok(FileCompression::Zstd),
            Some(other) => Err(serde::de::Error::custom(format!(
                "unsupported compression {other:?} (expected \"\" or zstd)"
            ))),
        }
    }
}

/// `rotation` of the file exporter (lumberjack's settings in otelcol).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Rotate before the file grows past this many megabytes (default 100).
    pub max_megabytes: u64,
    /// Remove backups older than this many days (0, default: keep).
    pub max_days: u64,
    /// Keep at most this many backups (default 100; 0: keep all).
    pub max_backups: u64,
    /// Name backups with local time instead of UTC.
    pub localtime: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            max_megabytes: 100,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

/// `group_by` of the file exporter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupByConfig {
    /// Must stay false for now.
    pub enabled: bool,
    /// Accepted.
    pub resource_attribute: String,
    /// Accepted.
    pub max_open_files: u64,
}

/// Factory of the `file` exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileExporterFactory;

impl Factory for FileExporterFactory {
    type Config = FileConfig;

    fn type_name(&self) -> &'static str {
        "file"
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn validate(&self, config: &FileConfig) -> Result<(), ConfigError> {
        if config.path.trim().is_empty() {
            return Err(ConfigError::new("path", "must be set"));
        }
        if config.append && config.compression != FileCompression::None {
            return Err(ConfigError::new(
                "append",
                "append and compression enabled at the same time is not supported",
            ));
        }
        if config.append && config.rotation.is_some() {
            return Err(ConfigError::new(
                "append",
                "append and rotation enabled at the same time is not supported",
            ));
        }
        if config
            .rotation
            .as_ref()
            .is_some_and(|r| r.max_megabytes == 0)
        {
            return Err(ConfigError::new("rotation.max_megabytes", "must be > 0"));
        }
        if config.group_by.enabled {
            return Err(ConfigError::new(
                "group_by.enabled",
                "group_by is not supported yet",
            ));
        }
        if config.encoding.is_some() {
            return Err(ConfigError::new(
                "encoding",
                "encoding extensions are not supported; use format: json or proto",
            ));
        }
        Ok(())
    }
}

impl ExporterFactory for FileExporterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &FileConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        Ok(Arc::new(FileExporter::new(ctx, config.clone())))
    }
}

/// A request on its way to the writer.
struct Queued {
    payload: Payload,
    size: usize,
}

/// Channel ends and the writer's completion signal.
struct Plumbing {
    tx: Option<SyncSender<Queued>>,
    rx: Option<Receiver<Queued>>,
    done: Option<oneshot::Receiver<()>>,
}

/// The `file` exporter.
pub struct FileExporter {
    id: String,
    config: FileConfig,
    /// Limit of one rotated file, in bytes.
    max_file_bytes: u64,
    plumbing: Mutex<Plumbing>,
    pending_bytes: Arc<AtomicUsize>,
    metrics: ExporterMetrics,
}

impl std::fmt::Debug for FileExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileExporter")
            .field("id", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FileExporter {
    /// An exporter for `config`; the file is opened by `start`.
    pub fn new(ctx: &CreateContext, config: FileConfig) -> Self {
        let max_megabytes = config.rotation.as_ref().map_or(0, |r| r.max_megabytes);
        Self::with_max_file_bytes(ctx, config, max_megabytes.saturating_mul(1024 * 1024))
    }

    fn with_max_file_bytes(ctx: &CreateContext, config: FileConfig, max_file_bytes: u64) -> Self {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_MESSAGES);
        let id = ctx.id.to_string();
        Self {
            metrics: ExporterMetrics::new(&ctx.host.metrics, &id),
            id,
            config,
            max_file_bytes,
            plumbing: Mutex::new(Plumbing {
                tx: Some(tx),
                rx: Some(rx),
                done: None,
            }),
            pending_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Consumer for FileExporter {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let payload = telemetry.payload;
        let size = payload.encoded_len();
        let pending = self.pending_bytes.load(Ordering::Acquire);
        if pending > 0 && pending + size > CHANNEL_BYTES {
            self.metrics
                .enqueue_failed(payload.signal(), payload.item_count() as u64);
            return Err(ConsumeError::resource_exhausted(
                format!("file exporter {} is behind on writing", self.id),
                None,
            ));
        }
        let plumbing = self.plumbing.lock();
        let Some(tx) = &plumbing.tx else {
            return Err(ConsumeError::unavailable(format!(
                "file exporter {} is shut down",
                self.id
            )));
        };
        let signal = payload.signal();
        let items = payload.item_count() as u64;
        // Count before sending so the writer never sees a negative balance.
        self.pending_bytes.fetch_add(size, Ordering::AcqRel);
        match tx.try_send(Queued { payload, size }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.pending_bytes.fetch_sub(size, Ordering::AcqRel);
                self.metrics.enqueue_failed(signal, items);
                Err(match e {
                    TrySendError::Full(_) => ConsumeError::resource_exhausted(
                        format!("file exporter {} is behind on writing", self.id),
                        None,
                    ),
                    TrySendError::Disconnected(_) => ConsumeError::unavailable(format!(
                        "file exporter {} stopped writing",
                        self.id
                    )),
                })
            }
        }
    }
}

#[async_trait]
impl Lifecycle for FileExporter {
    async fn start(&self) -> Result<(), ComponentError> {
        let Some(rx) = self.plumbing.lock().rx.take() else {
            return Ok(());
        };
        let rotation = self.config.rotation.clone().map(|r| Rotation {
            max_bytes: self.max_file_bytes,
            max_backups: r.max_backups,
            max_age: (r.max_days > 0).then(|| Duration::from_secs(r.max_days * 86_400)),
            local_time: r.localtime,
        });
        let file = RotatingFile::open(
            PathBuf::from(&self.config.path),
            self.config.append,
            rotation,
        )
        .map_err(|e| ComponentError::new(format!("cannot open {}: {e}", self.config.path)))?;
        let (done_tx, done_rx) = oneshot::channel();
        let writer = Writer {
            id: self.id.clone(),
            file,
            format: self.config.format,
            compression: self.config.compression,
            flush_interval: self.config.flush_interval,
            metrics: self.metrics.clone(),
            pending_bytes: self.pending_bytes.clone(),
            error_log: RateLimitedLog::default(),
        };
        std::thread::Builder::new()
            .name(format!("file-exporter-{}", self.id))
            .spawn(move || {
                writer.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| ComponentError::new(format!("cannot start the writer thread: {e}")))?;
        self.plumbing.lock().done = Some(done_rx);
        Ok(())
    }

    async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), ComponentError> {
        let (done, unstarted) = {
            let mut plumbing = self.plumbing.lock();
            // Dropping the sender lets the writer drain the channel and stop.
            plumbing.tx = None;
            (plumbing.done.take(), plumbing.rx.take())
        };
        if let Some(rx) = unstarted {
            for queued in rx.try_iter() {
                let payload = queued.payload;
                self.metrics
                    .send_failed(payload.signal(), payload.item_count() as u64);
            }
        }
        let Some(done) = done else {
            return Ok(());
        };
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(remaining, done).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ComponentError::new(format!(
                "file exporter {} was still writing at the shutdown deadline",
                self.id
            ))),
        }
    }
}

/// The writer thread's state.
struct Writer {
    id: String,
    file: RotatingFile,
    format: FileFormat,
    compression: FileCompression,
    flush_interval: Duration,
    metrics: ExporterMetrics,
    pending_bytes: Arc<AtomicUsize>,
    error_log: RateLimitedLog,
}

impl Writer {
    fn run(mut self, rx: Receiver<Queued>) {
        let mut dirty_since: Option<Instant> = None;
        loop {
            let wait = match dirty_since {
                Some(since) => self.flush_interval.saturating_sub(since.elapsed()),
                None => Duration::from_secs(3600),
            };
            match rx.recv_timeout(wait) {
                Ok(queued) => {
                    self.pending_bytes.fetch_sub(queued.size, Ordering::AcqRel);
                    self.write(&queued.payload);
                    dirty_since.get_or_insert_with(Instant::now);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if dirty_since.is_some_and(|since| since.elapsed() >= self.flush_interval) {
                let result = self.file.flush();
                self.check(result, "flush");
                dirty_since = None;
            }
        }
        let result = self.file.sync();
        self.check(result, "flush and fsync");
    }

    fn write(&mut self, payload: &Payload) {
        let signal = payload.signal();
        let items = payload.item_count() as u64;
        let result = encode(payload, self.format, self.compression)
            .and_then(|bytes| self.file.write(&bytes));
        match result {
            Ok(()) => self.metrics.sent(signal, items),
            Err(e) => {
                self.metrics.send_failed(signal, items);
                if let Some(suppressed) = self.error_log.check() {
                    tracing::warn!(
                        exporter = %self.id,
                        data_type = signal.as_str(),
                        dropped_items = items,
                        error = %e,
                        suppressed,
                        "Writing to file failed. Dropping data."
                    );
                }
            }
        }
    }

    fn check(&self, result: std::io::Result<()>, what: &str) {
        if let Err(e) = result {
            tracing::warn!(exporter = %self.id, error = %e, "file {what} failed");
        }
    }
}

/// One message as it goes into the file.
fn encode(
    payload: &Payload,
    format: FileFormat,
    compression: FileCompression,
) -> std::io::Result<Vec<u8>> {
    let body: Vec<u8> = match format {
        FileFormat::Proto => payload.to_protobuf().to_vec(),
        FileFormat::Json => match payload {
            Payload::Traces(b) => json::encode_traces(b.request()),
            Payload::Metrics(b) => json::encode_metrics(b.request()),
            Payload::Logs(b) => json::encode_logs(b.request()),
        },
    };
    let body = match compression {
        FileCompression::Zstd => zstd::bulk::compress(&body, 0)?,
        FileCompression::None if format == FileFormat::Json => {
            let mut line = body;
            line.push(b'\n');
            return Ok(line);
        }
        FileCompression::None => body,
    };
    let len = u32::try_from(body.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message larger than 4 GiB cannot be length-prefixed",
        )
    })?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}
