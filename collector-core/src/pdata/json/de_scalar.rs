//! Scalar field types: how JSON numbers, strings and booleans map to proto
//! scalars, ids, enums and bytes.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, DeserializeSeed, Deserializer, Unexpected, Visitor};

/// Longest piece of input echoed back in an error message: errors may be
/// logged or returned to the (untrusted) client.
const MAX_ECHO: usize = 64;

/// A JSON number as serde_json reports it.
#[derive(Clone, Copy)]
pub(super) enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    fn unexpected(self) -> Unexpected<'static> {
        match self {
            Num::U(v) => Unexpected::Unsigned(v),
            Num::I(v) => Unexpected::Signed(v),
            Num::F(v) => Unexpected::Float(v),
        }
    }

    fn to_u64(self) -> Option<u64> {
        match self {
            Num::U(v) => Some(v),
            Num::I(v) => u64::try_from(v).ok(),
            // 2^64 is exactly representable; anything below it with no
            // fraction converts exactly.
            Num::F(v) if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) => {
                Some(v as u64)
            }
            Num::F(_) => None,
        }
    }

    fn to_i64(self) -> Option<i64> {
        match self {
            Num::U(v) => i64::try_from(v).ok(),
            Num::I(v) => Some(v),
            Num::F(v)
                if v.fract() == 0.0
                    && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) =>
            {
                Some(v as i64)
            }
            Num::F(_) => None,
        }
    }
}

/// Why a scalar visitor refused a value.
pub(super) enum Reject {
    /// Wrong JSON type for this field.
    Type,
    /// Right type, but out of range for the field.
    Range,
    /// Right type, but malformed (bad hex, unknown enum name, ...).
    Msg(String),
}

/// A scalar field type: how each kind of JSON value maps to it.
pub(super) trait Scalar: Copy {
    type Out: Default;
    const EXPECTING: &'static str;

    fn num(self, _n: Num) -> Result<Self::Out, Reject> {
        Err(Reject::Type)
    }

    fn text(self, _s: &str) -> Result<Self::Out, Reject> {
        Err(Reject::Type)
    }

    fn boolean(self, _b: bool) -> Result<Self::Out, Reject> {
        Err(Reject::Type)
    }
}

/// Adapts a [`Scalar`] to serde; `null` yields `None`.
#[derive(Clone, Copy)]
pub(super) struct Sc<S>(pub(super) S);

impl<S: Scalar> Sc<S> {
    fn reject<E: de::Error>(&self, why: Reject, unexp: Unexpected<'_>) -> E {
        match why {
            Reject::Type => E::invalid_type(unexp, self),
            Reject::Range => E::invalid_value(unexp, self),
            Reject::Msg(m) => E::custom(m),
        }
    }

    fn num<E: de::Error>(self, n: Num) -> Result<Option<S::Out>, E> {
        self.0
            .num(n)
            .map(Some)
            .map_err(|why| self.reject(why, n.unexpected()))
    }
}

impl<'de, S: Scalar> DeserializeSeed<'de> for Sc<S> {
    type Value = Option<S::Out>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Scalar> Visitor<'de> for Sc<S> {
    type Value = Option<S::Out>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(S::EXPECTING)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.0
            .boolean(v)
            .map(Some)
            .map_err(|why| self.reject(why, Unexpected::Bool(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.num(Num::U(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.num(Num::I(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.num(Num::F(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // Unexpected::Other rather than Str: do not echo untrusted strings.
        self.0
            .text(v)
            .map(Some)
            .map_err(|why| self.reject(why, Unexpected::Other("string")))
    }
}

/// Shortens untrusted input before quoting it in an error message.
fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[derive(Clone, Copy)]
pub(super) struct Str;

impl Scalar for Str {
    type Out = String;
    const EXPECTING: &'static str = "a string";

    fn text(self, s: &str) -> Result<String, Reject> {
        Ok(s.to_owned())
    }
}

#[derive(Clone, Copy)]
pub(super) struct Bool;

impl Scalar for Bool {
    type Out = bool;
    const EXPECTING: &'static str = "a boolean";

    fn boolean(self, b: bool) -> Result<bool, Reject> {
        Ok(b)
    }
}

fn parse_int<T: std::str::FromStr>(s: &str) -> Result<T, Reject> {
    s.trim()
        .parse()
        .map_err(|_| Reject::Msg(format!("invalid integer {}", echo(s))))
}

#[derive(Clone, Copy)]
pub(super) struct U64;

impl Scalar for U64 {
    type Out = u64;
    const EXPECTING: &'static str = "an unsigned 64-bit integer (number or decimal string)";

    fn num(self, n: Num) -> Result<u64, Reject> {
        n.to_u64().ok_or(Reject::Range)
    }

    fn text(self, s: &str) -> Result<u64, Reject> {
        parse_int(s)
    }
}

#[derive(Clone, Copy)]
pub(super) struct I64;

impl Scalar for I64 {
    type Out = i64;
    const EXPECTING: &'static str = "a signed 64-bit integer (number or decimal string)";

    fn num(self, n: Num) -> Result<i64, Reject> {
        n.to_i64().ok_or(Reject::Range)
    }

    fn text(self, s: &str) -> Result<i64, Reject> {
        parse_int(s)
    }
}

#[derive(Clone, Copy)]
pub(super) struct U32;

impl Scalar for U32 {
    type Out = u32;
    const EXPECTING: &'static str = "an unsigned 32-bit integer";

    fn num(self, n: Num) -> Result<u32, Reject> {
        n.to_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(Reject::Range)
    }

    fn text(self, s: &str) -> Result<u32, Reject> {
        parse_int(s)
    }
}

#[derive(Clone, Copy)]
pub(super) struct I32;

impl Scalar for I32 {
    type Out = i32;
    const EXPECTING: &'static str = "a signed 32-bit integer";

    fn num(self, n: Num) -> Result<i32, Reject> {
        n.to_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or(Reject::Range)
    }

    fn text(self, s: &str) -> Result<i32, Reject> {
        parse_int(s)
    }
}

#[derive(Clone, Copy)]
pub(super) struct F64;

impl Scalar for F64 {
    type Out = f64;
    const EXPECTING: &'static str = "a number (or \"NaN\", \"Infinity\", \"-Infinity\")";

    fn num(self, n: Num) -> Result<f64, Reject> {
        Ok(match n {
            Num::U(v) => v as f64,
            Num::I(v) => v as f64,
            Num::F(v) => v,
        })
    }

    fn text(self, s: &str) -> Result<f64, Reject> {
        match s {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s
                .trim()
                .parse()
                .map_err(|_| Reject::Msg(format!("invalid number {}", echo(s)))),
        }
    }
}

/// An enum field: integer, or the proto name of a value.
#[derive(Clone, Copy)]
pub(super) struct Enum(pub(super) fn(&str) -> Option<i32>);

impl Scalar for Enum {
    type Out = i32;
    const EXPECTING: &'static str = "an enum value (integer or name)";

    fn num(self, n: Num) -> Result<i32, Reject> {
        I32.num(n)
    }

    fn text(self, s: &str) -> Result<i32, Reject> {
        match (self.0)(s) {
            Some(v) => Ok(v),
            None => s
                .trim()
                .parse()
                .map_err(|_| Reject::Msg(format!("unknown enum value {}", echo(s)))),
        }
    }
}

/// Trace and span ids: hex, not base64 as protobuf JSON would have it.
#[derive(Clone, Copy)]
pub(super) struct Hex;

impl Scalar for Hex {
    type Out = Vec<u8>;
    const EXPECTING: &'static str = "a hex string";

    fn text(self, s: &str) -> Result<Vec<u8>, Reject> {
        hex::decode(s).map_err(|e| Reject::Msg(format!("invalid hex id: {e}")))
    }
}

/// `bytes` fields other than ids: base64, standard or URL-safe alphabet,
/// with or without padding (the proto3 JSON mapping allows all of them).
#[derive(Clone, Copy)]
pub(super) struct B64;

const B64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

impl Scalar for B64 {
    type Out = Vec<u8>;
    const EXPECTING: &'static str = "a base64 string";

    fn text(self, s: &str) -> Result<Vec<u8>, Reject> {
        B64_STANDARD.decode(s).or_else(|e| {
            // Only worth a second pass if URL-safe characters are present.
            if s.bytes().any(|b| b == b'-' || b == b'_') {
                B64_URL_SAFE
                    .decode(s)
                    .map_err(|e| Reject::Msg(format!("invalid base64: {e}")))
            } else {
                Err(Reject::Msg(format!("invalid base64: {e}")))
            }
        })
    }
}
