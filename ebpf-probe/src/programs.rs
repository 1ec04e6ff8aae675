//! The programs and their maps.
//!
//! Two programs, on `sys_enter` and `sys_exit`, see every syscall of every
//! process; the object has them twice, as BTF tracepoints (`*_btf`, which
//! load the saved registers directly) and as raw tracepoints (which copy
//! each with a helper, for kernels without BTF), and the agent attaches one
//! pair. Not the `syscalls:sys_*_*` tracepoints: those build a perf-event
//! record before the program runs, paid by every read and write of every
//! process on the node (the agent's 26 of them added 60-69 ns of CPU to
//! each on the machine measured, the raw pair 23; see the README). The
//! entry looks the syscall number up in `SYSCALLS` (an array: one indexed
//! load) and returns for the syscalls it does not handle; the exit does
//! the same first where the number is a plain load (BTF), and checks the
//! process's slot in `PID_SLOTS` (another array load) before any hash
//! lookup or further register read, so a process that is not traced costs
//! little more.
//!
//! Almost everything happens at the exit, which knows the result and still
//! has the arguments in the registers: `accept`/`connect` start following a
//! connection (keyed by process and fd), reads and writes on followed
//! connections copy a prefix of the buffer. A read that returns nothing
//! (`EAGAIN`, the most common syscall of an event-loop server) costs no map
//! access at all. The entry handles `close` (stop following) and a client's
//! writes, whose entry time is when its request starts (remembered by
//! thread in `PENDING` for the exit).

use aya_ebpf::helpers::generated::{
    bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_user,
};
use aya_ebpf::macros::{btf_tracepoint, map, raw_tracepoint};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{BtfTracePointContext, RawTracePointContext};
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
/// [`TINY_CAPTURE`], [`SMALL_CAPTURE`], [`MEDIUM_CAPTURE`] and
/// [`MAX_CAPTURE`]; the agent reads `captured` bytes and skips the rest of
/// the record.
#[repr(C)]
struct DataRecord<const N: usize> {
    event: DataEvent,
    data: [u8; N],
}

/// Capture size classes below [`MAX_CAPTURE`]: a short request or response
/// head fits the tiny one (smaller records keep the ring's working set in
/// the cache), a response's status line and framing headers usually the
/// small one, a request head the medium one (the default capture,
/// `DEFAULT_CAPTURE`).
const TINY_CAPTURE: usize = 128;
const SMALL_CAPTURE: usize = 256;
const MEDIUM_CAPTURE: usize = 1024;

/// Client writes in flight: the thread's entry time (see
/// `ebpf_probe::MAP_PENDING`).
#[map]
static PENDING: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

const _: () = assert!(size_of::<u64>() == ebpf_probe::PENDING_VALUE_SIZE);
const _: () = assert!(size_of::<Conn>() == ebpf_probe::CONN_VALUE_SIZE);

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
fn kind_of(what: u32) -> u32 {
    what & ((1 << SYSCALL_BUFFER_SHIFT) - 1)
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

/// The followed connection `fd` of `tgid`, if it is one. Only selected
/// processes have entries (the agent removes a process's when it stops
/// tracing it), so this is also the selection check for reads and writes.
#[inline(always)]
fn followed(tgid: u32, fd: u32) -> Option<Conn> {
    let conn = CONNS.get_ptr(&ConnKey { tgid, fd })?;
    Some(unsafe { *conn })
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

/// Starts following connection `fd`: `listen_fd` is the listening socket
/// of an accepted one, `address` the user's `sockaddr` pointer (the peer
/// for an accept, the remote for a connect).
#[inline(always)]
fn follow(kind: EventKind, id: u64, fd: u32, listen_fd: u32, address: u64, role: Role) {
    // The exit time names the connection among those that reuse its fd.
    let at = now();
    let conn = Conn {
        id: at,
        role: role as u32,
        reserved: 0,
    };
    let mut event = ConnEvent {
        header: header(kind, id, fd, &conn, at),
        listen_fd,
        family: 0,
        port: 0,
        addr: [0; 16],
    };
    let known_family = fill_address(&mut event, address);
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
/// in that contiguous piece: `buffer` says what the argument `ptr` points
/// at (a `BUF_*` value).
#[inline(always)]
fn first_piece(buffer: u32, ptr: u64, transferred: u64) -> Option<(u64, u64)> {
    let iov_ptr = match buffer {
        BUF_PLAIN => return Some((ptr, transferred)),
        BUF_IOVEC => ptr,
        // struct msghdr: msg_name(8) msg_namelen(4+4) msg_iov(8) ...
        BUF_MSGHDR => read_user::<u64>(ptr + 16)?,
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

/// Records a read or write of `transferred` (> 0) bytes on `conn`.
#[inline(always)]
fn data(
    kind: EventKind,
    id: u64,
    fd: u32,
    conn: &Conn,
    buffer: u32,
    ptr: u64,
    transferred: u64,
    enter_ns: u64,
) {
    let limit = config(CONFIG_CAPTURE_BYTES);
    let (ptr, mut wanted) = match first_piece(buffer, ptr, transferred) {
        Some((ptr, available)) => (ptr, if available < limit { available } else { limit }),
        None => (0, 0),
    };
    if wanted > MAX_CAPTURE as u64 {
        wanted = MAX_CAPTURE as u64;
    }
    let event = DataEvent {
        header: header(kind, id, fd, conn, enter_ns),
        total: transferred,
        captured: 0,
        reserved: 0,
    };
    let flags = wakeup_flags();
    if wanted <= TINY_CAPTURE as u64 {
        emit_data::<TINY_CAPTURE>(event, ptr, wanted, flags);
    } else if wanted <= SMALL_CAPTURE as u64 {
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
fn close(id: u64, tgid: u32, fd: u32, conn: &Conn) {
    let _ = CONNS.remove(&ConnKey { tgid, fd });
    let event = header(EventKind::Close, id, fd, conn, now());
    if EVENTS
        .output::<EventHeader>(&event, wakeup_flags())
        .is_err()
    {
        count(COUNTER_RINGBUF_FULL);
    }
}

// ---- where the syscall's number and arguments are ----

/// A syscall's saved user registers, `struct pt_regs`.
trait Registers: Copy {
    /// Whether reading the syscall number costs less than the pid helper
    /// and the slot load: then the exit program checks the number first,
    /// and a syscall it does not handle (most of them) costs every process
    /// one load and one array lookup.
    const NR_FIRST: bool;
    /// The first argument (valid at the entry and at the exit).
    fn arg0(self) -> u64;
    /// The second argument.
    fn arg1(self) -> u64;
    /// The syscall number as it entered.
    fn nr(self) -> u64;
}

/// Registers read with `bpf_probe_read_kernel` at the offsets the agent
/// put in `CONFIG`: what a raw tracepoint program has to do, since its
/// `pt_regs` pointer is an untyped number to the verifier.
#[derive(Clone, Copy)]
struct CopiedRegisters(u64);

impl Registers for CopiedRegisters {
    const NR_FIRST: bool = false;
    #[inline(always)]
    fn arg0(self) -> u64 {
        register(self.0, config(CONFIG_REGS_ARG0))
    }
    #[inline(always)]
    fn arg1(self) -> u64 {
        register(self.0, config(CONFIG_REGS_ARG1))
    }
    #[inline(always)]
    fn nr(self) -> u64 {
        register(self.0, config(CONFIG_REGS_NR))
    }
}

/// Registers loaded directly: a BTF tracepoint's `pt_regs` pointer is
/// typed, so the verifier lets the program load its fields (at offsets
/// fixed when the object is built for the machine's architecture) without
/// a helper call each.
#[derive(Clone, Copy)]
struct TypedRegisters(*const u64);

/// Offsets in 8-byte words: x86-64 `di`, `si`, `orig_ax`
/// (arch/x86/include/asm/ptrace.h), the same as `syscalls.rs` gives the
/// raw tracepoint programs.
#[cfg(bpf_target_arch = "x86_64")]
mod offsets {
    pub(super) const ARG0: usize = 14;
    pub(super) const ARG1: usize = 13;
    pub(super) const NR: usize = 15;
}

/// arm64: `orig_x0` (the return value overwrites `x0` before the exit),
/// `regs[1]`, and `syscallno`, a 32-bit field.
#[cfg(bpf_target_arch = "aarch64")]
mod offsets {
    pub(super) const ARG0: usize = 34;
    pub(super) const ARG1: usize = 1;
    pub(super) const NR: usize = 35;
}

#[cfg(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64"))]
impl Registers for TypedRegisters {
    const NR_FIRST: bool = true;
    #[inline(always)]
    fn arg0(self) -> u64 {
        unsafe { *self.0.add(offsets::ARG0) }
    }
    #[inline(always)]
    fn arg1(self) -> u64 {
        unsafe { *self.0.add(offsets::ARG1) }
    }
    #[inline(always)]
    fn nr(self) -> u64 {
        #[cfg(bpf_target_arch = "aarch64")]
        let nr = unsafe { *self.0.add(offsets::NR).cast::<i32>() } as u64;
        #[cfg(not(bpf_target_arch = "aarch64"))]
        let nr = unsafe { *self.0.add(offsets::NR) };
        nr
    }
}

// ---- the programs ----

/// A syscall's entry. Only `close` and writes have work here; the rest
/// wait for the exit.
#[inline(always)]
fn on_enter(regs: impl Registers, nr: u64) {
    let kind = kind_of(handled(nr));
    if kind != EventKind::Close as u32 && kind != EventKind::Write as u32 {
        return;
    }
    let id = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (id >> 32) as u32;
    if !maybe_selected(tgid) {
        return;
    }
    let fd = regs.arg0() as u32;
    let Some(conn) = followed(tgid, fd) else {
        return;
    };
    if kind == EventKind::Close as u32 {
        close(id, tgid, fd, &conn);
    } else if conn.role == Role::Client as u32 && PENDING.insert(&id, &now(), 0).is_err() {
        count(COUNTER_PENDING_TABLE_FULL);
    }
}

/// A syscall's return. The registers still hold the arguments.
#[inline(always)]
fn on_exit<R: Registers>(regs: R, ret: i64) {
    let mut what = 0;
    if R::NR_FIRST {
        what = handled(regs.nr());
        if what == 0 {
            return;
        }
    }
    let id = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (id >> 32) as u32;
    // Only a selected process has anything to record; where the number
    // costs a helper call, checking this first spares every other process
    // that call and the lookups.
    if !maybe_selected(tgid) {
        return;
    }
    if !R::NR_FIRST {
        what = handled(regs.nr());
        if what == 0 {
            return;
        }
    }
    let kind = kind_of(what);
    if kind == EventKind::Read as u32 || kind == EventKind::Write as u32 {
        // Nothing moved (EAGAIN, an error, end of stream): nothing to record,
        // and no lookup to pay.
        if ret <= 0 {
            return;
        }
        let fd = regs.arg0() as u32;
        let Some(conn) = followed(tgid, fd) else {
            return;
        };
        let ptr = regs.arg1();
        let buffer = what >> SYSCALL_BUFFER_SHIFT;
        if kind == EventKind::Read as u32 {
            data(EventKind::Read, id, fd, &conn, buffer, ptr, ret as u64, 0);
        } else {
            // A client's request starts when its write entered.
            let mut enter_ns = 0;
            if conn.role == Role::Client as u32
                && let Some(at) = unsafe { PENDING.get(&id) }
            {
                enter_ns = *at;
                let _ = PENDING.remove(&id);
            }
            data(
                EventKind::Write,
                id,
                fd,
                &conn,
                buffer,
                ptr,
                ret as u64,
                enter_ns,
            );
        }
    } else if kind == EventKind::Accept as u32 {
        if ret >= 0 && selected(tgid) {
            let listen_fd = regs.arg0() as u32;
            follow(
                EventKind::Accept,
                id,
                ret as u32,
                listen_fd,
                regs.arg1(),
                Role::Server,
            );
        }
    } else if kind == EventKind::Connect as u32
        && (ret == 0 || ret == -EINPROGRESS)
        && selected(tgid)
    {
        let fd = regs.arg0() as u32;
        follow(
            EventKind::Connect,
            id,
            fd,
            u32::MAX,
            regs.arg1(),
            Role::Client,
        );
    }
}

/// Every syscall's entry: `(struct pt_regs *regs, long nr)`, raw.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    on_enter(CopiedRegisters(ctx.arg::<u64>(0)), ctx.arg::<u64>(1));
    0
}

/// Every syscall's return: `(struct pt_regs *regs, long ret)`, raw.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    on_exit(CopiedRegisters(ctx.arg::<u64>(0)), ctx.arg::<u64>(1) as i64);
    0
}

/// The same entry as a BTF tracepoint, where the kernel has BTF (built for
/// the architectures whose `pt_regs` offsets are known; elsewhere the agent
/// finds no BTF pair and attaches the raw one).
#[cfg(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64"))]
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter_btf(ctx: BtfTracePointContext) -> i32 {
    on_enter(TypedRegisters(ctx.arg::<*const u64>(0)), ctx.arg::<u64>(1));
    0
}

/// The same exit as a BTF tracepoint.
#[cfg(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64"))]
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit_btf(ctx: BtfTracePointContext) -> i32 {
    on_exit(
        TypedRegisters(ctx.arg::<*const u64>(0)),
        ctx.arg::<u64>(1) as i64,
    );
    0
}
