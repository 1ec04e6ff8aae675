//! One direction of a connection as a sequence of HTTP/1 messages.
//!
//! The probe copies only the first bytes of each read or write, but reports
//! how many bytes moved, so a stream parses heads from the captured bytes and
//! skips bodies by their framing (`Content-Length`, chunked), counting the
//! uncaptured bytes too. When it cannot follow (a chunk header or a head in
//! bytes it did not see) it is *lost*: the current message stays open, and
//! the next syscall whose data starts like a head begins the next message.

use super::head::{self, Framing, Head, Parse, Side};

/// A head is at most this long; a longer one is handled as truncated.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The data of one syscall, consumed as the stream advances through it.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    captured: &'a [u8],
    pos: usize,
    /// Bytes the syscall moved after `captured`, not captured.
    gap: u64,
    /// Boot-time nanoseconds when the syscall entered.
    pub(crate) enter_ns: u64,
    /// Boot-time nanoseconds when it returned.
    pub(crate) exit_ns: u64,
}

impl<'a> Chunk<'a> {
    /// A syscall that moved `total` bytes, of which `captured` are the first.
    pub(crate) fn new(captured: &'a [u8], total: u64, enter_ns: u64, exit_ns: u64) -> Self {
        Chunk {
            captured,
            pos: 0,
            gap: total.saturating_sub(captured.len() as u64),
            enter_ns,
            exit_ns,
        }
    }

    fn rest(&self) -> &'a [u8] {
        &self.captured[self.pos..]
    }

    fn available(&self) -> u64 {
        (self.captured.len() - self.pos) as u64 + self.gap
    }

    fn at_start(&self) -> bool {
        self.pos == 0
    }

    /// Consumes `n` bytes, captured ones first.
    fn skip(&mut self, n: u64) {
        let captured =
            (self.captured.len() - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
        self.pos += captured;
        self.gap = self.gap.saturating_sub(n - captured as u64);
    }

    fn skip_all(&mut self) {
        self.pos = self.captured.len();
        self.gap = 0;
    }
}

/// What the stream found in the bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A head; the caller answers with [`MessageStream::set_framing`].
    Head {
        /// The head.
        head: Head,
        /// When the syscall that carried its first bytes entered.
        enter_ns: u64,
        /// When that syscall returned.
        exit_ns: u64,
    },
    /// The message of the last head ended with a syscall that returned at
    /// `at_ns`.
    End {
        /// Boot-time nanoseconds.
        at_ns: u64,
    },
    /// Bytes where a head should start are not one, or were not captured;
    /// the stream is lost until the next message start.
    Unparsable,
    /// The first message is not HTTP/1: the stream ignores everything from
    /// now on.
    NotHttp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// The size line: hex digits, then perhaps extensions.
    Size {
        value: u64,
        digits: u8,
        in_ext: bool,
    },
    /// This many bytes of data and its closing CRLF are left. The CRLF is
    /// skipped like data, unchecked, since it often falls in uncaptured
    /// bytes after a large chunk.
    Data(u64),
    /// Trailer lines up to an empty line.
    Trailer { line_start: bool },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    /// Reading a head; `enter_ns`/`exit_ns` of the syscall where it began.
    Head {
        buf: Vec<u8>,
        enter_ns: u64,
        exit_ns: u64,
    },
    /// A head was returned; waiting for `set_framing`.
    AwaitFraming {
        truncated: bool,
    },
    /// The message just ended; `then_off` for an upgrade.
    Ended {
        then_off: bool,
    },
    Body(u64),
    Chunked(ChunkState),
    UntilClose,
    Lost,
    Off,
}

/// The messages of one direction of one connection.
#[derive(Debug)]
pub(crate) struct MessageStream {
    side: Side,
    state: State,
    /// A message whose head was seen and whose end was not: when the latest
    /// syscall that carried its bytes returned.
    open_last_ns: Option<u64>,
    seen_head: bool,
}

impl MessageStream {
    /// A stream of requests or of responses, from the connection's start.
    pub(crate) fn new(side: Side) -> Self {
        MessageStream {
            side,
            state: State::Idle,
            open_last_ns: None,
            seen_head: false,
        }
    }

    /// A stream joined somewhere in the middle (its connection's start was
    /// not seen): it waits for a syscall that starts like a head.
    pub(crate) fn resuming(side: Side) -> Self {
        MessageStream {
            side,
            state: State::Lost,
            open_last_ns: None,
            seen_head: true,
        }
    }

    /// True when the stream ignores everything (not HTTP, or upgraded).
    pub(crate) fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Ignores everything from now on.
    pub(crate) fn turn_off(&mut self) {
        self.state = State::Off;
    }

    /// True when the current message ends only at the close or at the next
    /// message (no length, or the stream lost track of it).
    pub(crate) fn open_ended(&self) -> bool {
        self.open_last_ns.is_some() && matches!(self.state, State::UntilClose | State::Lost)
    }

    /// Ends the open message, if any, returning when its last bytes moved.
    pub(crate) fn take_open(&mut self) -> Option<u64> {
        let last = self.open_last_ns.take()?;
        if matches!(self.state, State::UntilClose) {
            // What follows belongs to no message we know of.
            self.state = State::Lost;
        }
        Some(last)
    }

    /// Says how the body after the last [`Step::Head`] is delimited.
    pub(crate) fn set_framing(&mut self, framing: Framing) {
        let State::AwaitFraming { truncated } = self.state else {
            return;
        };
        self.state = match framing {
            Framing::Upgrade => State::Ended { then_off: true },
            // The rest of the head was not seen, so where the body starts is
            // not known.
            _ if truncated => State::Lost,
            Framing::Empty => State::Ended { then_off: false },
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::Chunked(ChunkState::Size {
                value: 0,
                digits: 0,
                in_ext: false,
            }),
            Framing::UntilClose => State::UntilClose,
        };
    }

    /// Advances through `chunk` until something happens (`Some`), or the
    /// chunk is used up (`None`).
    pub(crate) fn next(&mut self, chunk: &mut Chunk<'_>) -> Option<Step> {
        loop {
            match &mut self.state {
                State::Off => {
                    chunk.skip_all();
                    return None;
                }
                State::AwaitFraming { .. } => {
                    // The caller did not say; do not guess.
                    self.state = State::Lost;
                }
                State::Ended { then_off } => {
                    let at_ns = self.open_last_ns.take().unwrap_or(chunk.exit_ns);
                    self.state = if *then_off { State::Off } else { State::Idle };
                    return Some(Step::End { at_ns });
                }
                State::Idle => {
                    if chunk.rest().is_empty() {
                        if chunk.gap == 0 {
                            return None;
                        }
                        // A message starts in bytes that were not captured.
                        chunk.skip_all();
                        self.state = State::Lost;
                        return Some(Step::Unparsable);
                    }
                    self.state = State::Head {
                        buf: Vec::new(),
                        enter_ns: chunk.enter_ns,
                        exit_ns: chunk.exit_ns,
                    };
                }
                State::Head {
                    buf,
                    enter_ns,
                    exit_ns,
                } => {
                    let before = buf.len();
                    let rest = chunk.rest();
                    let take = rest.len().min(MAX_HEAD_BYTES - before);
                    buf.extend_from_slice(&rest[..take]);
                    let (enter_ns, exit_ns) = (*enter_ns, *exit_ns);
                    match head::parse(self.side, buf) {
                        Parse::Complete(head, len) => {
                            chunk.skip((len - before) as u64);
                            return Some(self.head(head, enter_ns, exit_ns, chunk, false));
                        }
                        Parse::Partial => {
                            chunk.skip(take as u64);
                            let cut = chunk.gap > 0 || buf.len() >= MAX_HEAD_BYTES;
                            if !cut {
                                return None;
                            }
                            match head::parse_truncated(self.side, buf) {
                                Some(head) => {
                                    return Some(self.head(head, enter_ns, exit_ns, chunk, true));
                                }
                                None => {
                                    let looks_like_http = head::starts_message(self.side, buf);
                                    chunk.skip_all();
                                    return Some(self.unparsable(looks_like_http));
                                }
                            }
                        }
                        Parse::Invalid => {
                            chunk.skip_all();
                            return Some(self.unparsable(false));
                        }
                    }
                }
                State::Body(remaining) => {
                    let n = (*remaining).min(chunk.available());
                    chunk.skip(n);
                    *remaining -= n;
                    self.open_last_ns = Some(chunk.exit_ns);
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Ended { then_off: false };
                }
                State::Chunked(_) => {
                    if chunk.available() == 0 {
                        return None;
                    }
                    self.open_last_ns = Some(chunk.exit_ns);
                    if let Some(ended) = self.chunked(chunk) {
                        self.state = ended;
                    } else {
                        return None;
                    }
                }
                State::UntilClose => {
                    if chunk.available() > 0 {
                        self.open_last_ns = Some(chunk.exit_ns);
                        chunk.skip_all();
                    }
                    return None;
                }
                State::Lost => {
                    if chunk.available() == 0 {
                        return None;
                    }
                    if chunk.at_start() && head::starts_message(self.side, chunk.rest()) {
                        self.state = State::Idle;
                        if let Some(at_ns) = self.open_last_ns.take() {
                            return Some(Step::End { at_ns });
                        }
                        continue;
                    }
                    if self.open_last_ns.is_some() {
                        self.open_last_ns = Some(chunk.exit_ns);
                    }
                    chunk.skip_all();
                    return None;
                }
            }
        }
    }

    fn head(
        &mut self,
        head: Head,
        enter_ns: u64,
        exit_ns: u64,
        chunk: &Chunk<'_>,
        truncated: bool,
    ) -> Step {
        self.seen_head = true;
        self.open_last_ns = Some(chunk.exit_ns);
        self.state = State::AwaitFraming { truncated };
        Step::Head {
            head,
            enter_ns,
            exit_ns,
        }
    }

    fn unparsable(&mut self, looks_like_http: bool) -> Step {
        if !self.seen_head && !looks_like_http {
            self.state = State::Off;
            Step::NotHttp
        } else {
            self.state = State::Lost;
            Step::Unparsable
        }
    }

    /// Runs the chunked-body parser over `chunk`; the next state when the
    /// body ended (or the stream got lost), `None` when the chunk is used up.
    fn chunked(&mut self, chunk: &mut Chunk<'_>) -> Option<State> {
        let State::Chunked(state) = &mut self.state else {
            return None;
        };
        loop {
            if let ChunkState::Data(remaining) = state {
                let n = (*remaining).min(chunk.available());
                chunk.skip(n);
                *remaining -= n;
                if *remaining > 0 {
                    return None;
                }
                *state = ChunkState::Size {
                    value: 0,
                    digits: 0,
                    in_ext: false,
                };
            }
            let Some(&byte) = chunk.rest().first() else {
                if chunk.gap > 0 {
                    // Framing bytes that were not captured.
                    chunk.skip_all();
                    return Some(State::Lost);
                }
                return None;
            };
            chunk.skip(1);
            match state {
                ChunkState::Size {
                    value,
                    digits,
                    in_ext,
                } => match byte {
                    b'\n' => {
                        if *digits == 0 {
                            return Some(State::Lost);
                        }
                        *state = if *value == 0 {
                            ChunkState::Trailer { line_start: true }
                        } else {
                            ChunkState::Data(value.saturating_add(2))
                        };
                    }
                    _ if *in_ext => {}
                    b';' | b' ' | b'\t' => *in_ext = true,
                    b'\r' => {}
                    _ => {
                        let Some(digit) = (byte as char).to_digit(16) else {
                            return Some(State::Lost);
                        };
                        let Some(next) = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(digit)))
                        else {
                            return Some(State::Lost);
                        };
                        *value = next;
                        *digits = digits.saturating_add(1);
                    }
                },
                ChunkState::Trailer { line_start } => match byte {
                    b'\r' => {}
                    b'\n' if *line_start => return Some(State::Ended { then_off: false }),
                    b'\n' => *line_start = true,
                    _ => *line_start = false,
                },
                ChunkState::Data(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds syscalls (captured bytes, total) to a stream, answering heads
    /// with their request framing (or `response` for responses); returns the
    /// steps, heads shown as their kind.
    fn run(side: Side, syscalls: &[(&[u8], u64)]) -> Vec<String> {
        let mut stream = MessageStream::new(side);
        let mut steps = Vec::new();
        for (i, (captured, total)) in syscalls.iter().enumerate() {
            let t = (i as u64 + 1) * 10;
            let mut chunk = Chunk::new(captured, *total, t, t + 1);
            while let Some(step) = stream.next(&mut chunk) {
                match step {
                    Step::Head {
                        head: Head::Request(req, body),
                        exit_ns,
                        ..
                    } => {
                        steps.push(format!("req {} {} @{exit_ns}", req.method, req.target));
                        stream.set_framing(body.request_framing());
                    }
                    Step::Head {
                        head: Head::Response(resp, body),
                        exit_ns,
                        ..
                    } => {
                        steps.push(format!("resp {} @{exit_ns}", resp.status));
                        stream.set_framing(body.response_framing(Some("GET"), resp.status));
                    }
                    Step::End { at_ns } => steps.push(format!("end @{at_ns}")),
                    Step::Unparsable => steps.push("unparsable".into()),
                    Step::NotHttp => steps.push("not http".into()),
                }
            }
        }
        steps
    }

    fn whole(bytes: &[u8]) -> (&[u8], u64) {
        (bytes, bytes.len() as u64)
    }

    #[test]
    fn pipelined_requests_in_one_read() {
        let bytes = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /4 HTTP/1.1\r\n\r\n";
        assert_eq!(
            run(Side::Request, &[whole(bytes)]),
            [
                "req GET /1 @11",
                "end @11",
                "req GET /2 @11",
                "end @11",
                "req POST /3 @11",
                "end @11",
                "req GET /4 @11",
                "end @11"
            ]
        );
    }

    #[test]
    fn a_head_split_across_three_syscalls() {
        assert_eq!(
            run(
                Side::Request,
                &[
                    whole(b"GET /split HT"),
                    whole(b"TP/1.1\r\nHost: a\r\n"),
                    whole(b"\r\n")
                ]
            ),
            ["req GET /split @11", "end @31"]
        );
    }

    #[test]
    fn bodies_are_skipped_through_uncaptured_bytes() {
        // A 1 MB upload: the head and the first bytes captured, the rest counted.
        let head = b"POST /upload HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nxxxx";
        let first = (head.as_slice(), 65536u64);
        let middle = (b"xxxx".as_slice(), 65536u64 * 14);
        let last = (
            b"xxxx".as_slice(),
            1_000_000 - (65536 * 15 - (head.len() as u64 - 4)),
        );
        let next = whole(b"GET /after HTTP/1.1\r\n\r\n");
        assert_eq!(
            run(Side::Request, &[first, middle, last, next]),
            [
                "req POST /upload @11",
                "end @31",
                "req GET /after @41",
                "end @41"
            ]
        );
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let steps = run(
            Side::Response,
            &[
                whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                whole(b"5;ext=1\r\nhello\r\n"),
                whole(b"6\r\n world\r\n"),
                whole(b"0\r\nX-Trailer: t\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
            ],
        );
        assert_eq!(
            steps,
            ["resp 200 @11", "end @41", "resp 204 @41", "end @41"]
        );
    }

    #[test]
    fn a_chunk_bigger_than_the_capture_is_skipped() {
        let steps = run(
            Side::Response,
            &[
                whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                (b"4000\r\nabc".as_slice(), 6 + 0x4000 + 2),
                whole(b"0\r\n\r\n"),
            ],
        );
        assert_eq!(steps, ["resp 200 @11", "end @31"]);
    }

    #[test]
    fn lost_framing_resynchronises_at_the_next_head() {
        // The chunk header of the second chunk falls in uncaptured bytes.
        let steps = run(
            Side::Response,
            &[
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n".as_slice(),
                    4000,
                ),
                (b"more body".as_slice(), 100),
                whole(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            ],
        );
        assert_eq!(
            steps,
            ["resp 200 @11", "end @21", "resp 404 @31", "end @31"]
        );
    }

    #[test]
    fn responses_without_length_end_at_close() {
        let mut stream = MessageStream::new(Side::Response);
        let mut chunk = Chunk::new(b"HTTP/1.0 200 OK\r\n\r\nbody", 10_000, 5, 6);
        assert!(matches!(stream.next(&mut chunk), Some(Step::Head { .. })));
        stream.set_framing(Framing::UntilClose);
        assert_eq!(stream.next(&mut chunk), None);
        let mut more = Chunk::new(b"more", 4, 8, 9);
        assert_eq!(stream.next(&mut more), None);
        assert!(stream.open_ended());
        assert_eq!(stream.take_open(), Some(9));
        assert_eq!(stream.take_open(), None);
    }

    #[test]
    fn non_http_connections_are_ignored() {
        assert_eq!(
            run(
                Side::Request,
                &[
                    whole(b"\x16\x03\x01\x00\xa5\x01\x00"),
                    whole(b"GET / HTTP/1.1\r\n\r\n")
                ]
            ),
            ["not http"]
        );
    }

    #[test]
    fn garbage_after_a_message_is_unparsable_then_resynchronised() {
        assert_eq!(
            run(
                Side::Request,
                &[
                    whole(b"GET /a HTTP/1.1\r\n\r\n"),
                    whole(b"\x00\x01garbage"),
                    whole(b"GET /b HTTP/1.1\r\n\r\n")
                ]
            ),
            [
                "req GET /a @11",
                "end @11",
                "unparsable",
                "req GET /b @31",
                "end @31"
            ]
        );
    }

    #[test]
    fn a_head_cut_by_the_capture_limit_is_kept_as_far_as_seen() {
        let captured = b"GET /cut HTTP/1.1\r\nHost: h\r\nCookie: aaaaaaaa";
        assert_eq!(
            run(
                Side::Request,
                &[
                    (captured.as_slice(), 5000),
                    whole(b"GET /next HTTP/1.1\r\n\r\n")
                ]
            ),
            [
                "req GET /cut @11",
                "end @11",
                "req GET /next @21",
                "end @21"
            ]
        );
    }

    #[test]
    fn upgrades_turn_the_stream_off() {
        let mut stream = MessageStream::new(Side::Response);
        let mut chunk = Chunk::new(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            61,
            1,
            2,
        );
        assert!(matches!(stream.next(&mut chunk), Some(Step::Head { .. })));
        stream.set_framing(Framing::Upgrade);
        assert_eq!(stream.next(&mut chunk), Some(Step::End { at_ns: 2 }));
        assert_eq!(stream.next(&mut chunk), None);
        assert!(stream.is_off());
    }
}
