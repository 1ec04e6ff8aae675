//! The kernel side, seen from the agent: checks that the machine can run
//! the probes, loads and attaches them, and hands out their maps.

mod loader;
mod preflight;
mod syscalls;

pub(crate) use loader::{Counters, PROGRAMS, Probe, ProbeSettings};
pub(crate) use preflight::preflight;

/// Why the probes cannot run here. Each says what to change.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// Missing capabilities, named.
    #[error(
        "missing capabilities: {missing}; run as root or grant them (the DaemonSet's securityContext.capabilities.add)"
    )]
    Capabilities {
        /// Space-separated `CAP_*` names.
        missing: String,
    },
    /// No BTF: the kernel is too old or built without it.
    #[error(
        "the kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); the agent needs Linux 5.8+ built with CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf,
    /// Loading or attaching failed.
    #[error("{what}: {source}")]
    Load {
        /// What was being done.
        what: String,
        /// The error from aya.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProbeError {
    pub(crate) fn load(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProbeError::Load {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
