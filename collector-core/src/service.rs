//! Running a collector: build a generation of pipelines from the config,
//! serve until SIGTERM/SIGINT, rebuild on SIGHUP, shut down within a deadline.
//!
//! A reload builds and starts the new generation *before* stopping the old
//! one; receivers share listeners through the host's pool, so ports stay open
//! throughout and the old generation drains what it had accepted.

use crate::component::control::ConfigUpdate;
use crate::component::{BuildInfo, ComponentError, Factories, HealthStatus, Host};
use crate::config::{self, Config, ConfigErrors, ConfigSource};
use crate::observe;
use crate::pipeline::{self, Pipelines};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A component failed to build or start.
    #[error("{0}")]
    Component(#[from] ComponentError),
    /// The self-metrics endpoint could not listen.
    #[error("service.telemetry.metrics: {0}")]
    Telemetry(String),
    /// Installing signal handlers failed.
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
}

/// How to find the configuration and how long shutdown may take.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Config sources, merged in order.
    pub sources: Vec<ConfigSource>,
    /// `--set` overrides, applied after the sources.
    pub overrides: Vec<String>,
    /// Deadline for draining on shutdown and for the old generation on reload.
    pub shutdown_timeout: Duration,
    /// The binary's name and version (what OpAMP reports).
    pub build: BuildInfo,
}

/// One running set of pipelines plus its self-metrics endpoint.
#[derive(Debug)]
struct Generation {
    pipelines: Pipelines,
    telemetry: CancellationToken,
    config: Config,
}

/// A collector: factories, shared host services, options.
#[derive(Debug)]
pub struct Service {
    factories: Factories,
    host: Arc<Host>,
    options: ServiceOptions,
}

impl Service {
    /// A service that will build components with `factories`.
    pub fn new(factories: Factories, options: ServiceOptions) -> Self {
        Self {
            factories,
            host: Host::for_binary(options.build.clone()),
            options,
        }
    }

    /// Shared host services (metrics, listeners, health).
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Loads and checks the configuration without building anything.
    pub fn check(&self) -> Result<Config, ConfigErrors> {
        let config = config::load(&self.options.sources, &self.options.overrides)?;
        pipeline::plan(&config, &self.factories)?;
        Ok(config)
    }

    async fn start_generation(&self, config: Config) -> Result<Generation, ServiceError> {
        let plan = pipeline::plan(&config, &self.factories)?;
        let pipelines = Pipelines::build(&plan, &self.factories, &self.host)?;
        let telemetry = CancellationToken::new();
        let address = config
            .service
            .telemetry
            .metrics
            .listen_address()
            .map_err(ServiceError::Telemetry)?;
        let listener = match &address {
            Some(address) => Some(
                self.host
                    .listeners
                    .tcp("service.telemetry.metrics", address)
                    .await
                    .map_err(|e| ServiceError::Telemetry(e.to_string()))?,
            ),
            None => None,
        };
        pipelines.start().await?;
        let components = pipeline::components_by_pipeline(&plan);
        let effective = Arc::new(config.clone());
        self.host.control.publish(|state| {
            state.generation += 1;
            state.config = Some(effective);
            state.started = std::time::SystemTime::now();
            state.pipelines = components;
            state.failures.clear();
        });
        if let Some(listener) = listener {
            let address = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(component = "telemetry", protocol = "prometheus", address = %address, "listening");
            tokio::spawn(observe::serve_prometheus(
                listener,
                self.host.metrics.clone(),
                telemetry.clone(),
            ));
        }
        Ok(Generation {
            pipelines,
            telemetry,
            config,
        })
    }

    async fn stop_generation(&self, generation: Generation, deadline: Instant) {
        generation.pipelines.shutdown(deadline).await;
        generation.telemetry.cancel();
    }

    /// Runs until SIGTERM or SIGINT; SIGHUP reloads the config sources.
    pub async fn run(self) -> Result<(), ServiceError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(ServiceError::Signals)?;

        let config = config::load(&self.options.sources, &self.options.overrides)?;
        observe::logs::init(&config.service.telemetry);
        observe::register_process_metrics(&self.host.metrics);
        self.set_health(HealthStatus::Starting);
        // Taken before the first generation starts, so an extension's update
        // submitted during start-up waits for the loop below.
        let mut updates = self.host.control.take_updates();
        let mut current = self.start_generation(config).await?;
        self.set_health(HealthStatus::Ready);
        tracing::info!("everything is ready; begin running and processing data");

        // The remote configuration in force, if one was applied: it replaces
        // the `--config` sources and `--set` overrides until the process ends.
        let mut remote: Option<(String, Vec<String>)> = None;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
                _ = int.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
                _ = hup.recv() => {
                    tracing::info!("received SIGHUP, reloading configuration");
                    let (sources, overrides) = match &remote {
                        // The files no longer describe what runs; re-reading
                        // the remote config picks up a changed environment.
                        Some((label, documents)) => (remote_sources(label, documents), Vec::new()),
                        None => (self.options.sources.clone(), self.options.overrides.clone()),
                    };
                    let (next, outcome) = self.reload(current, &sources, &overrides).await;
                    current = next;
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "new configuration rejected; keeping the running one");
                    }
                }
                Some(update) = recv_update(&mut updates) => {
                    let ConfigUpdate { label, documents, reply } = update;
                    tracing::info!(source = %label, "applying a new configuration");
                    let sources = remote_sources(&label, &documents);
                    let (next, outcome) = self.reload(current, &sources, &[]).await;
                    current = next;
                    match &outcome {
                        Ok(()) => remote = Some((label, documents)),
                        Err(e) => tracing::error!(source = %label, error = %e, "new configuration refused; keeping the running one"),
                    }
                    // The requester may have gone (its extension stopped).
                    let _ = reply.send(outcome);
                }
            }
        }

        self.set_health(HealthStatus::Stopping);
        let deadline = Instant::now() + self.options.shutdown_timeout;
        self.stop_generation(current, deadline).await;
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Builds a new generation from `sources` and `overrides` and swaps it in;
    /// on any error keeps `current` and says why.
    async fn reload(
        &self,
        current: Generation,
        sources: &[ConfigSource],
        overrides: &[String],
    ) -> (Generation, Result<(), String>) {
        let checked = config::load(sources, overrides)
            .and_then(|config| pipeline::plan(&config, &self.factories).map(|_| config));
        let config = match checked {
            Ok(config) => config,
            Err(e) => return (current, Err(e.to_string())),
        };
        if config == current.config {
            tracing::info!("configuration unchanged; nothing to reload");
            return (current, Ok(()));
        }
        match self.start_generation(config).await {
            Ok(next) => {
                let deadline = Instant::now() + self.options.shutdown_timeout;
                self.stop_generation(current, deadline).await;
                self.host.listeners.release_unused();
                self.set_health(HealthStatus::Ready);
                tracing::info!("configuration reloaded");
                (next, Ok(()))
            }
            Err(e) => {
                self.host.listeners.release_unused();
                (
                    current,
                    Err(format!("the new configuration failed to start: {e}")),
                )
            }
        }
    }

    /// Sets the health the `health_check` extension answers with, and
    /// publishes it for OpAMP.
    fn set_health(&self, status: HealthStatus) {
        self.host.health.set(status);
        let effective = self.host.health.get();
        self.host.control.publish(|state| state.health = effective);
    }
}

/// The sources of a remote configuration: its documents in order.
fn remote_sources(label: &str, documents: &[String]) -> Vec<ConfigSource> {
    documents
        .iter()
        .map(|yaml| ConfigSource::Text {
            label: label.to_string(),
            yaml: yaml.clone(),
        })
        .collect()
}

/// The next configuration update, or never when no channel was taken.
async fn recv_update(
    updates: &mut Option<tokio::sync::mpsc::Receiver<ConfigUpdate>>,
) -> Option<ConfigUpdate> {
    match updates {
        Some(updates) => updates.recv().await,
        None => std::future::pending().await,
    }
}
