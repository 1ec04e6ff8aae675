//! Loads the probe object built by build.rs, attaches every program to its
//! syscall tracepoint, and keeps the maps the agent writes and reads.

use super::{ProbeError, preflight};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use ebpf_probe::{
    CONFIG_CAPTURE_BYTES, COUNTER_CONN_TABLE_FULL, COUNTER_PENDING_TABLE_FULL, COUNTER_READ_FAILED,
    COUNTER_RINGBUF_FULL, MAP_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_PENDING, MAP_PIDS, MAX_CAPTURE,
    PENDING_VALUE_SIZE, PID_SELECTED,
};

/// The BPF object (`ebpf-probe`'s programs for bpfel-unknown-none).
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ebpf-probe"));

/// How the probes are set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeSettings {
    /// Bytes copied from each read/write (at most `MAX_CAPTURE`).
    pub(crate) capture_bytes: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub(crate) ring_buffer_bytes: u32,
}

/// Loaded and attached probes. Dropping it detaches them.
pub(crate) struct Probe {
    /// Owns the programs and their links.
    ebpf: Ebpf,
    pids: HashMap<MapData, u32, u32>,
    pending: HashMap<MapData, u64, [u8; PENDING_VALUE_SIZE]>,
    counters: PerCpuArray<MapData, u64>,
}

/// What the programs could not record, summed over CPUs, since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Events lost because the ring buffer was full.
    pub(crate) ringbuf_full: u64,
    /// Connections not followed: the connection table refused an entry.
    pub(crate) conn_table_full: u64,
    /// Syscalls not followed: the pending table refused an entry.
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

        let mut config: Array<MapData, u32> = take(&mut ebpf, MAP_CONFIG)?;
        let capture = settings.capture_bytes.min(MAX_CAPTURE as u32);
        config
            .set(CONFIG_CAPTURE_BYTES, capture, 0)
            .map_err(|e| ProbeError::load("setting the capture size", e))?;

        let names: Vec<String> = ebpf.programs().map(|(name, _)| name.to_string()).collect();
        for name in &names {
            let program: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::load(format!("program {name}"), MissingMap))?
                .try_into()
                .map_err(|e| ProbeError::load(format!("program {name}"), e))?;
            program
                .load()
                .map_err(|e| ProbeError::load(format!("verifying program {name}"), e))?;
            program
                .attach("syscalls", name)
                .map_err(|e| ProbeError::load(format!("attaching {name} to syscalls:{name}"), e))?;
        }
        tracing::debug!(programs = names.len(), capture, "probes attached");

        let ring = take(&mut ebpf, MAP_EVENTS)?;
        let pids = take(&mut ebpf, MAP_PIDS)?;
        let counters = take(&mut ebpf, MAP_COUNTERS)?;
        let pending = take(&mut ebpf, MAP_PENDING)?;
        Ok((
            Probe {
                ebpf,
                pids,
                pending,
                counters,
            },
            ring,
        ))
    }

    /// Starts tracing a process's sockets.
    pub(crate) fn select(&mut self, tgid: u32) -> Result<(), ProbeError> {
        self.pids
            .insert(tgid, PID_SELECTED, 0)
            .map_err(|e| ProbeError::load(format!("selecting pid {tgid}"), e))
    }

    /// Stops tracing a process (it exited or no longer qualifies).
    pub(crate) fn deselect(&mut self, tgid: u32) {
        // Absent already is fine: the kernel may have reused nothing, we
        // just forget it.
        let _ = self.pids.remove(&tgid);
    }

    /// Removes the in-flight syscall entries of threads that no longer exist
    /// (killed inside a syscall, so its exit never ran); how many.
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

    /// What the kernel measured of the programs, summed over them: run time
    /// in nanoseconds and runs. Both stay 0 unless
    /// `kernel.bpf_stats_enabled` is 1 (off by default: the kernel then
    /// skips the clock reads).
    pub(crate) fn run_stats(&self) -> (u64, u64) {
        self.ebpf
            .programs()
            .filter_map(|(_, program)| program.info().ok())
            .fold((0, 0), |(time, runs), info| {
                (
                    time + u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                    runs + info.run_count(),
                )
            })
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
