//! Listening TCP sockets of a network namespace, from `/proc/<pid>/net/tcp`
//! and `tcp6` (which show the namespace of `<pid>`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `st` of a listening socket in /proc/net/tcp.
const TCP_LISTEN: &str = "0A";

/// Listening sockets by inode, from the text of /proc/net/tcp or tcp6.
pub(crate) fn parse(text: &str, into: &mut HashMap<u64, SocketAddr>) {
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != TCP_LISTEN {
            continue;
        }
        let (Some(addr), Ok(inode)) = (parse_address(local), inode.parse::<u64>()) else {
            continue;
        };
        into.insert(inode, addr);
    }
}

/// `0100007F:1F90` (IPv4, address in host byte order) or 32 hex digits of
/// four host-order words (IPv6), then the port in hex.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The listening sockets of the network namespace `pid` lives in.
pub(crate) fn of_namespace_of(pid: u32) -> HashMap<u64, SocketAddr> {
    let mut sockets = HashMap::new();
    for file in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            parse(&text, &mut sockets);
        }
    }
    sockets
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_by_inode() {
        let mut sockets = HashMap::new();
        parse(TCP, &mut sockets);
        parse(TCP6, &mut sockets);
        assert_eq!(sockets.len(), 4, "{sockets:?}");
        assert_eq!(sockets[&31337], "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(sockets[&42], "0.0.0.0:22".parse().expect("addr"));
        assert_eq!(sockets[&777], "[::1]:8081".parse().expect("addr"));
        // A v4-mapped listener reads as IPv4.
        assert_eq!(sockets[&778], "127.0.0.1:8082".parse().expect("addr"));
        assert!(!sockets.contains_key(&31338), "established, not listening");
    }
}
