//! Per-client rate limiting for the OTLP/HTTP receiver (`protocols.http.rate_limit`):
//! a token bucket for requests and one for spans per client address, kept in a
//! bounded table so that a spray of addresses cannot exhaust memory.
//!
//! The client is the TCP peer, unless the peer is a trusted proxy: then it is
//! the right-most address of `Forwarded` (or, without it, `X-Forwarded-For`)
//! that is not itself a trusted proxy. Headers from any other peer are ignored,
//! so a client cannot pick its own bucket.

use super::config::RateLimitConfig;
use crate::observe::{Counter, MetricsRegistry};
use http::HeaderMap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An address block such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a single host).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            updated: now,
        }
    }

    /// Takes `n` tokens (at most `burst`, so that one large request can pass
    /// when the bucket is full), or says how long until they would be there.
    fn take(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
        let n = n.min(burst);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / rate))
        }
    }
}

/// One client's buckets.
#[derive(Clone, Copy, Debug)]
struct ClientBuckets {
    requests: TokenBucket,
    spans: TokenBucket,
}

/// The bounded table of clients: two generations of at most `max / 2`
/// entries each. A client found in the old generation moves to the new one;
/// when the new one is full the old one is dropped whole. Lookups and
/// evictions are O(1) and the least recently seen clients go first (an LRU
/// approximated by generations).
#[derive(Debug, Default)]
struct ClientTable {
    young: HashMap<IpAddr, ClientBuckets>,
    old: HashMap<IpAddr, ClientBuckets>,
}

impl ClientTable {
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    fn entry(&mut self, ip: IpAddr, generation: usize, fresh: ClientBuckets) -> &mut ClientBuckets {
        if !self.young.contains_key(&ip) {
            let buckets = self.old.remove(&ip).unwrap_or(fresh);
            if self.young.len() >= generation {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(ip, buckets);
        }
        // Present: inserted just above if it was not.
        self.young.entry(ip).or_insert(fresh)
    }
}

/// Why a request was refused, and when to come back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RateLimited {
    pub(crate) retry_after: Duration,
}

/// The per-client limiter of one HTTP server.
#[derive(Debug)]
pub(crate) struct ClientLimiter {
    requests_per_second: f64,
    request_burst: f64,
    spans_per_second: f64,
    span_burst: f64,
    generation: usize,
    trusted_proxies: Vec<Cidr>,
    table: Mutex<ClientTable>,
}

impl ClientLimiter {
    /// Builds the limiter from validated settings.
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        let burst = |rate: f64, burst: Option<f64>| burst.unwrap_or((2.0 * rate).max(1.0));
        Self {
            requests_per_second: config.requests_per_second,
            request_burst: burst(config.requests_per_second, config.request_burst),
            spans_per_second: config.spans_per_second,
            span_burst: burst(config.spans_per_second, config.span_burst),
            generation: (config.max_clients / 2).max(1),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            table: Mutex::new(ClientTable::default()),
        }
    }

    /// How many clients the table holds now.
    pub(crate) fn clients(&self) -> usize {
        self.table.lock().len()
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The client behind a request from `peer` (see the module docs).
    pub(crate) fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>().map(canonical) {
                Ok(ip) => {
                    client = ip;
                    if !self.trusted(ip) {
                        break;
                    }
                }
                // Garbage ends the walk: the hop that forwarded it is the client.
                Err(_) => break,
            }
        }
        client
    }

    fn fresh(&self, now: Instant) -> ClientBuckets {
        ClientBuckets {
            requests: TokenBucket::full(self.request_burst, now),
            spans: TokenBucket::full(self.span_burst, now),
        }
    }

    /// Takes one request token for `client`.
    pub(crate) fn check_request(&self, client: IpAddr) -> Result<(), RateLimited> {
        if self.requests_per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let fresh = self.fresh(now);
        let mut table = self.table.lock();
        table
            .entry(client, self.generation, fresh)
            .requests
            .take(1.0, self.requests_per_second, self.request_burst, now)
            .map_err(|retry_after| RateLimited { retry_after })
    }

    /// Takes `spans` span tokens for `client`.
    pub(crate) fn check_spans(&self, client: IpAddr, spans: usize) -> Result<(), RateLimited> {
        if self.spans_per_second <= 0.0 || spans == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let fresh = self.fresh(now);
        let mut table = self.table.lock();
        table
            .entry(client, self.generation, fresh)
            .spans
            .take(spans as f64, self.spans_per_second, self.span_burst, now)
            .map_err(|retry_after| RateLimited { retry_after })
    }
}

/// The `for=` hops of `Forwarded` (RFC 7239), or else the entries of
/// `X-Forwarded-For`, in order (left-most = farthest from us).
fn forwarded_for(headers: &HeaderMap) -> Vec<String> {
    let forwarded: Vec<String> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| node_address(value.trim()))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().to_string())
        .filter(|hop| !hop.is_empty())
        .collect()
}

/// `"[2001:db8::1]:4711"` -> `2001:db8::1`; `192.0.2.1:80` -> `192.0.2.1`.
fn node_address(value: &str) -> String {
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match value.split_once(':') {
        // One colon: IPv4 with a port. More: a bare IPv6 address.
        Some((host, port)) if !port.contains(':') => host.to_string(),
        _ => value.to_string(),
    }
}

/// A limiter with its self-metrics, as one HTTP server uses it.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) limiter: Arc<ClientLimiter>,
    /// Requests refused for the request bucket.
    pub(crate) limited_requests: Counter,
    /// Requests refused for the span bucket.
    pub(crate) limited_spans: Counter,
}

impl RateLimit {
    /// Builds the limiter and registers its metrics under `receiver`.
    pub(crate) fn new(receiver: &str, config: &RateLimitConfig, metrics: &MetricsRegistry) -> Self {
        let limiter = Arc::new(ClientLimiter::new(config));
        let table = limiter.clone();
        metrics.gauge_fn(
            "otelcol_receiver_rate_limiter_clients",
            "Client addresses the rate limiter remembers (ollyscale-otel).",
            &[("receiver", receiver)],
            move || table.clients() as f64,
        );
        let counter = |limit| {
            metrics.counter(
                "otelcol_receiver_rate_limited_requests",
                "Requests answered 429 by the per-client rate limiter (ollyscale-otel).",
                &[("receiver", receiver), ("limit", limit)],
            )
        };
        Self {
            limiter,
            limited_requests: counter("requests"),
            limited_spans: counter("spans"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trusted: &[&str]) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: 1.0,
            request_burst: Some(2.0),
            spans_per_second: 10.0,
            span_burst: None,
            max_clients: 4,
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                map.append(*k, v);
            }
        }
        map
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").ok();
        assert!(net.is_some_and(|n| n.contains(ip("10.1.200.3"))));
        assert!(net.is_some_and(|n| !n.contains(ip("10.2.0.1"))));
        assert!(net.is_some_and(|n| n.contains(ip("::ffff:10.1.0.9"))));
        assert!(Cidr::parse("fd00::/8").is_ok_and(|n| n.contains(ip("fd12::1"))));
        assert!(Cidr::parse("0.0.0.0/0").is_ok_and(|n| n.contains(ip("8.8.8.8"))));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn headers_are_ignored_from_untrusted_peers() {
        let limiter = ClientLimiter::new(&config(&["10.0.0.0/8"]));
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(limiter.client_address(ip("192.0.2.7"), &h), ip("192.0.2.7"));
        assert_eq!(limiter.client_address(ip("10.0.0.1"), &h), ip("1.2.3.4"));
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let limiter = ClientLimiter::new(&config(&["10.0.0.0/8"]));
        // The client forged "6.6.6.6"; 1.2.3.4 reached our first proxy 10.0.0.2.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(limiter.client_address(ip("10.0.0.1"), &h), ip("1.2.3.4"));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3:80",
        )]);
        assert_eq!(
            limiter.client_address(ip("10.0.0.1"), &h),
            ip("2001:db8::1")
        );
        let h = headers(&[("x-forwarded-for", "junk, 10.0.0.5")]);
        assert_eq!(limiter.client_address(ip("10.0.0.1"), &h), ip("10.0.0.5"));
        assert_eq!(
            limiter.client_address(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn buckets_refuse_beyond_burst_and_per_client() {
        let limiter = ClientLimiter::new(&config(&[]));
        let a = ip("192.0.2.1");
        assert!(limiter.check_request(a).is_ok());
        assert!(limiter.check_request(a).is_ok());
        let refused = limiter.check_request(a);
        assert!(refused.is_err_and(|l| l.retry_after > Duration::ZERO));
        assert!(limiter.check_request(ip("192.0.2.2")).is_ok());
        assert!(limiter.check_spans(a, 20).is_ok());
        assert!(limiter.check_spans(a, 5).is_err());
    }

    #[test]
    fn table_stays_bounded() {
        let limiter = ClientLimiter::new(&config(&[]));
        for i in 0..1000u32 {
            let _ = limiter.check_request(IpAddr::from(i.to_be_bytes()));
            assert!(limiter.clients() <= 4);
        }
        // A recently seen client survives new arrivals that fill one generation.
        let keep = ip("192.0.2.9");
        let _ = limiter.check_request(keep);
        let _ = limiter.check_request(keep);
        let _ = limiter.check_request(ip("198.51.100.1"));
        assert!(limiter.check_request(keep).is_err());
    }
}
