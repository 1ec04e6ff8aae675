//! What the agent checks before loading anything, so a missing privilege or
//! kernel feature is one clear message instead of an aya error.

use super::ProbeError;
use std::path::Path;

/// Capability numbers from linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// One requirement: any of `caps` satisfies it (CAP_SYS_ADMIN covers BPF and
/// perf on kernels before 5.8 split them out).
struct Need {
    name: &'static str,
    any_of: &'static [u32],
}

const NEEDS: &[Need] = &[
    // Loading programs and creating maps.
    Need {
        name: "CAP_BPF",
        any_of: &[CAP_BPF, CAP_SYS_ADMIN],
    },
    // Loading tracing programs and attaching raw tracepoints.
    Need {
        name: "CAP_PERFMON",
        any_of: &[CAP_PERFMON, CAP_SYS_ADMIN],
    },
    // Reading other processes' /proc/<pid>/environ and fd links.
    Need {
        name: "CAP_SYS_PTRACE",
        any_of: &[CAP_SYS_PTRACE],
    },
    Need {
        name: "CAP_DAC_READ_SEARCH",
        any_of: &[CAP_DAC_READ_SEARCH],
    },
];

/// The effective capability set from /proc/self/status.
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Names of the requirements `effective` does not meet.
fn missing(effective: u64) -> Vec<&'static str> {
    NEEDS
        .iter()
        .filter(|need| !need.any_of.iter().any(|cap| effective & (1 << cap) != 0))
        .map(|need| need.name)
        .collect()
}

/// Checks privileges and BTF. (Raw tracepoints attach without tracefs.)
pub(crate) fn preflight() -> Result<(), ProbeError> {
    let missing = missing(effective_capabilities());
    if !missing.is_empty() {
        return Err(ProbeError::Capabilities {
            missing: missing.join(" "),
        });
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(ProbeError::NoBtf);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_capability() {
        assert_eq!(
            missing(0),
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH"
            ]
        );
        let root = u64::MAX >> (63 - CAP_BPF);
        assert!(missing(root).is_empty());
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON.
        let old_kernel = (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE) | (1 << CAP_DAC_READ_SEARCH);
        assert!(missing(old_kernel).is_empty());
        let no_ptrace = root & !(1 << CAP_SYS_PTRACE);
        assert_eq!(missing(no_ptrace), ["CAP_SYS_PTRACE"]);
    }
}
