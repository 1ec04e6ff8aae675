//! The eBPF agent's HTTP/1 assembler (`ebpf-agent/src/http/`) and its probe
//! record decoder (`ebpf-agent/src/events.rs`), fed what a traced process
//! could make the probes report. The first byte picks one of two modes:
//!
//! - even: an arbitrary script of probe events (connects, reads and writes
//!   of any bytes, with captures shorter than what moved, closes, idle
//!   expiry, process exits, raw ring-buffer records) on a few connections,
//!   with a clock that never goes back. The assembler must not panic, and
//!   every exchange it reports must end no earlier than it started.
//! - odd: well-formed HTTP/1 exchanges (methods, targets, `Content-Length`
//!   and chunked bodies, `100 Continue`, `HEAD`, 204/304) generated from the
//!   input, then delivered three ways: one syscall per message, split at
//!   points the input picks (with uncaptured bytes inside bodies), and
//!   pipelined (all requests in one syscall, then all responses). Each way,
//!   as a server and as a client, must report exactly the exchanges that
//!   were generated: where syscall boundaries fall must not change what the
//!   agent sees.
//!
//! The agent is a binary crate whose build script compiles the BPF programs;
//! building it under the sanitizer would compile them too, so the two
//! modules are included from their sources here (`#[path]`): the code
//! fuzzed is the agent's own, file for file.
#![no_main]
#![allow(dead_code)]

#[path = "../../ebpf-agent/src/events.rs"]
mod events;
#[path = "../../ebpf-agent/src/http/mod.rs"]
#[allow(unused_imports)]
mod http;

use ebpf_probe::Role;
use events::{ConnRef, Direction, Event};
use http::{Assembler, AssemblerConfig, Exchange};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Unstructured::new(rest);
    if mode & 1 == 0 {
        let _ = script(&mut input);
    } else if let Ok(exchanges) = generate(&mut input) {
        for role in [Role::Server, Role::Client] {
            deliver_and_compare(&exchanges, role, &mut input);
        }
    }
});

const CONFIG: AssemblerConfig = AssemblerConfig {
    max_pending_requests: 8,
    max_connections: 3,
    idle_timeout_ns: 5_000,
};

fn conn(index: u8) -> ConnRef {
    ConnRef {
        tgid: 100 + u32::from(index % 2),
        fd: 5 + u32::from(index % 3),
        conn_id: u64::from(index % 5),
    }
}

fn check(out: &[Exchange]) {
    for exchange in out {
        assert!(
            exchange.start_ns <= exchange.end_ns,
            "exchange ends before it starts: {exchange:?}"
        );
    }
}

/// Mode one: any event sequence.
fn script(input: &mut Unstructured<'_>) -> Result<()> {
    let mut assembler = Assembler::new(CONFIG);
    let mut out = Vec::new();
    let mut now: u64 = 1_000;
    while !input.is_empty() {
        now += u64::from(input.int_in_range(0u16..=3_000)?);
        let role = if input.arbitrary()? {
            Role::Server
        } else {
            Role::Client
        };
        match input.int_in_range(0u8..=6)? {
            0 => assembler.on_event(
                &Event::Connected {
                    conn: conn(input.arbitrary()?),
                    role,
                    peer: None,
                    listen_fd: input.arbitrary()?,
                    at_ns: now,
                },
                &mut out,
            ),
            op @ (1 | 2) => {
                let len = input.int_in_range(0usize..=600)?;
                let captured = input.bytes(len.min(input.len()))?;
                let uncaptured = u64::from(input.arbitrary::<u16>()? % 4 * 4096);
                let took = u64::from(input.int_in_range(0u8..=50)?);
                assembler.on_event(
                    &Event::Data {
                        conn: conn(input.arbitrary()?),
                        role,
                        direction: if op == 1 {
                            Direction::Read
                        } else {
                            Direction::Write
                        },
                        enter_ns: now,
                        exit_ns: now + took,
                        total: captured.len() as u64 + uncaptured,
                        captured,
                    },
                    &mut out,
                );
                now += took;
            }
            3 => assembler.on_event(
                &Event::Closed {
                    conn: conn(input.arbitrary()?),
                    at_ns: now,
                },
                &mut out,
            ),
            4 => assembler.expire(now, &mut out),
            5 => {
                let before = input.arbitrary::<Option<u8>>()?.map(u64::from);
                assembler.forget_process(100 + input.int_in_range(0..=1)?, now, before, &mut out);
            }
            _ => {
                // A raw record as the ring buffer would hand it over; its
                // times are the record's own, so only the decoder is
                // checked for it (it must not panic), and a decoded event is
                // fed only when its times fit the clock.
                let len = input.int_in_range(0usize..=700)?;
                let record = input.bytes(len.min(input.len()))?;
                if let Ok(event) = events::decode(record)
                    && fits_clock(&event, now)
                {
                    assembler.on_event(&event, &mut out);
                }
            }
        }
        check(&out);
        out.clear();
    }
    assembler.expire(u64::MAX, &mut out);
    check(&out);
    Ok(())
}

fn fits_clock(event: &Event<'_>, now: u64) -> bool {
    match *event {
        Event::Connected { at_ns, .. } | Event::Closed { at_ns, .. } => at_ns == now,
        Event::Data {
            enter_ns, exit_ns, ..
        } => enter_ns == now && exit_ns == now,
    }
}

/// One generated request and its response.
#[derive(Debug)]
struct Generated {
    method: &'static str,
    target: String,
    status: u16,
    /// The request's bytes, and which of them are a `Content-Length` body.
    request: Message,
    response: Message,
}

#[derive(Debug, Default)]
struct Message {
    bytes: Vec<u8>,
    /// Byte ranges holding a `Content-Length` body: the only bytes a split
    /// may leave uncaptured without the agent legitimately losing track
    /// (a head or a chunk-size line it did not see cannot be followed).
    opaque: Vec<std::ops::Range<usize>>,
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
const STATUSES: [u16; 9] = [200, 201, 204, 301, 304, 404, 418, 500, 503];

/// Mode two: up to eight exchanges of well-formed HTTP/1.1.
fn generate(input: &mut Unstructured<'_>) -> Result<Vec<Generated>> {
    let count = input.int_in_range(1usize..=8)?;
    let mut exchanges = Vec::with_capacity(count);
    for _ in 0..count {
        let method = *input.choose(&METHODS)?;
        let target_len = input.int_in_range(0usize..=40)?;
        let mut target = String::from("/");
        for _ in 0..target_len {
            let c = *input.choose(b"abcxyz0189-._~/?=&%")?;
            target.push(char::from(c));
        }
        let status = *input.choose(&STATUSES)?;

        let mut request = Message::default();
        request
            .bytes
            .extend_from_slice(format!("{method} {target} HTTP/1.1\r\nHost: svc\r\n").as_bytes());
        if input.arbitrary()? {
            request.bytes.extend_from_slice(
                b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n",
            );
        }
        let request_body = if matches!(method, "POST" | "PUT" | "PATCH") {
            body(input)?
        } else {
            Body::None
        };
        request_body.write(&mut request, true);

        let mut response = Message::default();
        if input.arbitrary::<u8>()? % 8 == 0 {
            response
                .bytes
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        response
            .bytes
            .extend_from_slice(format!("HTTP/1.1 {status} X\r\nServer: s\r\n").as_bytes());
        if method == "HEAD" || matches!(status, 204 | 304) {
            // No body, whatever the headers say (RFC 9112 6.3).
            if input.arbitrary()? {
                response
                    .bytes
                    .extend_from_slice(b"Content-Length: 1234\r\n");
            }
            response.bytes.extend_from_slice(b"\r\n");
        } else {
            body(input)?.write(&mut response, false);
        }
        exchanges.push(Generated {
            method,
            target,
            status,
            request,
            response,
        });
    }
    Ok(exchanges)
}

enum Body {
    None,
    Length(usize),
    Chunked(Vec<usize>),
}

fn body(input: &mut Unstructured<'_>) -> Result<Body> {
    Ok(match input.int_in_range(0u8..=2)? {
        0 => Body::None,
        1 => Body::Length(input.int_in_range(0usize..=5_000)?),
        _ => {
            let n = input.int_in_range(0usize..=4)?;
            let mut sizes = Vec::with_capacity(n);
            for _ in 0..n {
                sizes.push(input.int_in_range(1usize..=700)?);
            }
            Body::Chunked(sizes)
        }
    })
}

impl Body {
    /// Ends the head and appends the body.
    fn write(&self, message: &mut Message, request: bool) {
        match self {
            // A response without a length would run until the close.
            Body::None if request => message.bytes.extend_from_slice(b"\r\n"),
            Body::None => message
                .bytes
                .extend_from_slice(b"Content-Length: 0\r\n\r\n"),
            Body::Length(n) => {
                message
                    .bytes
                    .extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
                let start = message.bytes.len();
                message.bytes.resize(start + n, b'b');
                message.opaque.push(start..start + n);
            }
            Body::Chunked(sizes) => {
                message
                    .bytes
                    .extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for size in sizes {
                    message
                        .bytes
                        .extend_from_slice(format!("{size:x}\r\n").as_bytes());
                    let start = message.bytes.len();
                    message.bytes.resize(start + size, b'c');
                    message.bytes.extend_from_slice(b"\r\n");
                }
                message.bytes.extend_from_slice(b"0\r\n\r\n");
            }
        }
    }
}

/// One connection driven through the assembler with a running clock.
struct Connection {
    assembler: Assembler,
    role: Role,
    now: u64,
    out: Vec<Exchange>,
}

const CONN: ConnRef = ConnRef {
    tgid: 100,
    fd: 7,
    conn_id: 1,
};

impl Connection {
    fn new(role: Role) -> Self {
        let mut connection = Connection {
            assembler: Assembler::new(AssemblerConfig {
                max_pending_requests: 16,
                max_connections: 4,
                idle_timeout_ns: u64::MAX / 4,
            }),
            role,
            now: 1_000,
            out: Vec::new(),
        };
        let connected = Event::Connected {
            conn: CONN,
            role,
            peer: None,
            listen_fd: None,
            at_ns: connection.now,
        };
        connection
            .assembler
            .on_event(&connected, &mut connection.out);
        connection
    }

    /// One syscall moving `total` bytes, of which `captured` were copied.
    fn syscall(&mut self, request_side: bool, captured: &[u8], total: usize) {
        self.now += 10;
        let direction = match (self.role, request_side) {
            (Role::Server, true) | (Role::Client, false) => Direction::Read,
            _ => Direction::Write,
        };
        let event = Event::Data {
            conn: CONN,
            role: self.role,
            direction,
            enter_ns: self.now,
            exit_ns: self.now + 1,
            total: total as u64,
            captured,
        };
        self.assembler.on_event(&event, &mut self.out);
        self.now += 1;
    }

    fn close(mut self) -> Vec<Exchange> {
        self.now += 10;
        let closed = Event::Closed {
            conn: CONN,
            at_ns: self.now,
        };
        self.assembler.on_event(&closed, &mut self.out);
        check(&self.out);
        self.out
    }
}

/// What a user sees of an exchange.
fn seen(out: &[Exchange]) -> Vec<(String, String, Option<u16>)> {
    out.iter()
        .map(|e| {
            (
                e.request.method.clone(),
                e.request.target.clone(),
                e.response.as_ref().map(|r| r.status),
            )
        })
        .collect()
}

fn deliver_and_compare(exchanges: &[Generated], role: Role, input: &mut Unstructured<'_>) {
    let expected: Vec<(String, String, Option<u16>)> = exchanges
        .iter()
        .map(|g| (g.method.to_string(), g.target.clone(), Some(g.status)))
        .collect();

    let mut whole = Connection::new(role);
    for g in exchanges {
        whole.syscall(true, &g.request.bytes, g.request.bytes.len());
        whole.syscall(false, &g.response.bytes, g.response.bytes.len());
    }
    assert_eq!(seen(&whole.close()), expected, "one syscall per message");

    let mut split = Connection::new(role);
    for g in exchanges {
        send_split(&mut split, true, &g.request, input);
        send_split(&mut split, false, &g.response, input);
    }
    assert_eq!(
        seen(&split.close()),
        expected,
        "messages split across syscalls"
    );

    let mut pipelined = Connection::new(role);
    let requests: Vec<u8> = exchanges
        .iter()
        .flat_map(|g| g.request.bytes.clone())
        .collect();
    let responses: Vec<u8> = exchanges
        .iter()
        .flat_map(|g| g.response.bytes.clone())
        .collect();
    pipelined.syscall(true, &requests, requests.len());
    pipelined.syscall(false, &responses, responses.len());
    assert_eq!(seen(&pipelined.close()), expected, "pipelined");
}

/// Delivers `message` in pieces whose lengths the input picks; a piece that
/// lies inside a `Content-Length` body may have only its first bytes
/// captured, as when a body outgrows the probe's capture size.
fn send_split(
    connection: &mut Connection,
    request_side: bool,
    message: &Message,
    input: &mut Unstructured<'_>,
) {
    let bytes = &message.bytes;
    let mut at = 0;
    while at < bytes.len() {
        // Once the input is used up, the rest goes in one syscall.
        let len = if input.is_empty() {
            bytes.len() - at
        } else {
            input
                .int_in_range(1usize..=bytes.len() - at)
                .unwrap_or(bytes.len() - at)
        };
        let piece = at..at + len;
        let opaque = message
            .opaque
            .iter()
            .any(|body| body.start <= piece.start && piece.end <= body.end);
        let captured = if opaque {
            input.int_in_range(0usize..=len).unwrap_or(len)
        } else {
            len
        };
        connection.syscall(request_side, &bytes[at..at + captured], len);
        at += len;
    }
}
