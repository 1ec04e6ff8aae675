//! The `loadbalancing` exporter: sends each trace (or service, metric
//! stream, ...) to one backend of a set, chosen on otelcol's consistent hash
//! ring, through one `otlp` exporter per backend.
//!
//! Signals: traces, metrics, logs. Stability: beta.
//!
//! Data path: `consume` -> split by routing key over the current ring
//! (spans are split on their received bytes, without decoding; a batch
//! whose items all have one owner goes on as received) -> every part queued at its
//! backend, or the whole batch refused (ResourceExhausted); a part joins the
//! backend's open item while `protocol.otlp.sending_queue.batch` allows (see
//! `backend.rs`) -> the backend's workers -> split to 4 MiB -> gRPC `Export` with timeout and retries ->
//! on a dead or failing backend: quarantine and re-route to the new owner.
//!
//! Beyond otelcol, data is not lost when a backend goes away: when the
//! resolver stops listing a backend, what is queued or being retried for it
//! is routed again over the new ring; when sends to a backend fail with a
//! connection error or time out, or keep failing past
//! `protocol.otlp.retry_on_failure`, the backend is quarantined (left out of the ring for 1s, doubling per
//! strike up to 30s, reset by a successful send) and its data re-routed; an
//! attempt that got no answer within `timeout` also drops the backend's
//! connection, so that a blackholed one is not reused (see
//! `Balancer::reconnect`). If
//! every backend is quarantined, all of them are used (with the top-level
//! `retry_on_failure` intervals between rounds). A joining backend takes
//! only the traces the ring moves to it. Data is dropped only when the
//! destination rejects it as permanent, when the top-level
//! `retry_on_failure` is enabled and its `max_elapsed_time` passed, or at
//! the shutdown deadline; each drop is counted in
//! `otelcol_exporter_send_failed_*` and logged.
//!
//! Queues: `protocol.otlp.sending_queue` sizes each backend's queue (and its
//! `num_consumers` workers); the top-level `sending_queue`, off by default,
//! bounds everything the exporter holds. With neither, `consume` waits for
//! delivery. `block_on_overflow` at either level waits for room instead of
//! refusing; the top-level `timeout` bounds such waits.

mod backend;
mod balancer;
mod config;
mod delivery;
mod resolver;
mod ring;
mod routing;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_DNS_INTERVAL, DEFAULT_DNS_TIMEOUT, DEFAULT_PORT, DnsResolver, Endpoint, K8sResolver,
    LoadBalancingConfig, ProtocolConfig, ResolverConfig, RoutingKey, StaticResolver, TopLevelQueue,
    TopLevelRetry,
};
pub use ring::{
    HashRing, POSITIONS_PER_ENDPOINT, RING_POSITIONS, crc32, crc32_update, position_of,
};

use crate::helper::{QueueBatchConfig, Sender};
use crate::otlp::GrpcSender;
use async_trait::async_trait;
use backend::Coalesce;
use balancer::{Balancer, Connector, Settings};
use collector_core::component::{
    ComponentError, CreateContext, Exporter, ExporterFactory, Factory, Lifecycle, Stability,
};
use collector_core::config::ConfigError;
use collector_core::consumer::{ConsumeError, Consumer};
use collector_core::pdata::{Signal, Telemetry};
use config::Resolver;
use routing::Routes;
use std::sync::Arc;
use std::time::Duration;

/// Workers per backend when no queue sets `num_consumers`.
const DEFAULT_WORKERS: usize = 10;
/// First quarantine of a failing backend.
const QUARANTINE_BASE: Duration = Duration::from_secs(1);
/// Longest quarantine.
const QUARANTINE_MAX: Duration = Duration::from_secs(30);

/// Factory of the `loadbalancing` exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadBalancingExporterFactory;

impl Factory for LoadBalancingExporterFactory {
    type Config = LoadBalancingConfig;

    fn type_name(&self) -> &'static str {
        "loadbalancing"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["load_balancing"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn validate(&self, config: &LoadBalancingConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ExporterFactory for LoadBalancingExporterFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &LoadBalancingConfig,
    ) -> Result<Arc<dyn Exporter>, ComponentError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ComponentError::new(
                "the loadbalancing exporter must be created inside a tokio runtime",
            ));
        }
        let otlp = config.protocol.otlp.clone();
        if !otlp.endpoint.is_empty() {
            tracing::warn!(
                exporter = %ctx.id,
                endpoint = %otlp.endpoint,
                "protocol.otlp.endpoint is ignored: each backend's endpoint comes from the resolver"
            );
        }
        let connect: Connector = Arc::new(move |endpoint: &Endpoint| {
            let sender = GrpcSender::new(&otlp, &endpoint.dial)?;
            Ok(Arc::new(sender) as Arc<dyn Sender>)
        });
        Ok(Arc::new(LoadBalancingExporter::new(ctx, config, connect)?))
    }
}

/// The `loadbalancing` exporter.
#[derive(Debug)]
pub struct LoadBalancingExporter {
    balancer: Arc<Balancer>,
    resolver: Resolver,
}

impl LoadBalancingExporter {
    fn new(
        ctx: &CreateContext,
        config: &LoadBalancingConfig,
        connect: Connector,
    ) -> Result<Self, ComponentError> {
        let resolver = config
            .resolver()
            .map_err(|e| ComponentError::new(e.to_string()))?;
        let (routes, fallbacks) =
            Routes::new(config.routing_key, config.routing_attributes.clone());
        let balancer = Balancer::new(
            ctx.id.to_string(),
            routes,
            fallbacks,
            settings(config),
            connect,
            ctx.host.metrics.clone(),
            resolver.label(),
        );
        let balancer = Arc::new(balancer);
        let weak = Arc::downgrade(&balancer);
        ctx.host.metrics.gauge_fn(
            "otelcol_exporter_queue_size",
            "Current size of the retry queue (in units of the sizer).",
            &[("exporter", balancer.id.as_str())],
            move || {
                weak.upgrade()
                    .map_or(0.0, |b| b.queued().values().sum::<u64>() as f64)
            },
        );
        Ok(Self { balancer, resolver })
    }

    /// The current ring's endpoints (the backends that take data now).
    pub fn ring_endpoints(&self) -> Vec<String> {
        self.balancer.routing().ring.endpoints().to_vec()
    }

    /// The resolver's latest answer.
    pub fn resolved_endpoints(&self) -> Vec<Endpoint> {
        self.balancer.resolved()
    }

    /// Starts the resolver: resolves once (DNS, static) or starts watching
    /// the Service's EndpointSlices through `kube_client` (else a client
    /// from the environment) and waits up to `resolver.k8s.timeout` for the
    /// first list; then starts the resolver task (re-resolution and the
    /// end of quarantines).
    async fn start_resolving(
        &self,
        kube_client: Option<kube::Client>,
    ) -> Result<(), ComponentError> {
        if let Resolver::K8s(service) = &self.resolver {
            let client = match kube_client {
                Some(client) => client,
                None => resolver::k8s::client(service.timeout).await.map_err(|e| {
                    self.balancer.lb_metrics.resolutions_failed.inc();
                    ComponentError::new(format!("exporter {}: resolver.k8s: {e}", self.balancer.id))
                })?,
            };
            let namespace = resolver::k8s::namespace(service);
            let (synced, first_list) = tokio::sync::oneshot::channel();
            self.balancer.tasks.spawn(resolver::k8s::watch(
                self.balancer.clone(),
                client,
                service.clone(),
                namespace.clone(),
                Some(synced),
            ));
            if tokio::time::timeout(service.timeout, first_list)
                .await
                .is_err()
            {
                tracing::warn!(
                    exporter = %self.balancer.id,
                    service = %service.name,
                    %namespace,
                    timeout = ?service.timeout,
                    "no EndpointSlice list yet; starting without backends (data waits for them)"
                );
            }
        } else {
            resolver::resolve_once(&self.balancer, &self.resolver).await;
        }
        self.balancer
            .tasks
            .spawn(resolver::run(self.balancer.clone(), self.resolver.clone()));
        Ok(())
    }
}

/// The engine's settings from the config: see the module docs for how the
/// two queue levels combine.
fn settings(config: &LoadBalancingConfig) -> Settings {
    let sub = &config.protocol.otlp.sending_queue;
    let top = &config.sending_queue.0;
    Settings {
        backend_capacity: sub.enabled.then_some(sub.queue_size),
        backend_sizer: sub.sizer,
        workers: if sub.enabled {
            sub.num_consumers
        } else if top.enabled {
            top.num_consumers
        } else {
            DEFAULT_WORKERS
        },
        global_capacity: top.enabled.then_some(top.queue_size),
        global_sizer: top.sizer,
        block_on_overflow: (sub.enabled && sub.block_on_overflow)
            || (top.enabled && top.block_on_overflow),
        synchronous: !sub.enabled && !top.enabled,
        consume_timeout: config.timeout,
        attempt_timeout: config.protocol.otlp.timeout,
        backend_retry: config.protocol.otlp.retry_on_failure.clone(),
        reroute: config.retry_on_failure.0.clone(),
        quarantine_base: QUARANTINE_BASE,
        quarantine_max: QUARANTINE_MAX,
        coalesce: coalesce(config),
    }
}

/// How long a backend's newest part waits for more when
/// `protocol.otlp.sending_queue.batch` is not written.
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_millis(50);

/// The coalescing of split parts per backend: `protocol.otlp.sending_queue.batch`,
/// else its defaults with [`DEFAULT_COALESCE_TIMEOUT`]; none without a queue
/// (a consume then waits for its own parts) or with `flush_timeout: 0s`.
fn coalesce(config: &LoadBalancingConfig) -> Option<Coalesce> {
    let sub = &config.protocol.otlp.sending_queue;
    let synchronous = !sub.enabled && !config.sending_queue.0.enabled;
    if synchronous {
        return None;
    }
    let batch = sub.batch.clone().unwrap_or_else(|| QueueBatchConfig {
        flush_timeout: DEFAULT_COALESCE_TIMEOUT,
        ..QueueBatchConfig::default()
    });
    (!batch.flush_timeout.is_zero()).then_some(Coalesce {
        flush_timeout: batch.flush_timeout,
        sizer: batch.sizer,
        min_size: batch.min_size,
        max_size: batch.max_size,
    })
}

impl Drop for LoadBalancingExporter {
    /// Dropped without a shutdown (a failed build): end the tasks.
    fn drop(&mut self) {
        self.balancer.stop.cancel();
        self.balancer.hard_stop.cancel();
    }
}

#[async_trait]
impl Consumer for LoadBalancingExporter {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.balancer.consume(telemetry.payload).await
    }
}

#[async_trait]
impl Lifecycle for LoadBalancingExporter {
    /// Resolves the backends once (a failure is logged, not fatal: the
    /// resolver keeps trying) and starts the resolver task. The `k8s`
    /// resolver needs a Kubernetes API: without one, start fails (as
    /// otelcol's does).
    async fn start(&self) -> Result<(), ComponentError> {
        self.start_resolving(None).await
    }

    async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), ComponentError> {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        self.balancer
            .shutdown(tokio::time::Instant::now() + remaining)
            .await;
        Ok(())
    }
}
