//! Finds the processes to instrument: those listening on a selected port,
//! filtered by executable globs. One pass over /proc; run every
//! `scan_interval` so processes that start later are picked up and those
//! that exit are forgotten.

use super::info::{self, ProcessInfo};
use super::listeners;
use super::ports::PortSet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which processes are instrumented.
#[derive(Clone, Debug)]
pub(crate) struct Selector {
    /// Listening on one of these ports.
    pub(crate) ports: PortSet,
    /// When not empty, the executable path must match one of these globs.
    pub(crate) executable_paths: Vec<String>,
    /// Executables never instrumented (globs on the path).
    pub(crate) exclude_executables: Vec<String>,
    /// The agent itself, never instrumented.
    pub(crate) self_pid: u32,
}

impl Selector {
    fn wants(&self, exe_path: &str) -> bool {
        if self
            .exclude_executables
            .iter()
            .any(|g| super::glob::matches(g, exe_path))
        {
            return false;
        }
        self.executable_paths.is_empty()
            || self
                .executable_paths
                .iter()
                .any(|g| super::glob::matches(g, exe_path))
    }
}

/// The selected processes by pid.
pub(crate) type Selection = HashMap<u32, Arc<ProcessInfo>>;

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn net_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The fds of `pid` that are one of `sockets` (by inode), with their address.
fn listening_fds(pid: u32, sockets: &HashMap<u64, SocketAddr>) -> HashMap<u32, SocketAddr> {
    let mut found = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if let (Some(addr), Some(fd)) = (
            sockets.get(&inode),
            entry.file_name().to_str().and_then(|n| n.parse().ok()),
        ) {
            found.insert(fd, *addr);
        }
    }
    found
}

/// One pass over /proc. Processes already in `previous` (same pid and start
/// time) keep their info, refreshed with their current listeners.
pub(crate) fn scan(selector: &Selector, previous: &Selection) -> Selection {
    let mut selection = Selection::new();
    if selector.ports.is_empty() {
        return selection;
    }
    // Listening sockets on selected ports, per network namespace.
    let mut namespaces: HashMap<String, HashMap<u64, SocketAddr>> = HashMap::new();
    for pid in pids() {
        if pid == selector.self_pid {
            continue;
        }
        let Some(netns) = net_namespace(pid) else {
            continue;
        };
        let sockets = namespaces.entry(netns).or_insert_with(|| {
            let mut all = listeners::of_namespace_of(pid);
            all.retain(|_, addr| selector.ports.contains(addr.port()));
            all
        });
        if sockets.is_empty() {
            continue;
        }
        let fds = listening_fds(pid, sockets);
        if fds.is_empty() {
            continue;
        }
        // A process seen before (same pid, same start time) keeps what was
        // read about it; only its listeners may have changed.
        let known = previous.get(&pid).filter(|old| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| info::start_ticks(&stat))
                == Some(old.start_ticks)
        });
        let process = match known {
            Some(old) if old.listeners == fds => Arc::clone(old),
            Some(old) => Arc::new(ProcessInfo {
                listeners: fds,
                ..(**old).clone()
            }),
            None => {
                let Some(fresh) = info::read(pid, fds) else {
                    continue;
                };
                if !selector.wants(&fresh.exe_path) {
                    continue;
                }
                Arc::new(fresh)
            }
        };
        selection.insert(pid, process);
    }
    selection
}
