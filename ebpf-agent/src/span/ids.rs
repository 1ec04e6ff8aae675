//! Span and trace ids: random, unique, cheap. Not secret, so a fast PRNG
//! (splitmix64) seeded from the OS's per-process hash keys is enough.

use std::hash::{BuildHasher, Hasher};

/// Generates ids.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    /// A generator with a random seed.
    pub(crate) fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(crate::clock::BootClock::boot_now());
        hasher.write_u32(std::process::id());
        IdGenerator {
            state: hasher.finish(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A non-zero span id.
    pub(crate) fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id = self.next_u64();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    /// A non-zero trace id.
    pub(crate) fn trace_id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.span_id());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_non_zero() {
        let mut ids = IdGenerator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(ids.span_id()));
        }
        assert_ne!(ids.trace_id(), [0; 16]);
    }
}
