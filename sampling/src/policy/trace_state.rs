//! `trace_state`: a span whose W3C `tracestate` has `key` set to one of the
//! values.
//!
//! A tracestate that does not parse (as the OpenTelemetry Go SDK parses it:
//! valid keys and values, at most 32 members, no duplicate keys) matches
//! nothing, as in otelcol.

use std::collections::HashSet;

use super::{Evaluate, TraceView, issue};
use crate::config::{ConfigIssue, TraceStateConfig};
use crate::decision::Decision;

const MAX_MEMBERS: usize = 32;

/// Samples traces with a span whose tracestate carries a wanted value.
#[derive(Debug)]
pub(crate) struct TraceState {
    key: String,
    values: HashSet<String>,
}

impl TraceState {
    pub(crate) fn build(cfg: &TraceStateConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        if cfg.key.is_empty() {
            return Err(vec![issue(format!("{path}.key"), "must not be empty")]);
        }
        // As otelcol: empty values, and pairs longer than a tracestate member
        // may be, can never match and are left out.
        let values = cfg
            .values
            .iter()
            .filter(|v| !v.is_empty() && cfg.key.len() + v.len() < 256)
            .cloned()
            .collect();
        Ok(TraceState {
            key: cfg.key.clone(),
            values,
        })
    }
}

impl Evaluate for TraceState {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let matched = trace
            .spans()
            .any(|s| lookup(&s.trace_state, &self.key).is_some_and(|v| self.values.contains(v)));
        if matched {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

/// The value of `key` in a W3C tracestate header, `None` when absent or when
/// the header is invalid.
pub(crate) fn lookup<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    let mut seen: Vec<&str> = Vec::new();
    for member in header.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let (k, v) = member.split_once('=')?;
        if !valid_key(k) || !valid_value(v) || seen.contains(&k) {
            return None;
        }
        seen.push(k);
        if seen.len() > MAX_MEMBERS {
            return None;
        }
        if k == key {
            found = Some(v);
        }
    }
    found
}

fn simple_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` or `tenant@system` multi-tenant key, per W3C trace context.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            !b.is_empty()
                && b.len() <= 256
                && b[0].is_ascii_lowercase()
                && b[1..].iter().all(|&c| simple_key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t[1..].iter().all(|&c| simple_key_char(c))
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && s[1..].iter().all(|&c| simple_key_char(c))
        }
    }
}

/// 1 to 256 printable ASCII characters, no `,` or `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::lookup;
    use crate::decision::Decision::*;

    #[test]
    fn parse() {
        assert_eq!(lookup("a=1,b=2", "b"), Some("2"));
        assert_eq!(lookup(" a=1 ,\tb=2 ", "b"), Some("2"));
        assert_eq!(lookup("a=1,,b=2", "a"), Some("1"));
        assert_eq!(lookup("a=1", "b"), None);
        assert_eq!(lookup("acme@vendor=x", "acme@vendor"), Some("x"));
        assert_eq!(lookup("A=1", "A"), None); // upper-case key: invalid header
        assert_eq!(lookup("a=1,a=2", "a"), None); // duplicate key
        assert_eq!(lookup("a=1,bad", "a"), None); // member without '='
        assert_eq!(lookup("a=x=y", "a"), None); // '=' in value
        assert_eq!(lookup("a=1 ", "a"), Some("1")); // trailing OWS trimmed
        let many: Vec<String> = (0..33).map(|n| format!("k{n}=v")).collect();
        assert_eq!(lookup(&many.join(","), "k0"), None);
        assert_eq!(lookup(&many[..32].join(","), "k0"), Some("v"));
    }

    #[test]
    fn table() {
        let mut p = policy(
            "{name: t, type: trace_state, trace_state: {key: sampling, values: [keep, always]}}",
        );
        let with_state = |ts: &str| {
            let mut sp = span(vec![]);
            sp.trace_state = ts.to_owned();
            sp
        };
        let cases = [
            (vec![with_state("sampling=keep")], Sampled),
            (vec![with_state("vendor=1,sampling=always")], Sampled),
            (vec![with_state("sampling=drop")], NotSampled),
            (vec![with_state("")], NotSampled),
            (vec![with_state("Sampling=keep,sampling=keep")], NotSampled), // invalid
            (vec![with_state(""), with_state("sampling=keep")], Sampled),
        ];
        for (spans, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(vec![], spans.clone())]),
                want,
                "{spans:?}"
            );
        }
    }
}
