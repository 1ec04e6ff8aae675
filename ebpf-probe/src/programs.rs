//! The programs and their maps.
//!
//! Two raw tracepoint programs, on `sys_enter` and `sys_exit`, see every
//! syscall of every process. Raw tracepoints, not the `syscalls:sys_*_*`
//! ones: a regular tracepoint builds a perf-event record before the program
//! runs, paid by every read and write of every process on the node (the
//! agent's 26 of them added 60-69 ns of CPU to each on the machine
//! measured, these two add 23; see the README); a raw tracepoint hands the
//! program the registers directly. The entry looks the syscall number up in
//! `SYSCALLS` (an array: one indexed load) and returns for the syscalls it
//! does not handle; both programs then check the process's slot in
//! `PID_SLOTS` (another array load) before any hash lookup or register
//! read, so a process that is not traced costs little more.
//!
//! The enter program remembers the arguments of a handled syscall (keyed by
//! thread); the exit program, knowing the result, records the event:
//! `accept`/`connect` start following a connection (keyed by process and
//! fd), reads and writes on followed connections copy a prefix of the
//! buffer, `close` stops following.

use aya_ebpf::helpers::generated::{
    bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_user,
};
use aya_ebpf::macros::{map, raw_tracepoint};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::RawTracePointContext;
use core::ffi::c_void;
use core::mem::size_of;
use ebpf_probe::{
    AF_INET, AF_INET6, BUF_IOVEC, BUF_MSGHDR, BUF_PLAIN, CONFIG_CAPTURE_BYTES, CONFIG_LEN,
    CONFIG_REGS_ARG0, CONFIG_REGS_ARG1, CONFIG_REGS_NR, CONFIG_WAKEUP_BYTES,
    COUNTER_CONN_TABLE_FULL, COUNTER_LEN, COUNTER_PENDING_TABLE_FULL, COUNTER_READ_FAILED,
    COUNTER_RINGBUF_FULL, ConnEvent, DataEvent, EventHeader, EventKind, MAX_CAPTURE,
    PID_SLOT_COUNT, Role, SYSCALL_BUFFER_SHIFT, SYSCALLS_LEN,
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

#[map]
static SYSCALLS: Array<u32> = Array::with_max_entries(SYSCALLS_LEN, 0);

#[map]
static PID_SLOTS: Array<u32> = Array::with_max_entries(PID_SLOT_COUNT, 0);

// ---- maps private to the programs ----

/// A syscall between its enter and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    fd: u32,
    /// What the syscall is: its `SYSCALLS` value (kind and buffer).
    what: u32,
    ptr: u64,
    enter_ns: u64,
}

impl Pending {
    fn kind(&self) -> u32 {
        self.what & ((1 << SYSCALL_BUFFER_SHIFT) - 1)
    }

    fn buffer(&self) -> u32 {
        self.what >> SYSCALL_BUFFER_SHIFT
    }
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

/// A data event and room for `N` captured bytes, reserved in the ring and
/// filled in place: the user bytes are copied once, straight into the
/// ring. A reservation's size must be a constant, so captures go in one of
/// [`SMALL_CAPTURE`], [`MEDIUM_CAPTURE`] and [`MAX_CAPTURE`]; the agent
/// reads `captured` bytes and skips the rest of the record.
#[repr(C)]
struct DataRecord<const N: usize> {
    event: DataEvent,
    data: [u8; N],
}

/// Capture size classes below [`MAX_CAPTURE`]: a response's status line
/// and framing headers usually fit the small one, a request head the
/// medium one (the default capture, `DEFAULT_CAPTURE`).
const SMALL_CAPTURE: usize = 256;
const MEDIUM_CAPTURE: usize = 1024;

/// Syscalls in flight, per thread. Not LRU (see `ebpf_probe::MAP_PENDING`):
/// the agent removes what threads killed between enter and exit left.
#[map]
static PENDING: HashMap<u64, Pending> = HashMap::with_max_entries(16384, 0);

const _: () = assert!(size_of::<Pending>() == ebpf_probe::PENDING_VALUE_SIZE);

/// Followed connections. LRU: a process that exits closes its fds without a
/// `close` syscall, so its entries age out.
#[map]
static CONNS: LruHashMap<ConnKey, Conn> = LruHashMap::with_max_entries(65536, 0);

// ---- helpers ----

const EINPROGRESS: i64 = 115;

#[inline(always)]
fn count(counter: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
        // Per-CPU slot: no other writer.
        unsafe { *slot += 1 };
    }
}

/// What `SYSCALLS` says of syscall `nr`: 0 when it is not handled.
#[inline(always)]
fn handled(nr: u64) -> u32 {
    if nr >= u64::from(SYSCALLS_LEN) {
        return 0;
    }
    SYSCALLS.get(nr as u32).copied().unwrap_or(0)
}

#[inline(always)]
fn config(index: u32) -> u64 {
    CONFIG.get(index).map(|v| u64::from(*v)).unwrap_or(0)
}

/// The 8-byte register at `offset` in the syscall's `struct pt_regs`.
#[inline(always)]
fn register(regs: u64, offset: u64) -> u64 {
    let mut value = 0u64;
    let rc = unsafe {
        bpf_probe_read_kernel(
            (&raw mut value).cast::<c_void>(),
            size_of::<u64>() as u32,
            (regs + offset) as *const c_void,
        )
    };
    if rc == 0 { value } else { 0 }
}

/// `bpf_ringbuf_query` flag: bytes not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_output` flags.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Flags for writing an event: wake the agent only once the ring holds
/// `CONFIG_WAKEUP_BYTES` (see there); 0 leaves it to the kernel.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let threshold = config(CONFIG_WAKEUP_BYTES);
    if threshold == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
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

/// Whether `tgid` may be selected: its slot counts a selected process.
/// An array load, so an unselected process pays no hash lookup.
#[inline(always)]
fn maybe_selected(tgid: u32) -> bool {
    PID_SLOTS
        .get(tgid & (PID_SLOT_COUNT - 1))
        .is_some_and(|n| *n != 0)
}

#[inline(always)]
fn selected(tgid: u32) -> bool {
    maybe_selected(tgid) && unsafe { PIDS.get(&tgid) }.is_some()
}

/// Remembers a syscall at its entry. The entry time is read only where
/// the agent uses it: accept and connect (it is the connection's id) and
/// writes (a client's request starts when its write does); a read's event
/// carries its exit time for both (a server's request starts when its read
/// returns), which spares every read, the many that return nothing
/// (`EAGAIN`) included, a clock read.
#[inline(always)]
fn remember(id: u64, fd: u32, what: u32, ptr: u64) {
    let kind = what & ((1 << SYSCALL_BUFFER_SHIFT) - 1);
    let pending = Pending {
        fd,
        what,
        ptr,
        enter_ns: if kind == EventKind::Read as u32 {
            0
        } else {
            now()
        },
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

/// An event's common fields; `enter_ns` 0 (not read at entry) becomes the
/// exit time.
#[inline(always)]
fn header(kind: EventKind, id: u64, fd: u32, conn: &Conn, enter_ns: u64) -> EventHeader {
    let exit_ns = now();
    EventHeader {
        kind: kind as u32,
        tgid: (id >> 32) as u32,
        tid: id as u32,
        fd,
        conn_id: conn.id,
        role: conn.role,
        reserved: 0,
        enter_ns: if enter_ns == 0 { exit_ns } else { enter_ns },
        exit_ns,
    }
}

// ---- accept and connect: start following a connection ----

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
    if EVENTS.output::<ConnEvent>(&event, wakeup_flags()).is_err() {
        count(COUNTER_RINGBUF_FULL);
    }
}

// ---- reads and writes on followed connections ----

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
    let iov_ptr = match pending.buffer() {
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
fn exit_data(id: u64, pending: &Pending, transferred: i64, kind: EventKind) {
    if transferred <= 0 {
        return;
    }
    let key = ConnKey {
        tgid: (id >> 32) as u32,
        fd: pending.fd,
    };
    let Some(conn) = CONNS.get_ptr(&key) else {
        return;
    };
    let conn = unsafe { *conn };
    let limit = config(CONFIG_CAPTURE_BYTES);
    let (ptr, mut wanted) = match first_piece(pending, transferred as u64) {
        Some((ptr, available)) => (ptr, if available < limit { available } else { limit }),
        None => (0, 0),
    };
    if wanted > MAX_CAPTURE as u64 {
        wanted = MAX_CAPTURE as u64;
    }
    let event = DataEvent {
        header: header(kind, id, pending.fd, &conn, pending.enter_ns),
        total: transferred as u64,
        captured: 0,
        reserved: 0,
    };
    let flags = wakeup_flags();
    if wanted <= SMALL_CAPTURE as u64 {
        emit_data::<SMALL_CAPTURE>(event, ptr, wanted, flags);
    } else if wanted <= MEDIUM_CAPTURE as u64 {
        emit_data::<MEDIUM_CAPTURE>(event, ptr, wanted, flags);
    } else {
        emit_data::<MAX_CAPTURE>(event, ptr, wanted, flags);
    }
}

/// Reserves a record with room for `N` bytes, copies up to `wanted` (at
/// most `N`) user bytes from `ptr` into it and submits it.
#[inline(always)]
fn emit_data<const N: usize>(mut event: DataEvent, ptr: u64, wanted: u64, flags: u64) {
    let Some(mut entry) = EVENTS.reserve::<DataRecord<N>>(0) else {
        count(COUNTER_RINGBUF_FULL);
        return;
    };
    let record = entry.as_mut_ptr();
    // The bound the verifier checks the copy's size against.
    let mut captured = if wanted > N as u64 { N as u64 } else { wanted };
    if captured > 0 {
        let rc = unsafe {
            bpf_probe_read_user(
                (&raw mut (*record).data).cast::<c_void>(),
                captured as u32,
                ptr as *const c_void,
            )
        };
        if rc != 0 {
            count(COUNTER_READ_FAILED);
            captured = 0;
        }
    }
    event.captured = captured as u32;
    unsafe { (&raw mut (*record).event).write(event) };
    entry.submit(flags);
}

// ---- close: stop following ----

#[inline(always)]
fn close(id: u64, tgid: u32, fd: u32) {
    let key = ConnKey { tgid, fd };
    let Some(conn) = CONNS.get_ptr(&key) else {
        return;
    };
    let conn = unsafe { *conn };
    let _ = CONNS.remove(&key);
    let event = header(EventKind::Close, id, fd, &conn, now());
    if EVENTS
        .output::<EventHeader>(&event, wakeup_flags())
        .is_err()
    {
        count(COUNTER_RINGBUF_FULL);
    }
}

// ---- the programs ----

/// Every syscall's entry: `(struct pt_regs *regs, long nr)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let what = handled(ctx.arg::<u64>(1));
    if what == 0 {
        return 0;
    }
    let id = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (id >> 32) as u32;
    if !selected(tgid) {
        return 0;
    }
    let regs = ctx.arg::<u64>(0);
    let fd = register(regs, config(CONFIG_REGS_ARG0)) as u32;
    let kind = what & ((1 << SYSCALL_BUFFER_SHIFT) - 1);
    if kind == EventKind::Close as u32 {
        close(id, tgid, fd);
        return 0;
    }
    let ptr = register(regs, config(CONFIG_REGS_ARG1));
    if kind == EventKind::Accept as u32 || kind == EventKind::Connect as u32 {
        remember(id, fd, what, ptr);
    } else if CONNS.get_ptr(&ConnKey { tgid, fd }).is_some() {
        // A read or write: remembered only on followed connections, so a
        // selected process's file and pipe I/O costs one more lookup.
        remember(id, fd, what, ptr);
    }
    0
}

/// Every syscall's return: `(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let id = unsafe { bpf_get_current_pid_tgid() };
    // Only a selected process has anything pending; checking that first
    // spares every other process the register read and the lookups.
    if !maybe_selected((id >> 32) as u32) {
        return 0;
    }
    let regs = ctx.arg::<u64>(0);
    if handled(register(regs, config(CONFIG_REGS_NR))) == 0 {
        return 0;
    }
    let Some(pending) = take_pending(id) else {
        return 0;
    };
    let ret = ctx.arg::<u64>(1) as i64;
    let kind = pending.kind();
    if kind == EventKind::Accept as u32 {
        if ret >= 0 {
            follow(EventKind::Accept, id, ret as u32, &pending, Role::Server);
        }
    } else if kind == EventKind::Connect as u32 {
        if ret == 0 || ret == -EINPROGRESS {
            follow(EventKind::Connect, id, pending.fd, &pending, Role::Client);
        }
    } else if kind == EventKind::Read as u32 {
        exit_data(id, &pending, ret, EventKind::Read);
    } else if kind == EventKind::Write as u32 {
        exit_data(id, &pending, ret, EventKind::Write);
    }
    0
}
