//! Config sections of otelcol's exporterhelper: `timeout`, `retry_on_failure`
//! and `sending_queue`.
//!
//! They are plain structs that an exporter's config nests under the same keys
//! otelcol uses (no `#[serde(flatten)]`, so `deny_unknown_fields` keeps
//! working):
//!
//! ```text
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct MyConfig {
//!     #[serde(with = "collector_core::config::duration")]
//!     timeout: Duration,               // default DEFAULT_TIMEOUT
//!     retry_on_failure: RetryConfig,
//!     sending_queue: QueueConfig,
//! }
//! ```

use collector_core::config::{ConfigError, duration};
use serde::Deserialize;
use std::time::Duration;

/// otelcol's default `timeout` for one send attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `retry_on_failure`: exponential backoff with jitter for retryable failures.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry at all (default true).
    pub enabled: bool,
    /// Wait after the first failure (default 5s).
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    /// Upper bound of one wait (default 30s).
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Give up once this much time passed since the first attempt (default
    /// 300s); 0 retries forever.
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
    /// Growth of the wait after each failure (default 1.5).
    pub multiplier: f64,
    /// Jitter: each wait is drawn from `interval * [1 - f, 1 + f]` (default 0.5).
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    /// Checks the values; paths are relative to `retry_on_failure`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !(self.multiplier.is_finite() && self.multiplier > 0.0) {
            return Err(ConfigError::new("multiplier", "must be a positive number"));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(ConfigError::new(
                "randomization_factor",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// What `sending_queue.queue_size` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Export requests (batches), whatever their size.
    #[default]
    Requests,
    /// Items: spans, metric data points, log records.
    Items,
    /// Bytes of the protobuf encoding.
    Bytes,
}

impl Sizer {
    /// The lower-case name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Sizer::Requests => "requests",
            Sizer::Items => "items",
            Sizer::Bytes => "bytes",
        }
    }
}

/// `sending_queue`: a bounded in-memory queue drained by worker tasks.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue at all (default true). Without the queue, `consume` sends
    /// synchronously and returns the final result.
    pub enabled: bool,
    /// Worker tasks sending concurrently (default 10).
    pub num_consumers: usize,
    /// Capacity, in units of `sizer` (default 1000).
    pub queue_size: u64,
    /// What `queue_size` counts (default requests).
    pub sizer: Sizer,
    /// When full, wait for room instead of refusing (default false).
    pub block_on_overflow: bool,
    /// Ours: at most this many MiB of encoded data in memory, whatever
    /// `sizer` counts (default 64; 0 = no byte bound). A request-counted
    /// queue of 8192-span batches would otherwise hold gigabytes.
    pub max_size_mib: u64,
    /// A storage extension (`file_storage[/name]`) that makes the queue
    /// persistent: requests are stored before they are acknowledged and
    /// survive a crash or restart.
    pub storage: Option<String>,
    /// otelcol's `sending_queue.batch`: merge queued requests before they
    /// are sent. Only the `loadbalancing` exporter's `protocol.otlp` takes
    /// it (it coalesces the parts of its split per backend); elsewhere the
    /// `batch` processor does this and the key is refused.
    pub batch: Option<QueueBatchConfig>,
}

/// `sending_queue.batch`: otelcol's keys. A request waits in the queue,
/// absorbing the requests queued after it, until it holds `min_size` units
/// of `sizer` or `flush_timeout` passed since it was queued; it never grows
/// past `max_size` (0: no bound).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// Longest wait of a request for more (otelcol's default 200ms); 0s
    /// turns merging off.
    #[serde(with = "duration")]
    pub flush_timeout: Duration,
    /// What `min_size` and `max_size` count (default items).
    pub sizer: Sizer,
    /// Sent as soon as it holds this much (default 8192).
    pub min_size: u64,
    /// Never merged past this (default 0: no bound).
    pub max_size: u64,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        Self {
            flush_timeout: Duration::from_millis(200),
            sizer: Sizer::Items,
            min_size: 8192,
            max_size: 0,
        }
    }
}

impl QueueBatchConfig {
    /// Checks the values; paths are relative to `sending_queue.batch`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_size != 0 && self.max_size < self.min_size {
            return Err(ConfigError::new(
                "max_size",
                format!("must be 0 or >= min_size ({})", self.min_size),
            ));
        }
        Ok(())
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            block_on_overflow: false,
            max_size_mib: 64,
            storage: None,
            batch: None,
        }
    }
}

impl QueueConfig {
    /// The byte bound in bytes (0 = none).
    pub(crate) fn max_size_bytes(&self) -> u64 {
        self.max_size_mib.saturating_mul(1024 * 1024)
    }

    /// Checks the values; paths are relative to `sending_queue`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(storage) = &self.storage {
            storage
                .parse::<collector_core::component::ComponentId>()
                .map_err(|e| ConfigError::new("storage", e))?;
            if !self.enabled {
                return Err(ConfigError::new(
                    "storage",
                    "a persistent queue needs the sending queue (enabled: true)",
                ));
            }
        }
        if !self.enabled {
            return Ok(());
        }
        if self.num_consumers == 0 {
            return Err(ConfigError::new("num_consumers", "must be > 0"));
        }
        if self.queue_size == 0 {
            return Err(ConfigError::new("queue_size", "must be > 0"));
        }
        Ok(())
    }
}

/// Everything the exporter helper needs from an exporter's config.
#[derive(Clone, Debug, PartialEq)]
pub struct HelperConfig {
    /// Limit of one send attempt; zero means none.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Sending queue.
    pub queue: QueueConfig,
}

impl Default for HelperConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            retry: RetryConfig::default(),
            queue: QueueConfig::default(),
        }
    }
}

impl HelperConfig {
    /// Validates `retry_on_failure` and `sending_queue`, with paths relative
    /// to the exporter's section. `sending_queue.batch` is refused: only the
    /// `loadbalancing` exporter takes it (and checks it itself).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry
            .validate()
            .map_err(|e| e.under("retry_on_failure"))?;
        if self.queue.batch.is_some() {
            return Err(ConfigError::new(
                "sending_queue.batch",
                "only the loadbalancing exporter's protocol.otlp.sending_queue takes batch; use the batch processor here",
            ));
        }
        self.queue.validate().map_err(|e| e.under("sending_queue"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_otelcol() {
        let retry: RetryConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(retry, RetryConfig::default());
        assert_eq!(retry.initial_interval, Duration::from_secs(5));
        assert_eq!(retry.max_elapsed_time, Duration::from_secs(300));
        let queue: QueueConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(queue.num_consumers, 10);
        assert_eq!(queue.queue_size, 1000);
        assert_eq!(queue.sizer, Sizer::Requests);
    }

    #[test]
    fn parses_and_validates() {
        let queue: QueueConfig =
            serde_yaml_ng::from_str("{sizer: items, queue_size: 5000, block_on_overflow: true}")
                .unwrap();
        assert_eq!(queue.sizer, Sizer::Items);
        assert!(queue.block_on_overflow);
        let persistent: QueueConfig =
            serde_yaml_ng::from_str("{storage: file_storage/queue}").unwrap();
        persistent.validate().unwrap();
        assert_eq!(persistent.storage.as_deref(), Some("file_storage/queue"));
        let bad: QueueConfig =
            serde_yaml_ng::from_str("{storage: file_storage, enabled: false}").unwrap();
        let helper = HelperConfig {
            queue: bad,
            ..HelperConfig::default()
        };
        let err = helper.validate().unwrap_err();
        assert_eq!(err.path, "sending_queue.storage");
        assert!(err.message.contains("enabled: true"), "{err}");
        let bad: QueueConfig = serde_yaml_ng::from_str("{storage: '9x'}").unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "storage");

        let zero: QueueConfig = serde_yaml_ng::from_str("{queue_size: 0}").unwrap();
        assert_eq!(zero.validate().unwrap_err().path, "queue_size");
        let retry: RetryConfig =
            serde_yaml_ng::from_str("{randomization_factor: 2, max_elapsed_time: 0s}").unwrap();
        assert_eq!(retry.validate().unwrap_err().path, "randomization_factor");
        assert!(serde_yaml_ng::from_str::<QueueConfig>("{bogus: 1}").is_err());
    }
}
