//! HTTP/1.x message heads (start line and headers), parsed with `httparse`,
//! keeping only what a span needs: the request line, the status, the few
//! headers spans read, and how the body is delimited.

/// Headers beyond this many make the head unparsable (httparse needs a
/// fixed array; real requests carry far fewer).
const MAX_HEADERS: usize = 128;
/// Request targets longer than this are cut (at a character boundary).
const MAX_TARGET_BYTES: usize = 2048;
/// Header values longer than this are cut.
const MAX_VALUE_BYTES: usize = 1024;
/// Methods longer than this are cut (a token of any length is valid).
const MAX_METHOD_BYTES: usize = 32;
/// The headers spans use; the others are not kept.
const KEPT_HEADERS: &[&str] = &["host", "traceparent", "tracestate", "user-agent"];

/// A request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// `GET`, `POST`, ... as sent.
    pub(crate) method: String,
    /// The request target (`/path?query`, or an absolute URL for proxies).
    pub(crate) target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) version: u8,
    /// The kept headers, names in lower case.
    headers: Vec<(&'static str, String)>,
}

impl Request {
    /// The value of a kept header (`host`, `traceparent`, `tracestate`,
    /// `user-agent`), by its lower-case name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
}

/// What the headers say about the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BodyHeaders {
    /// `Transfer-Encoding` ends with `chunked`.
    pub(crate) chunked: bool,
    /// A `Transfer-Encoding` other than chunked last: it overrides any
    /// `Content-Length` (RFC 9112 6.3), and the body's end is not known.
    pub(crate) other_coding: bool,
    /// `Content-Length`.
    pub(crate) content_length: Option<u64>,
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the connection closes (a response without length).
    UntilClose,
    /// The connection stops speaking HTTP/1 after this head (101, CONNECT).
    Upgrade,
}

impl BodyHeaders {
    /// The framing of a request body (RFC 9112 6.3: no length means none).
    pub(crate) fn request_framing(&self) -> Framing {
        if self.other_coding {
            // A server answers 400 and closes; the bytes that follow are
            // not a request we can delimit.
            return Framing::UntilClose;
        }
        if self.chunked {
            Framing::Chunked
        } else {
            match self.content_length {
                Some(0) | None => Framing::Empty,
                Some(n) => Framing::Length(n),
            }
        }
    }

    /// The framing of a response to a request with `method`.
    pub(crate) fn response_framing(&self, method: Option<&str>, status: u16) -> Framing {
        if status == 101 || (method == Some("CONNECT") && (200..300).contains(&status)) {
            return Framing::Upgrade;
        }
        if method == Some("HEAD") || (100..200).contains(&status) || status == 204 || status == 304
        {
            return Framing::Empty;
        }
        if self.chunked {
            return Framing::Chunked;
        }
        if self.other_coding {
            return Framing::UntilClose;
        }
        match self.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

/// A parsed head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// A request line and headers.
    Request(Request, BodyHeaders),
    /// A status line and headers.
    Response(Response, BodyHeaders),
}

/// Which kind of head a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Requests.
    Request,
    /// Responses.
    Response,
}

/// The result of parsing the bytes seen so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A whole head of this many bytes.
    Complete(Head, usize),
    /// A valid beginning; more bytes are needed.
    Partial,
    /// Not an HTTP/1 head.
    Invalid,
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Reads the kept headers and the body headers. `None` when a
/// `Content-Length` is malformed (the message cannot be delimited).
fn headers(raw: &[httparse::Header<'_>]) -> Option<(Vec<(&'static str, String)>, BodyHeaders)> {
    let mut kept = Vec::new();
    let mut body = BodyHeaders::default();
    for header in raw {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).ok()?.trim();
            // Digits only (`+5` is not a length), and repeats must agree.
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let length: u64 = text.parse().ok()?;
            if body.content_length.is_some_and(|earlier| earlier != length) {
                return None;
            }
            body.content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let text = String::from_utf8_lossy(header.value);
            body.chunked = text
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            body.other_coding = !body.chunked;
        } else if let Some(name) = KEPT_HEADERS
            .iter()
            .find(|k| header.name.eq_ignore_ascii_case(k))
            && !kept.iter().any(|(n, _)| n == name)
        {
            let value = String::from_utf8_lossy(header.value);
            kept.push((*name, cut(value.trim(), MAX_VALUE_BYTES)));
        }
    }
    Some((kept, body))
}

/// Parses the start of `bytes` as a head of `side`.
pub(crate) fn parse(side: Side, bytes: &[u8]) -> Parse {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match side {
        Side::Request => {
            let mut request = httparse::Request::new(&mut raw);
            match request.parse(bytes) {
                Ok(httparse::Status::Complete(len)) => {
                    let (Some(method), Some(target), Some(version)) =
                        (request.method, request.path, request.version)
                    else {
                        return Parse::Invalid;
                    };
                    let Some((kept, body)) = headers(request.headers) else {
                        return Parse::Invalid;
                    };
                    Parse::Complete(
                        Head::Request(
                            Request {
                                method: cut(method, MAX_METHOD_BYTES),
                                target: cut(target, MAX_TARGET_BYTES),
                                version,
                                headers: kept,
                            },
                            body,
                        ),
                        len,
                    )
                }
                Ok(httparse::Status::Partial) => Parse::Partial,
                Err(_) => Parse::Invalid,
            }
        }
        Side::Response => {
            let mut response = httparse::Response::new(&mut raw);
            match response.parse(bytes) {
                Ok(httparse::Status::Complete(len)) => {
                    let Some(status) = response.code else {
                        return Parse::Invalid;
                    };
                    let Some((_, body)) = headers(response.headers) else {
                        return Parse::Invalid;
                    };
                    Parse::Complete(Head::Response(Response { status }, body), len)
                }
                Ok(httparse::Status::Partial) => Parse::Partial,
                Err(_) => Parse::Invalid,
            }
        }
    }
}

/// Parses a head whose end was not captured: the complete lines before the
/// cut, as if the head ended there. `None` when not even the start line is
/// complete and valid.
pub(crate) fn parse_truncated(side: Side, bytes: &[u8]) -> Option<Head> {
    let last_line_end = bytes.windows(2).rposition(|w| w == b"\r\n")?;
    let mut head = bytes[..last_line_end + 2].to_vec();
    head.extend_from_slice(b"\r\n");
    match parse(side, &head) {
        Parse::Complete(head, _) => Some(head),
        Parse::Partial | Parse::Invalid => None,
    }
}

/// Whether a syscall's first bytes look like the start of a head of `side`:
/// used to find the next message after the stream lost track, so it asks
/// for more than a valid prefix (a method and a space, or `HTTP/1.`).
pub(crate) fn starts_message(side: Side, bytes: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    match side {
        Side::Request => METHODS.iter().any(|m| bytes.starts_with(m)),
        Side::Response => bytes.starts_with(b"HTTP/1."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> (Request, BodyHeaders, usize) {
        match parse(Side::Request, bytes) {
            Parse::Complete(Head::Request(r, b), n) => (r, b, n),
            other => panic!("not a complete request: {other:?}"),
        }
    }

    #[test]
    fn keeps_the_request_line_and_the_span_headers() {
        let raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: svc:8080\r\nUser-Agent: curl/8\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Other: y\r\n\r\nrest";
        let (req, body, len) = request(raw);
        assert_eq!(len, raw.len() - 4);
        assert_eq!(
            (req.method.as_str(), req.target.as_str(), req.version),
            ("GET", "/a/b?x=1", 1)
        );
        assert_eq!(req.header("host"), Some("svc:8080"));
        assert_eq!(req.header("user-agent"), Some("curl/8"));
        assert!(
            req.header("traceparent")
                .is_some_and(|t| t.starts_with("00-0af7"))
        );
        assert_eq!(req.header("x-other"), None);
        assert_eq!(body.request_framing(), Framing::Empty);
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        let (_, body, _) = request(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(body.request_framing(), Framing::Length(12));
        let (_, body, _) = request(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(body.request_framing(), Framing::Chunked);
        assert_eq!(
            parse(
                Side::Request,
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"
            ),
            Parse::Invalid
        );

        assert_eq!(
            parse(
                Side::Request,
                b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"
            ),
            Parse::Invalid
        );
        assert_eq!(
            parse(
                Side::Request,
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            Parse::Invalid
        );
        let (_, gzip_only, _) =
            request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(gzip_only.request_framing(), Framing::UntilClose);
        assert_eq!(
            gzip_only.response_framing(Some("GET"), 200),
            Framing::UntilClose
        );

        let length = BodyHeaders {
            chunked: false,
            other_coding: false,
            content_length: Some(5),
        };
        let none = BodyHeaders::default();
        assert_eq!(
            length.response_framing(Some("GET"), 200),
            Framing::Length(5)
        );
        assert_eq!(length.response_framing(Some("HEAD"), 200), Framing::Empty);
        assert_eq!(length.response_framing(Some("GET"), 304), Framing::Empty);
        assert_eq!(none.response_framing(Some("GET"), 204), Framing::Empty);
        assert_eq!(none.response_framing(Some("GET"), 100), Framing::Empty);
        assert_eq!(none.response_framing(Some("GET"), 200), Framing::UntilClose);
        assert_eq!(none.response_framing(Some("GET"), 101), Framing::Upgrade);
        assert_eq!(
            none.response_framing(Some("CONNECT"), 200),
            Framing::Upgrade
        );
    }

    #[test]
    fn partial_invalid_and_truncated_heads() {
        assert_eq!(parse(Side::Request, b"GE"), Parse::Partial);
        assert_eq!(
            parse(Side::Request, b"GET / HTTP/1.1\r\nHost: a"),
            Parse::Partial
        );
        assert_eq!(
            parse(Side::Request, b"\x16\x03\x01\x02\x00"),
            Parse::Invalid
        );
        assert_eq!(
            parse(Side::Request, b"PRI * HTTP/2.0\r\n\r\n"),
            Parse::Invalid
        );
        assert_eq!(
            parse(Side::Response, b"SSH-2.0-OpenSSH\r\n"),
            Parse::Invalid
        );

        let head = parse_truncated(Side::Request, b"GET /x HTTP/1.1\r\nHost: h\r\nCookie: abc");
        match head {
            Some(Head::Request(req, _)) => {
                assert_eq!(req.target, "/x");
                assert_eq!(req.header("host"), Some("h"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_truncated(Side::Request, b"GET /very-long-path"), None);
    }

    #[test]
    fn responses_and_message_starts() {
        match parse(
            Side::Response,
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ) {
            Parse::Complete(Head::Response(r, b), _) => {
                assert_eq!(r.status, 404);
                assert_eq!(b.content_length, Some(0));
            }
            other => panic!("{other:?}"),
        }
        assert!(starts_message(Side::Request, b"POST /upload HTTP/1.1"));
        assert!(!starts_message(Side::Request, b"{\"json\": 1}"));
        assert!(starts_message(Side::Response, b"HTTP/1.1 200 OK"));
        assert!(!starts_message(Side::Response, b"GET / HTTP/1.1"));
    }

    #[test]
    fn long_targets_and_values_are_cut_at_character_boundaries() {
        let raw = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
        let (req, _, _) = request(raw.as_bytes());
        assert_eq!(req.target.len(), MAX_TARGET_BYTES);
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
    }
}
