//! A validating scanner for OTLP protobuf requests that allocates nothing.
//!
//! The receivers keep the bytes they got instead of decoding them (see
//! [`super::Batch`]): an unmodified batch is forwarded as received. The bytes
//! still have to be checked, and their items counted, without building the
//! prost structures. This walks the wire format against static tables of the
//! OTLP messages ([`schema`]) and accepts exactly what prost's decoder accepts:
//! the wire type of every known field, UTF-8 in string fields, packed and
//! unpacked repeated scalars, well-formed unknown fields and groups, and
//! prost's nesting limit of 100 messages. Along the way it counts items and
//! checks trace and span IDs, so a request with malformed IDs can take the
//! slow path (decode and drop those items with `partial_success`).

mod schema;
#[cfg(test)]
mod tests;

pub(crate) use schema::{LOGS_REQUEST, METRICS_REQUEST, TRACES_REQUEST};

/// Nested messages prost accepts below the top-level one.
const RECURSION_LIMIT: u32 = 100;

/// What a field of a message holds, as far as validation cares.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// int32/int64/uint32/uint64/sint*/bool/enum: one varint.
    Varint,
    /// fixed64/sfixed64/double.
    Fixed64,
    /// fixed32/sfixed32/float.
    Fixed32,
    /// A UTF-8 string.
    Str,
    /// Opaque bytes.
    Bytes,
    /// A nested message.
    Message(&'static Schema),
    /// `repeated` fixed64/double: packed or one value per field.
    RepeatedFixed64,
    /// `repeated` varint scalars: packed or one value per field.
    RepeatedVarint,
}

impl Kind {
    /// Whether a field of this kind may arrive with `wire_type` (prost
    /// refuses any other).
    const fn accepts(self, wire_type: u8) -> bool {
        match self {
            Kind::Varint => wire_type == VARINT,
            Kind::Fixed64 => wire_type == FIXED64,
            Kind::Fixed32 => wire_type == FIXED32,
            Kind::Str | Kind::Bytes | Kind::Message(_) => wire_type == LEN,
            Kind::RepeatedFixed64 => wire_type == FIXED64 || wire_type == LEN,
            Kind::RepeatedVarint => wire_type == VARINT || wire_type == LEN,
        }
    }
}

/// Which ID rule a message follows (checked on the message's final values,
/// since a repeated scalar field's last occurrence wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ids {
    /// No IDs to check.
    None,
    /// A span: trace ID (1) 16 bytes, span ID (2) 8 bytes, both not all zero;
    /// parent span ID (4) empty or 8 non-zero bytes.
    Span,
    /// A log record: trace ID (9) and span ID (10) empty or valid.
    LogRecord,
}

/// A message type: its fields by tag, whether it is an item (span, data
/// point, log record), and its ID rule.
#[derive(Debug)]
pub(crate) struct Schema {
    fields: &'static [(u32, Kind)],
    item: bool,
    ids: Ids,
    /// The common case without decoding or searching: for each one-byte key
    /// (tag below 16), 1 + the position in `fields` of the field it starts,
    /// if that field takes the key's wire type (so its checks are done).
    /// 0 (unknown tag, tag 0, a wrong wire type) leaves the key to the
    /// general path, which also takes every key of more than one byte.
    one_byte_keys: [u8; 128],
}

impl Schema {
    pub(crate) const fn new(fields: &'static [(u32, Kind)], item: bool, ids: Ids) -> Schema {
        assert!(
            fields.len() < u8::MAX as usize,
            "too many fields for one_byte_keys"
        );
        let mut one_byte_keys = [0u8; 128];
        let mut key = 0;
        while key < one_byte_keys.len() {
            let tag = (key >> 3) as u32;
            let wire_type = (key & 7) as u8;
            let mut i = 0;
            while i < fields.len() {
                if fields[i].0 == tag && fields[i].1.accepts(wire_type) {
                    one_byte_keys[key] = i as u8 + 1;
                }
                i += 1;
            }
            key += 1;
        }
        Schema {
            fields,
            item,
            ids,
            one_byte_keys,
        }
    }

    /// The field a one-byte key starts, if `one_byte_keys` knows it.
    #[inline(always)]
    fn one_byte_key(&self, key: u8) -> Option<(u32, Kind)> {
        match self.one_byte_keys.get(usize::from(key)) {
            Some(&slot) if slot != 0 => Some(self.fields[usize::from(slot - 1)]),
            _ => None,
        }
    }

    fn kind(&self, tag: u32) -> Option<Kind> {
        // Most tables list tags 1, 2, 3... in order: try the tag's own slot
        // before searching.
        let slot = usize::try_from(tag).ok()?.checked_sub(1)?;
        match self.fields.get(slot) {
            Some(&(t, kind)) if t == tag => Some(kind),
            _ => self.fields.iter().find(|(t, _)| *t == tag).map(|(_, k)| *k),
        }
    }
}

/// Why bytes are not a valid message of the expected type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf: {0}")]
pub struct WireError(&'static str);

/// What a successful scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Spans, metric data points or log records.
    pub(crate) items: usize,
    /// Some span or log record has a malformed trace or span ID.
    pub(crate) invalid_ids: bool,
    /// Some span's trace ID is not its one `trace_id` field, written first
    /// with a one-byte length: see [`Batch::trace_ids_lead`].
    ///
    /// [`Batch::trace_ids_lead`]: crate::pdata::Batch::trace_ids_lead
    pub(crate) trace_ids_elsewhere: bool,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// A cursor over the bytes of one message.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, lengths and small numbers: one byte, inlined at every call;
        // the loop for longer ones stays out of line.
        if let Some((&byte, rest)) = self.buf.split_first()
            && byte < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&byte, rest)) = self.buf.split_first() else {
                return Err(WireError("buffer underflow"));
            };
            self.buf = rest;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return Err(WireError("invalid varint"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError("invalid varint"))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError("buffer underflow"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn length_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError("buffer underflow"))?;
        self.take(len)
    }

    /// The next field key: (tag, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let wire_type = (key & 7) as u8;
        let tag = (key >> 3) as u32;
        if wire_type > FIXED32 {
            return Err(WireError("invalid wire type value"));
        }
        if tag == 0 {
            return Err(WireError("invalid tag value: 0"));
        }
        Ok((tag, wire_type))
    }

    /// Skips a field of an unknown tag, as prost does (groups included; like
    /// prost, no unknown field is accepted at the nesting limit).
    fn skip(&mut self, tag: u32, wire_type: u8, depth_left: u32) -> Result<(), WireError> {
        if depth_left == 0 {
            return Err(WireError("recursion limit reached"));
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            FIXED32 => self.take(4).map(drop),
            LEN => self.length_delimited().map(drop),
            START_GROUP => loop {
                let (inner_tag, inner_type) = self.key()?;
                if inner_type == END_GROUP {
                    if inner_tag != tag {
                        return Err(WireError("unexpected end group tag"));
                    }
                    return Ok(());
                }
                self.skip(inner_tag, inner_type, depth_left - 1)?;
            },
            _ => Err(WireError("unexpected end group tag")),
        }
    }
}

/// Whether `bytes`, a message of `schema` at `depth_left`, is valid and an
/// attribute's shape: one-byte keys and lengths, string fields, and message
/// fields that hold only such strings (a `KeyValue` with a string value, an
/// `ArrayValue` of strings). These are most of the messages in a request, and
/// here they are checked without the full scan's setup and recursion.
/// `false` means "not this shape" as well as "invalid": the full scan then
/// decides, and finds the error if there is one. It looks two levels deep at
/// most, so a byte is looked at a bounded number of times: still linear.
#[inline]
fn is_valid_attribute(bytes: &[u8], schema: &Schema, depth_left: u32) -> bool {
    each_short_field(bytes, schema, |kind, field| match kind {
        Kind::Str => is_utf8(field),
        Kind::Message(inner) => depth_left > 0 && is_valid_short_strings(field, inner),
        _ => false,
    })
}

/// Whether `bytes` is a valid message of `schema` made only of string fields
/// with one-byte keys and lengths (an `AnyValue` holding a string).
#[inline]
fn is_valid_short_strings(bytes: &[u8], schema: &Schema) -> bool {
    each_short_field(bytes, schema, |kind, field| {
        matches!(kind, Kind::Str) && is_utf8(field)
    })
}

/// Whether every field of `bytes` has a one-byte key known to `schema` and a
/// one-byte length, and `check` accepts each. Only for messages that are no
/// item and have no IDs, whose fields need no other check.
#[inline(always)]
fn each_short_field(bytes: &[u8], schema: &Schema, check: impl Fn(Kind, &[u8]) -> bool) -> bool {
    if schema.item || schema.ids != Ids::None {
        return false;
    }
    let mut rest = bytes;
    while let [key, len, tail @ ..] = rest {
        // A length byte of 0x80 or more starts a longer varint.
        let len = usize::from(*len);
        if len >= 0x80 || len > tail.len() {
            return false;
        }
        let (field, after) = tail.split_at(len);
        match schema.one_byte_key(*key) {
            Some((_, kind)) if check(kind, field) => rest = after,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// `bytes.is_ascii()`, cheaper for the short strings most fields hold:
/// two overlapping word loads cover 4 to 16 bytes without a loop.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let len = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    match len {
        0..4 => bytes.iter().all(u8::is_ascii),
        4..8 => (half(0) | half(len - 4)) & HIGH_BITS as u32 == 0,
        8..=16 => (word(0) | word(len - 8)) & HIGH_BITS == 0,
        _ => bytes.is_ascii(),
    }
}

/// A string field's bytes must be UTF-8.
#[inline]
fn check_utf8(bytes: &[u8]) -> Result<(), WireError> {
    if is_utf8(bytes) {
        Ok(())
    } else {
        Err(WireError("invalid string value: data is not UTF-8 encoded"))
    }
}

#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    // ASCII (keys, names, most values) is checked a word or two at a time;
    // anything else gets the full UTF-8 check.
    is_ascii(bytes) || std::str::from_utf8(bytes).is_ok()
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// The final values of the ID fields of one message.
#[derive(Default)]
struct SeenIds<'a> {
    trace: &'a [u8],
    span: &'a [u8],
    parent: &'a [u8],
    /// How many trace ID fields the message has.
    trace_fields: u32,
}

/// The key and one-byte length a span's `trace_id` starts with when a
/// serializer writes it first, as they all do (fields in number order).
pub const LEADING_TRACE_ID: [u8; 2] = [0x0a, 16];

fn scan_message(
    buf: &[u8],
    schema: &Schema,
    depth_left: u32,
    scan: &mut Scan,
) -> Result<(), WireError> {
    let mut reader = Reader { buf };
    let mut ids = SeenIds::default();
    while let Some(&first) = reader.buf.first() {
        let (tag, wire_type, kind) = match schema.one_byte_key(first) {
            Some((tag, kind)) => {
                // Known tag, acceptable wire type: nothing left to check.
                reader.buf = &reader.buf[1..];
                (tag, first & 7, kind)
            }
            None => {
                let (tag, wire_type) = reader.key()?;
                if wire_type == END_GROUP {
                    return Err(WireError("unexpected end group tag"));
                }
                let Some(kind) = schema.kind(tag) else {
                    reader.skip(tag, wire_type, depth_left)?;
                    continue;
                };
                if !kind.accepts(wire_type) {
                    return Err(WireError("invalid wire type"));
                }
                (tag, wire_type, kind)
            }
        };
        match kind {
            Kind::Varint => drop(reader.varint()?),
            Kind::Fixed64 => drop(reader.take(8)?),
            Kind::Fixed32 => drop(reader.take(4)?),
            Kind::Str => check_utf8(reader.length_delimited()?)?,
            Kind::Bytes => {
                let bytes = reader.length_delimited()?;
                match (schema.ids, tag) {
                    (Ids::Span, 1) => {
                        ids.trace = bytes;
                        ids.trace_fields += 1;
                    }
                    (Ids::LogRecord, 9) => ids.trace = bytes,
                    (Ids::Span, 2) | (Ids::LogRecord, 10) => ids.span = bytes,
                    (Ids::Span, 4) => ids.parent = bytes,
                    _ => {}
                }
            }
            Kind::Message(inner) => {
                if depth_left == 0 {
                    return Err(WireError("recursion limit reached"));
                }
                let bytes = reader.length_delimited()?;
                if !is_valid_attribute(bytes, inner, depth_left - 1) {
                    scan_message(bytes, inner, depth_left - 1, scan)?;
                }
            }
            Kind::RepeatedFixed64 => {
                if wire_type == FIXED64 {
                    reader.take(8)?;
                } else if reader.length_delimited()?.len() % 8 != 0 {
                    return Err(WireError("buffer underflow"));
                }
            }
            Kind::RepeatedVarint => {
                if wire_type == VARINT {
                    reader.varint()?;
                } else {
                    let mut packed = Reader {
                        buf: reader.length_delimited()?,
                    };
                    while !packed.buf.is_empty() {
                        packed.varint()?;
                    }
                }
            }
        }
    }
    if schema.item {
        scan.items += 1;
    }
    let ids_ok = match schema.ids {
        Ids::None => true,
        Ids::Span => {
            valid_id(ids.trace, 16)
                && valid_id(ids.span, 8)
                && (ids.parent.is_empty() || valid_id(ids.parent, 8))
        }
        Ids::LogRecord => {
            (ids.trace.is_empty() || valid_id(ids.trace, 16))
                && (ids.span.is_empty() || valid_id(ids.span, 8))
        }
    };
    scan.invalid_ids |= !ids_ok;
    if schema.ids == Ids::Span {
        scan.trace_ids_elsewhere |= ids.trace_fields != 1 || !buf.starts_with(&LEADING_TRACE_ID);
    }
    Ok(())
}

/// Validates `buf` as a message of `schema` (an export request) and counts its items.
pub(crate) fn scan(buf: &[u8], schema: &Schema) -> Result<Scan, WireError> {
    let mut scan = Scan::default();
    scan_message(buf, schema, RECURSION_LIMIT, &mut scan)?;
    Ok(scan)
}
