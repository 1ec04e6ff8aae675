//! Trace identifiers.

use std::fmt;

/// A 16-byte trace ID.
///
/// Spans whose `trace_id` is not 16 bytes long (invalid OTLP) are grouped
/// under the ID made of their first 16 bytes, zero-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// The trace ID of a span's `trace_id` field.
    pub fn from_slice(bytes: &[u8]) -> TraceId {
        let mut id = [0u8; 16];
        let n = bytes.len().min(16);
        id[..n].copy_from_slice(&bytes[..n]);
        TraceId(id)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<[u8; 16]> for TraceId {
    fn from(bytes: [u8; 16]) -> Self {
        TraceId(bytes)
    }
}

impl fmt::Display for TraceId {
    /// Lower-case hex, as in W3C trace context.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_slice_pads_and_truncates() {
        assert_eq!(TraceId::from_slice(&[1, 2]).0[..3], [1, 2, 0]);
        let long: Vec<u8> = (0..20).collect();
        assert_eq!(TraceId::from_slice(&long).0[15], 15);
        assert_eq!(
            TraceId::from_slice(&[0xab; 16]).to_string(),
            "abababababababababababababababab"
        );
    }
}
