//! Services the runtime offers to components: listeners that survive
//! reloads, self-metrics, and the collector's health.

use super::control::{ComponentFailure, ServiceControl};
use crate::observe::MetricsRegistry;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::net::TcpListener;

/// Shared by every component of a running collector, across reloads.
#[derive(Debug, Default)]
pub struct Host {
    /// Self-metrics.
    pub metrics: Arc<MetricsRegistry>,
    /// Listening sockets by address.
    pub listeners: ListenerPool,
    /// Whether the pipelines are up.
    pub health: HealthState,
    /// Services extensions offer to other components, by extension id.
    pub services: ServiceDirectory,
    /// What runs, and where remote configuration comes in (OpAMP).
    pub control: ServiceControl,
    /// Which binary this is.
    pub build: BuildInfo,
}

/// The binary's name and version, as the collector reports itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// `gateway-collector`, ...
    pub binary: String,
    /// The release.
    pub version: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        Self {
            binary: "collector".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Where extensions publish a service (e.g. `file_storage` its storage) for
/// other components to find by the extension's id, as otelcol components call
/// `host.GetExtensions()`. Extensions start before everything else, so a
/// service is there when an exporter starts.
#[derive(Default)]
pub struct ServiceDirectory {
    services: Mutex<HashMap<String, Arc<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for ServiceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.lock().keys()).finish()
    }
}

impl ServiceDirectory {
    /// Publishes `service` under the extension id (replacing an older
    /// generation's after a reload).
    pub fn publish<T: std::any::Any + Send + Sync>(&self, extension_id: &str, service: Arc<T>) {
        self.services
            .lock()
            .insert(extension_id.to_string(), service);
    }

    /// The service an extension published, if it is of type `T`.
    pub fn get<T: std::any::Any + Send + Sync>(&self, extension_id: &str) -> Option<Arc<T>> {
        let service = self.services.lock().get(extension_id)?.clone();
        service.downcast::<T>().ok()
    }

    /// Withdraws `service` when its extension stops, unless a newer
    /// generation already published its own under the same id (a reload
    /// starts the new generation before stopping the old one).
    pub fn withdraw<T: std::any::Any + Send + Sync>(&self, extension_id: &str, service: &Arc<T>) {
        let mut services = self.services.lock();
        let same = services
            .get(extension_id)
            .is_some_and(|current| std::ptr::addr_eq(Arc::as_ptr(current), Arc::as_ptr(service)));
        if same {
            services.remove(extension_id);
        }
    }
}

impl Host {
    /// A host with fresh metrics, no listeners, health `Starting`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A host for the binary `build` describes.
    pub fn for_binary(build: BuildInfo) -> Arc<Self> {
        Arc::new(Self {
            build,
            ..Self::default()
        })
    }

    /// A component hit an error it cannot recover from (e.g. its server task
    /// died): the collector reports itself unhealthy from now on, so the
    /// orchestrator's liveness probe restarts it.
    pub fn report_fatal_error(&self, component: &str, error: &dyn std::fmt::Display) {
        tracing::error!(component, error = %error, "fatal component error; reporting unhealthy");
        self.health.set(HealthStatus::Failed);
        let failure = ComponentFailure {
            error: error.to_string(),
            at: std::time::SystemTime::now(),
        };
        self.control.publish(|state| {
            state.health = HealthStatus::Failed;
            state.failures.insert(component.to_string(), failure);
        });
    }
}

/// Listening sockets shared across pipeline generations.
///
/// On a reload the new receivers take the same listener the old ones accept
/// on, so the port never closes: both generations accept for a moment, then
/// the old one stops. A listener belongs to an owner (component id and
/// protocol) as well as an endpoint, so two components configured with the
/// same `:0` endpoint get two sockets, and a real port clash is an error.
/// Listeners nobody holds any more are closed by [`ListenerPool::release_unused`].
#[derive(Debug, Default)]
pub struct ListenerPool {
    listeners: Mutex<HashMap<(String, String), Arc<TcpListener>>>,
}

impl ListenerPool {
    /// The listener of `owner` (e.g. `otlp/grpc`) for `endpoint` (`host:port`),
    /// bound on first use.
    pub async fn tcp(&self, owner: &str, endpoint: &str) -> std::io::Result<Arc<TcpListener>> {
        let key = (owner.to_string(), endpoint.to_string());
        if let Some(listener) = self.listeners.lock().get(&key) {
            return Ok(listener.clone());
        }
        let addrs = crate::config::service::resolve_listen_address(endpoint)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = Arc::new(bind(&addrs)?);
        Ok(self.listeners.lock().entry(key).or_insert(listener).clone())
    }

    /// The bound local address of an owner's listener.
    pub fn local_addr(&self, owner: &str, endpoint: &str) -> Option<SocketAddr> {
        let key = (owner.to_string(), endpoint.to_string());
        self.listeners
            .lock()
            .get(&key)
            .and_then(|l| l.local_addr().ok())
    }

    /// Closes listeners no component holds any more.
    pub fn release_unused(&self) {
        self.listeners
            .lock()
            .retain(|_, l| Arc::strong_count(l) > 1);
    }
}

fn bind(addrs: &[SocketAddr]) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in addrs {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(*addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                last = Some(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// The collector's health, as the `health_check` extension reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Building and starting pipelines.
    Starting,
    /// Pipelines are running.
    Ready,
    /// Shutting down.
    Stopping,
    /// A component failed fatally.
    Failed,
}

/// Shared, lock-free health state.
#[derive(Debug, Default)]
pub struct HealthState(AtomicU8);

impl HealthState {
    /// Sets the status. `Failed` is sticky: only a restart clears it.
    pub fn set(&self, status: HealthStatus) {
        if self.get() == HealthStatus::Failed && status != HealthStatus::Stopping {
            return;
        }
        let v = match status {
            HealthStatus::Starting => 0,
            HealthStatus::Ready => 1,
            HealthStatus::Stopping => 2,
            HealthStatus::Failed => 3,
        };
        self.0.store(v, Ordering::SeqCst);
    }

    /// The current status.
    pub fn get(&self) -> HealthStatus {
        match self.0.load(Ordering::SeqCst) {
            1 => HealthStatus::Ready,
            2 => HealthStatus::Stopping,
            3 => HealthStatus::Failed,
            _ => HealthStatus::Starting,
        }
    }
}
