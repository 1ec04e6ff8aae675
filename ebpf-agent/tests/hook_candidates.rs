//! The hook candidates the bench measures (`ebpf-http-bench load --hooks
//! socket|packet`, issue 15): with either loaded, every request the server
//! receives and every response it sends on the followed port is recorded,
//! nothing is lost, the server still answers every request, and without
//! records the hooks pass everything through. Runs on the host's loopback
//! (`sock_ops` attaches to the root cgroup v2, which `ip netns exec` hides)
//! on a port of its own; needs root (BPF), skipped otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use testkit::netns::skip_without_namespaces;

const BENCH: &str = env!("CARGO_BIN_EXE_ebpf-http-bench");
const CONNECTIONS: u64 = 4;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ebpf-http-bench serve`, once it says it listens.
fn serve(port: u16) -> Server {
    let mut child = Command::new(BENCH)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the server's first line");
    assert!(line.starts_with("listening"), "server said {line:?}");
    Server(child)
}

/// One `load` run with the `design` hooks; its JSON report.
fn load(design: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(BENCH)
        .args([
            "load",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--rate",
            "400",
            "--duration",
            "1s",
            "--connections",
            &CONNECTIONS.to_string(),
            "--hooks",
            design,
        ])
        .args(extra)
        .output()
        .expect("run the load");
    assert!(
        output.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON report")
}

/// Checks the records of a run with the `design` hooks and a run without,
/// against a server on `port` (each test its own).
fn records_each_request_and_response(design: &str, port: u16) {
    let _server = serve(port);

    let report = load(design, port, &[]);
    let ok = report["ok"].as_u64().expect("ok");
    assert!(ok > 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let hooks = &report["hooks"];
    assert_eq!(hooks["design"], design, "{report}");
    assert_eq!(hooks["ringbuf_full"], 0, "{report}");
    assert_eq!(hooks["sockhash_full"], 0, "{report}");
    // A request arrives in one segment and its answer leaves in one
    // message; a connection's end may add a segment without data.
    let records = hooks["records"].as_u64().expect("records");
    assert!(
        (2 * ok..=2 * ok + CONNECTIONS).contains(&records),
        "{records} records for {ok} requests: {report}"
    );

    let report = load(design, port, &["--no-records"]);
    assert!(report["ok"].as_u64().expect("ok") > 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["hooks"]["records"], 0, "{report}");
}

/// Whether cgroup v2 is mounted (`sock_ops` attaches to its root).
fn cgroup2_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
    })
}

#[test]
fn socket_hooks_record_each_request_and_response_of_the_followed_port() {
    if skip_without_namespaces() {
        return;
    }
    if !cgroup2_mounted() {
        eprintln!("SKIPPED: no cgroup2 mount, which sock_ops needs");
        return;
    }
    records_each_request_and_response("socket", 18151);
}

#[test]
fn the_packet_hook_records_each_request_and_response_of_the_followed_port() {
    if skip_without_namespaces() {
        return;
    }
    records_each_request_and_response("packet", 18152);
}
