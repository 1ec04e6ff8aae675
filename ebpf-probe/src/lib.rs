//! What the kernel programs and the agent agree on: map names, limits, and
//! the `#[repr(C)]` layouts of the events the programs write to the ring
//! buffer. `no_std`, so the BPF programs (`src/main.rs`) and the agent on the
//! host use the same definitions.
//!
//! Every event starts with an [`EventHeader`]; its `kind` says which layout
//! follows. A [`DataEvent`] is followed by `captured` bytes of the syscall's
//! buffer (a prefix of what was read or written).

#![no_std]

/// The most bytes a program copies out of one syscall's buffer. The agent's
/// `header_capture_bytes` setting may lower it, never raise it.
pub const MAX_CAPTURE: usize = 4096;

/// Capture size when the agent sets none: enough for a request line and the
/// usual headers, `traceparent` and `Host` among them.
pub const DEFAULT_CAPTURE: u32 = 1024;

/// Ring buffer of events (`RingBuf`).
pub const MAP_EVENTS: &str = "EVENTS";
/// Selected processes: tgid -> [`PID_SELECTED`] (`HashMap<u32, u32>`).
pub const MAP_PIDS: &str = "PIDS";
/// Settings the agent writes at start (`Array<u32>`, indices `CONFIG_*`).
pub const MAP_CONFIG: &str = "CONFIG";
/// Client writes between their enter and exit, by thread
/// (`HashMap<u64, u64>` keyed by pid_tgid, the write's entry time, values
/// of [`PENDING_VALUE_SIZE`] bytes): a client's request starts when its
/// write enters. Everything else is recorded at the syscall's exit alone,
/// from the registers, which still hold the arguments there. A plain hash
/// table, not LRU (an LRU update costs several times more): the agent
/// sweeps out the entries of threads that died inside a write.
pub const MAP_PENDING: &str = "PENDING";
/// Size of a [`MAP_PENDING`] value.
pub const PENDING_VALUE_SIZE: usize = 8;
/// Followed connections (`LruHashMap`, key `[tgid, fd]` as two `u32`,
/// value [`CONN_VALUE_SIZE`] bytes: the connection's id and role). The
/// agent removes a process's entries when it stops tracing it.
pub const MAP_CONNS: &str = "CONNS";
/// Size of a [`MAP_CONNS`] value.
pub const CONN_VALUE_SIZE: usize = 16;
/// Per-CPU counters of what the programs could not record
/// (`PerCpuArray<u64>`, indices `COUNTER_*`).
pub const MAP_COUNTERS: &str = "COUNTERS";

/// How many selected processes fall in each slot of `tgid % PID_SLOT_COUNT`
/// (`Array<u32>` of [`PID_SLOT_COUNT`]): the programs' first, cheap check. A
/// process whose slot is 0 is not selected and costs an array load; only
/// the rest pay the hash lookup in [`MAP_PIDS`]. The agent keeps both.
pub const MAP_PID_SLOTS: &str = "PID_SLOTS";
/// Slots of [`MAP_PID_SLOTS`] (a power of two).
pub const PID_SLOT_COUNT: u32 = 4096;

/// Value in [`MAP_PIDS`] for a process whose sockets are traced.
pub const PID_SELECTED: u32 = 1;

/// Which syscalls the programs handle, and how: syscall number -> a
/// [`EventKind`] value (accept, connect, close, read, write) or'd with a
/// `BUF_*` value shifted by [`SYSCALL_BUFFER_SHIFT`]; 0 for the rest
/// (`Array<u32>` of [`SYSCALLS_LEN`] entries). The agent fills it for the
/// machine's architecture, so the programs need no syscall table of their
/// own.
pub const MAP_SYSCALLS: &str = "SYSCALLS";
/// Entries of [`MAP_SYSCALLS`]: above every syscall number it holds.
pub const SYSCALLS_LEN: u32 = 512;
/// Where the buffer kind sits in a [`MAP_SYSCALLS`] value.
pub const SYSCALL_BUFFER_SHIFT: u32 = 8;
/// The syscall's second argument points at the bytes.
pub const BUF_PLAIN: u32 = 0;
/// It points at a `struct iovec` array.
pub const BUF_IOVEC: u32 = 1;
/// It points at a `struct msghdr`.
pub const BUF_MSGHDR: u32 = 2;
/// It points at a `struct sockaddr` (accept, connect).
pub const BUF_SOCKADDR: u32 = 3;
/// The bytes come from a file (`sendfile`): counted, nothing to copy.
pub const BUF_NONE: u32 = 4;

/// [`MAP_CONFIG`] index: bytes to capture per syscall (clamped to [`MAX_CAPTURE`]).
pub const CONFIG_CAPTURE_BYTES: u32 = 0;
/// [`MAP_CONFIG`] index: offset in `struct pt_regs` of the register holding
/// a syscall's first argument, valid at its entry and its exit
/// (architecture-specific; the agent sets it).
pub const CONFIG_REGS_ARG0: u32 = 1;
/// [`MAP_CONFIG`] index: the same for the second argument.
pub const CONFIG_REGS_ARG1: u32 = 2;
/// [`MAP_CONFIG`] index: offset in `struct pt_regs` of the syscall number
/// as it entered (`orig_ax` on x86-64, `syscallno` on arm64), which the exit
/// reads.
pub const CONFIG_REGS_NR: u32 = 3;
/// [`MAP_CONFIG`] index: bytes waiting in the ring buffer before a program
/// wakes the agent. 0 wakes it on every event (the kernel's default, one
/// interrupt per event when the agent keeps up); otherwise the programs
/// never wake it below this fill and the agent polls on a timer instead,
/// which takes the wake-up's cost out of every traced syscall.
pub const CONFIG_WAKEUP_BYTES: u32 = 4;
/// Number of [`MAP_CONFIG`] entries.
pub const CONFIG_LEN: u32 = 5;

/// Events dropped because the ring buffer was full.
pub const COUNTER_RINGBUF_FULL: u32 = 0;
/// Connections not tracked because the connection table was full (an LRU
/// table: an old entry was evicted to make room, so this counts evictions
/// the kernel reports as failures only).
pub const COUNTER_CONN_TABLE_FULL: u32 = 1;
/// Client writes whose start time was lost because the pending table
/// was full (the request then starts when the write returns).
pub const COUNTER_PENDING_TABLE_FULL: u32 = 2;
/// Captures that failed to read the process's buffer.
pub const COUNTER_READ_FAILED: u32 = 3;
/// Number of counters.
pub const COUNTER_LEN: u32 = 4;

/// What happened; the first field of every event.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `accept`/`accept4` returned a connection: a [`ConnEvent`] with the peer.
    Accept = 1,
    /// `connect` succeeded or is in progress: a [`ConnEvent`] with the remote.
    Connect = 2,
    /// `close` of a traced connection: an [`EventHeader`] alone.
    Close = 3,
    /// Bytes read from a traced connection: a [`DataEvent`].
    Read = 4,
    /// Bytes written to a traced connection: a [`DataEvent`].
    Write = 5,
}

impl EventKind {
    /// The kind for a raw header value.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => EventKind::Accept,
            2 => EventKind::Connect,
            3 => EventKind::Close,
            4 => EventKind::Read,
            5 => EventKind::Write,
            _ => return None,
        })
    }
}

/// Which end of the connection the traced process is.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It accepted the connection: it serves requests.
    Server = 1,
    /// It connected: it sends requests.
    Client = 2,
}

impl Role {
    /// The role for a raw value.
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Role::Server),
            2 => Some(Role::Client),
            _ => None,
        }
    }
}

/// Start of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`].
    pub kind: u32,
    /// Process id (tgid).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// The connection's file descriptor in the process.
    pub fd: u32,
    /// Identifies the connection among those that reused `fd`: the boot-time
    /// clock at its accept or connect.
    pub conn_id: u64,
    /// A [`Role`].
    pub role: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// `CLOCK_BOOTTIME` nanoseconds when the syscall entered.
    pub enter_ns: u64,
    /// `CLOCK_BOOTTIME` nanoseconds when the syscall returned.
    pub exit_ns: u64,
}

/// A new connection ([`EventKind::Accept`] or [`EventKind::Connect`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEvent {
    /// Common fields.
    pub header: EventHeader,
    /// For an accept, the listening socket's fd; `u32::MAX` for a connect.
    pub listen_fd: u32,
    /// `AF_INET` (2) or `AF_INET6` (10); 0 when the address was not readable.
    pub family: u16,
    /// The other end's port, host byte order.
    pub port: u16,
    /// The other end's address: 4 bytes for IPv4, 16 for IPv6.
    pub addr: [u8; 16],
}

/// Bytes moved on a connection ([`EventKind::Read`] or [`EventKind::Write`]),
/// followed in the ring buffer by `captured` bytes of the buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataEvent {
    /// Common fields.
    pub header: EventHeader,
    /// Bytes the syscall transferred (its return value).
    pub total: u64,
    /// Bytes of the buffer that follow this struct (a prefix of `total`).
    pub captured: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// The hook candidates (`src/candidates.rs`, measured by the bench, not used
/// by the agent): their maps and settings.
pub mod candidates {
    /// Followed sockets (`SockHash<u64>`, keyed by socket cookie).
    pub const MAP_SOCKETS: &str = "SOCKETS";
    /// Ring buffer of [`crate::DataEvent`]s.
    pub const MAP_EVENTS: &str = "EVENTS";
    /// Settings (`Array<u32>`, indices `CONFIG_*`).
    pub const MAP_CONFIG: &str = "CONFIG";
    /// Per-CPU counters (`PerCpuArray<u64>`, indices `COUNTER_*`).
    pub const MAP_COUNTERS: &str = "COUNTERS";
    /// Ring buffer size, bytes: room for 50 ms of records at 20,000
    /// requests/s (two records of at most 200 bytes each per request), and
    /// small enough to stay warm in the cache: measured at 20,000/s, the
    /// hooks cost 260-280 ns per request with 1 MiB and 380-420 ns with
    /// 4 MiB.
    pub const RING_BYTES: u32 = 1 << 20;
    /// [`MAP_CONFIG`] index: the server port whose connections are followed.
    pub const CONFIG_PORT: u32 = 0;
    /// [`MAP_CONFIG`] index: bytes captured per message or segment.
    pub const CONFIG_CAPTURE_BYTES: u32 = 1;
    /// [`MAP_CONFIG`] index: 1 to write records; 0 to pass messages and
    /// segments without a record (what the hooks themselves cost).
    pub const CONFIG_RECORDS: u32 = 2;
    /// Entries of [`MAP_CONFIG`].
    pub const CONFIG_LEN: u32 = 3;
    /// Records dropped because the ring buffer was full.
    pub const COUNTER_RINGBUF_FULL: u32 = 0;
    /// Connections not followed because the sockhash refused them.
    pub const COUNTER_SOCKHASH_FULL: u32 = 1;
    /// Entries of [`MAP_COUNTERS`].
    pub const COUNTER_LEN: u32 = 2;
    /// The socket hooks' programs, as named in the object.
    pub const SOCKET_PROGRAMS: [&str; 3] = ["socket_receive", "socket_send", "socket_established"];
    /// The packet hook's program.
    pub const PACKET_PROGRAMS: [&str; 1] = ["packet_ingress"];
}

/// Address family numbers as Linux defines them.
pub const AF_INET: u16 = 2;
/// IPv6.
pub const AF_INET6: u16 = 10;

/// Reads a plain-integer `#[repr(C)]` event from the front of `bytes`.
///
/// Only for the types of this module, whose fields are integers and integer
/// arrays: every bit pattern is a valid value.
pub trait FromBytes: Copy + Sized {
    /// The value at the start of `bytes`, or `None` when too short.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < core::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length was checked, `read_unaligned` has no alignment
        // requirement, and the implementing types accept any bit pattern.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The value's bytes, as the programs write them.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the implementing types are `repr(C)` integers without
        // padding (checked by the layout tests), so every byte is initialised.
        unsafe {
            core::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                core::mem::size_of::<Self>(),
            )
        }
    }
}

impl FromBytes for EventHeader {}
impl FromBytes for ConnEvent {}
impl FromBytes for DataEvent {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        // Sizes are the sums of the fields: no padding bytes the programs
        // would leave uninitialised.
        assert_eq!(size_of::<EventHeader>(), 4 * 4 + 8 + 4 * 2 + 8 * 2);
        assert_eq!(
            size_of::<ConnEvent>(),
            size_of::<EventHeader>() + 4 + 2 + 2 + 16
        );
        assert_eq!(size_of::<DataEvent>(), size_of::<EventHeader>() + 8 + 4 + 4);
    }

    #[test]
    fn events_round_trip_through_bytes() {
        let event = DataEvent {
            header: EventHeader {
                kind: EventKind::Read as u32,
                tgid: 7,
                tid: 8,
                fd: 3,
                conn_id: 99,
                role: Role::Server as u32,
                reserved: 0,
                enter_ns: 1,
                exit_ns: 2,
            },
            total: 10,
            captured: 10,
            reserved: 0,
        };
        assert_eq!(DataEvent::read_from(event.as_bytes()), Some(event));
        assert_eq!(DataEvent::read_from(&event.as_bytes()[1..]), None);
        assert_eq!(EventKind::from_u32(4), Some(EventKind::Read));
        assert_eq!(EventKind::from_u32(0), None);
    }
}
