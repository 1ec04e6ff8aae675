//! The channel between the running service and an extension that manages it
//! from elsewhere (OpAMP): the extension submits a new configuration and
//! learns whether it was applied; the service publishes what runs (the
//! effective configuration, the pipelines and their components, health and
//! the last fatal error of each component) for the extension to report.

use super::HealthStatus;
use crate::config::Config;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot, watch};

/// A request to run a new configuration in place of the current one.
#[derive(Debug)]
pub struct ConfigUpdate {
    /// Names the source in error messages (`opamp remote config`).
    pub label: String,
    /// The whole collector configuration, YAML (several files merge in order,
    /// as several `--config` flags do).
    pub documents: Vec<String>,
    /// Answered once the new pipelines run (`Ok`) or were refused, with the
    /// loader's or the start-up's message; the old ones keep running then.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// A component's last fatal error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentFailure {
    /// What went wrong.
    pub error: String,
    /// When.
    pub at: SystemTime,
}

/// What runs now, as the service last published it.
#[derive(Clone, Debug)]
pub struct RunningState {
    /// Counts configurations started since the process began (0: none yet).
    pub generation: u64,
    /// The effective configuration (after merging, `--set` and env expansion).
    pub config: Option<Arc<Config>>,
    /// When the current pipelines started.
    pub started: SystemTime,
    /// The collector's overall state.
    pub health: HealthStatus,
    /// Pipeline id -> its components as `receiver:otlp`, `processor:batch`, ...
    pub pipelines: BTreeMap<String, Vec<String>>,
    /// Component id (`exporter/otlp`) -> its last fatal error.
    pub failures: BTreeMap<String, ComponentFailure>,
}

impl Default for RunningState {
    fn default() -> Self {
        Self {
            generation: 0,
            config: None,
            started: SystemTime::now(),
            health: HealthStatus::Starting,
            pipelines: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }
}

/// Owned by the host; shared by the service and the extensions.
#[derive(Debug)]
pub struct ServiceControl {
    updates: mpsc::Sender<ConfigUpdate>,
    pending: Mutex<Option<mpsc::Receiver<ConfigUpdate>>>,
    running: watch::Sender<RunningState>,
}

impl Default for ServiceControl {
    fn default() -> Self {
        // Updates are applied one at a time; a few may wait.
        let (updates, pending) = mpsc::channel(4);
        Self {
            updates,
            pending: Mutex::new(Some(pending)),
            running: watch::Sender::new(RunningState::default()),
        }
    }
}

impl ServiceControl {
    /// Asks the service to run `update`'s configuration. Fails when no
    /// service takes updates (e.g. `validate`, or a unit test's bare host).
    pub fn submit(&self, update: ConfigUpdate) -> Result<(), String> {
        self.updates.try_send(update).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                "another configuration is being applied; try again".to_string()
            }
            mpsc::error::TrySendError::Closed(_) => {
                "the service does not take configuration updates".to_string()
            }
        })
    }

    /// The service's end of the update channel (taken once).
    pub fn take_updates(&self) -> Option<mpsc::Receiver<ConfigUpdate>> {
        self.pending.lock().take()
    }

    /// Watches what runs.
    pub fn watch(&self) -> watch::Receiver<RunningState> {
        self.running.subscribe()
    }

    /// What runs now.
    pub fn running(&self) -> RunningState {
        self.running.borrow().clone()
    }

    /// Changes the published state (the service, and fatal errors).
    pub fn publish(&self, change: impl FnOnce(&mut RunningState)) {
        self.running.send_modify(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn updates_reach_the_taker_and_state_reaches_watchers() {
        let control = ServiceControl::default();
        let mut updates = control.take_updates().expect("first take");
        assert!(control.take_updates().is_none(), "taken once");
        let (reply, answer) = oneshot::channel();
        control
            .submit(ConfigUpdate {
                label: "test".into(),
                documents: vec!["receivers: {}".into()],
                reply,
            })
            .expect("submit");
        let update = updates.recv().await.expect("update");
        assert_eq!(update.documents, ["receivers: {}"]);
        update.reply.send(Err("nope".into())).expect("reply");
        assert_eq!(answer.await.expect("answer"), Err("nope".to_string()));

        let mut watcher = control.watch();
        control.publish(|s| s.generation = 7);
        watcher.changed().await.expect("changed");
        assert_eq!(watcher.borrow().generation, 7);
    }

    #[test]
    fn submit_without_a_service_is_an_error() {
        let control = ServiceControl::default();
        drop(control.take_updates());
        let (reply, _answer) = oneshot::channel();
        let err = control
            .submit(ConfigUpdate {
                label: "x".into(),
                documents: vec![],
                reply,
            })
            .expect_err("closed");
        assert!(err.contains("does not take"), "{err}");
    }
}
