//! Streaming decoder machinery: a serde visitor per message type, driven
//! straight from the JSON text, with a shared path stack for error locations.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Unexpected,
    Visitor,
};

use super::JsonError;

/// Upper bound on the number of path segments (object fields + array indexes)
/// we descend into. serde_json's own recursion limit (128 nested containers)
/// triggers long before this; the cap is defence in depth so that our
/// recursion stays bounded even if that limit is ever lifted.
const MAX_PATH_DEPTH: usize = 256;

/// Longest piece of input echoed back in an error message: errors may be
/// logged or returned to the (untrusted) client.
const MAX_ECHO: usize = 64;

#[derive(Clone, Copy)]
enum Seg {
    Field(&'static str),
    Index(usize),
}

/// Decoding context shared by all visitors of one body.
///
/// Segments are pushed before a value is decoded and popped only once it
/// decoded successfully, so when an error propagates the stack still
/// describes where it happened, whoever raised it (our visitors or
/// serde_json's tokenizer).
pub(super) struct Ctx {
    path: RefCell<Vec<Seg>>,
}

impl Ctx {
    fn new() -> Self {
        Self {
            path: RefCell::new(Vec::with_capacity(16)),
        }
    }

    fn push(&self, seg: Seg) {
        self.path.borrow_mut().push(seg);
    }

    fn pop(&self) {
        self.path.borrow_mut().pop();
    }

    fn depth(&self) -> usize {
        self.path.borrow().len()
    }

    fn render(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        for seg in self.path.borrow().iter() {
            // Writing into a String cannot fail.
            let _ = match seg {
                Seg::Field(name) if out.is_empty() => write!(out, "{name}"),
                Seg::Field(name) => write!(out, ".{name}"),
                Seg::Index(i) => write!(out, "[{i}]"),
            };
        }
        out
    }
}

/// Decodes a whole request body into `T`.
pub(super) fn decode_body<T: Message>(body: &[u8]) -> Result<T, JsonError> {
    // Validate up front: serde_json does not check UTF-8 inside strings it
    // skips (unknown fields), and `from_str` then spares it re-validating the
    // strings it does keep.
    let text = std::str::from_utf8(body)
        .map_err(|e| JsonError::new(String::new(), format!("body is not valid UTF-8: {e}")))?;
    let ctx = Ctx::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let result = MsgSeed::<T>::new(&ctx)
        .deserialize(&mut de)
        .and_then(|msg| de.end().map(|()| msg));
    match result {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(JsonError::new(
            String::new(),
            "expected a JSON object, found null".to_owned(),
        )),
        Err(e) => Err(JsonError::new(ctx.render(), e.to_string())),
    }
}

/// An OTLP message decodable from a JSON object.
pub(super) trait Message: Default {
    /// Canonical (lowerCamelCase) names of the known fields. Keys are also
    /// matched in snake_case, see [`key_matches`].
    const FIELDS: &'static [&'static str];

    /// Decodes the value of field `name` (one of [`Self::FIELDS`]) from `map`.
    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        map: &mut A,
        ctx: &Ctx,
    ) -> Result<(), A::Error>;
}

/// Whether a JSON key names the field `camel`, either as written or in its
/// proto snake_case form (each `X` spelled `_x`), without allocating.
fn key_matches(camel: &str, key: &str) -> bool {
    let mut key = key.as_bytes();
    for &c in camel.as_bytes() {
        match key {
            [k, rest @ ..] if *k == c => key = rest,
            [b'_', k, rest @ ..] if c.is_ascii_uppercase() && *k == c.to_ascii_lowercase() => {
                key = rest;
            }
            _ => return false,
        }
    }
    key.is_empty()
}

/// Maps an object key to the canonical name of a known field (or `None`).
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|name| key_matches(name, key)))
    }
}

/// Decodes a message; JSON `null` yields `None`.
pub(super) struct MsgSeed<'c, T> {
    ctx: &'c Ctx,
    // `fn() -> T` keeps the seed `Copy`/`Send` whatever `T` is.
    _msg: PhantomData<fn() -> T>,
}

impl<'c, T> MsgSeed<'c, T> {
    pub(super) fn new(ctx: &'c Ctx) -> Self {
        Self {
            ctx,
            _msg: PhantomData,
        }
    }
}

impl<T> Clone for MsgSeed<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MsgSeed<'_, T> {}

impl<'de, T: Message> DeserializeSeed<'de> for MsgSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Message> Visitor<'de> for MsgSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.ctx.depth() > MAX_PATH_DEPTH {
            return Err(A::Error::custom("nesting too deep"));
        }
        let mut msg = T::default();
        let probe = 0u8;
        eprintln!(
            "PROBE {} {} {:p}",
            std::any::type_name::<T>(),
            self.ctx.depth(),
            &probe
        );
        while let Some(key) = map.next_key_seed(KeySeed(T::FIELDS))? {
            match key {
                Some(name) => {
                    self.ctx.push(Seg::Field(name));
                    msg.field(name, &mut map, self.ctx)?;
                    self.ctx.pop();
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(msg))
    }
}

/// Decodes a JSON array of whatever `S` decodes; `null` yields `None` and
/// `null` elements their type's default.
pub(super) struct Rep<'c, S> {
    elem: S,
    ctx: &'c Ctx,
}

impl<'de, S, T> DeserializeSeed<'de> for Rep<'_, S>
where
    S: DeserializeSeed<'de, Value = Option<T>> + Copy,
    T: Default,
{
    type Value = Option<Vec<T>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S, T> Visitor<'de> for Rep<'_, S>
where
    S: DeserializeSeed<'de, Value = Option<T>> + Copy,
    T: Default,
{
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint comes from the input; cap it so a lying hint cannot make us
        // reserve a huge buffer up front (serde_json gives none anyway).
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            self.ctx.push(Seg::Index(out.len()));
            let Some(elem) = seq.next_element_seed(self.elem)? else {
                self.ctx.pop();
                return Ok(Some(out));
            };
            self.ctx.pop();
            out.push(elem.unwrap_or_default());
        }
    }
}

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

// Helpers used by the `Message::field` implementations.

/// Decodes a scalar field; `null` gives the default.
pub(super) fn scalar<'de, A: MapAccess<'de>, S: Scalar>(
    map: &mut A,
    s: S,
) -> Result<S::Out, A::Error> {
    Ok(map.next_value_seed(Sc(s))?.unwrap_or_default())
}

/// Decodes a scalar that is part of a oneof or a proto3 `optional`, where
/// presence matters: `null` gives `None`.
pub(super) fn opt_scalar<'de, A: MapAccess<'de>, S: Scalar>(
    map: &mut A,
    s: S,
) -> Result<Option<S::Out>, A::Error> {
    map.next_value_seed(Sc(s))
}

/// Decodes a repeated scalar field.
pub(super) fn scalars<'de, A: MapAccess<'de>, S: Scalar>(
    map: &mut A,
    s: S,
    ctx: &Ctx,
) -> Result<Vec<S::Out>, A::Error> {
    Ok(map
        .next_value_seed(Rep { elem: Sc(s), ctx })?
        .unwrap_or_default())
}

/// Decodes a singular message field.
pub(super) fn msg<'de, A: MapAccess<'de>, T: Message>(
    map: &mut A,
    ctx: &Ctx,
) -> Result<Option<T>, A::Error> {
    map.next_value_seed(MsgSeed::<T>::new(ctx))
}

/// Decodes a repeated message field.
pub(super) fn msgs<'de, A: MapAccess<'de>, T: Message>(
    map: &mut A,
    ctx: &Ctx,
) -> Result<Vec<T>, A::Error> {
    Ok(map
        .next_value_seed(Rep {
            elem: MsgSeed::<T>::new(ctx),
            ctx,
        })?
        .unwrap_or_default())
}

/// Skips the value of a field we know but do not decode.
pub(super) fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}
