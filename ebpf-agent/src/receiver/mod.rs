//! The `ebpf` receiver: HTTP spans and RED metrics of the processes that
//! listen on the configured ports, from kernel probes. A collector-core
//! receiver, so the agent reuses the pipeline runtime, processors,
//! exporters (otlp, otlphttp, loadbalancing), health and self-metrics.

mod events_loop;
mod scanner;
mod telemetry;

use crate::config::{EbpfReceiverConfig, Resolved};
use crate::http::{Assembler, AssemblerConfig};
use crate::pods::PodIndex;
use crate::probe::{Probe, ProbeSettings};
use crate::process::scan::{Selection, Selector};
use crate::red::RedMetrics;
use crate::resource::{self, ResourceSettings};
use async_trait::async_trait;
use collector_core::component::{
    ComponentError, CreateContext, Factory, Host, Lifecycle, Receiver, ReceiverConsumers,
    ReceiverFactory, Stability,
};
use collector_core::config::ConfigError;
use collector_core::consumer::NextStage;
use collector_core::observe::{Counter, RateLimitedLog};
use collector_core::pdata::{Metrics, Payload, Signal, Telemetry as Data};
use events_loop::EventsLoop;
use scanner::Scanner;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use telemetry::Telemetry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Spans per batch on the queue to the pipeline (for sizing the queue).
const SPANS_PER_BATCH: usize = 512;

/// Builds `ebpf` receivers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EbpfReceiverFactory;

impl Factory for EbpfReceiverFactory {
    type Config = EbpfReceiverConfig;
    fn type_name(&self) -> &'static str {
        "ebpf"
    }
    fn stability(&self) -> Stability {
        Stability::Alpha
    }
    fn validate(&self, config: &EbpfReceiverConfig) -> Result<(), ConfigError> {
        config.resolve().map(|_| ())
    }
}

impl ReceiverFactory for EbpfReceiverFactory {
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces, Signal::Metrics]
    }

    fn create(
        &self,
        ctx: &CreateContext,
        config: &EbpfReceiverConfig,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        let resolved = config
            .resolve()
            .map_err(|e| ComponentError::new(e.to_string()))?;
        Ok(Box::new(EbpfReceiver {
            id: ctx.id.to_string(),
            config: config.clone(),
            resolved,
            consumers,
            host: Arc::clone(&ctx.host),
            running: tokio::sync::Mutex::new(None),
        }))
    }
}

/// A running `ebpf` receiver.
struct EbpfReceiver {
    id: String,
    config: EbpfReceiverConfig,
    resolved: Resolved,
    consumers: ReceiverConsumers,
    host: Arc<Host>,
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    // Detaches the probes when dropped, after the tasks ended.
    _probe: Arc<Mutex<Probe>>,
    stop: watch::Sender<bool>,
    /// The pipelines' entrances, told the shutdown deadline.
    next_stages: Vec<Arc<NextStage>>,
    /// Produce data; stopped first.
    producers: Vec<JoinHandle<()>>,
    /// Hand data to the pipeline; end when the producers are gone.
    senders: Vec<JoinHandle<()>>,
}

/// Where a sender counts what the pipeline took and what it refused.
#[derive(Clone, Debug)]
struct Outcome {
    accepted: Counter,
    refused: Counter,
}

/// Hands the receiver's batches to the pipeline, retrying retryable
/// refusals until the shutdown deadline; counts and logs what is refused.
fn spawn_sender(
    mut rx: mpsc::Receiver<Payload>,
    next: Arc<NextStage>,
    outcome: Outcome,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        while let Some(payload) = rx.recv().await {
            let items = payload.item_count() as u64;
            match next.deliver(Data::new(payload)).await {
                Ok(()) => outcome.accepted.add(items),
                Err(e) => {
                    outcome.refused.add(items);
                    if let Some(suppressed) = log.check() {
                        tracing::warn!(
                            items,
                            suppressed,
                            "the pipeline did not take telemetry from the kernel; dropped: {e}"
                        );
                    }
                }
            }
        }
    })
}

impl EbpfReceiver {
    fn selector(&self) -> Selector {
        Selector {
            ports: self.resolved.ports.clone(),
            executable_paths: self.resolved.executable_paths.clone(),
            exclude_executables: self.resolved.exclude_executables.clone(),
            self_pid: std::process::id(),
        }
    }
}

#[async_trait]
impl Lifecycle for EbpfReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        let settings = ProbeSettings {
            capture_bytes: self.resolved.capture_bytes,
            ring_buffer_bytes: self.config.ring_buffer_size_mib * 1024 * 1024,
            wakeup_bytes: self.config.ring_buffer_wakeup_kib * 1024,
            tracepoints: self.config.syscall_tracepoints,
        };
        let (probe, ring) = tokio::task::spawn_blocking(move || Probe::load(settings))
            .await
            .map_err(|e| ComponentError::new(format!("loading the probes: {e}")))?
            .map_err(|e| ComponentError::new(e.to_string()))?;
        let probe = Arc::new(Mutex::new(probe));
        let telemetry = Telemetry::new(&self.host.metrics, &self.id);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut next_stages = Vec::new();
        let selection: Arc<RwLock<Selection>> = Arc::default();
        let (retired_tx, retired_rx) = mpsc::unbounded_channel();
        let pods = self
            .resolved
            .kube_node
            .as_ref()
            .map(|node| (node.clone(), Arc::new(PodIndex::default())));
        let resources = ResourceSettings {
            service_name: self.resolved.service_name.clone(),
            host_name: resource::host_name(),
            pods: pods.as_ref().map(|(_, index)| Arc::clone(index)),
        };

        // Select what already runs before reporting started.
        let scanner = Scanner {
            selector: self.selector(),
            probe: Arc::clone(&probe),
            selection: Arc::clone(&selection),
            retired: retired_tx,
            telemetry: telemetry.clone(),
            interval: self.config.scan_interval,
        };
        let first = scanner.scan_once().await;
        scanner.apply(first);
        tracing::info!(
            receiver = %self.id,
            ports = %self.resolved.ports,
            capture_bytes = self.resolved.capture_bytes,
            "eBPF probes attached"
        );

        let mut producers = Vec::new();
        let mut senders = Vec::new();
        if let Some((node, index)) = pods {
            producers.push(tokio::spawn(crate::pods::watch(
                node,
                index,
                stop_rx.clone(),
            )));
        }
        let spans_tx = self.consumers.traces.clone().map(|consumer| {
            let capacity = (self.config.queue_size / SPANS_PER_BATCH).max(1);
            let (tx, rx) = mpsc::channel::<Payload>(capacity);
            let next = Arc::new(NextStage::new(self.id.clone(), consumer));
            next_stages.push(Arc::clone(&next));
            senders.push(spawn_sender(
                rx,
                next,
                Outcome {
                    accepted: telemetry.accepted_spans.clone(),
                    refused: telemetry.refused_spans.clone(),
                },
            ));
            tx
        });
        let red = (self.config.metrics.enabled && self.consumers.metrics.is_some())
            .then(|| Arc::new(Mutex::new(RedMetrics::new(self.config.metrics.max_series))));

        let events = EventsLoop {
            assembler: Assembler::new(AssemblerConfig {
                max_pending_requests: 64,
                max_connections: self.config.max_connections,
                idle_timeout_ns: u64::try_from(self.config.idle_timeout.as_nanos())
                    .unwrap_or(u64::MAX),
            }),
            selection: Arc::clone(&selection),
            retired_rx,
            resources: resources.clone(),
            red: red.clone(),
            spans_tx,
            telemetry: telemetry.clone(),
            poll_interval: (self.config.ring_buffer_wakeup_kib > 0)
                .then_some(self.config.ring_buffer_poll_interval),
        };
        let events_stop = stop_rx.clone();
        producers.push(tokio::spawn(async move {
            if let Err(e) = events.run(ring, events_stop).await {
                tracing::error!(error = %e, "reading the probes' ring buffer failed; no more spans");
            }
        }));
        producers.push(tokio::spawn(scanner.run(stop_rx.clone())));

        if let (Some(red), Some(consumer)) = (red, self.consumers.metrics.clone()) {
            let (tx, rx) = mpsc::channel::<Payload>(1);
            let next = Arc::new(NextStage::new(self.id.clone(), consumer));
            next_stages.push(Arc::clone(&next));
            senders.push(spawn_sender(
                rx,
                next,
                Outcome {
                    accepted: telemetry.accepted_points.clone(),
                    refused: telemetry.refused_points.clone(),
                },
            ));
            producers.push(tokio::spawn(export_red(
                red,
                Arc::clone(&selection),
                resources,
                self.config.metrics.interval,
                tx,
                stop_rx.clone(),
            )));
        }

        *self.running.lock().await = Some(Running {
            _probe: probe,
            stop: stop_tx,
            next_stages,
            producers,
            senders,
        });
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let Some(running) = self.running.lock().await.take() else {
            return Ok(());
        };
        for next in &running.next_stages {
            next.shut_down_by(tokio::time::Instant::from_std(deadline));
        }
        let _ = running.stop.send(true);
        let budget = deadline.saturating_duration_since(Instant::now());
        let all = async {
            for task in running.producers {
                let _ = task.await;
            }
            for task in running.senders {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(budget, all).await.is_err() {
            tracing::warn!(receiver = %self.id, "shutdown deadline reached with telemetry still in flight");
        }
        Ok(())
    }
}

/// Exports the RED histograms every `interval`, and once more at stop.
async fn export_red(
    red: Arc<Mutex<RedMetrics>>,
    selection: Arc<RwLock<Selection>>,
    resources: ResourceSettings,
    interval: Duration,
    tx: mpsc::Sender<Payload>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        let now =
            crate::clock::BootClock::measure().unix_nanos(crate::clock::BootClock::boot_now());
        let request = {
            let red = red.lock().unwrap_or_else(|p| p.into_inner());
            let selection = selection.read().unwrap_or_else(|p| p.into_inner());
            red.export(now, |pid| {
                selection
                    .get(&pid)
                    .map(|process| resource::resource(&resources, process))
            })
        };
        if !request.resource_metrics.is_empty()
            && tx
                .send(Payload::Metrics(Metrics::new(request)))
                .await
                .is_err()
        {
            break;
        }
        // Exited processes' series end with them.
        {
            let selection = selection.read().unwrap_or_else(|p| p.into_inner());
            let mut red = red.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<u32> = red
                .pids()
                .filter(|pid| !selection.contains_key(pid))
                .collect();
            for pid in gone {
                red.forget_process(pid);
            }
        }
        if stopping {
            break;
        }
    }
}
