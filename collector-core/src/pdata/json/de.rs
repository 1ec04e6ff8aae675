//! Streaming decoder machinery: a serde visitor per message type, driven
//! straight from the JSON text, with a shared path stack for error locations.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::JsonError;
use super::de_scalar::{Sc, Scalar};

/// Upper bound on the number of path segments (object fields + array indexes)
/// we descend into. serde_json's own recursion limit (128 nested containers)
/// triggers long before this; the cap is defence in depth so that our
/// recursion stays bounded even if that limit is ever lifted.
const MAX_PATH_DEPTH: usize = 256;

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
        Err(e) => Err(JsonError::new(ctx.render(), cap_len(e.to_string()))),
    }
}

/// Bounds an error message: serde's type errors quote the offending input
/// (any length), and the message may be logged or sent back to the client.
fn cap_len(mut msg: String) -> String {
    const MAX: usize = 512;
    if msg.len() > MAX {
        let mut cut = MAX;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push_str("...");
    }
    msg
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
        // `deserialize_option` + `deserialize_map` rather than
        // `deserialize_any`: same result (null or object), but serde_json's
        // `deserialize_any` has a much larger stack frame, and this is on the
        // recursive path of nested values.
        d.deserialize_option(self)
    }
}

impl<'de, T: Message> Visitor<'de> for MsgSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.ctx.depth() > MAX_PATH_DEPTH {
            return Err(A::Error::custom("nesting too deep"));
        }
        let mut msg = T::default();
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
        // See `MsgSeed::deserialize`.
        d.deserialize_option(self)
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

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
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
