//! Reading numbers off running processes: CPU time and peak memory from
//! `/proc`, the sink's counts from its stats endpoint, free loopback ports.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A loopback port that was free a moment ago (bound to port 0, read, closed).
/// Someone else may take it before the child binds it; callers retry then.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

/// A loopback address on a free port.
pub(crate) fn free_address() -> Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU time of the whole process (all its threads, live and
/// exited), in clock ticks: fields 14 and 15 of `/proc/<pid>/stat`.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("parsing {path}: {text:?}"))
}

fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold anything,
    // so count fields from the last ')': the state (field 3) comes first.
    let (_, after_name) = stat
        .rsplit_once(')')
        .context("no ')' after the command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("no field {number}"))?;
        text.parse()
            .with_context(|| format!("field {number} is {text:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Peak resident set size in bytes (`VmHWM` of `/proc/<pid>/status`).
pub(crate) fn peak_rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kib(&text, "VmHWM")
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmHWM in {path}"))
}

/// Current resident set size in bytes (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kib(&text, "VmRSS")
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmRSS in {path}"))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The number after `"key":` in a flat JSON object, e.g. the sink's stats or
/// otel-loadgen's `--json` summary.
pub(crate) fn json_number(json: &str, key: &str) -> Option<f64> {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern)? + pattern.len();
    let rest = json[start..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The sink's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SinkCounts {
    pub(crate) spans: u64,
    pub(crate) requests: u64,
    pub(crate) gzip_requests: u64,
    pub(crate) zstd_requests: u64,
    pub(crate) message_bytes: u64,
    /// Request bodies as they came: compressed, gRPC prefixes included.
    pub(crate) wire_bytes: u64,
}

impl SinkCounts {
    /// What arrived between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &SinkCounts) -> SinkCounts {
        SinkCounts {
            spans: self.spans.saturating_sub(earlier.spans),
            requests: self.requests.saturating_sub(earlier.requests),
            gzip_requests: self.gzip_requests.saturating_sub(earlier.gzip_requests),
            zstd_requests: self.zstd_requests.saturating_sub(earlier.zstd_requests),
            message_bytes: self.message_bytes.saturating_sub(earlier.message_bytes),
            wire_bytes: self.wire_bytes.saturating_sub(earlier.wire_bytes),
        }
    }

    /// Both counts added.
    pub(crate) fn plus(&self, other: &SinkCounts) -> SinkCounts {
        SinkCounts {
            spans: self.spans + other.spans,
            requests: self.requests + other.requests,
            gzip_requests: self.gzip_requests + other.gzip_requests,
            zstd_requests: self.zstd_requests + other.zstd_requests,
            message_bytes: self.message_bytes + other.message_bytes,
            wire_bytes: self.wire_bytes + other.wire_bytes,
        }
    }

    /// Bytes on the wire per span (compressed, framing included).
    pub(crate) fn wire_bytes_per_span(&self) -> f64 {
        if self.spans > 0 {
            self.wire_bytes as f64 / self.spans as f64
        } else {
            f64::NAN
        }
    }

    /// How the requests were compressed: `gzip`, `zstd`, `none` or `mixed`.
    pub(crate) fn encoding(&self) -> &'static str {
        match (self.gzip_requests, self.zstd_requests) {
            (0, 0) => "none",
            (g, 0) if g == self.requests => "gzip",
            (0, z) if z == self.requests => "zstd",
            _ => "mixed",
        }
    }
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked), the body of a 200 answer.
pub(crate) fn http_get(address: SocketAddr, path: &str) -> Result<String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading http://{address}{path}"))?;
    let response = String::from_utf8_lossy(&response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("http://{address}{path}: not an HTTP response");
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("http://{address}{path}: {status}");
    }
    Ok(body.to_string())
}

/// Asks the sink's stats endpoint (`GET /`) for its totals.
pub(crate) fn sink_counts(stats: SocketAddr) -> Result<SinkCounts> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&stats, timeout)
        .with_context(|| format!("connecting to the sink's stats on {stats}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(
        format!("GET / HTTP/1.1\r\nHost: {stats}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the sink's stats")?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("sink stats: not an HTTP response: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("sink stats: {}", head.lines().next().unwrap_or_default());
    }
    let number = |key: &str| -> Result<u64> {
        json_number(body, key)
            .map(|n| n as u64)
            .with_context(|| format!("sink stats: no {key:?} in {body}"))
    };
    Ok(SinkCounts {
        spans: number("spans")?,
        requests: number("requests")?,
        gzip_requests: number("gzip_requests")?,
        zstd_requests: number("zstd_requests")?,
        message_bytes: number("message_bytes")?,
        wire_bytes: number("wire_bytes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_add_utime_and_stime_even_with_odd_names() {
        let stat = "4242 (agent) x (y)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 269 0 0 20 0 3 0 100 2000000 5000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).expect("parses"), 1000);
        assert!(parse_cpu_ticks("4242 (agent) S 1").is_err());
    }

    #[test]
    fn status_kib_reads_the_named_line() {
        let status = "Name:\tagent\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40000));
    }

    #[test]
    fn json_number_reads_flat_objects() {
        let json = r#"{"failed_requests":0,"items_per_second":17341.07,"ok_items":17700,"seconds":1.02e0}"#;
        assert_eq!(json_number(json, "ok_items"), Some(17700.0));
        assert_eq!(json_number(json, "items_per_second"), Some(17341.07));
        assert_eq!(json_number(json, "seconds"), Some(1.02));
        assert_eq!(json_number(json, "missing"), None);
    }

    #[test]
    fn encoding_summarises_the_requests() {
        let counts = |requests, gzip_requests, zstd_requests| SinkCounts {
            requests,
            gzip_requests,
            zstd_requests,
            ..Default::default()
        };
        assert_eq!(counts(5, 0, 0).encoding(), "none");
        assert_eq!(counts(5, 5, 0).encoding(), "gzip");
        assert_eq!(counts(5, 0, 5).encoding(), "zstd");
        assert_eq!(counts(5, 2, 0).encoding(), "mixed");
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        cpu_ticks(pid).expect("own /proc stat");
        assert!(peak_rss_bytes(pid).expect("own VmHWM") > 0);
        assert!(rss_bytes(pid).expect("own VmRSS") > 0);
    }
}
