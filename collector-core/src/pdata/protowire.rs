//! Reading and writing protobuf fields in place, for components that move
//! OTLP bytes without decoding them (the `loadbalancing` exporter's split,
//! the `tail_sampling` processor's buffer).
//!
//! The bytes are expected to be well-formed (checked by the receiver's
//! scanner, or written by prost): anything unexpected (a group, a truncated
//! field) ends the walk and sets [`Fields::failed`], and the caller takes a
//! decoding path instead.

use bytes::BufMut;

/// The wire type of length-delimited fields (strings, bytes, messages).
pub const LEN: u64 = 2;

/// One field: its raw bytes (tag, length and payload) and its payload.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    /// The field number.
    pub number: u64,
    /// The wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
    pub wire_type: u64,
    /// Tag, length and payload, as they stand in the message.
    pub raw: &'a [u8],
    /// The value: the varint's bytes, the fixed-width bytes, or the
    /// length-delimited payload.
    pub payload: &'a [u8],
}

impl Field<'_> {
    /// True for a length-delimited field numbered `number`.
    pub fn is_len(&self, number: u64) -> bool {
        self.number == number && self.wire_type == LEN
    }
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // Nearly every tag and length is one byte.
    let first = *buf.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(u64::from(first));
    }
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Bytes of `value` as a varint.
pub fn varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

/// The fields of a message, in order, without allocating.
#[derive(Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// Walks the message encoded in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// True when the walk met something it does not read (a group, a
    /// truncated field) and ended early.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn parse(&mut self) -> Option<Field<'a>> {
        let buf = self.buf;
        let start = self.pos;
        let tag = varint(buf, &mut self.pos)?;
        let (number, wire_type) = (tag >> 3, tag & 7);
        let payload = match wire_type {
            0 => {
                let value_start = self.pos;
                varint(buf, &mut self.pos)?;
                &buf[value_start..self.pos]
            }
            1 | 5 => {
                let width = if wire_type == 1 { 8 } else { 4 };
                let end = self.pos.checked_add(width).filter(|e| *e <= buf.len())?;
                let payload = &buf[self.pos..end];
                self.pos = end;
                payload
            }
            LEN => {
                let len = usize::try_from(varint(buf, &mut self.pos)?).ok()?;
                let end = self.pos.checked_add(len).filter(|e| *e <= buf.len())?;
                let payload = &buf[self.pos..end];
                self.pos = end;
                payload
            }
            // Groups (3, 4) and anything else: not expected here.
            _ => return None,
        };
        Some(Field {
            number,
            wire_type,
            raw: &buf[start..self.pos],
            payload,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.pos >= self.buf.len() || self.failed {
            return None;
        }
        let field = self.parse();
        if field.is_none() {
            self.failed = true;
        }
        field
    }
}

/// The payloads of the last length-delimited fields numbered `numbers` in
/// a message (empty for one that is absent), as decoding would keep them;
/// `None` when the walk meets something [`Fields`] would fail on.
///
/// The same walk as [`Fields`] without building a [`Field`] per field: the
/// loadbalancing split and the sampler read a span's trace ID (and parent)
/// this way for every span they route.
pub fn last_len_fields<const N: usize>(buf: &[u8], numbers: [u64; N]) -> Option<[&[u8]; N]> {
    let mut found: [&[u8]; N] = [&[]; N];
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        match tag & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 | 5 => {
                let width = if tag & 7 == 1 { 8 } else { 4 };
                pos = pos.checked_add(width).filter(|end| *end <= buf.len())?;
            }
            LEN => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|end| *end <= buf.len())?;
                let number = tag >> 3;
                if let Some(slot) = numbers.iter().position(|n| *n == number) {
                    found[slot] = &buf[pos..end];
                }
                pos = end;
            }
            _ => return None,
        }
    }
    Some(found)
}

/// Writes the tag and length of a length-delimited field numbered `number`
/// whose payload of `len` bytes follows.
pub fn put_len_field(out: &mut impl BufMut, number: u64, len: usize) {
    put_varint(out, (number << 3) | LEN);
    put_varint(out, len as u64);
}

/// Bytes [`put_len_field`] writes for a field numbered `number` (below 16)
/// with a payload of `len` bytes.
pub fn len_field_overhead(len: usize) -> usize {
    1 + varint_len(len as u64)
}

/// Writes `value` as a varint.
pub fn put_varint(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_every_wire_type_and_stops_at_groups_and_truncation() {
        // 1: varint 300, 2: "hi", 3: fixed32, 4: fixed64.
        let mut msg = vec![0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x1d, 1, 2, 3, 4];
        msg.extend([0x21, 1, 2, 3, 4, 5, 6, 7, 8]);
        let fields: Vec<Field<'_>> = Fields::new(&msg).collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0].payload, &[0xac, 0x02]);
        assert!(fields[1].is_len(2));
        assert_eq!(fields[1].payload, b"hi");
        assert_eq!(fields[1].raw, &[0x12, 0x02, b'h', b'i']);
        assert_eq!(fields[2].payload, &[1, 2, 3, 4]);
        assert_eq!(fields[3].payload.len(), 8);

        let group = [0x08, 0x01, 0x0b, 0x0c];
        let mut walk = Fields::new(&group);
        assert_eq!(walk.by_ref().count(), 1);
        assert!(walk.failed());
        let truncated = [0x0a, 0x05, 0x01];
        let mut walk = Fields::new(&truncated);
        assert_eq!(walk.by_ref().count(), 0);
        assert!(walk.failed());
    }

    #[test]
    fn last_len_fields_agree_with_the_field_walk() {
        // 1: "ab", 4: "p", varint, fixed32, fixed64, 1 again: "cd".
        let mut msg = vec![0x0a, 2, b'a', b'b', 0x22, 1, b'p', 0x28, 0x96, 0x01];
        msg.extend([0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8]);
        msg.extend([0x0a, 2, b'c', b'd']);
        assert_eq!(
            last_len_fields(&msg, [1, 4, 9]),
            Some([&b"cd"[..], &b"p"[..], &[][..]])
        );
        // Every prefix: a failed walk for exactly the prefixes Fields fails on.
        for end in 0..msg.len() {
            let mut walk = Fields::new(&msg[..end]);
            let last = walk.by_ref().filter(|f| f.is_len(1)).last();
            let expected = (!walk.failed()).then(|| [last.map_or(&[][..], |f| f.payload)]);
            assert_eq!(last_len_fields(&msg[..end], [1]), expected, "{end} bytes");
        }
        assert_eq!(last_len_fields(&[0x0b, 0x0c], [1]), None, "a group");
    }

    #[test]
    fn written_fields_read_back() {
        let mut out = Vec::new();
        put_len_field(&mut out, 2, 300);
        assert_eq!(out.len(), len_field_overhead(300));
        out.extend(std::iter::repeat_n(7u8, 300));
        let fields: Vec<Field<'_>> = Fields::new(&out).collect();
        assert_eq!(fields.len(), 1);
        assert!(fields[0].is_len(2));
        assert_eq!(fields[0].payload.len(), 300);
    }
}
