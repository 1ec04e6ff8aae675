//! The tracepoint programs and their maps.
//!
//! Each hooked syscall has an enter program that remembers its arguments
//! (keyed by thread) and an exit program that, knowing the result, records
//! the event: `accept`/`connect` start following a connection (keyed by
//! process and fd), reads and writes on followed connections copy a prefix of
//! the buffer, `close` stops following.

use aya_ebpf::EbpfContext;
use aya_ebpf::helpers::generated::{
    bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user,
};
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::TracePointContext;
use core::ffi::c_void;
use core::mem::size_of;
use ebpf_probe::{
    AF_INET, AF_INET6, CONFIG_CAPTURE_BYTES, CONFIG_LEN, COUNTER_CONN_TABLE_FULL, COUNTER_LEN,
    COUNTER_PENDING_TABLE_FULL, COUNTER_READ_FAILED, COUNTER_RINGBUF_FULL, ConnEvent, DataEvent,
    EventHeader, EventKind, MAX_CAPTURE, Role,
};

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

// ---- maps shared with the agent (names in ebpf_probe::MAP_*) ----

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

#[map]
static PIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

#[map]
static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_LEN, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_LEN, 0);

// ---- maps private to the programs ----

/// How the exit program finds the syscall's buffer.
const BUF_PLAIN: u32 = 0;
const BUF_IOVEC: u32 = 1;
const BUF_MSGHDR: u32 = 2;
const BUF_SOCKADDR: u32 = 3;
/// Bytes that come from a file (`sendfile`): counted, nothing to copy.
const BUF_NONE: u32 = 4;

/// A syscall between its enter and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    fd: u32,
    buffer: u32,
    ptr: u64,
    enter_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ConnKey {
    tgid: u32,
    fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Conn {
    id: u64,
    role: u32,
    reserved: u32,
}

/// A data event being assembled, per CPU: too big for the BPF stack.
#[repr(C)]
struct DataScratch {
    event: DataEvent,
    data: [u8; MAX_CAPTURE],
}

/// Syscalls in flight, per thread. Not LRU (see `ebpf_probe::MAP_PENDING`):
/// the agent removes what threads killed between enter and exit left.
#[map]
static PENDING: HashMap<u64, Pending> = HashMap::with_max_entries(16384, 0);

const _: () = assert!(size_of::<Pending>() == ebpf_probe::PENDING_VALUE_SIZE);

/// Followed connections. LRU: a process that exits closes its fds without a
/// `close` syscall, so its entries age out.
#[map]
static CONNS: LruHashMap<ConnKey, Conn> = LruHashMap::with_max_entries(65536, 0);

#[map]
static SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

// ---- helpers ----

const EINPROGRESS: i64 = 115;

#[inline(always)]
fn count(counter: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
        // Per-CPU slot: no other writer.
        unsafe { *slot += 1 };
    }
}

/// Argument `n` of a `sys_enter_*` tracepoint (8-byte slots after the
/// common fields and the syscall number).
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // Tracepoint programs may load from their context directly.
    unsafe { *(ctx.as_ptr() as *const u8).add(16 + 8 * n).cast::<u64>() }
}

/// The return value of a `sys_exit_*` tracepoint.
#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    arg(ctx, 0) as i64
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
fn read_user<T: Copy>(ptr: u64) -> Option<T> {
    let mut value = core::mem::MaybeUninit::<T>::uninit();
    let rc = unsafe {
        bpf_probe_read_user(
            value.as_mut_ptr().cast::<c_void>(),
            size_of::<T>() as u32,
            ptr as *const c_void,
        )
    };
    if rc == 0 {
        Some(unsafe { value.assume_init() })
    } else {
        None
    }
}

#[inline(always)]
fn selected(tgid: u32) -> bool {
    unsafe { PIDS.get(&tgid) }.is_some()
}

#[inline(always)]
fn remember(id: u64, fd: u32, buffer: u32, ptr: u64) {
    let pending = Pending {
        fd,
        buffer,
        ptr,
        enter_ns: now(),
    };
    if PENDING.insert(&id, &pending, 0).is_err() {
        count(COUNTER_PENDING_TABLE_FULL);
    }
}

#[inline(always)]
fn take_pending(id: u64) -> Option<Pending> {
    let pending = unsafe { *PENDING.get_ptr(&id)? };
    let _ = PENDING.remove(&id);
    Some(pending)
}

#[inline(always)]
fn header(kind: EventKind, id: u64, fd: u32, conn: &Conn, enter_ns: u64) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        tgid: (id >> 32) as u32,
        tid: id as u32,
        fd,
        conn_id: conn.id,
        role: conn.role,
        reserved: 0,
        enter_ns,
        exit_ns: now(),
    }
}

// ---- accept and connect: start following a connection ----

/// Enter of a syscall on a socket address (`accept`, `accept4`, `connect`):
/// remembers the fd and the `sockaddr` pointer for the exit.
#[inline(always)]
fn enter_sockaddr(ctx: &TracePointContext) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    if selected((id >> 32) as u32) {
        remember(id, arg(ctx, 0) as u32, BUF_SOCKADDR, arg(ctx, 1));
    }
    0
}

/// Reads a `sockaddr_in`/`sockaddr_in6` into the event; false when it is
/// neither (a Unix socket, say) or unreadable.
#[inline(always)]
fn fill_address(event: &mut ConnEvent, ptr: u64) -> bool {
    if ptr == 0 {
        return false;
    }
    let Some(family) = read_user::<u16>(ptr) else {
        return false;
    };
    if family == AF_INET {
        // family(2) port(2, big endian) addr(4)
        let Some(raw) = read_user::<[u8; 8]>(ptr) else {
            return false;
        };
        event.family = AF_INET;
        event.port = u16::from_be_bytes([raw[2], raw[3]]);
        event.addr[..4].copy_from_slice(&raw[4..8]);
        true
    } else if family == AF_INET6 {
        // family(2) port(2, big endian) flowinfo(4) addr(16)
        let Some(raw) = read_user::<[u8; 24]>(ptr) else {
            return false;
        };
        event.family = AF_INET6;
        event.port = u16::from_be_bytes([raw[2], raw[3]]);
        event.addr.copy_from_slice(&raw[8..24]);
        true
    } else {
        false
    }
}

#[inline(always)]
fn follow(kind: EventKind, id: u64, fd: u32, pending: &Pending, role: Role) {
    let conn = Conn {
        id: pending.enter_ns,
        role: role as u32,
        reserved: 0,
    };
    let mut event = ConnEvent {
        header: header(kind, id, fd, &conn, pending.enter_ns),
        listen_fd: if role == Role::Server {
            pending.fd
        } else {
            u32::MAX
        },
        family: 0,
        port: 0,
        addr: [0; 16],
    };
    let known_family = fill_address(&mut event, pending.ptr);
    // A client socket that is not IP (a Unix socket) is not followed; an
    // accepted one is (the peer address may just not have been asked for).
    if role == Role::Client && !known_family {
        return;
    }
    let key = ConnKey {
        tgid: (id >> 32) as u32,
        fd,
    };
    if CONNS.insert(&key, &conn, 0).is_err() {
        count(COUNTER_CONN_TABLE_FULL);
        return;
    }
    if EVENTS.output::<ConnEvent>(&event, 0).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
}

#[inline(always)]
fn exit_accept(ctx: &TracePointContext) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(pending) = take_pending(id) else {
        return 0;
    };
    let fd = ret(ctx);
    if fd >= 0 {
        follow(EventKind::Accept, id, fd as u32, &pending, Role::Server);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept4")]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    enter_sockaddr(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    exit_accept(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept")]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    enter_sockaddr(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    exit_accept(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    enter_sockaddr(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(pending) = take_pending(id) else {
        return 0;
    };
    let rc = ret(&ctx);
    if rc == 0 || rc == -EINPROGRESS {
        follow(EventKind::Connect, id, pending.fd, &pending, Role::Client);
    }
    0
}

// ---- reads and writes on followed connections ----

/// Enter of a read or write: remembered only for followed connections, so a
/// selected process's file and pipe I/O costs one more lookup, nothing else.
#[inline(always)]
fn enter_data(ctx: &TracePointContext, buffer: u32) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (id >> 32) as u32;
    if !selected(tgid) {
        return 0;
    }
    let fd = arg(ctx, 0) as u32;
    let key = ConnKey { tgid, fd };
    if CONNS.get_ptr(&key).is_some() {
        remember(id, fd, buffer, arg(ctx, 1));
    }
    0
}

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Iovec {
    base: u64,
    len: u64,
}

/// Where the first bytes of the syscall's data are, and how many there are
/// in that contiguous piece.
#[inline(always)]
fn first_piece(pending: &Pending, transferred: u64) -> Option<(u64, u64)> {
    let iov_ptr = match pending.buffer {
        BUF_PLAIN => return Some((pending.ptr, transferred)),
        BUF_IOVEC => pending.ptr,
        // struct msghdr: msg_name(8) msg_namelen(4+4) msg_iov(8) ...
        BUF_MSGHDR => read_user::<u64>(pending.ptr + 16)?,
        // BUF_NONE: a byte count without a user buffer.
        _ => return None,
    };
    let iov = read_user::<Iovec>(iov_ptr)?;
    Some((
        iov.base,
        if iov.len < transferred {
            iov.len
        } else {
            transferred
        },
    ))
}

#[inline(always)]
fn exit_data(ctx: &TracePointContext, kind: EventKind) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(pending) = take_pending(id) else {
        return 0;
    };
    let transferred = ret(ctx);
    if transferred <= 0 {
        return 0;
    }
    let key = ConnKey {
        tgid: (id >> 32) as u32,
        fd: pending.fd,
    };
    let Some(conn) = CONNS.get_ptr(&key) else {
        return 0;
    };
    let conn = unsafe { *conn };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let scratch = unsafe { &mut *scratch };
    let limit = CONFIG
        .get(CONFIG_CAPTURE_BYTES)
        .map(|v| *v as u64)
        .unwrap_or(0);
    let mut captured = 0u64;
    if let Some((ptr, available)) = first_piece(&pending, transferred as u64) {
        captured = if available < limit { available } else { limit };
        if captured > MAX_CAPTURE as u64 {
            captured = MAX_CAPTURE as u64;
        }
        if captured > 0 {
            let rc = unsafe {
                bpf_probe_read_user(
                    scratch.data.as_mut_ptr().cast::<c_void>(),
                    captured as u32,
                    ptr as *const c_void,
                )
            };
            if rc != 0 {
                count(COUNTER_READ_FAILED);
                captured = 0;
            }
        }
    }
    scratch.event = DataEvent {
        header: header(kind, id, pending.fd, &conn, pending.enter_ns),
        total: transferred as u64,
        captured: captured as u32,
        reserved: 0,
    };
    let len = size_of::<DataEvent>() + captured as usize;
    let bytes =
        unsafe { core::slice::from_raw_parts((scratch as *const DataScratch).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
    0
}

macro_rules! data_syscall {
    ($enter:ident = $enter_name:literal, $exit:ident = $exit_name:literal, $buffer:expr, $kind:expr) => {
        #[tracepoint(category = "syscalls", name = $enter_name)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            enter_data(&ctx, $buffer)
        }

        #[tracepoint(category = "syscalls", name = $exit_name)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit_data(&ctx, $kind)
        }
    };
}

data_syscall!(
    sys_enter_read = "sys_enter_read",
    sys_exit_read = "sys_exit_read",
    BUF_PLAIN,
    EventKind::Read
);
data_syscall!(
    sys_enter_recvfrom = "sys_enter_recvfrom",
    sys_exit_recvfrom = "sys_exit_recvfrom",
    BUF_PLAIN,
    EventKind::Read
);
data_syscall!(
    sys_enter_readv = "sys_enter_readv",
    sys_exit_readv = "sys_exit_readv",
    BUF_IOVEC,
    EventKind::Read
);
data_syscall!(
    sys_enter_recvmsg = "sys_enter_recvmsg",
    sys_exit_recvmsg = "sys_exit_recvmsg",
    BUF_MSGHDR,
    EventKind::Read
);
data_syscall!(
    sys_enter_write = "sys_enter_write",
    sys_exit_write = "sys_exit_write",
    BUF_PLAIN,
    EventKind::Write
);
data_syscall!(
    sys_enter_sendto = "sys_enter_sendto",
    sys_exit_sendto = "sys_exit_sendto",
    BUF_PLAIN,
    EventKind::Write
);
data_syscall!(
    sys_enter_writev = "sys_enter_writev",
    sys_exit_writev = "sys_exit_writev",
    BUF_IOVEC,
    EventKind::Write
);
data_syscall!(
    sys_enter_sendmsg = "sys_enter_sendmsg",
    sys_exit_sendmsg = "sys_exit_sendmsg",
    BUF_MSGHDR,
    EventKind::Write
);
// Static files (nginx, Go's ServeFile, Python's socket.sendfile): the body
// goes from a file to the socket without passing through user memory; its
// length keeps the HTTP framing in step. The first argument is the socket.
data_syscall!(
    sys_enter_sendfile64 = "sys_enter_sendfile64",
    sys_exit_sendfile64 = "sys_exit_sendfile64",
    BUF_NONE,
    EventKind::Write
);

// ---- close: stop following ----

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (id >> 32) as u32;
    if !selected(tgid) {
        return 0;
    }
    let fd = arg(&ctx, 0) as u32;
    let key = ConnKey { tgid, fd };
    let Some(conn) = CONNS.get_ptr(&key) else {
        return 0;
    };
    let conn = unsafe { *conn };
    let _ = CONNS.remove(&key);
    let event = header(EventKind::Close, id, fd, &conn, now());
    if EVENTS.output::<EventHeader>(&event, 0).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
    0
}
