//! The `memory_limiter` processor instance: a periodic memory check and the
//! refusal it switches on and off.

use super::config::MemoryLimits;
use crate::component::{ComponentError, Lifecycle};
use crate::consumer::{BoxConsumer, Capabilities, ConsumeError, Consumer};
use crate::observe::{Counter, RateLimitedLog};
use crate::pdata::{Signal, Telemetry};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Reads the memory in use, in bytes (`None` when it cannot be read).
pub type MemoryReader = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The message otelcol's memory limiter refuses data with.
const REFUSED: &str = "data refused due to high memory usage";

const MIB: f64 = (1u64 << 20) as f64;

/// The measurement and the state it drives, shared with the check task.
struct Checker {
    id: String,
    limits: MemoryLimits,
    read: MemoryReader,
    refusing: AtomicBool,
    above_hard: AtomicBool,
    read_error_log: RateLimitedLog,
}

impl Checker {
    fn check(&self) {
        let Some(used) = (self.read)() else {
            if let Some(suppressed) = self.read_error_log.check() {
                tracing::warn!(
                    processor = %self.id,
                    suppressed,
                    "memory limiter cannot read the memory in use; keeping the previous state"
                );
            }
            return;
        };
        let used_mib = used as f64 / MIB;
        let soft = used >= self.limits.soft_bytes;
        let hard = used >= self.limits.hard_bytes;
        let was_refusing = self.refusing.swap(soft, Ordering::SeqCst);
        let was_hard = self.above_hard.swap(hard, Ordering::SeqCst);
        if hard && !was_hard {
            tracing::warn!(
                processor = %self.id,
                used_mib,
                limit_mib = self.limits.hard_bytes as f64 / MIB,
                "memory usage is above the hard limit; refusing data"
            );
        } else if soft && !was_refusing {
            tracing::warn!(
                processor = %self.id,
                used_mib,
                soft_limit_mib = self.limits.soft_bytes as f64 / MIB,
                "memory usage is above the soft limit; refusing data"
            );
        }
        if !soft && was_refusing {
            tracing::info!(
                processor = %self.id,
                used_mib,
                soft_limit_mib = self.limits.soft_bytes as f64 / MIB,
                "memory usage is back within limits; accepting data again"
            );
        }
    }
}

/// Refuses data with a retryable `UNAVAILABLE` while the memory in use is at
/// or above the soft limit (limit minus spike), as measured every
/// `check_interval`; passes it on otherwise.
pub struct MemoryLimiter {
    checker: Arc<Checker>,
    interval: Duration,
    signal: Signal,
    next: BoxConsumer,
    refused: Counter,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("id", &self.checker.id)
            .field("limits", &self.checker.limits)
            .field("interval", &self.interval)
            .field("signal", &self.signal)
            .field("refusing", &self.is_refusing())
            .finish_non_exhaustive()
    }
}

impl MemoryLimiter {
    /// A limiter for processor `id` comparing `read()` with `limits` every
    /// `interval` once started; refusals are counted in `refused`.
    pub fn new(
        id: String,
        limits: MemoryLimits,
        interval: Duration,
        read: MemoryReader,
        signal: Signal,
        next: BoxConsumer,
        refused: Counter,
    ) -> Self {
        Self {
            checker: Arc::new(Checker {
                id,
                limits,
                read,
                refusing: AtomicBool::new(false),
                above_hard: AtomicBool::new(false),
                read_error_log: RateLimitedLog::default(),
            }),
            interval,
            signal,
            next,
            refused,
            task: Mutex::new(None),
        }
    }

    /// Measures now and updates the state (the check task does this every interval).
    pub fn check(&self) {
        self.checker.check();
    }

    /// True while data is refused.
    pub fn is_refusing(&self) -> bool {
        self.checker.refusing.load(Ordering::Relaxed)
    }

    /// The thresholds in use.
    pub fn limits(&self) -> MemoryLimits {
        self.checker.limits
    }
}

#[async_trait]
impl Consumer for MemoryLimiter {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        if self.is_refusing() {
            self.refused.add(telemetry.item_count() as u64);
            return Err(ConsumeError::unavailable(REFUSED));
        }
        self.next.consume(telemetry).await
    }

    fn capabilities(&self) -> Capabilities {
        // The batch goes on as it came.
        self.next.capabilities()
    }
}

#[async_trait]
impl Lifecycle for MemoryLimiter {
    /// Measures once, then every `check_interval` in a background task.
    async fn start(&self) -> Result<(), ComponentError> {
        self.checker.check();
        let checker = self.checker.clone();
        let interval = self.interval;
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                checker.check();
            }
        });
        if let Some(old) = self.task.lock().replace(task) {
            old.abort();
        }
        Ok(())
    }

    async fn shutdown(&self, _deadline: std::time::Instant) -> Result<(), ComponentError> {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        Ok(())
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}
