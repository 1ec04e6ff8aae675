//! The probes' ring-buffer records, decoded into owned-free views.
//!
//! The layouts live in `ebpf_probe` (shared with the kernel side); this
//! module turns raw records into [`Event`]s the HTTP assembler consumes, and
//! is the only place that knows the byte layout.

use ebpf_probe::{
    AF_INET, AF_INET6, ConnEvent, DataEvent, EventHeader, EventKind, FromBytes, Role,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One connection of one process: the fd plus the time it was accepted or
/// connected (fds are reused, the pair is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnRef {
    /// Process id.
    pub(crate) tgid: u32,
    /// File descriptor in the process.
    pub(crate) fd: u32,
    /// Boot-time nanoseconds of the accept or connect.
    pub(crate) conn_id: u64,
}

/// Which way bytes went, seen from the traced process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The process read them (a request for a server, a response for a client).
    Read,
    /// The process wrote them.
    Write,
}

/// A decoded probe record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// A connection starts being followed.
    Connected {
        /// The connection.
        conn: ConnRef,
        /// Whether the process accepted (server) or connected (client).
        role: Role,
        /// The other end, when the probe could read it.
        peer: Option<SocketAddr>,
        /// For an accepted connection, the listening socket's fd.
        listen_fd: Option<u32>,
        /// Boot-time nanoseconds when the syscall returned.
        at_ns: u64,
    },
    /// Bytes read or written.
    Data {
        /// The connection.
        conn: ConnRef,
        /// Whether the process is the server or the client of it.
        role: Role,
        /// Read or write.
        direction: Direction,
        /// Boot-time nanoseconds when the syscall entered.
        enter_ns: u64,
        /// Boot-time nanoseconds when it returned.
        exit_ns: u64,
        /// Bytes the syscall moved.
        total: u64,
        /// The first bytes of them (at most the capture size).
        captured: &'a [u8],
    },
    /// The process closed the connection.
    Closed {
        /// The connection.
        conn: ConnRef,
        /// Boot-time nanoseconds of the close.
        at_ns: u64,
    },
}

/// Why a record could not be decoded (a version mismatch between agent and
/// probe, or a bug: counted and logged, never fatal).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Shorter than its layout.
    #[error("record of {len} bytes is too short for a {what}")]
    Truncated {
        /// The layout expected.
        what: &'static str,
        /// The record's length.
        len: usize,
    },
    /// Unknown kind or role value.
    #[error("record has unknown {what} {value}")]
    Unknown {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u32,
    },
}

fn conn_ref(header: &EventHeader) -> ConnRef {
    ConnRef {
        tgid: header.tgid,
        fd: header.fd,
        conn_id: header.conn_id,
    }
}

fn role(header: &EventHeader) -> Result<Role, DecodeError> {
    Role::from_u32(header.role).ok_or(DecodeError::Unknown {
        what: "role",
        value: header.role,
    })
}

fn address(event: &ConnEvent) -> Option<SocketAddr> {
    let ip = match event.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(
            event.addr[0],
            event.addr[1],
            event.addr[2],
            event.addr[3],
        )),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(event.addr);
            // A v4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, event.port))
}

/// Decodes one ring-buffer record.
pub(crate) fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    let header = EventHeader::read_from(record).ok_or(DecodeError::Truncated {
        what: "header",
        len: record.len(),
    })?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::Unknown {
        what: "kind",
        value: header.kind,
    })?;
    match kind {
        EventKind::Accept | EventKind::Connect => {
            let event = ConnEvent::read_from(record).ok_or(DecodeError::Truncated {
                what: "connection event",
                len: record.len(),
            })?;
            Ok(Event::Connected {
                conn: conn_ref(&header),
                role: role(&header)?,
                peer: address(&event),
                listen_fd: (kind == EventKind::Accept).then_some(event.listen_fd),
                at_ns: header.exit_ns,
            })
        }
        EventKind::Close => Ok(Event::Closed {
            conn: conn_ref(&header),
            at_ns: header.exit_ns,
        }),
        EventKind::Read | EventKind::Write => {
            let event = DataEvent::read_from(record).ok_or(DecodeError::Truncated {
                what: "data event",
                len: record.len(),
            })?;
            let start = std::mem::size_of::<DataEvent>();
            let end = start + event.captured as usize;
            let captured = record.get(start..end).ok_or(DecodeError::Truncated {
                what: "data event's bytes",
                len: record.len(),
            })?;
            Ok(Event::Data {
                conn: conn_ref(&header),
                role: role(&header)?,
                direction: if kind == EventKind::Read {
                    Direction::Read
                } else {
                    Direction::Write
                },
                enter_ns: header.enter_ns,
                exit_ns: header.exit_ns,
                total: event.total,
                captured,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            tgid: 10,
            tid: 11,
            fd: 5,
            conn_id: 1000,
            role: Role::Server as u32,
            reserved: 0,
            enter_ns: 2000,
            exit_ns: 3000,
        }
    }

    #[test]
    fn decodes_an_accept_with_a_mapped_v4_peer() {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&[10, 0, 0, 7]);
        let event = ConnEvent {
            header: header(EventKind::Accept),
            listen_fd: 3,
            family: AF_INET6,
            port: 41000,
            addr,
        };
        let decoded = decode(event.as_bytes()).expect("decodes");
        assert_eq!(
            decoded,
            Event::Connected {
                conn: ConnRef {
                    tgid: 10,
                    fd: 5,
                    conn_id: 1000
                },
                role: Role::Server,
                peer: Some("10.0.0.7:41000".parse().expect("addr")),
                listen_fd: Some(3),
                at_ns: 3000,
            }
        );
    }

    #[test]
    fn decodes_data_with_its_captured_bytes() {
        let event = DataEvent {
            header: header(EventKind::Write),
            total: 100,
            captured: 4,
            reserved: 0,
        };
        let mut record = event.as_bytes().to_vec();
        record.extend_from_slice(b"HTTP");
        match decode(&record).expect("decodes") {
            Event::Data {
                direction,
                total,
                captured,
                enter_ns,
                exit_ns,
                ..
            } => {
                assert_eq!(direction, Direction::Write);
                assert_eq!(total, 100);
                assert_eq!(captured, b"HTTP");
                assert_eq!((enter_ns, exit_ns), (2000, 3000));
            }
            other => panic!("not data: {other:?}"),
        }
        // Fewer bytes than `captured` says: an error, not a panic.
        assert_eq!(
            decode(&record[..record.len() - 1]),
            Err(DecodeError::Truncated {
                what: "data event's bytes",
                len: record.len() - 1
            })
        );
    }

    #[test]
    fn unknown_kinds_and_short_records_are_errors() {
        let mut bad = header(EventKind::Close);
        bad.kind = 42;
        assert_eq!(
            decode(bad.as_bytes()),
            Err(DecodeError::Unknown {
                what: "kind",
                value: 42
            })
        );
        assert!(matches!(
            decode(&[1, 2, 3]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
