//! What the agent knows about an instrumented process, read from /proc once
//! when it is selected.

use std::collections::HashMap;
use std::net::SocketAddr;

/// An instrumented process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessInfo {
    /// Process id.
    pub(crate) pid: u32,
    /// Start time in clock ticks since boot (/proc/<pid>/stat field 22):
    /// with the pid, identifies the process across pid reuse.
    pub(crate) start_ticks: u64,
    /// Path of the executable.
    pub(crate) exe_path: String,
    /// Its file name.
    pub(crate) exe_name: String,
    /// `OTEL_SERVICE_NAME` from the process's environment.
    pub(crate) service_name_env: Option<String>,
    /// Container id from the process's cgroup path.
    pub(crate) container_id: Option<String>,
    /// Listening sockets on selected ports, by fd: the local address of the
    /// connections accepted on them.
    pub(crate) listeners: HashMap<u32, SocketAddr>,
}

/// Start time field of /proc/<pid>/stat (after the parenthesised command,
/// which may itself contain spaces and parentheses).
pub(crate) fn start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; start time is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The value of `name` in a NUL-separated environ block.
pub(crate) fn environ_value(environ: &[u8], name: &str) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_string())
        })
}

/// The container id in /proc/<pid>/cgroup: the last 64-hex-digit run of the
/// path (docker `/docker/<id>`, containerd `cri-containerd-<id>.scope`,
/// cri-o `crio-<id>.scope`).
pub(crate) fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().rev().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let bytes = path.as_bytes();
        let mut end = bytes.len();
        // Scan runs of hex digits from the end.
        while end > 0 {
            let mut start = end;
            while start > 0 && bytes[start - 1].is_ascii_hexdigit() {
                start -= 1;
            }
            if end - start == 64 {
                return Some(path[start..end].to_string());
            }
            end = if start == end { end - 1 } else { start };
        }
        None
    })
}

/// Reads what the agent keeps about `pid`; `None` when it exited meanwhile.
pub(crate) fn read(pid: u32, listeners: HashMap<u32, SocketAddr>) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let exe_path = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .unwrap_or_default();
    let exe_name = exe_path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|c| c.trim().to_string())
        })
        .unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    Some(ProcessInfo {
        pid,
        start_ticks: start_ticks(&stat)?,
        exe_path,
        exe_name,
        service_name_env: environ_value(&environ, "OTEL_SERVICE_NAME"),
        container_id: container_id(&cgroup),
        listeners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_a_command_with_spaces() {
        let stat = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn environ_lookup() {
        let env = b"PATH=/bin\0OTEL_SERVICE_NAME=checkout\0EMPTY=\0";
        assert_eq!(
            environ_value(env, "OTEL_SERVICE_NAME").as_deref(),
            Some("checkout")
        );
        assert_eq!(environ_value(env, "EMPTY"), None);
        assert_eq!(environ_value(env, "HOME"), None);
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "3f4b1c2d".repeat(8);
        let containerd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{id}.scope\n"
        );
        assert_eq!(container_id(&containerd).as_deref(), Some(id.as_str()));
        let docker = format!("12:cpu,cpuacct:/docker/{id}\n0::/docker/{id}\n");
        assert_eq!(container_id(&docker).as_deref(), Some(id.as_str()));
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }
}
