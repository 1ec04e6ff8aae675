//! Connections to exchanges: each followed connection has a request stream
//! and a response stream; responses answer requests in order (HTTP/1
//! pipelining), interim `1xx` responses are skipped, and a request whose
//! connection closes or idles out unanswered is reported without response.

use super::head::{Framing, Head, Request, Response, Side};
use super::stream::{Chunk, MessageStream, Step};
use crate::events::{ConnRef, Direction, Event};
use ebpf_probe::Role;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Limits of the assembler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AssemblerConfig {
    /// Requests awaiting their response per connection (pipelining depth);
    /// more are dropped and counted.
    pub(crate) max_pending_requests: usize,
    /// Connections followed at once; beyond it the least recently active
    /// are finished and forgotten (counted).
    pub(crate) max_connections: usize,
    /// A request unanswered this long after the connection's last activity
    /// is reported without a response.
    pub(crate) idle_timeout_ns: u64,
}

/// What the assembler could not follow, as running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AssemblerStats {
    /// Connections whose first bytes were not HTTP/1 (ignored).
    pub(crate) non_http_connections: u64,
    /// Heads that could not be parsed or were not captured.
    pub(crate) unparsable_heads: u64,
    /// Requests dropped because `max_pending_requests` were waiting.
    pub(crate) pending_overflow: u64,
    /// Connections forgotten to stay within `max_connections`.
    pub(crate) connections_evicted: u64,
}

/// One request and its response (if any), ready to become a span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// The connection.
    pub(crate) conn: ConnRef,
    /// Whether the traced process served or sent the request.
    pub(crate) role: Role,
    /// The other end of the connection, when known.
    pub(crate) peer: Option<SocketAddr>,
    /// The listening socket an accepted connection came from.
    pub(crate) listen_fd: Option<u32>,
    /// The request head.
    pub(crate) request: Request,
    /// The final response's head; `None` when none came.
    pub(crate) response: Option<Response>,
    /// A response came, but its head was not captured or not readable (so
    /// `response` is `None` without that meaning "no response").
    pub(crate) response_unreadable: bool,
    /// Boot-time ns: for a server, when the read with the request's first
    /// bytes returned; for a client, when the write of them entered.
    pub(crate) start_ns: u64,
    /// Boot-time ns when the syscall with the response's last bytes returned
    /// (or the close, when there was no response).
    pub(crate) end_ns: u64,
}

#[derive(Debug)]
struct Pending {
    /// `None` for a request whose head could not be read: it holds its place
    /// so the responses after it still pair with their requests, and makes
    /// no exchange (it was counted as unparsable).
    request: Option<Request>,
    start_ns: u64,
    /// The final response head, once seen.
    response: Option<Response>,
}

/// What the response being read answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answering {
    Nothing,
    /// A `1xx` before the final response.
    Interim,
    /// The oldest pending request.
    Front,
}

#[derive(Debug)]
struct Connection {
    role: Role,
    peer: Option<SocketAddr>,
    listen_fd: Option<u32>,
    requests: MessageStream,
    responses: MessageStream,
    pending: VecDeque<Pending>,
    answering: Answering,
    last_ns: u64,
}

impl Connection {
    /// A connection whose accept or connect was seen.
    fn new(role: Role, peer: Option<SocketAddr>, listen_fd: Option<u32>, at_ns: u64) -> Self {
        Connection {
            role,
            peer,
            listen_fd,
            requests: MessageStream::new(Side::Request),
            responses: MessageStream::new(Side::Response),
            pending: VecDeque::new(),
            answering: Answering::Nothing,
            last_ns: at_ns,
        }
    }

    /// A connection first seen in the middle (its accept or connect was
    /// lost, or it was forgotten to make room): both streams wait for the
    /// next message start instead of reading body bytes as a head.
    fn joined(role: Role, at_ns: u64) -> Self {
        Connection {
            requests: MessageStream::resuming(Side::Request),
            responses: MessageStream::resuming(Side::Response),
            ..Connection::new(role, None, None, at_ns)
        }
    }

    /// Reports `pending` ending at `end_ns`, unless it is a placeholder.
    fn report(
        &self,
        conn: ConnRef,
        pending: Pending,
        end_ns: u64,
        response_unreadable: bool,
        out: &mut Vec<Exchange>,
    ) {
        let Some(request) = pending.request else {
            return;
        };
        out.push(Exchange {
            conn,
            role: self.role,
            peer: self.peer,
            listen_fd: self.listen_fd,
            request,
            response: pending.response,
            response_unreadable,
            start_ns: pending.start_ns,
            end_ns: end_ns.max(pending.start_ns),
        });
    }

    /// Reports the open response (it ends with its last bytes) and every
    /// unanswered request (ending at `at_ns`).
    fn finish_pending(&mut self, conn: ConnRef, at_ns: u64, out: &mut Vec<Exchange>) {
        if let Some(last) = self.responses.take_open()
            && self.answering == Answering::Front
            && let Some(front) = self.pending.pop_front()
        {
            self.report(conn, front, last, false, out);
        }
        self.answering = Answering::Nothing;
        while let Some(pending) = self.pending.pop_front() {
            let end = if pending.response.is_some() {
                self.last_ns
            } else {
                at_ns
            };
            self.report(conn, pending, end, false, out);
        }
    }
}

/// Follows connections and turns their traffic into [`Exchange`]s.
#[derive(Debug)]
pub(crate) struct Assembler {
    config: AssemblerConfig,
    connections: HashMap<ConnRef, Connection>,
    stats: AssemblerStats,
}

impl Assembler {
    /// An assembler with these limits.
    pub(crate) fn new(config: AssemblerConfig) -> Self {
        Assembler {
            config,
            connections: HashMap::new(),
            stats: AssemblerStats::default(),
        }
    }

    /// Running totals of what could not be followed.
    pub(crate) fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Connections followed now.
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Takes one probe event; finished exchanges go to `out`.
    pub(crate) fn on_event(&mut self, event: &Event<'_>, out: &mut Vec<Exchange>) {
        match *event {
            Event::Connected {
                conn,
                role,
                peer,
                listen_fd,
                at_ns,
            } => {
                if let Some(mut old) = self.connections.remove(&conn) {
                    old.finish_pending(conn, at_ns, out);
                }
                self.make_room(out);
                self.connections
                    .insert(conn, Connection::new(role, peer, listen_fd, at_ns));
            }
            Event::Data {
                conn,
                role,
                direction,
                enter_ns,
                exit_ns,
                total,
                captured,
            } => {
                if !self.connections.contains_key(&conn) {
                    // Its accept or connect was not seen, or it was
                    // forgotten to make room: join it where it is.
                    self.make_room(out);
                    self.connections
                        .insert(conn, Connection::joined(role, exit_ns));
                }
                let Some(connection) = self.connections.get_mut(&conn) else {
                    return;
                };
                connection.last_ns = exit_ns;
                let mut chunk = Chunk::new(captured, total, enter_ns, exit_ns);
                let requests = matches!(
                    (connection.role, direction),
                    (Role::Server, Direction::Read) | (Role::Client, Direction::Write)
                );
                if requests {
                    self.on_requests(conn, &mut chunk, out);
                } else {
                    self.on_responses(conn, &mut chunk, out);
                }
            }
            Event::Closed { conn, at_ns } => {
                if let Some(mut connection) = self.connections.remove(&conn) {
                    connection.finish_pending(conn, at_ns, out);
                }
            }
        }
    }

    fn on_requests(&mut self, conn: ConnRef, chunk: &mut Chunk<'_>, out: &mut Vec<Exchange>) {
        let Some(c) = self.connections.get_mut(&conn) else {
            return;
        };
        while let Some(step) = c.requests.next(chunk) {
            match step {
                Step::Head {
                    head: Head::Request(request, body),
                    enter_ns,
                    exit_ns,
                } => {
                    c.requests.set_framing(body.request_framing());
                    // A new request after a response without length: that
                    // response is over.
                    if c.responses.open_ended()
                        && c.answering == Answering::Front
                        && let Some(last) = c.responses.take_open()
                        && let Some(front) = c.pending.pop_front()
                    {
                        c.answering = Answering::Nothing;
                        c.report(conn, front, last, false, out);
                    }
                    if c.pending.len() >= self.config.max_pending_requests {
                        self.stats.pending_overflow += 1;
                        continue;
                    }
                    let start_ns = match c.role {
                        Role::Server => exit_ns,
                        Role::Client => enter_ns,
                    };
                    c.pending.push_back(Pending {
                        request: Some(request),
                        start_ns,
                        response: None,
                    });
                }
                Step::Head {
                    head: Head::Response(..),
                    ..
                } => c.requests.set_framing(Framing::Empty),
                Step::End { .. } => {}
                Step::Unparsable => {
                    self.stats.unparsable_heads += 1;
                    // Its response will come: keep its place in the order.
                    if c.pending.len() < self.config.max_pending_requests {
                        c.pending.push_back(Pending {
                            request: None,
                            start_ns: chunk.exit_ns,
                            response: None,
                        });
                    }
                }
                Step::NotHttp => {
                    self.stats.non_http_connections += 1;
                    c.responses.turn_off();
                }
            }
        }
    }

    fn on_responses(&mut self, conn: ConnRef, chunk: &mut Chunk<'_>, out: &mut Vec<Exchange>) {
        let Some(c) = self.connections.get_mut(&conn) else {
            return;
        };
        while let Some(step) = c.responses.next(chunk) {
            match step {
                Step::Head {
                    head: Head::Response(response, body),
                    ..
                } => {
                    let status = response.status;
                    if (100..200).contains(&status) && status != 101 {
                        c.answering = Answering::Interim;
                        c.responses.set_framing(Framing::Empty);
                        continue;
                    }
                    let method = match c.pending.front_mut() {
                        Some(front) if front.response.is_none() => {
                            front.response = Some(response);
                            c.answering = Answering::Front;
                            front.request.as_ref().map(|r| r.method.as_str())
                        }
                        // An answer to a request that was not seen.
                        _ => {
                            c.answering = Answering::Nothing;
                            None
                        }
                    };
                    let framing = body.response_framing(method, status);
                    c.responses.set_framing(framing);
                }
                Step::Head {
                    head: Head::Request(..),
                    ..
                } => c.responses.set_framing(Framing::Empty),
                Step::End { at_ns } => {
                    if c.answering == Answering::Front
                        && let Some(front) = c.pending.pop_front()
                    {
                        c.report(conn, front, at_ns, false, out);
                    }
                    c.answering = Answering::Nothing;
                    if c.responses.is_off() {
                        // Upgraded: what follows is another protocol.
                        c.requests.turn_off();
                    }
                }
                Step::Unparsable => {
                    self.stats.unparsable_heads += 1;
                    // The oldest request's response came but could not be
                    // read: report it as such, so the next response pairs
                    // with the next request instead of this one.
                    if c.answering != Answering::Front
                        && c.pending.front().is_some_and(|p| p.response.is_none())
                        && let Some(front) = c.pending.pop_front()
                    {
                        c.report(conn, front, chunk.exit_ns, true, out);
                    }
                    c.answering = Answering::Nothing;
                }
                Step::NotHttp => {
                    // The requests were HTTP; what answers them is not.
                    self.stats.non_http_connections += 1;
                    c.requests.turn_off();
                    let at = chunk.exit_ns;
                    while let Some(pending) = c.pending.pop_front() {
                        c.report(conn, pending, at, true, out);
                    }
                }
            }
        }
    }

    /// Reports requests left unanswered on connections idle since
    /// `now_ns - idle_timeout`, ending now (they waited that long). The
    /// connections stay followed.
    pub(crate) fn expire(&mut self, now_ns: u64, out: &mut Vec<Exchange>) {
        let cutoff = now_ns.saturating_sub(self.config.idle_timeout_ns);
        for (conn, c) in &mut self.connections {
            if c.last_ns <= cutoff && !c.pending.is_empty() {
                let end = if now_ns == u64::MAX {
                    c.last_ns
                } else {
                    now_ns
                };
                c.finish_pending(*conn, end, out);
            }
        }
    }

    /// The process `pid` exited: its connections end at `now_ns`. With
    /// `accepted_before`, only connections followed before that boot time
    /// (the pid was reused by a process started then, whose connections
    /// stay).
    pub(crate) fn forget_process(
        &mut self,
        pid: u32,
        now_ns: u64,
        accepted_before: Option<u64>,
        out: &mut Vec<Exchange>,
    ) {
        let gone: Vec<ConnRef> = self
            .connections
            .keys()
            .filter(|c| c.tgid == pid && accepted_before.is_none_or(|t| c.conn_id < t))
            .copied()
            .collect();
        for conn in gone {
            if let Some(mut c) = self.connections.remove(&conn) {
                c.finish_pending(conn, now_ns, out);
            }
        }
    }

    /// Below `max_connections`, forgets the least recently active ones
    /// (a sixty-fourth of the table at once, so that a full table does not
    /// cost a scan per new connection).
    fn make_room(&mut self, out: &mut Vec<Exchange>) {
        let max = self.config.max_connections.max(1);
        if self.connections.len() < max {
            return;
        }
        let evict = (max / 64).max(1);
        let mut by_age: Vec<(u64, ConnRef)> = self
            .connections
            .iter()
            .map(|(k, c)| (c.last_ns, *k))
            .collect();
        let nth = evict.min(by_age.len()) - 1;
        by_age.select_nth_unstable(nth);
        for (_, conn) in by_age.into_iter().take(evict) {
            if let Some(mut c) = self.connections.remove(&conn) {
                c.finish_pending(conn, c.last_ns, out);
                self.stats.connections_evicted += 1;
            }
        }
    }
}
