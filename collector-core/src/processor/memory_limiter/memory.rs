//! How much memory the process may use: the cgroup limit, else the host's total.

use std::path::Path;

/// cgroup v1 reports "no limit" as a huge number (about 2^63 rounded to pages).
const UNLIMITED: u64 = 1 << 60;

/// Memory available to the process in bytes: the cgroup limit (v2
/// `memory.max`, v1 `memory.limit_in_bytes`) capped at the host's total,
/// or the host's total (`/proc/meminfo`) when there is no cgroup limit.
pub fn total_memory() -> Option<u64> {
    total_memory_under(Path::new("/"))
}

/// [`total_memory`] with `/sys` and `/proc` looked up under `root`.
pub(super) fn total_memory_under(root: &Path) -> Option<u64> {
    let host = host_total(root);
    match (cgroup_limit(root), host) {
        (Some(limit), Some(host)) => Some(limit.min(host)),
        (Some(limit), None) => Some(limit),
        (None, host) => host,
    }
}

fn cgroup_limit(root: &Path) -> Option<u64> {
    for file in [
        "sys/fs/cgroup/memory.max",
        "sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let text = text.trim();
        if text == "max" {
            return None;
        }
        return text.parse::<u64>().ok().filter(|&v| v > 0 && v < UNLIMITED);
    }
    None
}

fn host_total(root: &Path) -> Option<u64> {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | Some("KB") | Some("kb") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}
