//! Loads the probe object built by build.rs, tells the programs which
//! syscalls to handle and where their arguments are, attaches them to the
//! `sys_enter`/`sys_exit` tracepoints (BTF or raw), and keeps the maps the agent
//! writes and reads.

use super::syscalls::{HANDLED, REGISTERS};
use super::{ProbeError, preflight};
use crate::config::SyscallTracepoints;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, RawTracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use ebpf_probe::{
    CONFIG_CAPTURE_BYTES, CONFIG_REGS_ARG0, CONFIG_REGS_ARG1, CONFIG_REGS_NR, CONFIG_WAKEUP_BYTES,
    CONN_VALUE_SIZE, COUNTER_CONN_TABLE_FULL, COUNTER_PENDING_TABLE_FULL, COUNTER_READ_FAILED,
    COUNTER_RINGBUF_FULL, MAP_CONFIG, MAP_CONNS, MAP_COUNTERS, MAP_EVENTS, MAP_PENDING,
    MAP_PID_SLOTS, MAP_PIDS, MAP_SYSCALLS, MAX_CAPTURE, PENDING_VALUE_SIZE, PID_SELECTED,
    PID_SLOT_COUNT,
};

/// The programs, as the tracepoints they attach to and as the agent's
/// metrics name them.
pub(crate) const PROGRAMS: [&str; 2] = ["sys_enter", "sys_exit"];

/// How the programs are attached to the syscall tracepoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hooks {
    /// BTF tracepoints (`tp_btf`, kernels with BTF): the programs load the
    /// syscall's registers directly.
    Btf,
    /// Raw tracepoints: the programs copy each register with a helper
    /// call. For kernels without BTF.
    Raw,
}

impl Hooks {
    /// The object's program for each of [`PROGRAMS`].
    fn programs(self) -> [&'static str; 2] {
        match self {
            Hooks::Btf => ["sys_enter_btf", "sys_exit_btf"],
            Hooks::Raw => PROGRAMS,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Hooks::Btf => "BTF tracepoints",
            Hooks::Raw => "raw tracepoints",
        }
    }
}

/// Attaches the syscall programs as `choice` says; `auto` takes BTF
/// tracepoints when the kernel describes itself (`/sys/kernel/btf/vmlinux`)
/// and accepts them, else raw tracepoints.
fn attach(ebpf: &mut Ebpf, choice: SyscallTracepoints) -> Result<Hooks, ProbeError> {
    if choice == SyscallTracepoints::Raw {
        attach_programs(ebpf, Hooks::Raw, None)?;
        return Ok(Hooks::Raw);
    }
    let attached = Btf::from_sys_fs()
        .map_err(|e| ProbeError::load("reading the kernel's BTF (/sys/kernel/btf/vmlinux)", e))
        .and_then(|btf| attach_programs(ebpf, Hooks::Btf, Some(&btf)));
    match attached {
        Ok(()) => Ok(Hooks::Btf),
        Err(e) if choice == SyscallTracepoints::Btf => Err(e),
        Err(e) => {
            // Whichever of the pair got attached comes off again.
            for name in Hooks::Btf.programs() {
                let program: Option<&mut BtfTracePoint> =
                    ebpf.program_mut(name).and_then(|p| p.try_into().ok());
                if let Some(program) = program {
                    let _ = program.unload();
                }
            }
            tracing::warn!(
                error = %e,
                "no BTF tracepoints on this kernel; the probes use raw tracepoints"
            );
            attach_programs(ebpf, Hooks::Raw, None)?;
            Ok(Hooks::Raw)
        }
    }
}

fn attach_programs(ebpf: &mut Ebpf, hooks: Hooks, btf: Option<&Btf>) -> Result<(), ProbeError> {
    // The exit program first, so no client write's entry is remembered
    // that no exit takes back.
    for (name, hook) in hooks.programs().into_iter().zip(PROGRAMS).rev() {
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| ProbeError::load(format!("program {name}"), MissingMap))?;
        match btf {
            Some(btf) => {
                let program: &mut BtfTracePoint = program
                    .try_into()
                    .map_err(|e| ProbeError::load(format!("program {name}"), e))?;
                program
                    .load(hook, btf)
                    .map_err(|e| ProbeError::load(format!("verifying program {name}"), e))?;
                program.attach().map_err(|e| {
                    ProbeError::load(format!("attaching {name} to the BTF tracepoint {hook}"), e)
                })?;
            }
            None => {
                let program: &mut RawTracePoint = program
                    .try_into()
                    .map_err(|e| ProbeError::load(format!("program {name}"), e))?;
                program
                    .load()
                    .map_err(|e| ProbeError::load(format!("verifying program {name}"), e))?;
                program.attach(hook).map_err(|e| {
                    ProbeError::load(format!("attaching {name} to the raw tracepoint {hook}"), e)
                })?;
            }
        }
    }
    Ok(())
}

/// The BPF object (`ebpf-probe`'s programs for bpfel-unknown-none).
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ebpf-probe"));

/// How the probes are set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeSettings {
    /// Bytes copied from each read/write (at most `MAX_CAPTURE`).
    pub(crate) capture_bytes: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub(crate) ring_buffer_bytes: u32,
    /// Fill of the ring buffer at which the programs wake the agent; 0 on
    /// every event. Below it the agent must poll.
    pub(crate) wakeup_bytes: u32,
    /// Which tracepoints the programs attach to.
    pub(crate) tracepoints: SyscallTracepoints,
}

/// Loaded and attached probes. Dropping it detaches them.
pub(crate) struct Probe {
    /// Owns the programs and their links.
    ebpf: Ebpf,
    /// How they are attached.
    hooks: Hooks,
    pids: HashMap<MapData, u32, u32>,
    /// Selected processes per `tgid % PID_SLOT_COUNT` (see `MAP_PID_SLOTS`).
    pid_slots: Array<MapData, u32>,
    pending: HashMap<MapData, u64, [u8; PENDING_VALUE_SIZE]>,
    /// Followed connections, keyed `[tgid, fd]` (see `MAP_CONNS`).
    conns: HashMap<MapData, [u32; 2], [u8; CONN_VALUE_SIZE]>,
    counters: PerCpuArray<MapData, u64>,
}

/// What the programs could not record, summed over CPUs, since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Events lost because the ring buffer was full.
    pub(crate) ringbuf_full: u64,
    /// Connections not followed: the connection table refused an entry.
    pub(crate) conn_table_full: u64,
    /// Client writes whose entry time was lost: the pending table refused
    /// an entry.
    pub(crate) pending_table_full: u64,
    /// Buffers the programs could not read from the process.
    pub(crate) read_failed: u64,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| ProbeError::load(format!("map {name}"), MissingMap))?;
    T::try_from(map).map_err(|e| ProbeError::load(format!("map {name}"), e))
}

#[derive(Debug, thiserror::Error)]
#[error("not in the probe object")]
struct MissingMap;

#[derive(Debug, thiserror::Error)]
#[error("unsupported architecture")]
struct UnsupportedArchitecture;

impl Probe {
    /// Checks the machine, loads the programs and attaches them. Returns the
    /// probe and the ring buffer its events arrive on.
    pub(crate) fn load(settings: ProbeSettings) -> Result<(Probe, RingBuf<MapData>), ProbeError> {
        preflight()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, settings.ring_buffer_bytes)
            .load(PROBE_OBJECT)
            .map_err(|e| {
                ProbeError::load(
                    "loading the probe object (the kernel needs BPF ring buffers, Linux 5.8+)",
                    e,
                )
            })?;

        let registers = REGISTERS.ok_or_else(|| {
            ProbeError::load(
                "the probes know the syscall registers of x86-64 and arm64 only",
                UnsupportedArchitecture,
            )
        })?;
        let mut config: Array<MapData, u32> = take(&mut ebpf, MAP_CONFIG)?;
        let capture = settings.capture_bytes.min(MAX_CAPTURE as u32);
        for (index, value, what) in [
            (CONFIG_CAPTURE_BYTES, capture, "the capture size"),
            (
                CONFIG_REGS_ARG0,
                registers.arg0,
                "the first argument's register",
            ),
            (
                CONFIG_REGS_ARG1,
                registers.arg1,
                "the second argument's register",
            ),
            (
                CONFIG_REGS_NR,
                registers.nr,
                "the syscall number's register",
            ),
            (
                CONFIG_WAKEUP_BYTES,
                settings.wakeup_bytes,
                "the wake-up threshold",
            ),
        ] {
            config
                .set(index, value, 0)
                .map_err(|e| ProbeError::load(format!("setting {what}"), e))?;
        }
        let mut syscalls: Array<MapData, u32> = take(&mut ebpf, MAP_SYSCALLS)?;
        for handled in HANDLED {
            syscalls
                .set(handled.nr, handled.value(), 0)
                .map_err(|e| ProbeError::load(format!("handling syscall {}", handled.nr), e))?;
        }

        let hooks = attach(&mut ebpf, settings.tracepoints)?;
        tracing::info!(hooks = hooks.describe(), capture, "probes attached");

        let ring = take(&mut ebpf, MAP_EVENTS)?;
        let pids = take(&mut ebpf, MAP_PIDS)?;
        let pid_slots = take(&mut ebpf, MAP_PID_SLOTS)?;
        let counters = take(&mut ebpf, MAP_COUNTERS)?;
        let pending = take(&mut ebpf, MAP_PENDING)?;
        let conns = take(&mut ebpf, MAP_CONNS)?;
        Ok((
            Probe {
                ebpf,
                hooks,
                pids,
                pid_slots,
                pending,
                conns,
                counters,
            },
            ring,
        ))
    }

    /// Starts tracing a process's sockets.
    pub(crate) fn select(&mut self, tgid: u32) -> Result<(), ProbeError> {
        if self.pids.get(&tgid, 0).is_ok() {
            return Ok(());
        }
        // The slot first: a process in PIDS whose slot says 0 would be
        // skipped; a slot counting one not (yet) in PIDS costs a lookup.
        self.add_to_slot(tgid, 1)?;
        self.pids.insert(tgid, PID_SELECTED, 0).map_err(|e| {
            let _ = self.add_to_slot(tgid, -1);
            ProbeError::load(format!("selecting pid {tgid}"), e)
        })
    }

    /// Stops tracing a process (it exited or no longer qualifies), and
    /// forgets its connections: the programs take a connection's entry as
    /// the selection check for its reads and writes.
    pub(crate) fn deselect(&mut self, tgid: u32) {
        // Absent already is fine: the kernel may have reused nothing, we
        // just forget it.
        if self.pids.remove(&tgid).is_ok() {
            let _ = self.add_to_slot(tgid, -1);
        }
        let connections: Vec<[u32; 2]> = self
            .conns
            .keys()
            .filter_map(Result::ok)
            .filter(|[owner, _fd]| *owner == tgid)
            .collect();
        for key in &connections {
            let _ = self.conns.remove(key);
        }
    }

    fn add_to_slot(&mut self, tgid: u32, delta: i32) -> Result<(), ProbeError> {
        let slot = tgid & (PID_SLOT_COUNT - 1);
        let now = self.pid_slots.get(&slot, 0).unwrap_or(0);
        self.pid_slots
            .set(slot, now.saturating_add_signed(delta), 0)
            .map_err(|e| ProbeError::load(format!("counting pid {tgid} in its slot"), e))
    }

    /// Removes the in-flight client-write entries of threads that no longer
    /// exist (killed inside a write, so its exit never ran); how many.
    pub(crate) fn sweep_pending(&mut self) -> usize {
        let stale: Vec<u64> = self
            .pending
            .keys()
            .filter_map(Result::ok)
            .filter(|id| {
                let (tgid, tid) = (id >> 32, id & 0xffff_ffff);
                !std::path::Path::new(&format!("/proc/{tgid}/task/{tid}")).exists()
            })
            .collect();
        for id in &stale {
            let _ = self.pending.remove(id);
        }
        stale.len()
    }

    /// What the kernel measured of each program, in the order of
    /// [`PROGRAMS`]: run time in nanoseconds and runs. Both stay 0 unless
    /// `kernel.bpf_stats_enabled` is 1 (off by default: the kernel then
    /// skips the clock reads).
    pub(crate) fn run_stats(&self) -> Vec<(u64, u64)> {
        self.hooks
            .programs()
            .iter()
            .map(|name| {
                self.ebpf
                    .program(name)
                    .and_then(|program| program.info().ok())
                    .map_or((0, 0), |info| {
                        (
                            u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                            info.run_count(),
                        )
                    })
            })
            .collect()
    }

    /// The programs' loss counters, summed over CPUs.
    pub(crate) fn counters(&self) -> Counters {
        let sum = |index: u32| -> u64 {
            self.counters
                .get(&index, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        Counters {
            ringbuf_full: sum(COUNTER_RINGBUF_FULL),
            conn_table_full: sum(COUNTER_CONN_TABLE_FULL),
            pending_table_full: sum(COUNTER_PENDING_TABLE_FULL),
            read_failed: sum(COUNTER_READ_FAILED),
        }
    }
}
