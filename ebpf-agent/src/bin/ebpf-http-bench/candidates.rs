//! The hook candidates (issue 15, part 1): `ebpf-probe`'s
//! `hook-candidates` object, loaded for the length of a `load` or
//! `syscalls` run so the bench can measure them beside the agent's syscall
//! probes.
//!
//! [`Design::Socket`]: `sock_ops` on the root cgroup v2 puts connections
//! accepted on the server's port in a sockhash; `sk_msg` and an `sk_skb`
//! stream verdict on that sockhash copy the first bytes of what the server
//! sends and receives. [`Design::Packet`]: a TC classifier on an
//! interface's ingress copies the first payload bytes of the segments to
//! and from the server's port. Either way the records go to a ring buffer,
//! which a thread here drains every [`POLL_INTERVAL`] (the agent's
//! polling, no wake-ups), counting them. What the kernel measured of each
//! program (`kernel.bpf_stats_enabled` must be 1 for run times) is
//! reported at the end.

use anyhow::{Context, Result, bail};
use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuArray, RingBuf, SockHash};
use aya::programs::{CgroupAttachMode, SchedClassifier, SkMsg, SkSkb, SockOps, TcAttachType};
use ebpf_probe::candidates::{
    CONFIG_CAPTURE_BYTES, CONFIG_PORT, CONFIG_RECORDS, COUNTER_RINGBUF_FULL, COUNTER_SOCKHASH_FULL,
    MAP_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_SOCKETS, PACKET_PROGRAMS, SOCKET_PROGRAMS,
};
use ebpf_probe::{DEFAULT_CAPTURE, DataEvent, FromBytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The object built by build.rs from `ebpf-probe/src/candidates.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook-candidates"));

/// How often the ring is drained, as the agent polls its own.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Which candidate to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Design {
    /// `sock_ops` + `sk_msg` + `sk_skb` stream verdict on a sockhash.
    Socket,
    /// A TC classifier on the interface's ingress.
    Packet,
}

impl Design {
    fn programs(self) -> &'static [&'static str] {
        match self {
            Design::Socket => &SOCKET_PROGRAMS,
            Design::Packet => &PACKET_PROGRAMS,
        }
    }
}

/// Loaded and attached hooks; dropping them detaches everything.
pub(crate) struct Hooks {
    design: Design,
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    stop: Arc<AtomicBool>,
    records: Arc<AtomicU64>,
    drain: Option<JoinHandle<()>>,
}

/// Where cgroup v2 is mounted (the root `sock_ops` attaches to).
fn cgroup2_root() -> Result<String> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| path.to_string())
        })
        .context("no cgroup2 mount (sock_ops needs cgroup v2; `ip netns exec` hides it)")
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).with_context(|| format!("map {name}"))
}

/// Loads the socket hooks and attaches them; the sockhash, which must live
/// as long as they do.
fn attach_socket_hooks(ebpf: &mut Ebpf) -> Result<SockHash<MapData, u64>> {
    let sockets: SockHash<_, u64> = SockHash::try_from(take_map(ebpf, MAP_SOCKETS)?)?;
    let sockets_fd = sockets.fd().try_clone()?;
    let send: &mut SkMsg = ebpf
        .program_mut("socket_send")
        .context("program socket_send")?
        .try_into()?;
    send.load().context("loading socket_send")?;
    send.attach(&sockets_fd).context("attaching socket_send")?;
    let receive: &mut SkSkb = ebpf
        .program_mut("socket_receive")
        .context("program socket_receive")?
        .try_into()?;
    receive.load().context("loading socket_receive")?;
    receive
        .attach(&sockets_fd)
        .context("attaching socket_receive")?;
    let root = cgroup2_root()?;
    let cgroup = std::fs::File::open(&root).with_context(|| format!("opening {root}"))?;
    let established: &mut SockOps = ebpf
        .program_mut("socket_established")
        .context("program socket_established")?
        .try_into()?;
    established.load().context("loading socket_established")?;
    // A BPF link (kernel 5.7+): it runs beside other programs on the
    // cgroup whatever the mode, and the kernel refuses any flag but 0.
    established
        .attach(&cgroup, CgroupAttachMode::Single)
        .with_context(|| format!("attaching socket_established to {root}"))?;
    Ok(sockets)
}

/// Loads the packet hook and attaches it to `interface`'s ingress (TCX on
/// 6.6+; older kernels need a clsact qdisc first).
fn attach_packet_hook(ebpf: &mut Ebpf, interface: &str) -> Result<()> {
    let program: &mut SchedClassifier = ebpf
        .program_mut("packet_ingress")
        .context("program packet_ingress")?
        .try_into()?;
    program.load().context("loading packet_ingress")?;
    if let Err(first) = program.attach(interface, TcAttachType::Ingress) {
        // Before TCX: the netlink path wants a clsact qdisc.
        let _ = aya::programs::tc::qdisc_add_clsact(interface);
        program
            .attach(interface, TcAttachType::Ingress)
            .with_context(|| format!("attaching packet_ingress to {interface} (first: {first})"))?;
    }
    Ok(())
}

impl Hooks {
    /// Follows the connections of server port `port` (the packet design on
    /// `interface`); `records` false passes their messages and segments
    /// without writing records (what the hook type alone costs).
    pub(crate) fn attach(
        design: Design,
        port: u16,
        interface: &str,
        records: bool,
    ) -> Result<Hooks> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the hook-candidates object")?;
        let mut config: Array<_, u32> = Array::try_from(
            ebpf.map_mut(MAP_CONFIG)
                .with_context(|| format!("map {MAP_CONFIG}"))?,
        )?;
        config.set(CONFIG_PORT, u32::from(port), 0)?;
        config.set(CONFIG_CAPTURE_BYTES, DEFAULT_CAPTURE, 0)?;
        config.set(CONFIG_RECORDS, u32::from(records), 0)?;
        let sockets = match design {
            Design::Socket => Some(attach_socket_hooks(&mut ebpf)?),
            Design::Packet => {
                attach_packet_hook(&mut ebpf, interface)?;
                None
            }
        };
        let ring = RingBuf::try_from(take_map(&mut ebpf, MAP_EVENTS)?)?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, MAP_COUNTERS)?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(AtomicU64::new(0));
        let drain = {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::spawn(move || drain(ring, sockets, &stop, &records))
        };
        Ok(Hooks {
            design,
            ebpf,
            counters,
            stop,
            records,
            drain: Some(drain),
        })
    }

    /// Per program: kernel run time (ns) and runs.
    pub(crate) fn run_stats(&self) -> Vec<(&'static str, u64, u64)> {
        self.design
            .programs()
            .iter()
            .map(|name| {
                let (ns, runs) = self
                    .ebpf
                    .program(name)
                    .and_then(|program| program.info().ok())
                    .map_or((0, 0), |info| {
                        (
                            u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                            info.run_count(),
                        )
                    });
                (*name, ns, runs)
            })
            .collect()
    }

    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    /// Stops the drain after one last pass; the report's JSON fields.
    pub(crate) fn finish(mut self) -> Result<serde_json::Value> {
        self.stop.store(true, Ordering::Release);
        if let Some(drain) = self.drain.take()
            && drain.join().is_err()
        {
            bail!("the hook candidates' drain thread panicked");
        }
        let programs: serde_json::Map<String, serde_json::Value> = self
            .run_stats()
            .into_iter()
            .map(|(name, ns, runs)| {
                (
                    name.to_string(),
                    serde_json::json!({"run_time_ns": ns, "runs": runs}),
                )
            })
            .collect();
        Ok(serde_json::json!({
            "design": format!("{:?}", self.design).to_lowercase(),
            "programs": programs,
            "records": self.records.load(Ordering::Acquire),
            "ringbuf_full": self.counter(COUNTER_RINGBUF_FULL),
            "sockhash_full": self.counter(COUNTER_SOCKHASH_FULL),
        }))
    }
}

/// Reads records until told to stop, then once more; counts the data
/// records that parse. Holds the sockhash so it lives as long as the hooks.
fn drain(
    mut ring: RingBuf<MapData>,
    _sockets: Option<SockHash<MapData, u64>>,
    stop: &AtomicBool,
    records: &AtomicU64,
) {
    loop {
        let stopping = stop.load(Ordering::Acquire);
        while let Some(item) = ring.next() {
            if DataEvent::read_from(&item).is_some() {
                records.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
