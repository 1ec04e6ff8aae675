//! The `batch` processor's settings, with otelcol's defaults and checks.

use crate::config::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// Settings of the `batch` processor.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Number of items that triggers a send, whatever the timeout. 0 sends
    /// whatever arrived as soon as the worker sees it.
    pub send_batch_size: usize,
    /// How long the oldest held item may wait before a send. 0 sends at once.
    #[serde(with = "crate::config::duration")]
    pub timeout: Duration,
    /// Largest batch sent downstream; larger ones are split. 0 = unlimited.
    pub send_batch_max_size: usize,
    /// Client metadata keys (case-insensitive) whose values select a separate
    /// batcher, so that each sent batch carries one combination of them.
    pub metadata_keys: Vec<String>,
    /// Most distinct metadata combinations kept; data for a new one beyond
    /// this is refused.
    pub metadata_cardinality_limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            timeout: Duration::from_millis(200),
            send_batch_max_size: 0,
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

impl BatchConfig {
    /// Checks what the types cannot express; paths are relative to the component.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ConfigError::new(
                "send_batch_max_size",
                format!("must be >= send_batch_size ({}) or 0", self.send_batch_size),
            ));
        }
        let mut seen: Vec<String> = Vec::with_capacity(self.metadata_keys.len());
        for (i, key) in self.metadata_keys.iter().enumerate() {
            let lower = key.to_ascii_lowercase();
            if lower.is_empty() {
                return Err(ConfigError::new(
                    format!("metadata_keys[{i}]"),
                    "must not be empty",
                ));
            }
            if seen.contains(&lower) {
                return Err(ConfigError::new(
                    format!("metadata_keys[{i}]"),
                    format!("duplicate entry {lower:?} (keys are case-insensitive)"),
                ));
            }
            seen.push(lower);
        }
        if !self.metadata_keys.is_empty() && self.metadata_cardinality_limit == 0 {
            return Err(ConfigError::new(
                "metadata_cardinality_limit",
                "must be > 0 when metadata_keys are set",
            ));
        }
        Ok(())
    }

    /// The metadata keys, lower-cased.
    pub(super) fn normalized_keys(&self) -> Vec<String> {
        self.metadata_keys
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect()
    }
}
