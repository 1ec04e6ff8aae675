//! `bytes_limiting`: a token bucket of OTLP-encoded bytes, refilled at
//! `bytes_per_second` up to `burst_capacity` (default twice the rate). A trace
//! larger than the burst capacity never passes.

use super::rate_limiting::TokenBucket;
use super::{Evaluate, TraceView};
use crate::config::{BytesLimitingConfig, ConfigIssue};
use crate::decision::Decision;

/// Samples traces while the byte budget allows.
#[derive(Debug)]
pub(crate) struct BytesLimiting {
    bucket: TokenBucket,
}

impl BytesLimiting {
    pub(crate) fn build(cfg: &BytesLimitingConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let bucket = TokenBucket::checked(
            cfg.bytes_per_second,
            cfg.burst_capacity,
            path,
            "bytes_per_second",
        )?;
        Ok(BytesLimiting { bucket })
    }
}

impl Evaluate for BytesLimiting {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        if self.bucket.take(trace.size_bytes, trace.now) {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::clock::Timestamp;
    use crate::decision::Decision::*;

    #[test]
    fn limits_bytes() {
        let t = [rs(vec![], vec![span(vec![s("k", "v")])])];
        let size = view(&t).size_bytes;
        assert!(size > 10);
        // Room for exactly two traces in the burst, refilled one per second.
        let mut p = policy(&format!(
            "{{name: b, type: bytes_limiting, bytes_limiting: {{bytes_per_second: {size}, burst_capacity: {}}}}}",
            2 * size
        ));
        let at = |s| view_at(&t, Timestamp::from_secs(s));
        assert_eq!(p.evaluate(&at(1)), Sampled);
        assert_eq!(p.evaluate(&at(1)), Sampled);
        assert_eq!(p.evaluate(&at(1)), NotSampled);
        assert_eq!(p.evaluate(&at(2)), Sampled);
        assert_eq!(p.evaluate(&at(2)), NotSampled);
        // Default burst is twice the rate; a trace above it never passes.
        let mut small = policy(&format!(
            "{{name: b, type: bytes_limiting, bytes_limiting: {{bytes_per_second: {}}}}}",
            size / 2 - 1
        ));
        assert_eq!(small.evaluate(&at(100)), NotSampled);
    }
}
