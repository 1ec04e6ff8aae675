//! Small pieces several integration tests need: a port that refuses
//! connections until released, and a reproducible random sequence.

use std::net::SocketAddr;

/// A loopback port that refuses connections until released: the socket is
/// bound and never listens, so a downstream that is "down" has an address
/// to be configured with, and a process started later can take it over.
pub struct ReservedPort {
    socket: Option<tokio::net::TcpSocket>,
    pub addr: SocketAddr,
}

impl ReservedPort {
    /// Binds a free port on 127.0.0.1.
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let addr = socket.local_addr().expect("local addr");
        Self {
            socket: Some(socket),
            addr,
        }
    }

    /// Frees the port (it never listened: no TIME_WAIT).
    pub fn release(&mut self) -> SocketAddr {
        drop(self.socket.take());
        self.addr
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Reproducible pseudo-random numbers (splitmix64), e.g. for trace IDs a
/// test can regenerate.
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` trace IDs of 16 random bytes.
    pub fn trace_ids(&mut self, n: usize) -> Vec<[u8; 16]> {
        (0..n)
            .map(|_| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
                id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
                id
            })
            .collect()
    }
}
