//! Candidate hook designs measured by `cargo xtask bench --only ebpf`
//! (issue 15, part 1: "measure each candidate before choosing"), not used
//! by the agent. Both run only for traffic of the followed port, instead of
//! on every syscall of every process as the agent's syscall probes do.
//!
//! Socket hooks:
//!
//! - `socket_established` (`sock_ops`, attached to the root cgroup v2) runs
//!   on TCP connection events; when a connection to the followed local port
//!   is established it puts the socket in the `SOCKETS` sockhash.
//! - `socket_send` (`sk_msg` on the sockhash) runs on each `sendmsg` of a
//!   followed socket and copies the first bytes, as the agent's write
//!   capture does.
//! - `socket_receive` (`sk_skb` stream verdict on the sockhash) runs on each
//!   segment a followed socket receives and copies its first bytes, as the
//!   agent's read capture does, then passes it on to the socket.
//!
//! Packet hook:
//!
//! - `packet_ingress` (a TC classifier, TCX on kernels 6.6+, on an
//!   interface's ingress) runs on every packet the interface receives,
//!   keeps IPv4 TCP segments with data to or from the followed port and
//!   copies their first payload bytes (user space would reassemble the
//!   streams). On loopback every packet passes ingress once.
//!
//! Records are [`DataEvent`]s like the agent's (the same header, a capture
//! of at most `CONFIG_CAPTURE_BYTES`), reserved in the ring and filled in
//! place, without a wake-up (the reader polls), so the per-request figure
//! compares like with like.

#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::bindings::{
        __sk_buff, BPF_NOEXIST, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, sk_msg_md,
    };
    use aya_ebpf::helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_skb_load_bytes,
    };
    use aya_ebpf::macros::{classifier, map, sk_msg, sock_ops, stream_verdict};
    use aya_ebpf::maps::{Array, PerCpuArray, RingBuf, SockHash};
    use aya_ebpf::programs::{SkBuffContext, SkMsgContext, SockOpsContext, TcContext};
    use core::ffi::c_void;
    use ebpf_probe::candidates::{
        CONFIG_CAPTURE_BYTES, CONFIG_LEN, CONFIG_PORT, CONFIG_RECORDS, COUNTER_LEN,
        COUNTER_RINGBUF_FULL, COUNTER_SOCKHASH_FULL, RING_BYTES,
    };
    use ebpf_probe::{DataEvent, EventHeader, EventKind, Role};

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    #[map]
    static SOCKETS: SockHash<u64> = SockHash::with_max_entries(65536, 0);

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

    #[map]
    static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_LEN, 0);

    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_LEN, 0);

    /// A capture goes in the smallest class it fits, as in the agent's
    /// probe, with a smaller first class: a request head without a body
    /// and a response's status line and framing headers fit 128 bytes,
    /// and smaller records keep the ring's footprint in the cache small.
    const SMALL_CAPTURE: usize = 128;
    const MEDIUM_CAPTURE: usize = 1024;

    /// `bpf_ringbuf_submit` flag: the reader polls.
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const SK_PASS: u32 = 1;

    #[repr(C)]
    struct DataRecord<const N: usize> {
        event: DataEvent,
        data: [u8; N],
    }

    #[inline(always)]
    fn config(index: u32) -> u64 {
        CONFIG.get(index).map(|v| u64::from(*v)).unwrap_or(0)
    }

    #[inline(always)]
    fn count(counter: u32) {
        if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
            unsafe { *slot += 1 };
        }
    }

    /// A connection's id from its addresses (the same in `sk_msg` and
    /// `sk_skb`, which both see the 4-tuple; loopback tests use IPv4).
    #[inline(always)]
    fn conn_id(remote_ip4: u32, remote_port: u32, local_port: u32) -> u64 {
        (u64::from(remote_ip4) << 32)
            | (u64::from(remote_port & 0xffff) << 16)
            | u64::from(local_port & 0xffff)
    }

    #[inline(always)]
    fn event(kind: EventKind, tgid_tid: u64, conn: u64, total: u64) -> DataEvent {
        let now = unsafe { bpf_ktime_get_boot_ns() };
        DataEvent {
            header: EventHeader {
                kind: kind as u32,
                tgid: (tgid_tid >> 32) as u32,
                tid: tgid_tid as u32,
                fd: u32::MAX,
                conn_id: conn,
                role: Role::Server as u32,
                reserved: 0,
                enter_ns: now,
                exit_ns: now,
            },
            total,
            captured: 0,
            reserved: 0,
        }
    }

    /// How a record's bytes are copied in: from kernel memory (a message's
    /// first page) or from a socket buffer at an offset.
    #[derive(Clone, Copy)]
    enum Source {
        Kernel(u64),
        Skb(*mut __sk_buff, u32),
    }

    #[inline(always)]
    fn emit<const N: usize>(mut event: DataEvent, source: Source, wanted: u64) {
        let Some(mut entry) = EVENTS.reserve::<DataRecord<N>>(0) else {
            count(COUNTER_RINGBUF_FULL);
            return;
        };
        let record = entry.as_mut_ptr();
        let mut captured = if wanted > N as u64 { N as u64 } else { wanted };
        if captured > 0 {
            // The same number, in a form the verifier can bound to
            // 1..=N (N is a power of two): the helpers refuse a length that
            // may be zero.
            // (black_box: the compiler would otherwise drop the mask it
            // can prove redundant.)
            let len = ((core::hint::black_box(captured as u32) - 1) & (N as u32 - 1)) + 1;
            let dst = unsafe { (&raw mut (*record).data).cast::<c_void>() };
            let rc = match source {
                Source::Kernel(ptr) => unsafe {
                    bpf_probe_read_kernel(dst, len, ptr as *const c_void)
                },
                Source::Skb(skb, offset) => unsafe {
                    bpf_skb_load_bytes(skb as *const c_void, offset, dst, len)
                },
            };
            if rc != 0 {
                captured = 0;
            }
        }
        event.captured = captured as u32;
        unsafe { (&raw mut (*record).event).write(event) };
        entry.submit(BPF_RB_NO_WAKEUP);
    }

    #[inline(always)]
    fn capture(event: DataEvent, source: Source, available: u64) {
        let limit = config(CONFIG_CAPTURE_BYTES);
        let wanted = if available < limit { available } else { limit };
        if wanted <= SMALL_CAPTURE as u64 {
            emit::<SMALL_CAPTURE>(event, source, wanted);
        } else {
            emit::<MEDIUM_CAPTURE>(event, source, wanted);
        }
    }

    /// Follows connections accepted on the selected port.
    #[sock_ops]
    pub fn socket_established(ctx: SockOpsContext) -> u32 {
        if ctx.op() != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
            || u64::from(ctx.local_port()) != config(CONFIG_PORT)
        {
            return 0;
        }
        let mut key = unsafe { bpf_get_socket_cookie(ctx.ops.cast::<c_void>()) };
        if SOCKETS
            .update(&mut key, unsafe { &mut *ctx.ops }, u64::from(BPF_NOEXIST))
            .is_err()
        {
            count(COUNTER_SOCKHASH_FULL);
        }
        0
    }

    /// A followed socket's `sendmsg`: the response's first bytes.
    #[sk_msg]
    pub fn socket_send(ctx: SkMsgContext) -> u32 {
        if config(CONFIG_RECORDS) == 0 {
            return SK_PASS;
        }
        let msg: &sk_msg_md = unsafe { &*ctx.msg };
        let id = unsafe { bpf_get_current_pid_tgid() };
        let conn = conn_id(msg.remote_ip4, msg.remote_port, msg.local_port);
        let event = event(EventKind::Write, id, conn, u64::from(ctx.size()));
        // The first scatterlist element: what a program may read directly.
        let first = (ctx.data_end() - ctx.data()) as u64;
        capture(event, Source::Kernel(ctx.data() as u64), first);
        SK_PASS
    }

    /// A segment received on a followed socket: the request's first bytes.
    #[stream_verdict]
    pub fn socket_receive(ctx: SkBuffContext) -> u32 {
        if config(CONFIG_RECORDS) == 0 {
            return SK_PASS;
        }
        let skb = ctx.skb.skb;
        let (remote_ip4, remote_port, local_port) =
            unsafe { ((*skb).remote_ip4, (*skb).remote_port, (*skb).local_port) };
        let len = u64::from(ctx.len());
        // Softirq context: no process to name; the connection says who.
        let event = event(
            EventKind::Read,
            0,
            conn_id(remote_ip4, remote_port, local_port),
            len,
        );
        capture(event, Source::Skb(skb, 0), len);
        SK_PASS
    }

    /// TCX: let the next program (or the stack) have the packet.
    const TCX_NEXT: i32 = -1;
    const ETH_HEADER: usize = 14;
    const ETH_P_IP: u16 = 0x0800;
    const IPPROTO_TCP: u8 = 6;

    /// A segment with data to or from the followed port: requests in,
    /// responses out (on loopback both pass ingress).
    #[classifier]
    pub fn packet_ingress(ctx: TcContext) -> i32 {
        if config(CONFIG_RECORDS) == 0 {
            return TCX_NEXT;
        }
        let _ = follow_packet(&ctx);
        TCX_NEXT
    }

    #[inline(always)]
    fn follow_packet(ctx: &TcContext) -> Option<()> {
        if u16::from_be(ctx.load::<u16>(12).ok()?) != ETH_P_IP {
            return None;
        }
        let version_ihl = ctx.load::<u8>(ETH_HEADER).ok()?;
        if ctx.load::<u8>(ETH_HEADER + 9).ok()? != IPPROTO_TCP {
            return None;
        }
        let tcp = ETH_HEADER + usize::from(version_ihl & 0x0f) * 4;
        let ports = ctx.load::<[u8; 4]>(tcp).ok()?;
        let source = u16::from_be_bytes([ports[0], ports[1]]);
        let destination = u16::from_be_bytes([ports[2], ports[3]]);
        let port = config(CONFIG_PORT) as u16;
        let (kind, peer_port) = if destination == port {
            (EventKind::Read, source)
        } else if source == port {
            (EventKind::Write, destination)
        } else {
            return None;
        };
        let data_offset = usize::from(ctx.load::<u8>(tcp + 12).ok()? >> 4) * 4;
        let payload = tcp + data_offset;
        let len = ctx.len() as usize;
        if len <= payload {
            // An ACK, SYN or FIN without data.
            return None;
        }
        let peer = u32::from_be(
            ctx.load::<u32>(if kind == EventKind::Read {
                ETH_HEADER + 12
            } else {
                ETH_HEADER + 16
            })
            .ok()?,
        );
        let available = (len - payload) as u64;
        let event = event(
            kind,
            0,
            conn_id(peer, u32::from(peer_port), u32::from(port)),
            available,
        );
        capture(event, Source::Skb(ctx.skb.skb, payload as u32), available);
        Some(())
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
