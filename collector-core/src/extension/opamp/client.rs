//! The agent side of OpAMP: one task per extension id that keeps a connection
//! to the server, reports the collector (full state on each new connection
//! and when the server asks, changes as they happen, a heartbeat otherwise)
//! and hands remote configurations to the service.
//!
//! The task outlives pipeline generations: a reload builds a new `opamp`
//! extension that adopts the running client (same settings), so applying a
//! remote config never drops the connection that delivered it.

use super::config::{OpampConfig, Transport};
use super::proto::{
    AgentDisconnect, AgentRemoteConfig, AgentToServer, ComponentHealth, RemoteConfigStatus,
    RemoteConfigStatuses, ServerErrorResponseType, ServerToAgent, ServerToAgentFlags,
    server_error_response,
};
use super::transport::{Connection, TransportError};
use super::{identity, remote, report};
use crate::component::Host;
use crate::component::control::{ConfigUpdate, RunningState};
use parking_lot::Mutex;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The first reconnect delay; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many messages may follow one HTTP answer at once (the server asking
/// for full state, then a status change), so a confused server cannot make
/// the agent loop.
const MAX_HTTP_FOLLOW_UPS: usize = 3;

/// The running client of one `opamp` extension id, shared by the extension
/// instances of successive generations.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    /// The settings it runs with; a generation with other settings starts
    /// its own client.
    pub(crate) settings: OpampConfig,
    /// Extension instances holding it; the last one to stop stops it.
    pub(crate) holders: AtomicUsize,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ClientHandle {
    /// Resolves the instance UID and starts the client task.
    pub(crate) fn spawn(
        extension_id: String,
        settings: OpampConfig,
        host: Arc<Host>,
    ) -> Result<Arc<Self>, String> {
        let uid =
            identity::instance_uid(&settings.instance_uid, settings.state_directory.as_deref())?;
        let stop = CancellationToken::new();
        let agent = Agent::new(extension_id, settings.clone(), host, uid);
        let task = tokio::spawn(agent.run(stop.clone()));
        Ok(Arc::new(Self {
            settings,
            holders: AtomicUsize::new(1),
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Whether the task still runs (it only ends when stopped).
    pub(crate) fn is_running(&self) -> bool {
        !self.stop.is_cancelled()
    }

    /// Says goodbye to the server (`AgentDisconnect`) and ends the task, by
    /// `deadline` at the latest.
    pub(crate) async fn stop(&self, deadline: Instant) {
        self.stop.cancel();
        let task = self.task.lock().take();
        if let Some(mut task) = task {
            let wait = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(wait, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Why a session with the server ended.
enum SessionEnd {
    Stopped,
    Lost(String),
    /// The server asked to come back later.
    RetryAfter(Option<Duration>, String),
}

/// What the last successful send reported, to send only changes.
#[derive(Default)]
struct Reported {
    description: bool,
    effective: Option<Vec<u8>>,
    health: Option<ComponentHealth>,
    remote_status: Option<RemoteConfigStatus>,
}

/// A remote config handed to the service, waiting for its answer.
struct Applying {
    remote: AgentRemoteConfig,
    hash: Vec<u8>,
    answer: oneshot::Receiver<Result<(), String>>,
}

struct Agent {
    extension_id: String,
    config: OpampConfig,
    host: Arc<Host>,
    uid: Uuid,
    sequence: u64,
    heartbeat: Duration,
    running: watch::Receiver<RunningState>,
    reported: Reported,
    remote_status: Option<RemoteConfigStatus>,
    /// The hash of the last remote config taken up (applied, failed or
    /// applying): the same hash again is not re-applied.
    last_remote_hash: Option<Vec<u8>>,
    applying: Option<Applying>,
}

/// Bits of `AgentCapabilities`.
fn capability(c: super::proto::AgentCapabilities) -> u64 {
    c as u64
}

impl Agent {
    fn new(extension_id: String, config: OpampConfig, host: Arc<Host>, uid: Uuid) -> Self {
        let running = host.control.watch();
        Self {
            extension_id,
            heartbeat: config.heartbeat(),
            config,
            host,
            uid,
            sequence: 0,
            running,
            reported: Reported::default(),
            remote_status: None,
            last_remote_hash: None,
            applying: None,
        }
    }

    fn capabilities(&self) -> u64 {
        use super::proto::AgentCapabilities as C;
        let caps = &self.config.capabilities;
        let mut bits = capability(C::ReportsStatus) | capability(C::ReportsHeartbeat);
        if caps.reports_effective_config {
            bits |= capability(C::ReportsEffectiveConfig);
        }
        if caps.reports_health {
            bits |= capability(C::ReportsHealth);
        }
        if caps.accepts_remote_config {
            bits |= capability(C::AcceptsRemoteConfig) | capability(C::ReportsRemoteConfig);
        }
        bits
    }

    async fn run(mut self, stop: CancellationToken) {
        // The extension starts with its generation's other components; what
        // runs is published once they all started. Until then there is
        // nothing to report, and a kept remote config could not be checked
        // against the running opamp settings.
        let published = self.running.wait_for(|state| state.config.is_some());
        tokio::select! {
            _ = stop.cancelled() => return,
            result = published => if result.is_err() { return },
        }
        if let Some(kept) = self
            .config
            .state_directory
            .as_deref()
            .and_then(remote::stored)
        {
            tracing::info!(component = %self.extension_id, "applying the remote config kept from the last run");
            self.take_remote_config(kept);
        }
        let connection = self.config.connection();
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let end = match Connection::open(&connection).await {
                Ok(conn) => {
                    tracing::info!(component = %self.extension_id, endpoint = %connection.endpoint, "connected to the OpAMP server");
                    backoff = INITIAL_BACKOFF;
                    self.session(conn, &connection.transport, &stop).await
                }
                Err(e) => SessionEnd::Lost(e.to_string()),
            };
            let wait = match end {
                SessionEnd::Stopped => return,
                SessionEnd::Lost(reason) => {
                    tracing::warn!(component = %self.extension_id, endpoint = %connection.endpoint, error = %reason, retry_in = ?backoff, "OpAMP server unreachable");
                    jittered(backoff)
                }
                SessionEnd::RetryAfter(after, reason) => {
                    tracing::warn!(component = %self.extension_id, error = %reason, retry_after = ?after, "the OpAMP server asked to retry later");
                    after
                        .unwrap_or_else(|| jittered(backoff))
                        .max(jittered(backoff))
                }
            };
            backoff = (backoff * 2).min(MAX_BACKOFF);
            // Remote configs submitted while disconnected still finish.
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut deadline => break,
                    result = wait_applied(&mut self.applying) => self.finish_applying(result),
                }
            }
        }
    }

    /// One connection: report everything, then changes, heartbeats and
    /// answers, until the connection fails or the collector stops.
    async fn session(
        &mut self,
        mut conn: Connection,
        transport: &Transport,
        stop: &CancellationToken,
    ) -> SessionEnd {
        self.reported = Reported::default();
        let tick = match transport {
            Transport::WebSocket => self.heartbeat,
            Transport::Http { polling_interval } => *polling_interval,
        };
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        let mut full = true;
        let mut must_send = true;
        loop {
            if must_send || full || self.has_changes() {
                let message = self.next_message(full);
                full = false;
                must_send = false;
                match self.send(&mut conn, message).await {
                    Ok(None) => {}
                    Ok(Some(answer)) => match self.handle_http_answers(&mut conn, answer).await {
                        Ok(()) => {}
                        Err(end) => return end,
                    },
                    Err(e) => return transport_end(e),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    self.say_goodbye(&mut conn).await;
                    return SessionEnd::Stopped;
                }
                _ = ticker.tick() => must_send = true,
                changed = self.running.changed() => {
                    if changed.is_err() {
                        // The host is gone: the process is ending.
                        return SessionEnd::Stopped;
                    }
                }
                result = wait_applied(&mut self.applying) => self.finish_applying(result),
                received = conn.recv() => match received {
                    Ok(message) => match self.handle(message) {
                        Ok(next) => {
                            full |= next.full;
                            if let Some(period) = next.heartbeat {
                                ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                            }
                        }
                        Err(end) => {
                            conn.close().await;
                            return end;
                        }
                    },
                    Err(e) => return transport_end(e),
                },
            }
        }
    }

    /// Over HTTP the answer comes with each request; what it asks for may
    /// need another request right away.
    async fn handle_http_answers(
        &mut self,
        conn: &mut Connection,
        mut answer: ServerToAgent,
    ) -> Result<(), SessionEnd> {
        for _ in 0..MAX_HTTP_FOLLOW_UPS {
            let next = self.handle(answer)?;
            if !next.full && !self.has_changes() {
                return Ok(());
            }
            let message = self.next_message(next.full);
            match self.send(conn, message).await {
                Ok(Some(again)) => answer = again,
                Ok(None) => return Ok(()),
                Err(e) => return Err(transport_end(e)),
            }
        }
        Ok(())
    }

    async fn send(
        &mut self,
        conn: &mut Connection,
        (message, marks): (AgentToServer, Reported),
    ) -> Result<Option<ServerToAgent>, TransportError> {
        let answer = conn.send(&message).await?;
        // Only what reached the server counts as reported.
        if marks.description {
            self.reported.description = true;
        }
        if marks.effective.is_some() {
            self.reported.effective = marks.effective;
        }
        if marks.health.is_some() {
            self.reported.health = marks.health;
        }
        if marks.remote_status.is_some() {
            self.reported.remote_status = marks.remote_status;
        }
        Ok(answer)
    }

    async fn say_goodbye(&mut self, conn: &mut Connection) {
        let message = AgentToServer {
            instance_uid: self.uid.as_bytes().to_vec(),
            sequence_num: self.next_sequence(),
            capabilities: self.capabilities(),
            agent_disconnect: Some(AgentDisconnect {}),
            ..Default::default()
        };
        let sent = tokio::time::timeout(Duration::from_secs(2), conn.send(&message)).await;
        if !matches!(sent, Ok(Ok(_))) {
            tracing::debug!(component = %self.extension_id, "could not send AgentDisconnect");
        }
        conn.close().await;
    }

    fn next_sequence(&mut self) -> u64 {
        let n = self.sequence;
        self.sequence += 1;
        n
    }

    /// Whether anything reported has changed since the last send.
    fn has_changes(&mut self) -> bool {
        let (message, _) = self.build(false);
        message.agent_description.is_some()
            || message.effective_config.is_some()
            || message.health.is_some()
            || message.remote_config_status.is_some()
    }

    fn next_message(&mut self, full: bool) -> (AgentToServer, Reported) {
        let (mut message, marks) = self.build(full);
        message.sequence_num = self.next_sequence();
        (message, marks)
    }

    /// The message carrying what changed (everything when `full`), and what
    /// it reports once sent.
    fn build(&mut self, full: bool) -> (AgentToServer, Reported) {
        let state = self.running.borrow_and_update().clone();
        let mut message = AgentToServer {
            instance_uid: self.uid.as_bytes().to_vec(),
            capabilities: self.capabilities(),
            ..Default::default()
        };
        let mut marks = Reported::default();
        if full || !self.reported.description {
            message.agent_description = Some(report::agent_description(
                &self.host.build,
                &self.uid,
                &self.config,
            ));
            marks.description = true;
        }
        // While a remote config is being applied, the new configuration and
        // health wait for its outcome, so the server sees APPLIED (or FAILED)
        // together with what then runs.
        let settled = self.applying.is_none();
        if self.config.capabilities.reports_effective_config
            && settled
            && let Some(effective) = report::effective_config(&state)
        {
            let body = effective
                .config_map
                .as_ref()
                .and_then(|m| m.config_map.get(""))
                .map(|f| f.body.clone())
                .unwrap_or_default();
            if full || self.reported.effective.as_ref() != Some(&body) {
                message.effective_config = Some(effective);
                marks.effective = Some(body);
            }
        }
        if self.config.capabilities.reports_health && settled && state.config.is_some() {
            let health = report::health(&state);
            if full || self.reported.health.as_ref() != Some(&health) {
                message.health = Some(health.clone());
                marks.health = Some(health);
            }
        }
        if let Some(status) = &self.remote_status
            && (full || self.reported.remote_status.as_ref() != Some(status))
        {
            message.remote_config_status = Some(status.clone());
            marks.remote_status = Some(status.clone());
        }
        (message, marks)
    }

    /// Acts on a server message.
    fn handle(&mut self, message: ServerToAgent) -> Result<Handled, SessionEnd> {
        let mut next = Handled::default();
        if let Some(error) = &message.error_response {
            let retry = error.details.as_ref().map(|details| match details {
                server_error_response::Details::RetryInfo(info) => {
                    Duration::from_nanos(info.retry_after_nanoseconds)
                }
            });
            if error.r#type == ServerErrorResponseType::Unavailable as i32 {
                return Err(SessionEnd::RetryAfter(retry, error.error_message.clone()));
            }
            tracing::warn!(component = %self.extension_id, error = %error.error_message, kind = error.r#type, "the OpAMP server refused a message");
        }
        if message.flags & ServerToAgentFlags::ReportFullState as u64 != 0 {
            next.full = true;
        }
        if let Some(identification) = &message.agent_identification {
            match Uuid::from_slice(&identification.new_instance_uid) {
                Ok(uid) if uid != self.uid => {
                    tracing::info!(component = %self.extension_id, old = %self.uid, new = %uid, "the OpAMP server assigned a new instance UID");
                    self.uid = uid;
                    if let Some(dir) = &self.config.state_directory
                        && let Err(e) = identity::store(dir, &uid)
                    {
                        tracing::warn!(component = %self.extension_id, error = %e, "cannot keep the new instance UID");
                    }
                    self.reported.description = false;
                    next.full = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(component = %self.extension_id, error = %e, "ignoring an invalid new_instance_uid")
                }
            }
        }
        let offered = message
            .connection_settings
            .as_ref()
            .and_then(|c| c.opamp.as_ref())
            .map(|o| o.heartbeat_interval_seconds)
            .filter(|seconds| *seconds > 0)
            .map(Duration::from_secs);
        if let Some(period) = offered
            && period != self.heartbeat
        {
            tracing::info!(component = %self.extension_id, heartbeat = ?period, "heartbeat interval set by the OpAMP server");
            self.heartbeat = period;
            next.heartbeat = Some(period);
        }
        if let Some(remote) = message.remote_config {
            self.take_remote_config(remote);
        }
        Ok(next)
    }

    /// Takes up a remote config: checks it and hands it to the service,
    /// unless it is the one taken up last.
    fn take_remote_config(&mut self, remote: AgentRemoteConfig) {
        if !self.config.capabilities.accepts_remote_config {
            tracing::debug!(component = %self.extension_id, "ignoring a remote config (capabilities.accepts_remote_config is false)");
            return;
        }
        let hash = remote::hash_of(&remote);
        if self.last_remote_hash.as_ref() == Some(&hash) {
            return;
        }
        if self.applying.is_some() {
            // One at a time; the server resends its config with later replies.
            return;
        }
        self.last_remote_hash = Some(hash.clone());
        let section = self
            .host
            .control
            .running()
            .config
            .and_then(|c| {
                c.document
                    .get("extensions")
                    .and_then(|e| e.get(self.extension_id.as_str()))
                    .cloned()
            })
            .unwrap_or(serde_yaml_ng::Value::Null);
        let prepared = remote::prepare(&remote, &self.extension_id, &section);
        let submitted = prepared.and_then(|yaml| {
            let (reply, answer) = oneshot::channel();
            self.host
                .control
                .submit(ConfigUpdate {
                    label: remote::LABEL.to_string(),
                    documents: vec![yaml],
                    reply,
                })
                .map(|()| answer)
        });
        match submitted {
            Ok(answer) => {
                tracing::info!(component = %self.extension_id, hash = %hex::encode(&hash), "applying a remote config");
                self.remote_status = Some(status(&hash, RemoteConfigStatuses::Applying, ""));
                self.applying = Some(Applying {
                    remote,
                    hash,
                    answer,
                });
            }
            Err(e) => {
                tracing::error!(component = %self.extension_id, hash = %hex::encode(&hash), error = %e, "remote config refused");
                self.remote_status = Some(status(&hash, RemoteConfigStatuses::Failed, &e));
            }
        }
    }

    fn finish_applying(&mut self, result: Result<(), String>) {
        let Some(applying) = self.applying.take() else {
            return;
        };
        match result {
            Ok(()) => {
                tracing::info!(component = %self.extension_id, hash = %hex::encode(&applying.hash), "remote config applied");
                self.remote_status =
                    Some(status(&applying.hash, RemoteConfigStatuses::Applied, ""));
                if let Some(dir) = &self.config.state_directory
                    && let Err(e) = remote::store(dir, &applying.remote)
                {
                    tracing::warn!(component = %self.extension_id, error = %e, "cannot keep the applied remote config for the next start");
                }
            }
            Err(e) => {
                tracing::error!(component = %self.extension_id, hash = %hex::encode(&applying.hash), error = %e, "remote config failed; the running configuration stays");
                self.remote_status = Some(status(&applying.hash, RemoteConfigStatuses::Failed, &e));
            }
        }
    }
}

/// What a server message asks of the session.
#[derive(Default)]
struct Handled {
    full: bool,
    heartbeat: Option<Duration>,
}

fn status(hash: &[u8], state: RemoteConfigStatuses, error: &str) -> RemoteConfigStatus {
    RemoteConfigStatus {
        last_remote_config_hash: hash.to_vec(),
        status: state as i32,
        error_message: error.to_string(),
    }
}

fn transport_end(e: TransportError) -> SessionEnd {
    match e.retry_after {
        Some(after) => SessionEnd::RetryAfter(Some(after), e.message),
        None => SessionEnd::Lost(e.message),
    }
}

/// The service's answer to a submitted remote config; pending while none.
async fn wait_applied(applying: &mut Option<Applying>) -> Result<(), String> {
    match applying {
        Some(applying) => (&mut applying.answer)
            .await
            .unwrap_or_else(|_| Err("the service stopped before applying the config".into())),
        None => std::future::pending().await,
    }
}

/// `d` give or take a quarter, so agents restarted together do not reconnect
/// in lockstep.
fn jittered(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = 0.75 + (random % 1000) as f64 / 2000.0;
    d.mul_f64(fraction)
}
