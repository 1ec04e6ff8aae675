//! Value parsers the otelcol YAML needs: Go durations and lenient integers.
//!
//! otelcol decodes durations with Go's `time.ParseDuration` (`5s`, `200ms`,
//! `1m30s`, `1.5h`) and reads YAML through go-yaml v3, which also accepts an
//! integer written with `_` separators (`100_000`). Both are reproduced here so
//! a config that loads in otelcol loads here.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not a Go duration (`300ms`, `1m30s`, `2h45m`, ...).
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit (ns, us, ms, s, m, h), e.g. \"5s\" or \"1m30s\""
    )]
    Invalid(String),
    /// A unit is missing after a number (`"10"`; only `"0"` may omit it).
    #[error("missing unit in duration {0:?}: expected one of ns, us, ms, s, m, h")]
    MissingUnit(String),
    /// The unit is not one Go knows.
    #[error("unknown unit {unit:?} in duration {text:?}: expected one of ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The whole duration text.
        text: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// The duration is negative; every duration here is a wait or a size.
    #[error("negative duration {0:?} is not allowed")]
    Negative(String),
    /// The duration does not fit (Go's limit is about 292 years).
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a Go-style duration such as `5s`, `200ms`, `1m30s` or `1.5h`.
///
/// Accepts what Go's `time.ParseDuration` accepts, except negative durations.
///
/// ```
/// use std::time::Duration;
/// use sampling::config::parse_go_duration;
/// assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_go_duration("200ms").unwrap(), Duration::from_millis(200));
/// assert_eq!(parse_go_duration("1.5h").unwrap(), Duration::from_secs(5400));
/// assert!(parse_go_duration("10").is_err());
/// ```
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    // Go's limit: the result must fit an int64 of nanoseconds.
    const LIMIT: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_num) = match after_int.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let mut int_value: u128 = 0;
        for b in int_digits.bytes() {
            int_value = int_value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(b - b'0')))
                .filter(|v| *v <= LIMIT)
                .ok_or_else(overflow)?;
        }
        let mut value = int_value.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Fractional part: keep at most 18 digits (below a nanosecond for any
        // unit), truncating like Go does.
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        for b in frac_digits.bytes().take(18) {
            frac = frac * 10 + u128::from(b - b'0');
            scale *= 10;
        }
        value += frac * unit_nanos / scale;
        total = total
            .checked_add(value)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(overflow)?;
        rest = after_unit;
    }
    if negative && total != 0 {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Reads a duration from a Go duration string or an integer of nanoseconds
/// (what Go's `time.Duration` decodes from).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"5s\", \"200ms\" or \"1m30s\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_go_duration(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_nanos)
                .map_err(|_| E::custom(format!("negative duration {v} is not allowed")))
        }
    }
    d.deserialize_any(V)
}

/// Reads an integer written as a YAML integer or as a string with optional
/// `_` separators (`"100_000"`), as go-yaml v3 does.
fn lenient_i128<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i128;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
            Ok(i128::from(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
            Ok(i128::from(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i128, E> {
            let cleaned: String = v.chars().filter(|c| *c != '_').collect();
            cleaned
                .parse::<i128>()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

fn ranged<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D, what: &str) -> Result<T, D::Error> {
    let v = lenient_i128(d)?;
    T::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range for {what}")))
}

/// A lenient `u64` (non-negative integer).
pub(crate) fn u64_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, "a non-negative integer")
}

/// A lenient optional `u64`.
pub(crate) fn opt_u64_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64_field(d).map(Some)
}

/// A lenient `i64`.
pub(crate) fn i64_field<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    ranged(d, "a 64-bit integer")
}

/// A lenient `i32`.
pub(crate) fn i32_field<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    ranged(d, "a 32-bit integer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("-0", 0),
            ("5s", 5_000_000_000),
            ("+5s", 5_000_000_000),
            ("200ms", 200_000_000),
            ("1m30s", 90_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("2\u{b5}s", 2_000),
            ("2\u{3bc}s", 2_000),
            ("1.0000000001s", 1_000_000_000),
            ("0.1ns", 0),
        ];
        for (text, nanos) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
        assert!(matches!(
            parse_go_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("10d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("3000000h"),
            Err(DurationError::Overflow(_))
        ));
        for bad in ["", "s", ".s", "1..5s", "five seconds", "-", "1s "] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
