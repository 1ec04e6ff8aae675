//! Exponential backoff with jitter, as otelcol's retry sender computes it
//! (cenkalti/backoff semantics).

use super::config::RetryConfig;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;

/// The waits between attempts of one request.
#[derive(Debug)]
pub(crate) struct Backoff {
    config: RetryConfig,
    /// The next wait before jitter.
    current: Duration,
    started: Instant,
    rng: Jitter,
}

impl Backoff {
    /// A backoff starting now.
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self {
            config: config.clone(),
            current: config.initial_interval,
            started: Instant::now(),
            rng: Jitter::new(),
        }
    }

    /// The wait before the next attempt, at least `server_delay` when the
    /// peer asked for one; `None` when retrying must stop because
    /// `max_elapsed_time` would be exceeded.
    pub(crate) fn next_delay(&mut self, server_delay: Option<Duration>) -> Option<Duration> {
        let factor = self.config.randomization_factor.clamp(0.0, 1.0);
        let base = self.current.as_secs_f64();
        // Uniform in [base - factor*base, base + factor*base].
        let jittered = base * (1.0 - factor + 2.0 * factor * self.rng.next_unit());
        let mut delay = Duration::try_from_secs_f64(jittered.max(0.0)).unwrap_or(self.current);
        let grown = base * self.config.multiplier;
        let max = self.config.max_interval.as_secs_f64();
        self.current = if grown >= max || !grown.is_finite() {
            self.config.max_interval
        } else {
            Duration::try_from_secs_f64(grown).unwrap_or(self.config.max_interval)
        };
        if let Some(server) = server_delay {
            delay = delay.max(server);
        }
        let limit = self.config.max_elapsed_time;
        if !limit.is_zero() && self.started.elapsed() + delay > limit {
            return None;
        }
        Some(delay)
    }
}

/// A small xorshift generator for jitter; seeded from the process's random
/// hasher keys, so no two exporters jitter in lockstep.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Self(hasher.finish() | 1)
    }

    /// A number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(factor: f64) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(4),
            max_elapsed_time: Duration::from_secs(10),
            multiplier: 2.0,
            randomization_factor: factor,
            ..RetryConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn grows_to_the_maximum_without_jitter() {
        let mut backoff = Backoff::new(&config(0.0));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay(None)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 4].map(|s| Some(Duration::from_secs(s))).to_vec()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_the_factor() {
        let mut backoff = Backoff::new(&RetryConfig {
            max_elapsed_time: Duration::ZERO,
            ..config(0.5)
        });
        for _ in 0..100 {
            let before = backoff.current;
            let d = backoff.next_delay(None).unwrap();
            assert!(
                d >= before / 2 && d <= before * 3 / 2,
                "{d:?} vs {before:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn server_delay_wins_and_elapsed_time_stops() {
        let mut backoff = Backoff::new(&config(0.0));
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(backoff.next_delay(None), None);
    }
}
