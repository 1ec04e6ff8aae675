//! `probabilistic`: a fixed share of trace IDs, chosen by hash so that every
//! replica with the same salt makes the same choice.
//!
//! As otelcol: FNV-1a 64 over the bytes of `hash_salt` (default
//! `default-hash-seed`) followed by the 16 trace-ID bytes; sampled when the
//! hash is `<=` a threshold equal to `u64::MAX * percentage / 100` computed the
//! way Go's `math/big` does it (see [`probabilistic_threshold`]).

use super::{Evaluate, TraceView, issue};
use crate::config::{ConfigIssue, ProbabilisticConfig};
use crate::decision::Decision;

/// The salt otelcol uses when `hash_salt` is empty.
pub(crate) const DEFAULT_HASH_SALT: &str = "default-hash-seed";

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit, over the concatenation of `chunks`.
///
/// ```
/// // The published FNV-1a test vectors.
/// assert_eq!(sampling::policy::fnv1a_64(&[b""]), 0xcbf29ce484222325);
/// assert_eq!(sampling::policy::fnv1a_64(&[b"a"]), 0xaf63dc4c8601ec8c);
/// assert_eq!(sampling::policy::fnv1a_64(&[b"foo", b"bar"]), 0x85944171f73967e8);
/// ```
pub fn fnv1a_64(chunks: &[&[u8]]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for chunk in chunks {
        for &byte in *chunk {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

/// The hash threshold for `percentage`, as otelcol computes it: the exact
/// product of `u64::MAX` and `percentage / 100` (a float64), rounded to 64
/// significant bits (nearest, ties to even: a `big.Float` of precision 64),
/// then truncated to an integer; 0 for ratios <= 0 and `u64::MAX` for ratios
/// >= 1.
///
/// ```
/// use sampling::policy::probabilistic_threshold;
/// assert_eq!(probabilistic_threshold(100.0), u64::MAX);
/// assert_eq!(probabilistic_threshold(50.0), u64::MAX / 2);
/// assert_eq!(probabilistic_threshold(0.0), 0);
/// ```
pub fn probabilistic_threshold(percentage: f64) -> u64 {
    let ratio = percentage / 100.0;
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 {
        // Exactly MAX for 1.0; Go saturates above.
        return u64::MAX;
    }
    // ratio = mantissa * 2^exponent exactly.
    let bits = ratio.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    };
    // The exact product, u64::MAX * mantissa, fits in 117 bits.
    let product = u128::from(u64::MAX) * u128::from(mantissa);
    let bit_len = 128 - i32::try_from(product.leading_zeros()).unwrap_or(0);
    let (mut significand, mut shift) = (product, 0i32);
    if bit_len > 64 {
        shift = bit_len - 64;
        let s = shift.unsigned_abs();
        significand = product >> s;
        let rest = product & ((1u128 << s) - 1);
        let half = 1u128 << (s - 1);
        if rest > half || (rest == half && significand & 1 == 1) {
            significand += 1;
            if significand == 1u128 << 64 {
                significand >>= 1;
                shift += 1;
            }
        }
    }
    let scale = shift + exponent;
    if scale >= 0 {
        // ratio < 1 keeps the value below u64::MAX; saturate defensively.
        let s = scale.unsigned_abs();
        if s >= 64 {
            return u64::MAX;
        }
        u64::try_from(significand << s).unwrap_or(u64::MAX)
    } else {
        let s = scale.unsigned_abs();
        if s >= 128 {
            0
        } else {
            u64::try_from(significand >> s).unwrap_or(u64::MAX)
        }
    }
}

/// Samples `sampling_percentage` percent of trace IDs.
#[derive(Debug)]
pub(crate) struct Probabilistic {
    salt: Vec<u8>,
    threshold: u64,
}

impl Probabilistic {
    pub(crate) fn build(cfg: &ProbabilisticConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let pct = cfg.sampling_percentage;
        if pct.is_nan() || pct < 0.0 {
            return Err(vec![issue(
                format!("{path}.sampling_percentage"),
                format!("must be a number >= 0 (100 or more samples every trace), got {pct}"),
            )]);
        }
        let salt = if cfg.hash_salt.is_empty() {
            DEFAULT_HASH_SALT
        } else {
            &cfg.hash_salt
        };
        Ok(Probabilistic {
            salt: salt.as_bytes().to_vec(),
            threshold: probabilistic_threshold(pct),
        })
    }
}

impl Evaluate for Probabilistic {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        if fnv1a_64(&[&self.salt, trace.trace_id.as_bytes()]) <= self.threshold {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::*;
    use crate::trace_id::TraceId;

    #[test]
    fn thresholds() {
        assert_eq!(probabilistic_threshold(-1.0), 0);
        assert_eq!(probabilistic_threshold(f64::NAN), 0);
        assert_eq!(probabilistic_threshold(0.0), 0);
        assert_eq!(probabilistic_threshold(100.0), u64::MAX);
        assert_eq!(probabilistic_threshold(250.0), u64::MAX);
        assert_eq!(probabilistic_threshold(f64::INFINITY), u64::MAX);
        // 0.5 * (2^64 - 1) = 2^63 - 0.5 exactly, truncated.
        assert_eq!(probabilistic_threshold(50.0), (1u64 << 63) - 1);
        // 0.25 * (2^64 - 1) = 2^62 - 0.25, truncated.
        assert_eq!(probabilistic_threshold(25.0), (1u64 << 62) - 1);
        // 5%: 0.05 is not exact in binary; the 64-bit rounded product of
        // u64::MAX and the float64 0.05, truncated.
        let ratio: f64 = 5.0 / 100.0;
        let exact =
            u128::from(u64::MAX) * u128::from((ratio.to_bits() & ((1 << 52) - 1)) | (1 << 52));
        // 0.05 = m * 2^-57 (exponent field 1018 - 1075).
        assert_eq!(
            probabilistic_threshold(5.0),
            u64::try_from(exact >> 57).unwrap()
        );
        // Monotone in the percentage.
        let mut last = 0;
        for tenth in 0..=1000 {
            let t = probabilistic_threshold(f64::from(tenth) / 10.0);
            assert!(t >= last, "{tenth}");
            last = t;
        }
    }

    #[test]
    fn samples_by_hash_of_salt_and_id() {
        let mut p = policy(
            "{name: p, type: probabilistic, probabilistic: {sampling_percentage: 50, hash_salt: s}}",
        );
        let batches = [rs(vec![], vec![span(vec![])])];
        let mut sampled = 0;
        for n in 0u8..=255 {
            let id = TraceId([n; 16]);
            let mut v = view(&batches);
            v.trace_id = &id;
            let want = fnv1a_64(&[b"s", &[n; 16]]) <= u64::MAX / 2;
            assert_eq!(p.evaluate(&v) == Decision::Sampled, want, "{n}");
            sampled += usize::from(want);
        }
        assert!(sampled > 0 && sampled < 256);
    }

    #[test]
    fn default_salt_and_edges() {
        let mut all =
            policy("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}");
        let mut none =
            policy("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}");
        let batches = [rs(vec![], vec![span(vec![])])];
        assert_eq!(eval(&mut all, &batches), Decision::Sampled);
        assert_eq!(eval(&mut none, &batches), Decision::NotSampled);
        let p = Probabilistic::build(&ProbabilisticConfig::default(), "x").unwrap();
        assert_eq!(p.salt, b"default-hash-seed");
        assert_eq!(
            policy_errors(
                "{name: p, type: probabilistic, probabilistic: {sampling_percentage: -5}}"
            ),
            vec![
                "policies[0].probabilistic.sampling_percentage: must be a number >= 0 (100 or more samples every trace), got -5"
            ]
        );
    }
}
