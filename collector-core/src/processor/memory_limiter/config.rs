//! The `memory_limiter` processor's settings and the limits they resolve to.

use crate::config::ConfigError;
use serde::Deserialize;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Settings of the `memory_limiter` processor.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often memory usage is measured. Required, > 0.
    #[serde(with = "crate::config::duration")]
    pub check_interval: Duration,
    /// Hard limit in MiB (exclusive with `limit_percentage`).
    pub limit_mib: u64,
    /// Headroom below the hard limit in MiB; the soft limit is
    /// `limit_mib - spike_limit_mib`. Default: 20% of `limit_mib`.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the available memory (the cgroup limit,
    /// else the host's total), exclusive with `limit_mib`.
    pub limit_percentage: u32,
    /// Headroom as a percentage of the available memory. Default: 20% of the limit.
    pub spike_limit_percentage: u32,
    /// Accepted for otelcol compatibility and ignored: a Go GC setting.
    #[serde(with = "crate::config::duration")]
    pub min_gc_interval_when_soft_limited: Duration,
    /// Accepted for otelcol compatibility and ignored: a Go GC setting.
    #[serde(with = "crate::config::duration")]
    pub min_gc_interval_when_hard_limited: Duration,
}

/// The thresholds memory usage is compared with, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// The configured limit.
    pub hard_bytes: u64,
    /// The limit minus the spike headroom; from here on data is refused.
    pub soft_bytes: u64,
}

impl MemoryLimiterConfig {
    /// Checks what the types cannot express; paths are relative to the component.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.check_interval.is_zero() {
            return Err(ConfigError::new(
                "check_interval",
                "must be greater than zero",
            ));
        }
        if self.limit_percentage > 100 {
            return Err(ConfigError::new(
                "limit_percentage",
                "must be between 1 and 100",
            ));
        }
        if self.spike_limit_percentage > 100 {
            return Err(ConfigError::new(
                "spike_limit_percentage",
                "must be between 0 and 100",
            ));
        }
        match (self.limit_mib, self.limit_percentage) {
            (0, 0) => Err(ConfigError::new(
                "limit_mib",
                "either limit_mib or limit_percentage must be greater than zero",
            )),
            (_, 0) => {
                if self.spike_limit_percentage != 0 {
                    return Err(ConfigError::new(
                        "spike_limit_percentage",
                        "only applies with limit_percentage (use spike_limit_mib with limit_mib)",
                    ));
                }
                if self.spike_limit_mib >= self.limit_mib {
                    return Err(ConfigError::new(
                        "spike_limit_mib",
                        format!("must be smaller than limit_mib ({})", self.limit_mib),
                    ));
                }
                Ok(())
            }
            (0, _) => {
                if self.spike_limit_mib != 0 {
                    return Err(ConfigError::new(
                        "spike_limit_mib",
                        "only applies with limit_mib (use spike_limit_percentage with limit_percentage)",
                    ));
                }
                if self.spike_limit_percentage >= self.limit_percentage {
                    return Err(ConfigError::new(
                        "spike_limit_percentage",
                        format!(
                            "must be smaller than limit_percentage ({})",
                            self.limit_percentage
                        ),
                    ));
                }
                Ok(())
            }
            _ => Err(ConfigError::new(
                "limit_percentage",
                "cannot be used together with limit_mib; set one of them",
            )),
        }
    }

    /// The limits in bytes. `total_memory` is asked only for a percentage limit.
    pub fn limits(
        &self,
        total_memory: impl FnOnce() -> Option<u64>,
    ) -> Result<MemoryLimits, String> {
        let (hard, spike) = if self.limit_mib > 0 {
            let hard = self.limit_mib.saturating_mul(MIB);
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib.saturating_mul(MIB)
            } else {
                hard / 5
            };
            (hard, spike)
        } else if self.limit_percentage > 0 {
            let total = total_memory().ok_or(
                "limit_percentage is set but the available memory could not be read (cgroup or /proc/meminfo)",
            )?;
            let percent = |p: u32| (u128::from(total) * u128::from(p) / 100) as u64;
            let hard = percent(self.limit_percentage);
            let spike = if self.spike_limit_percentage > 0 {
                percent(self.spike_limit_percentage)
            } else {
                hard / 5
            };
            (hard, spike)
        } else {
            return Err("neither limit_mib nor limit_percentage is set".into());
        };
        if spike >= hard {
            return Err(format!(
                "the spike limit ({spike} bytes) is not below the limit ({hard} bytes)"
            ));
        }
        Ok(MemoryLimits {
            hard_bytes: hard,
            soft_bytes: hard - spike,
        })
    }
}
