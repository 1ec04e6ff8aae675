//! Time as the engine sees it: a caller-supplied [`Timestamp`].
//!
//! The engine never reads a clock. Every call that depends on time
//! ([`Sampler::ingest`](crate::Sampler::ingest), [`Sampler::tick`](crate::Sampler::tick),
//! ...) takes the current time as an argument, so tests drive time by hand and
//! a runtime passes [`MonotonicClock::now`].

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

/// A point in time: nanoseconds since an epoch the caller chooses.
///
/// Only differences between timestamps matter to the engine (decision waits,
/// token buckets, one-second windows), so the epoch can be anything as long as
/// one [`Sampler`](crate::Sampler) always receives timestamps from the same
/// source. Arithmetic saturates instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(1_000_000))
    }

    /// A timestamp `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (the window of the per-second limiters).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_nanos(rhs)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_nanos(rhs)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// Turns [`Instant`]s into [`Timestamp`]s, counting from when it was created.
///
/// This is the clock a runtime uses; tests usually build timestamps directly.
///
/// ```
/// use sampling::MonotonicClock;
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The timestamp of `instant` (the epoch if `instant` is before it).
    pub fn at(&self, instant: Instant) -> Timestamp {
        Timestamp(duration_nanos(
            instant.saturating_duration_since(self.origin),
        ))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_secs(2);
        assert_eq!(t + Duration::from_millis(500), Timestamp::from_millis(2500));
        assert_eq!(t - Duration::from_secs(5), Timestamp::ZERO);
        assert_eq!(
            Timestamp::from_nanos(u64::MAX) + Duration::from_secs(1),
            Timestamp::from_nanos(u64::MAX)
        );
        assert_eq!(
            Timestamp::from_secs(1).saturating_duration_since(Timestamp::from_secs(3)),
            Duration::ZERO
        );
        assert_eq!(Timestamp::from_millis(2500).as_secs(), 2);
        assert_eq!(Timestamp::from_millis(2500).to_string(), "2.500000000s");
    }
}
