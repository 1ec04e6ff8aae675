//! An OpAMP server for tests that behaves like OllyScale's (opamp-go):
//! agents keyed by `instance_uid`; each `AgentToServer` gets exactly one
//! `ServerToAgent` back; a config pushed for an agent is delivered only in the
//! reply to that agent's next message, once. It serves the WebSocket
//! transport and the plain-HTTP one (each on its own port), keeps every
//! message it received (decoded, and the raw WebSocket frames), and lets a
//! test ask for full state, offer a heartbeat interval, assign a new UID or
//! answer "unavailable".

use collector_core::extension::opamp::proto::{
    self, AgentConfigFile, AgentConfigMap, AgentRemoteConfig, AgentToServer,
    ConnectionSettingsOffers, OpAmpConnectionSettings, ServerErrorResponse,
    ServerErrorResponseType, ServerToAgent, server_error_response,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Which transport a message came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    WebSocket,
    Http,
}

/// Everything the server saw and what it will say next.
#[derive(Debug, Default)]
pub struct OpampState {
    /// Every message received, in order.
    pub messages: Vec<(Via, AgentToServer)>,
    /// The raw binary WebSocket frames received (header + protobuf).
    pub raw_frames: Vec<Vec<u8>>,
    /// WebSocket connections accepted so far.
    pub connections: usize,
    /// Configs waiting for an agent's next message, by instance UID.
    pending: HashMap<Vec<u8>, AgentRemoteConfig>,
    /// Offered in every reply when set.
    heartbeat_offer: Option<u64>,
    /// Set on the next reply only.
    full_state_next: bool,
    new_uid_next: Option<Vec<u8>>,
    unavailable_next: Option<std::time::Duration>,
}

impl OpampState {
    /// Messages from agent `uid`.
    pub fn from_agent<'a>(&'a self, uid: &'a [u8]) -> impl Iterator<Item = &'a AgentToServer> + 'a {
        self.messages
            .iter()
            .filter(move |(_, m)| m.instance_uid == uid)
            .map(|(_, m)| m)
    }

    /// Instance UIDs seen, in order of first appearance.
    pub fn agents(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (_, m) in &self.messages {
            if !out.contains(&m.instance_uid) {
                out.push(m.instance_uid.clone());
            }
        }
        out
    }

    /// The agent's latest effective config body (key `""`), as OllyScale
    /// reads it.
    pub fn effective_config(&self, uid: &[u8]) -> Option<String> {
        self.from_agent(uid)
            .filter_map(|m| m.effective_config.as_ref())
            .filter_map(|e| e.config_map.as_ref())
            .filter_map(|m| m.config_map.get(""))
            .last()
            .map(|f| String::from_utf8_lossy(&f.body).into_owned())
    }

    /// The agent's latest remote config status.
    pub fn remote_status(&self, uid: &[u8]) -> Option<proto::RemoteConfigStatus> {
        self.from_agent(uid)
            .filter_map(|m| m.remote_config_status.clone())
            .last()
    }

    /// Every remote-config status the agent reported for `hash`, in order
    /// (the agent sends a status only when it changes).
    pub fn statuses(&self, uid: &[u8], hash: &[u8]) -> Vec<i32> {
        self.from_agent(uid)
            .filter_map(|m| m.remote_config_status.as_ref())
            .filter(|st| st.last_remote_config_hash == hash)
            .map(|st| st.status)
            .collect()
    }

    /// The agent's latest description.
    pub fn description(&self, uid: &[u8]) -> Option<proto::AgentDescription> {
        self.from_agent(uid)
            .filter_map(|m| m.agent_description.clone())
            .last()
    }

    /// Whether a pushed config still waits for agent `uid`'s next message.
    pub fn is_pending(&self, uid: &[u8]) -> bool {
        self.pending.contains_key(uid)
    }

    /// The agent's latest health.
    pub fn health(&self, uid: &[u8]) -> Option<proto::ComponentHealth> {
        self.from_agent(uid).filter_map(|m| m.health.clone()).last()
    }

    /// The reply to `message`: consumes what was waiting for it.
    fn reply_to(&mut self, message: &AgentToServer) -> ServerToAgent {
        let mut reply = ServerToAgent {
            instance_uid: message.instance_uid.clone(),
            capabilities: 0x1 | 0x2 | 0x4,
            ..Default::default()
        };
        if let Some(after) = self.unavailable_next.take() {
            reply.error_response = Some(ServerErrorResponse {
                r#type: ServerErrorResponseType::Unavailable as i32,
                error_message: "try later".into(),
                details: Some(server_error_response::Details::RetryInfo(
                    proto::RetryInfo {
                        retry_after_nanoseconds: after.as_nanos() as u64,
                    },
                )),
            });
            return reply;
        }
        if message.agent_disconnect.is_none() {
            reply.remote_config = self.pending.remove(&message.instance_uid);
        }
        if let Some(seconds) = self.heartbeat_offer {
            reply.connection_settings = Some(ConnectionSettingsOffers {
                opamp: Some(OpAmpConnectionSettings {
                    heartbeat_interval_seconds: seconds,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if std::mem::take(&mut self.full_state_next) {
            reply.flags |= proto::ServerToAgentFlags::ReportFullState as u64;
        }
        if let Some(uid) = self.new_uid_next.take() {
            reply.agent_identification = Some(proto::AgentIdentification {
                new_instance_uid: uid,
            });
        }
        reply
    }
}

struct Shared {
    state: Mutex<OpampState>,
    changed: Condvar,
}

/// A running server; stops (closing every connection) when dropped.
pub struct OpampServer {
    shared: Arc<Shared>,
    ws: SocketAddr,
    http: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OpampServer {
    /// Starts on ports the OS picks.
    pub fn start() -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        )
    }

    /// Starts on the given addresses (to come back on the same ports).
    pub fn start_on(ws: SocketAddr, http: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Arc::new(Shared {
            state: Mutex::new(OpampState::default()),
            changed: Condvar::new(),
        });
        let (ws_listener, http_listener) = runtime.block_on(async {
            (
                TcpListener::bind(ws).await.expect("bind ws"),
                TcpListener::bind(http).await.expect("bind http"),
            )
        });
        let ws = ws_listener.local_addr().expect("ws addr");
        let http = http_listener.local_addr().expect("http addr");
        let for_ws = shared.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = ws_listener.accept().await {
                tokio::spawn(serve_ws(stream, for_ws.clone()));
            }
        });
        let for_http = shared.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = http_listener.accept().await {
                tokio::spawn(serve_http(stream, for_http.clone()));
            }
        });
        Self {
            shared,
            ws,
            http,
            runtime: Some(runtime),
        }
    }

    /// `ws://127.0.0.1:<port>/v1/opamp`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/opamp", self.ws)
    }

    /// `http://127.0.0.1:<port>/v1/opamp`
    pub fn http_url(&self) -> String {
        format!("http://{}/v1/opamp", self.http)
    }

    /// The listening addresses (WebSocket, HTTP).
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.ws, self.http)
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, OpampState> {
        self.shared.state.lock().expect("state")
    }

    /// Waits until `done` holds of the state (or patience runs out, which
    /// panics naming `what`).
    pub fn wait_for(&self, what: &str, done: impl Fn(&OpampState) -> bool) {
        let deadline = Instant::now() + crate::PATIENCE;
        let mut state = self.state();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let last: Vec<String> = state
                    .messages
                    .iter()
                    .rev()
                    .take(3)
                    .map(|(_, m)| format!("{m:?}"))
                    .collect();
                let count = state.messages.len();
                // Not poisoning the lock for the server's tasks.
                drop(state);
                panic!(
                    "timed out waiting for {what}; {count} messages, last: {:.3000}",
                    last.join("\n")
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .expect("state")
                .0;
        }
    }

    /// Waits for the first agent to say something; its instance UID.
    pub fn wait_for_agent(&self) -> Vec<u8> {
        self.wait_for("an agent", |s| !s.messages.is_empty());
        self.state().messages[0].1.instance_uid.clone()
    }

    /// Queues `yaml` (the whole collector config, config-map key `""`) for
    /// agent `uid`'s next message, as OllyScale's REST API does; the hash.
    pub fn push_config(&self, uid: &[u8], yaml: &str) -> Vec<u8> {
        let hash = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(yaml.as_bytes());
            h.finish().to_be_bytes().to_vec()
        };
        self.push_remote(
            uid,
            AgentRemoteConfig {
                config: Some(AgentConfigMap {
                    config_map: HashMap::from([(
                        String::new(),
                        AgentConfigFile {
                            body: yaml.as_bytes().to_vec(),
                            content_type: "text/yaml".into(),
                        },
                    )]),
                }),
                config_hash: hash.clone(),
            },
        );
        hash
    }

    /// Queues a remote config message as is.
    pub fn push_remote(&self, uid: &[u8], remote: AgentRemoteConfig) {
        self.state().pending.insert(uid.to_vec(), remote);
    }

    /// Offers a heartbeat interval in every reply from now on.
    pub fn offer_heartbeat(&self, seconds: u64) {
        self.state().heartbeat_offer = Some(seconds);
    }

    /// Sets `ReportFullState` on the next reply.
    pub fn request_full_state(&self) {
        self.state().full_state_next = true;
    }

    /// Assigns `uid` to the agent in the next reply.
    pub fn assign_uid(&self, uid: Vec<u8>) {
        self.state().new_uid_next = Some(uid);
    }

    /// Answers the next message with an `Unavailable` error and `RetryInfo`.
    pub fn unavailable_next(&self, retry_after: std::time::Duration) {
        self.state().unavailable_next = Some(retry_after);
    }
}

impl Drop for OpampServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Waits for the tasks to be dropped, so the ports are free to
            // bind again when this returns.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn record(
    shared: &Shared,
    via: Via,
    message: AgentToServer,
    raw: Option<Vec<u8>>,
) -> ServerToAgent {
    let mut state = shared.state.lock().expect("state");
    let reply = state.reply_to(&message);
    state.messages.push((via, message));
    if let Some(raw) = raw {
        state.raw_frames.push(raw);
    }
    shared.changed.notify_all();
    reply
}

async fn serve_ws(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    shared.state.lock().expect("state").connections += 1;
    shared.changed.notify_all();
    while let Some(Ok(message)) = socket.next().await {
        let Message::Binary(frame) = message else {
            continue;
        };
        let Ok(decoded) = proto::decode_ws_frame::<AgentToServer>(&frame) else {
            return;
        };
        let disconnect = decoded.agent_disconnect.is_some();
        let reply = record(&shared, Via::WebSocket, decoded, Some(frame.to_vec()));
        if disconnect {
            return;
        }
        let frame = proto::encode_ws_frame(&reply);
        if socket.send(Message::Binary(frame.into())).await.is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 exchange per connection: POST with a protobuf body.
async fn serve_http(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || stream.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let (status, payload) = match AgentToServer::decode(body.as_slice()) {
        Ok(message) => (
            "200 OK",
            record(&shared, Via::Http, message, None).encode_to_vec(),
        ),
        Err(_) => ("400 Bad Request", Vec::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.write_all(&payload).await;
    let _ = stream.shutdown().await;
}
