//! The consistent hash ring of otelcol's loadbalancing exporter, position for
//! position, so that our agents and otelcol agents send a trace to the same
//! backend.
//!
//! The ring has 36,000 positions (360 degrees, two decimals). Endpoints are
//! placed in sorted order, each at up to 100 positions: position `i` of an
//! endpoint is the CRC-32 (IEEE) of its bytes followed by the single byte
//! `i`, modulo 36,000; a position that is already taken is skipped, so the
//! endpoint that sorts first keeps it. A routing key (the 16 bytes of a trace
//! ID, a service name, ...) goes to the first position at or after the CRC-32
//! of its bytes modulo 36,000, wrapping around to the lowest position.

/// Positions on the ring.
pub const RING_POSITIONS: u32 = 36_000;
/// Positions per endpoint (otelcol's fixed weight).
pub const POSITIONS_PER_ENDPOINT: u8 = 100;

/// CRC-32 with the IEEE polynomial (reflected 0xEDB88320), as Go's
/// `hash/crc32.ChecksumIEEE` and zlib compute it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

/// Continues a CRC-32 (IEEE) over more bytes: `crc32_update(crc32(a), b)`
/// equals `crc32(a ++ b)`.
///
/// Eight bytes at a time ("slicing-by-8"): a trace ID's 16 bytes take two
/// rounds of eight independent table loads instead of 16 dependent ones,
/// since every span of a split is hashed.
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let low = crc ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let high = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        let at = |table: usize, word: u32, shift: u32| {
            CRC_TABLES[table][((word >> shift) & 0xff) as usize]
        };
        crc = at(7, low, 0)
            ^ at(6, low, 8)
            ^ at(5, low, 16)
            ^ at(4, low, 24)
            ^ at(3, high, 0)
            ^ at(2, high, 8)
            ^ at(1, high, 16)
            ^ at(0, high, 24);
    }
    for &byte in chunks.remainder() {
        crc = CRC_TABLES[0][((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Lookup tables of the reflected IEEE polynomial: `[0]` is the usual
/// one-byte table; `[k][n]` is the CRC of byte `n` followed by `k` zero
/// bytes, so eight bytes fold in with one load from each.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][n] = c;
        n += 1;
    }
    let mut table = 1;
    while table < 8 {
        let mut n = 0;
        while n < 256 {
            let previous = tables[table - 1][n];
            tables[table][n] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            n += 1;
        }
        table += 1;
    }
    tables
}

/// The ring position of a routing key: CRC-32 (IEEE) of its bytes modulo 36,000.
pub fn position_of(key: &[u8]) -> u32 {
    crc32(key) % RING_POSITIONS
}

/// An immutable consistent hash ring over a set of endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashRing {
    /// The endpoints, sorted and without duplicates; indexes below refer to it.
    endpoints: Vec<String>,
    /// (position, endpoint index), sorted by position; positions are unique.
    items: Vec<(u32, usize)>,
    /// The owner of every position, so a lookup is one load (every span of
    /// a split looks one up); empty when there are more endpoints than a
    /// `u16` numbers, and [`HashRing::index_at`] searches `items` instead.
    owners: Vec<u16>,
}

impl HashRing {
    /// Builds the ring of `endpoints` (in any order; duplicates count once).
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Self {
        let mut sorted: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        sorted.sort();
        sorted.dedup();
        let mut taken = vec![false; RING_POSITIONS as usize];
        let mut items = Vec::with_capacity(sorted.len() * usize::from(POSITIONS_PER_ENDPOINT));
        for (index, endpoint) in sorted.iter().enumerate() {
            let prefix = crc32(endpoint.as_bytes());
            for i in 0..POSITIONS_PER_ENDPOINT {
                let position = crc32_update(prefix, &[i]) % RING_POSITIONS;
                let slot = &mut taken[position as usize];
                if !*slot {
                    *slot = true;
                    items.push((position, index));
                }
            }
        }
        items.sort_unstable();
        let owners = Self::owner_table(&items, sorted.len());
        Self {
            endpoints: sorted,
            items,
            owners,
        }
    }

    /// Each position's owner: the endpoint at the first occupied position
    /// at or after it, wrapping around to the lowest.
    fn owner_table(items: &[(u32, usize)], endpoints: usize) -> Vec<u16> {
        let Some(&(_, first)) = items.first() else {
            return Vec::new();
        };
        if endpoints > usize::from(u16::MAX) + 1 {
            return Vec::new();
        }
        let mut owners = vec![first as u16; RING_POSITIONS as usize];
        let mut start = 0;
        for &(position, index) in items {
            for owner in &mut owners[start..=position as usize] {
                *owner = index as u16;
            }
            start = position as usize + 1;
        }
        // Past the last occupied position the ring wraps to the first
        // (already filled in).
        owners
    }

    /// The endpoints, sorted.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// True when the ring has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The index (into [`HashRing::endpoints`]) of the endpoint owning ring
    /// position `position`; `None` for an empty ring.
    pub fn index_at(&self, position: u32) -> Option<usize> {
        if let Some(&owner) = self.owners.get(position as usize) {
            return Some(usize::from(owner));
        }
        let first = self.items.first()?;
        let at = self.items.partition_point(|(p, _)| *p < position);
        Some(self.items.get(at).unwrap_or(first).1)
    }

    /// The index of the endpoint owning routing key `key`.
    pub fn index_for(&self, key: &[u8]) -> Option<usize> {
        self.index_at(position_of(key))
    }

    /// The endpoint owning routing key `key` (for a trace: its 16 ID bytes).
    pub fn endpoint_for(&self, key: &[u8]) -> Option<&str> {
        self.index_for(key).map(|i| self.endpoints[i].as_str())
    }

    /// The occupied positions with their endpoint, in ring order.
    pub fn positions(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.items
            .iter()
            .map(|(p, i)| (*p, self.endpoints[*i].as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(crc32_update(crc32(b"12345"), b"6789"), 0xCBF4_3926);
    }

    #[test]
    fn crc32_by_eight_bytes_matches_bit_by_bit_at_every_length() {
        let bytes: Vec<u8> = trace_ids(7, 4).concat();
        for len in 0..=bytes.len() {
            assert_eq!(
                crc32(&bytes[..len]),
                crc32_bitwise(&bytes[..len]),
                "{len} bytes"
            );
            // Continued from every split point, across the 8-byte chunks.
            for cut in 0..=len {
                assert_eq!(
                    crc32_update(crc32(&bytes[..cut]), &bytes[cut..len]),
                    crc32_bitwise(&bytes[..len]),
                    "{cut} then {len} bytes"
                );
            }
        }
    }

    /// The CRC-32 bit by bit, without the table.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }

    /// The ring as the description reads, slot by slot: an array of all
    /// 36,000 positions filled in sorted-endpoint order, and a lookup that
    /// walks forward from the key's position.
    struct BruteRing {
        slots: Vec<Option<String>>,
    }

    impl BruteRing {
        fn new(endpoints: &[&str]) -> Self {
            let mut sorted: Vec<&str> = endpoints.to_vec();
            sorted.sort();
            let mut slots = vec![None; 36_000];
            for endpoint in sorted {
                for i in 0..100u8 {
                    let mut bytes = endpoint.as_bytes().to_vec();
                    bytes.push(i);
                    let position = (crc32_bitwise(&bytes) % 36_000) as usize;
                    if slots[position].is_none() {
                        slots[position] = Some(endpoint.to_string());
                    }
                }
            }
            Self { slots }
        }

        fn lookup(&self, key: &[u8]) -> &str {
            let start = (crc32_bitwise(key) % 36_000) as usize;
            (start..36_000)
                .chain(0..start)
                .find_map(|p| self.slots[p].as_deref())
                .unwrap()
        }
    }

    /// A fixed pseudo-random sequence (splitmix64), so the vectors are stable.
    fn trace_ids(seed: u64, n: usize) -> Vec<[u8; 16]> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&next().to_be_bytes());
                id[8..].copy_from_slice(&next().to_be_bytes());
                id
            })
            .collect()
    }

    #[test]
    fn fixed_vectors_match_a_brute_force_ring() {
        let lists: [&[&str]; 4] = [
            &["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"],
            &[
                "127.0.0.2:4317",
                "127.0.0.3:4317",
                "127.0.0.4:4317",
                "127.0.0.5:4317",
            ],
            &["backend-1:4317", "backend-2:4317"],
            &["[::1]:4317", "10.1.2.3", "gateway-0.gateway:4317"],
        ];
        let mut ids: Vec<[u8; 16]> = trace_ids(42, 2000);
        ids.push([0; 16]);
        ids.push([0xff; 16]);
        for endpoints in lists {
            let ring = HashRing::new(endpoints);
            let brute = BruteRing::new(endpoints);
            for id in &ids {
                assert_eq!(
                    ring.endpoint_for(id),
                    Some(brute.lookup(id)),
                    "{endpoints:?} {}",
                    hex::encode(id)
                );
            }
            // Every position, including the wrap past the last one.
            for position in (0..36_000).step_by(7).chain([35_999]) {
                let owner = ring
                    .index_at(position)
                    .map(|i| ring.endpoints()[i].as_str());
                let expected = (position as usize..36_000)
                    .chain(0..position as usize)
                    .find_map(|p| brute.slots[p].as_deref());
                assert_eq!(owner, expected, "position {position}");
            }
        }
    }

    /// Literal vectors, computed outside this code base from the ring's
    /// description with Python's `zlib.crc32` (trace ID hex, its position,
    /// its endpoint). The first list has three colliding positions (297 in
    /// the ring, not 300).
    #[test]
    fn literal_vectors() {
        /// Trace ID (hex), its ring position, its endpoint.
        type Vector = (&'static str, u32, &'static str);
        let cases: [(&[&str], usize, [Vector; 8]); 2] = [
            (
                &["10.0.0.3:4317", "10.0.0.1:4317", "10.0.0.2:4317"],
                297,
                [
                    ("0af7651916cd43dd8448eb211c80319c", 25813, "10.0.0.1:4317"),
                    ("4bf92f3577b34da6a3ce929d0e0e4736", 4869, "10.0.0.3:4317"),
                    ("00000000000000000000000000000001", 12931, "10.0.0.3:4317"),
                    ("ffffffffffffffffffffffffffffffff", 14266, "10.0.0.1:4317"),
                    ("5b8efff798038103d269b633813fc60c", 11896, "10.0.0.1:4317"),
                    ("80f198ee56343ba864fe8b2a57d3eff7", 24931, "10.0.0.2:4317"),
                    ("463ac35c9f6413ad48485a3953bb6124", 1507, "10.0.0.2:4317"),
                    ("d4cda95b652f4a1592b449d5929fda1b", 15767, "10.0.0.1:4317"),
                ],
            ),
            (
                &[
                    "127.0.0.2:4317",
                    "127.0.0.3:4317",
                    "127.0.0.4:4317",
                    "127.0.0.5:4317",
                ],
                400,
                [
                    ("0af7651916cd43dd8448eb211c80319c", 25813, "127.0.0.4:4317"),
                    ("4bf92f3577b34da6a3ce929d0e0e4736", 4869, "127.0.0.2:4317"),
                    ("00000000000000000000000000000001", 12931, "127.0.0.2:4317"),
                    ("ffffffffffffffffffffffffffffffff", 14266, "127.0.0.4:4317"),
                    ("5b8efff798038103d269b633813fc60c", 11896, "127.0.0.4:4317"),
                    ("80f198ee56343ba864fe8b2a57d3eff7", 24931, "127.0.0.4:4317"),
                    ("463ac35c9f6413ad48485a3953bb6124", 1507, "127.0.0.3:4317"),
                    ("d4cda95b652f4a1592b449d5929fda1b", 15767, "127.0.0.2:4317"),
                ],
            ),
        ];
        for (endpoints, size, vectors) in cases {
            let ring = HashRing::new(endpoints);
            assert_eq!(ring.positions().count(), size);
            for (trace, position, endpoint) in vectors {
                let id = hex::decode(trace).unwrap();
                assert_eq!(position_of(&id), position, "{trace}");
                assert_eq!(ring.endpoint_for(&id), Some(endpoint), "{trace}");
            }
        }
        // The first position of 10.0.0.1:4317: CRC-32 of its bytes and 0x00.
        assert_eq!(crc32(b"10.0.0.1:4317\0") % 36_000, 22_770);
    }

    #[test]
    fn hand_checked_positions() {
        // crc32("123456789") = 0xCBF43926 = 3421780262 = 95049 * 36000 + 16262.
        assert_eq!(position_of(b"123456789"), 3_421_780_262 % 36_000);
        assert_eq!(position_of(b"123456789"), 16_262);
        // The positions of one endpoint are the CRC of its bytes plus one byte.
        let ring = HashRing::new(&["a:1"]);
        let mut expected: Vec<u32> = (0..100u8)
            .map(|i| crc32(&[b"a:1".as_slice(), &[i]].concat()) % 36_000)
            .collect();
        expected.sort();
        expected.dedup();
        let got: Vec<u32> = ring.positions().map(|(p, _)| p).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_first_endpoint_in_sorted_order_keeps_a_shared_position() {
        // Find two endpoints that collide on some position.
        let base = "10.0.0.1:4317";
        let base_positions: Vec<u32> = (0..100u8)
            .map(|i| crc32(&[base.as_bytes(), &[i]].concat()) % 36_000)
            .collect();
        let other = (2..5000)
            .map(|n| format!("10.0.{}.{}:4317", n / 256, n % 256))
            .find(|e| {
                (0..100u8).any(|i| {
                    base_positions.contains(&(crc32(&[e.as_bytes(), &[i]].concat()) % 36_000))
                })
            })
            .unwrap();
        let ring = HashRing::new(&[other.as_str(), base]);
        let brute = BruteRing::new(&[other.as_str(), base]);
        for (position, owner) in ring.positions() {
            assert_eq!(brute.slots[position as usize].as_deref(), Some(owner));
        }
        let first = ring.endpoints()[0].clone();
        for (position, owner) in ring.positions() {
            if base_positions.contains(&position) && owner != base {
                assert_eq!(
                    owner, first,
                    "a shared position belongs to the first endpoint"
                );
            }
        }
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring = HashRing::new::<&str>(&[]);
        assert!(ring.is_empty());
        assert_eq!(ring.endpoint_for(b"x"), None);
    }

    #[test]
    fn a_joining_endpoint_takes_only_the_traces_that_move_to_it() {
        let three = ["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"];
        let four = [
            "10.0.0.1:4317",
            "10.0.0.2:4317",
            "10.0.0.3:4317",
            "10.0.0.4:4317",
        ];
        let before = HashRing::new(&three);
        let after = HashRing::new(&four);
        let ids = trace_ids(7, 10_000);
        let mut moved = 0;
        for id in &ids {
            let (a, b) = (before.endpoint_for(id), after.endpoint_for(id));
            if a != b {
                moved += 1;
                assert_eq!(
                    b,
                    Some("10.0.0.4:4317"),
                    "moved elsewhere than the new endpoint"
                );
            }
        }
        let share = f64::from(moved) / ids.len() as f64;
        assert!(
            (0.15..0.35).contains(&share),
            "about a quarter should move: {share}"
        );
        // And the reverse: removing it moves only its traces back.
        for id in &ids {
            let (a, b) = (after.endpoint_for(id), before.endpoint_for(id));
            if a != b {
                assert_eq!(a, Some("10.0.0.4:4317"));
            }
        }
    }
}
