//! Running a collector: build a generation of pipelines from the config,
//! serve until SIGTERM/SIGINT, rebuild on SIGHUP, shut down within a deadline.
//!
//! A reload builds and starts the new generation *before* stopping the old
//! one; receivers share listeners through the host's pool, so ports stay open
//! throughout and the old generation drains what it had accepted.

use crate::component::{ComponentError, Factories, HealthStatus, Host};
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
            host: Host::new(),
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
        self.host.health.set(HealthStatus::Starting);
        let mut current = self.start_generation(config).await?;
        self.host.health.set(HealthStatus::Ready);
        tracing::info!("everything is ready; begin running and processing data");

        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
                _ = int.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
                _ = hup.recv() => {
                    tracing::info!("received SIGHUP, reloading configuration");
                    current = self.reload(current).await;
                }
            }
        }

        self.host.health.set(HealthStatus::Stopping);
        let deadline = Instant::now() + self.options.shutdown_timeout;
        self.stop_generation(current, deadline).await;
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Builds the new generation from the config sources; on any error keeps
    /// the current one and logs why.
    async fn reload(&self, current: Generation) -> Generation {
        let checked = config::load(&self.options.sources, &self.options.overrides)
            .and_then(|config| pipeline::plan(&config, &self.factories).map(|_| config));
        let config = match checked {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "new configuration rejected; keeping the running one");
                return current;
            }
        };
        if config == current.config {
            tracing::info!("configuration unchanged; nothing to reload");
            return current;
        }
        match self.start_generation(config).await {
            Ok(next) => {
                let deadline = Instant::now() + self.options.shutdown_timeout;
                self.stop_generation(current, deadline).await;
                self.host.listeners.release_unused();
                tracing::info!("configuration reloaded");
                next
            }
            Err(e) => {
                tracing::error!(error = %e, "new configuration failed to start; keeping the running one");
                self.host.listeners.release_unused();
                current
            }
        }
    }
}
