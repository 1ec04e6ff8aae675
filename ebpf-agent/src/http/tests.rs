//! The assembler on event sequences as the probes record them.

use super::head::Response;
use super::*;
use crate::events::{ConnRef, Direction, Event};
use ebpf_probe::Role;

const CONN: ConnRef = ConnRef {
    tgid: 100,
    fd: 7,
    conn_id: 1,
};

/// Builds event sequences for one connection with a running clock: every
/// syscall enters at the current time and returns 1 ns later.
struct Script {
    assembler: Assembler,
    role: Role,
    now: u64,
    out: Vec<Exchange>,
}

impl Script {
    fn new(role: Role) -> Self {
        Self::with(
            role,
            AssemblerConfig {
                max_pending_requests: 64,
                max_connections: 1024,
                idle_timeout_ns: 1_000_000,
            },
        )
    }

    fn with(role: Role, config: AssemblerConfig) -> Self {
        let mut script = Script {
            assembler: Assembler::new(config),
            role,
            now: 1000,
            out: Vec::new(),
        };
        script.connect(CONN);
        script
    }

    fn connect(&mut self, conn: ConnRef) {
        let event = Event::Connected {
            conn,
            role: self.role,
            peer: Some("10.0.0.9:41000".parse().expect("addr")),
            listen_fd: (self.role == Role::Server).then_some(3),
            at_ns: self.now,
        };
        self.assembler.on_event(&event, &mut self.out);
    }

    fn data(&mut self, direction: Direction, bytes: &[u8], total: usize) {
        self.now += 10;
        let event = Event::Data {
            conn: CONN,
            role: self.role,
            direction,
            enter_ns: self.now,
            exit_ns: self.now + 1,
            total: total as u64,
            captured: bytes,
        };
        self.assembler.on_event(&event, &mut self.out);
    }

    fn read(&mut self, bytes: &[u8]) {
        self.data(Direction::Read, bytes, bytes.len());
    }

    fn write(&mut self, bytes: &[u8]) {
        self.data(Direction::Write, bytes, bytes.len());
    }

    fn close(&mut self) {
        self.now += 10;
        let event = Event::Closed {
            conn: CONN,
            at_ns: self.now,
        };
        self.assembler.on_event(&event, &mut self.out);
    }

    /// (target, status, start, end) of what came out so far.
    fn taken(&mut self) -> Vec<(String, Option<u16>, u64, u64)> {
        self.out
            .drain(..)
            .map(|e| {
                (
                    e.request.target.clone(),
                    e.response.map(|r| r.status),
                    e.start_ns,
                    e.end_ns,
                )
            })
            .collect()
    }
}

fn t(target: &str, status: Option<u16>, start: u64, end: u64) -> (String, Option<u16>, u64, u64) {
    (target.to_string(), status, start, end)
}

#[test]
fn keep_alive_server_exchanges_with_times_from_the_syscalls() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"); // 1010..1011
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); // 1020..1021
    s.read(b"GET /b HTTP/1.1\r\n\r\n"); // 1030..1031
    s.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n"); // 1040..1041
    s.write(b"nope!"); // 1050..1051
    assert_eq!(
        s.taken(),
        [
            t("/a", Some(200), 1011, 1021),
            t("/b", Some(404), 1031, 1051)
        ]
    );
    let mut again = Script::new(Role::Server);
    again.read(b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n");
    again.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let exchange = &again.out[0];
    assert_eq!(exchange.conn, CONN);
    assert_eq!(exchange.role, Role::Server);
    assert_eq!(exchange.peer, Some("10.0.0.9:41000".parse().expect("addr")));
    assert_eq!(exchange.listen_fd, Some(3));
    assert_eq!(exchange.request.method, "GET");
    assert_eq!(exchange.request.version, 1);
    assert_eq!(exchange.request.header("host"), Some("svc"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut s = Script::new(Role::Server);
    let mut requests = Vec::new();
    for i in 0..10 {
        requests.extend_from_slice(format!("GET /p/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    s.read(&requests);
    let mut responses = Vec::new();
    for i in 0..10 {
        responses.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").as_bytes(),
        );
    }
    // Written in two syscalls, cutting the sixth response in its head.
    let cut = responses.len() / 2 + 7;
    s.write(&responses[..cut]);
    s.write(&responses[cut..]);
    let got = s.taken();
    assert_eq!(got.len(), 10);
    for (i, (target, status, start, _)) in got.iter().enumerate() {
        assert_eq!(target, &format!("/p/{i}"));
        assert_eq!(*status, Some(200));
        assert_eq!(*start, 1011);
    }
    assert!(got[..5].iter().all(|e| e.3 == 1021));
    assert!(got[5..].iter().all(|e| e.3 == 1031));
}

#[test]
fn a_request_split_across_three_reads_starts_at_the_first() {
    let mut s = Script::new(Role::Server);
    s.read(b"POST /split HTTP/1.1\r\n");
    s.read(b"Host: h\r\nContent-Length: 4\r\n");
    s.read(b"\r\nbody");
    s.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s.taken(), [t("/split", Some(201), 1011, 1041)]);
}

#[test]
fn expect_100_continue_skips_the_interim_response() {
    let mut s = Script::new(Role::Server);
    s.read(b"PUT /up HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    s.write(b"HTTP/1.1 100 Continue\r\n\r\n");
    s.read(b"abc");
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s.taken(), [t("/up", Some(200), 1011, 1041)]);
}

#[test]
fn chunked_responses_end_with_their_last_chunk() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /stream HTTP/1.1\r\n\r\n");
    s.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    s.write(b"3\r\nabc\r\n");
    s.write(b"3\r\ndef\r\n");
    assert!(s.taken().is_empty());
    s.write(b"0\r\n\r\n");
    assert_eq!(s.taken(), [t("/stream", Some(200), 1011, 1051)]);
}

#[test]
fn a_large_upload_is_skipped_by_its_length() {
    let mut s = Script::new(Role::Server);
    let head = b"POST /upload HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
    let mut first = head.to_vec();
    first.extend_from_slice(&[b'x'; 100]);
    // The probe captured 1024 bytes of each 64 KiB read.
    let total_first = 65536;
    s.data(Direction::Read, &first, total_first);
    let mut left = 1_048_576 - (total_first - head.len());
    while left > 0 {
        let n = left.min(65536);
        s.data(Direction::Read, &[b'x'; 1024][..n.min(1024)], n);
        left -= n;
    }
    // A request after the body is seen as a new request, not as body.
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    s.read(b"GET /next HTTP/1.1\r\n\r\n");
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let got = s.taken();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "/upload");
    assert_eq!(got[1].0, "/next");
    assert_eq!(s.assembler.stats(), AssemblerStats::default());
}

#[test]
fn no_response_before_close_is_reported_at_the_close() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /hang HTTP/1.1\r\n\r\n");
    s.close();
    assert_eq!(s.taken(), [t("/hang", None, 1011, 1020)]);
    assert_eq!(s.assembler.connections(), 0);
}

#[test]
fn http_1_0_responses_without_length_end_with_their_last_write() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /old HTTP/1.0\r\n\r\n");
    s.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    s.write(b"body");
    assert!(s.taken().is_empty());
    s.close();
    assert_eq!(s.taken(), [t("/old", Some(200), 1011, 1031)]);
}

#[test]
fn an_unanswered_request_idles_out() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /slow HTTP/1.1\r\n\r\n");
    s.assembler.expire(1011 + 999_999, &mut s.out);
    assert!(s.taken().is_empty());
    s.assembler.expire(1011 + 1_000_000, &mut s.out);
    // It waited the whole timeout.
    assert_eq!(s.taken(), [t("/slow", None, 1011, 1011 + 1_000_000)]);
    // The late response answers nothing; the connection still works.
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    s.read(b"GET /again HTTP/1.1\r\n\r\n");
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s.taken(), [t("/again", Some(200), 1031, 1041)]);
}

#[test]
fn client_spans_start_when_the_request_write_enters() {
    let mut s = Script::new(Role::Client);
    s.write(b"GET /api HTTP/1.1\r\nHost: backend:8080\r\n\r\n"); // 1010..1011
    s.read(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"); // 1020..1021
    let exchange = s.out.pop().expect("one exchange");
    assert_eq!(exchange.role, Role::Client);
    assert_eq!((exchange.start_ns, exchange.end_ns), (1010, 1021));
    assert_eq!(exchange.request.header("host"), Some("backend:8080"));
    assert_eq!(exchange.response, Some(Response { status: 503 }));
}

#[test]
fn non_http_traffic_is_ignored_and_counted_once() {
    let mut s = Script::new(Role::Server);
    s.read(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    s.write(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76");
    s.read(b"GET / HTTP/1.1\r\n\r\n");
    s.close();
    assert!(s.taken().is_empty());
    assert_eq!(s.assembler.stats().non_http_connections, 1);
}

#[test]
fn a_websocket_upgrade_ends_the_exchange_and_ignores_the_frames() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    s.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    s.read(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    s.write(b"\x81\x05hello");
    s.close();
    assert_eq!(s.taken(), [t("/ws", Some(101), 1011, 1021)]);
    assert_eq!(s.assembler.stats(), AssemblerStats::default());
}

#[test]
fn pending_requests_are_bounded_and_the_overflow_counted() {
    let mut s = Script::with(
        Role::Server,
        AssemblerConfig {
            max_pending_requests: 2,
            max_connections: 16,
            idle_timeout_ns: 1_000_000,
        },
    );
    s.read(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
    assert_eq!(s.assembler.stats().pending_overflow, 1);
    s.close();
    let targets: Vec<String> = s.taken().into_iter().map(|e| e.0).collect();
    assert_eq!(targets, ["/1", "/2"]);
}

#[test]
fn the_least_recently_active_connections_are_evicted_when_full() {
    let mut s = Script::with(
        Role::Server,
        AssemblerConfig {
            max_pending_requests: 8,
            max_connections: 2,
            idle_timeout_ns: 1_000_000,
        },
    );
    s.read(b"GET /oldest HTTP/1.1\r\n\r\n");
    s.now += 100;
    s.connect(ConnRef { fd: 8, ..CONN });
    s.now += 100;
    s.connect(ConnRef { fd: 9, ..CONN });
    assert_eq!(s.assembler.connections(), 2);
    assert_eq!(s.assembler.stats().connections_evicted, 1);
    // The evicted connection's request is reported, not lost.
    assert_eq!(s.taken(), [t("/oldest", None, 1011, 1011)]);
}

#[test]
fn a_process_exit_finishes_its_connections() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /bye HTTP/1.1\r\n\r\n");
    s.assembler
        .forget_process(CONN.tgid, 5000, None, &mut s.out);
    assert_eq!(s.taken(), [t("/bye", None, 1011, 5000)]);
    assert_eq!(s.assembler.connections(), 0);
}

#[test]
fn a_reused_pid_keeps_the_new_process_connections() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /old HTTP/1.1\r\n\r\n");
    // The same pid, a process started at 3000 that accepted at 4000.
    let newer = ConnRef {
        conn_id: 4000,
        ..CONN
    };
    s.now = 4000;
    s.connect(newer);
    s.assembler
        .forget_process(CONN.tgid, 5000, Some(3000), &mut s.out);
    assert_eq!(s.taken(), [t("/old", None, 1011, 5000)]);
    assert_eq!(
        s.assembler.connections(),
        1,
        "the new process's connection stays"
    );
}

#[test]
fn fd_reuse_with_a_new_connection_finishes_the_old_one() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /first HTTP/1.1\r\n\r\n");
    s.now += 10;
    // The same fd and id again (a lost close): the old state must not leak
    // into the new connection.
    s.connect(CONN);
    s.read(b"GET /second HTTP/1.1\r\n\r\n");
    s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let got = s.taken();
    assert_eq!(got[0], t("/first", None, 1011, 1020));
    assert_eq!(got[1].0, "/second");
    assert_eq!(got[1].1, Some(200));
}

#[test]
fn an_unreadable_response_head_keeps_later_pairs_in_step() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /a HTTP/1.1\r\n\r\n");
    // The write's bytes could not be captured (a failed copy): 38 bytes moved.
    s.data(Direction::Write, b"", 38);
    s.read(b"GET /b HTTP/1.1\r\n\r\n");
    s.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let out: Vec<(String, Option<u16>, bool)> = s
        .out
        .drain(..)
        .map(|e| {
            (
                e.request.target,
                e.response.map(|r| r.status),
                e.response_unreadable,
            )
        })
        .collect();
    assert_eq!(
        out,
        [
            ("/a".to_string(), None, true),
            ("/b".to_string(), Some(404), false)
        ]
    );
    assert_eq!(s.assembler.stats().unparsable_heads, 1);
}

#[test]
fn an_unreadable_request_head_holds_its_place_in_the_pipeline() {
    let mut s = Script::new(Role::Server);
    s.read(b"GET /a HTTP/1.1\r\n\r\n");
    s.read(b"\x00garbage where a request should be");
    s.read(b"GET /c HTTP/1.1\r\n\r\n");
    for _ in 0..3 {
        s.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    let targets: Vec<String> = s.taken().into_iter().map(|e| e.0).collect();
    assert_eq!(targets, ["/a", "/c"], "the third response answers /c");
}

#[test]
fn a_connection_joined_mid_body_waits_for_the_next_request() {
    let mut assembler = Assembler::new(AssemblerConfig {
        max_pending_requests: 8,
        max_connections: 8,
        idle_timeout_ns: 1_000_000,
    });
    let mut out = Vec::new();
    let data = |direction, bytes: &'static [u8], at| Event::Data {
        conn: CONN,
        role: Role::Server,
        direction,
        enter_ns: at,
        exit_ns: at + 1,
        total: bytes.len() as u64,
        captured: bytes,
    };
    // No accept seen: the first bytes are the end of some upload's body.
    assembler.on_event(
        &data(Direction::Read, b"ody of an earlier upload", 10),
        &mut out,
    );
    assembler.on_event(
        &data(Direction::Read, b"GET /next HTTP/1.1\r\n\r\n", 20),
        &mut out,
    );
    assembler.on_event(
        &data(
            Direction::Write,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            30,
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].request.target, "/next");
    assert_eq!(
        assembler.stats(),
        AssemblerStats::default(),
        "not counted as non-HTTP"
    );
}

#[test]
fn requests_answered_by_something_else_are_reported() {
    let mut s = Script::new(Role::Client);
    s.write(b"GET /proxy HTTP/1.1\r\nHost: x\r\n\r\n");
    s.read(b"\x15\x03\x03\x00\x02\x02\x28");
    let out = std::mem::take(&mut s.out);
    assert_eq!(out.len(), 1);
    assert!(out[0].response_unreadable);
    assert_eq!(s.assembler.stats().non_http_connections, 1);
}
