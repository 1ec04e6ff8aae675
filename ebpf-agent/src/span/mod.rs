//! HTTP exchanges to OTLP spans, with the attributes of the semantic
//! conventions (see otelcol-compat.md, eBPF section).

pub(crate) mod ids;
pub(crate) mod route;
pub(crate) mod traceparent;

use crate::attributes::{int, string};
use crate::clock::BootClock;
use crate::http::Exchange;
use crate::process::ProcessInfo;
use ebpf_probe::Role;
use ids::IdGenerator;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use std::net::SocketAddr;

/// Methods the conventions name; others are reported as `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// `host[:port]` of a Host header (IPv6 literals in brackets).
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((ip, after)) = rest.split_once(']')
    {
        return (ip, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

/// The method attribute value and, for unknown methods, the original.
fn method(raw: &str) -> (&str, Option<&str>) {
    if KNOWN_METHODS.contains(&raw) {
        (raw, None)
    } else {
        ("_OTHER", Some(raw))
    }
}

/// What the span builder needs to know besides the exchange.
pub(crate) struct SpanContext<'a> {
    /// Boot time to Unix time.
    pub(crate) clock: &'a BootClock,
    /// The process, for the listener's local address.
    pub(crate) process: Option<&'a ProcessInfo>,
}

/// Builds the span for one exchange.
pub(crate) fn build(exchange: &Exchange, ctx: &SpanContext<'_>, ids: &mut IdGenerator) -> Span {
    let request = &exchange.request;
    let (method_value, method_original) = method(&request.method);
    let status_code = exchange.response.as_ref().map(|r| r.status);
    let parent = request.header("traceparent").and_then(traceparent::parse);
    let (trace_id, parent_span_id) = match parent {
        Some(p) => (p.trace_id, p.span_id.to_vec()),
        None => (ids.trace_id(), Vec::new()),
    };
    let path = request.target.split(['?', '#']).next().unwrap_or("");
    let query = request.target.split_once('?').map(|(_, q)| q);
    let version = format!("1.{}", request.version);
    let host_header = request.header("host").map(split_host);
    let peer = exchange.peer;
    // No status because none came (an error), or because the response's
    // head was not captured (not known to be one).
    let no_response = status_code.is_none() && !exchange.response_unreadable;

    let mut attributes = vec![string("http.request.method", method_value)];
    if let Some(original) = method_original {
        attributes.push(string("http.request.method_original", original));
    }
    if let Some(code) = status_code {
        attributes.push(int("http.response.status_code", i64::from(code)));
    }
    attributes.push(string("network.protocol.version", version));
    if let Some(peer) = peer {
        attributes.push(string("network.peer.address", peer.ip().to_string()));
        attributes.push(int("network.peer.port", i64::from(peer.port())));
    }
    if let Some(agent) = request.header("user-agent") {
        attributes.push(string("user_agent.original", agent));
    }

    let (kind, name, is_error) = match exchange.role {
        Role::Server => {
            let route = route::route(&request.target);
            let local: Option<SocketAddr> = exchange
                .listen_fd
                .and_then(|fd| ctx.process?.listeners.get(&fd).copied());
            let (server_address, server_port) = match host_header {
                Some((host, port)) => (Some(host.to_string()), port.or(local.map(|l| l.port()))),
                None => (local.map(|l| l.ip().to_string()), local.map(|l| l.port())),
            };
            attributes.push(string("url.path", if path.is_empty() { "/" } else { path }));
            if let Some(query) = query {
                attributes.push(string("url.query", query));
            }
            attributes.push(string("url.scheme", "http"));
            attributes.push(string("http.route", route.clone()));
            if let Some(address) = server_address {
                attributes.push(string("server.address", address));
            }
            if let Some(port) = server_port {
                attributes.push(int("server.port", i64::from(port)));
            }
            if let Some(peer) = peer {
                attributes.push(string("client.address", peer.ip().to_string()));
                attributes.push(int("client.port", i64::from(peer.port())));
            }
            (
                span::SpanKind::Server,
                format!("{method_value} {route}"),
                status_code.map_or(no_response, |c| c >= 500),
            )
        }
        Role::Client => {
            let (address, port) = match host_header {
                Some((host, port)) => (Some(host.to_string()), port.or(peer.map(|p| p.port()))),
                None => (peer.map(|p| p.ip().to_string()), peer.map(|p| p.port())),
            };
            let authority = match (&address, port) {
                (Some(a), Some(80) | None) => a.clone(),
                (Some(a), Some(p)) => format!("{a}:{p}"),
                (None, _) => String::new(),
            };
            let full = if request.target.contains("://") {
                request.target.clone()
            } else {
                format!("http://{authority}{}", request.target)
            };
            attributes.push(string("url.full", full));
            if let Some(address) = address {
                attributes.push(string("server.address", address));
            }
            if let Some(port) = port {
                attributes.push(int("server.port", i64::from(port)));
            }
            (
                span::SpanKind::Client,
                method_value.to_string(),
                status_code.map_or(no_response, |c| c >= 400),
            )
        }
    };

    let status = if is_error {
        Status {
            code: status::StatusCode::Error as i32,
            message: if no_response {
                "no response".to_string()
            } else {
                String::new()
            },
        }
    } else {
        Status::default()
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: ids.span_id().to_vec(),
        trace_state: request.header("tracestate").unwrap_or_default().to_string(),
        parent_span_id,
        flags: 0,
        name,
        kind: kind as i32,
        start_time_unix_nano: ctx.clock.unix_nanos(exchange.start_ns),
        end_time_unix_nano: ctx.clock.unix_nanos(exchange.end_ns.max(exchange.start_ns)),
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_headers() {
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_host("[::1]:9000"), ("::1", Some(9000)));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("::1"), ("::1", None));
    }
}
