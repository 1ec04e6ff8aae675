//! Where the backends come from: a fixed list, the A and AAAA records of
//! a DNS name resolved every `interval` (through the system resolver, which
//! follows /etc/resolv.conf), or a Kubernetes Service's EndpointSlices
//! watched through the API ([`k8s`]). Also runs the timer that ends
//! quarantines.

pub(crate) mod k8s;

use super::balancer::Balancer;
use super::config::{DEFAULT_PORT, Endpoint, Resolver};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The endpoints of `hostname`'s addresses: `ip:port` (`[ip]:port` for IPv6)
/// when a port is configured, the bare address otherwise (as otelcol, which
/// then dials port 4317). Sorted, without duplicates.
pub(crate) async fn lookup(
    hostname: &str,
    port: Option<u16>,
    timeout: Duration,
) -> Result<Vec<Endpoint>, String> {
    let dial_port = port.unwrap_or(DEFAULT_PORT);
    let addresses =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((hostname, dial_port))).await {
            Err(_) => return Err(format!("resolving {hostname} timed out after {timeout:?}")),
            Ok(Err(e)) => return Err(format!("resolving {hostname}: {e}")),
            Ok(Ok(addresses)) => addresses,
        };
    let mut endpoints: Vec<Endpoint> = addresses
        .map(|address| {
            let host = match address.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            Endpoint {
                key: match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                },
                dial: format!("{host}:{dial_port}"),
            }
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    Ok(endpoints)
}

/// Resolves once and applies the answer; false when resolution failed (the
/// backends stay as they were).
pub(crate) async fn resolve_once(balancer: &Arc<Balancer>, resolver: &Resolver) -> bool {
    match resolver {
        Resolver::Static(endpoints) => {
            balancer.lb_metrics.resolutions_ok.inc();
            balancer.set_endpoints(endpoints.clone());
            true
        }
        Resolver::Dns {
            hostname,
            port,
            timeout,
            ..
        } => match lookup(hostname, *port, *timeout).await {
            Ok(endpoints) => {
                balancer.lb_metrics.resolutions_ok.inc();
                balancer.set_endpoints(endpoints);
                true
            }
            Err(error) => {
                balancer.lb_metrics.resolutions_failed.inc();
                if let Some(suppressed) = balancer.retry_log.check() {
                    tracing::warn!(
                        exporter = %balancer.id,
                        error = %error,
                        suppressed,
                        "failed to resolve the backends; keeping the current ones"
                    );
                }
                false
            }
        },
        // Watched, not resolved: `k8s::watch` sets the backends on every change.
        Resolver::K8s(_) => true,
    }
}

/// Re-resolves every `interval` (DNS) and ends quarantines when they are
/// due, until the balancer stops.
pub(crate) async fn run(balancer: Arc<Balancer>, resolver: Resolver) {
    let interval = match &resolver {
        Resolver::Dns { interval, .. } => Some(*interval),
        Resolver::Static(_) | Resolver::K8s(_) => None,
    };
    let mut next_resolve = interval.map(|i| Instant::now() + i);
    loop {
        let mut changed = pin!(balancer.quarantine_changed.notified());
        changed.as_mut().enable();
        let next_expiry = balancer.expire_quarantines();
        balancer.age_orphans();
        let wake = [next_resolve, next_expiry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = balancer.stop.cancelled() => return,
            _ = changed => continue,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if let (Some(at), Some(interval)) = (next_resolve, interval)
            && at <= Instant::now()
        {
            tokio::select! {
                biased;
                _ = balancer.stop.cancelled() => return,
                _ = resolve_once(&balancer, &resolver) => {}
            }
            next_resolve = Some(Instant::now() + interval);
        }
    }
}
