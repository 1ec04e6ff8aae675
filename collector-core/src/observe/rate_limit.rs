//! Rate-limited logging for problems that can repeat per request.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Lets one log line through per interval and counts the ones held back, so a
/// flood of bad requests costs a counter increment, not a log line each.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Returns `Some(suppressed)` when a line may be logged now, with how many
    /// were held back since the last one; `None` when it must be skipped.
    pub fn check(&self) -> Option<u64> {
        let mut state = self.state.lock();
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}
