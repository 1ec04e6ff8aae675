//! `rate_limiting`: a token bucket of spans, refilled at `spans_per_second`
//! up to `burst_capacity` (default twice the rate). A trace is sampled when
//! the bucket holds at least its span count, which it then takes.

use super::{Evaluate, TraceView, issue};
use crate::clock::Timestamp;
use crate::config::{ConfigIssue, RateLimitingConfig};
use crate::decision::Decision;

/// A token bucket that starts full, as `golang.org/x/time/rate` does.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    /// A bucket from a policy's `<rate_key>` and `burst_capacity` settings,
    /// refusing negative values with their YAML paths (shared by
    /// `rate_limiting` and `bytes_limiting`).
    pub(crate) fn checked(
        per_second: i64,
        burst: i64,
        path: &str,
        rate_key: &str,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if per_second < 0 {
            issues.push(issue(format!("{path}.{rate_key}"), "must not be negative"));
        }
        if burst < 0 {
            issues.push(issue(
                format!("{path}.burst_capacity"),
                format!("must not be negative (0 means twice {rate_key})"),
            ));
        }
        if issues.is_empty() {
            Ok(Self::new(per_second, burst))
        } else {
            Err(issues)
        }
    }

    /// A bucket refilled at `per_second`, holding at most `burst` tokens
    /// (`burst <= 0` means twice `per_second`).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn new(per_second: i64, burst: i64) -> Self {
        let capacity = if burst > 0 {
            burst as f64
        } else {
            2.0 * per_second as f64
        };
        TokenBucket {
            per_second: per_second as f64,
            capacity,
            tokens: capacity,
            last: None,
        }
    }

    /// Takes `n` tokens at `now` if the bucket holds them.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn take(&mut self, n: u64, now: Timestamp) -> bool {
        let available = match self.last {
            None => self.capacity,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                (self.tokens + elapsed * self.per_second).min(self.capacity)
            }
        };
        // Time never runs backwards for the bucket.
        if self.last.is_none_or(|last| now >= last) {
            self.last = Some(now);
        }
        self.tokens = available;
        let n = n as f64;
        if n <= available {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Samples traces while the span budget allows.
#[derive(Debug)]
pub(crate) struct RateLimiting {
    bucket: TokenBucket,
}

impl RateLimiting {
    pub(crate) fn build(cfg: &RateLimitingConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let bucket = TokenBucket::checked(
            cfg.spans_per_second,
            cfg.burst_capacity,
            path,
            "spans_per_second",
        )?;
        Ok(RateLimiting { bucket })
    }
}

impl Evaluate for RateLimiting {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        if self.bucket.take(trace.span_count, trace.now) {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::TokenBucket;
    use crate::clock::Timestamp;
    use crate::decision::Decision::*;

    #[test]
    fn bucket() {
        let t = Timestamp::from_millis;
        let mut b = TokenBucket::new(10, 0); // capacity 20
        assert!(b.take(15, t(0)));
        assert!(!b.take(6, t(0))); // 5 left
        assert!(b.take(5, t(0)));
        assert!(!b.take(1, t(50))); // 0.5 refilled
        assert!(b.take(1, t(100))); // 1.0 refilled
        assert!(b.take(20, t(10_000))); // refilled to the cap, not beyond
        assert!(!b.take(1, t(10_000)));
        assert!(!b.take(21, t(100_000))); // more than the burst never passes
        let mut custom = TokenBucket::new(3, 3);
        assert!(custom.take(3, t(0)));
        assert!(!custom.take(1, t(0)));
        assert!(custom.take(1, t(334)));
    }

    #[test]
    fn policy_counts_spans() {
        let mut p = policy(
            "{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 2, burst_capacity: 3}}",
        );
        let two = [rs(vec![], vec![span(vec![]), span(vec![])])];
        let at = |ms| view_at(&two, Timestamp::from_millis(ms));
        assert_eq!(p.evaluate(&at(0)), Sampled); // 3 -> 1
        assert_eq!(p.evaluate(&at(0)), NotSampled);
        assert_eq!(p.evaluate(&at(500)), Sampled); // 1 + 1 -> 0
        assert_eq!(p.evaluate(&at(999)), NotSampled);
        assert_eq!(p.evaluate(&at(1600)), Sampled); // 0.998 + 1.202 -> 0.2
    }
}
