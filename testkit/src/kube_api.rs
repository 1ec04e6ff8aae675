//! A stand-in for the Kubernetes API server, enough for list-and-watch
//! clients (`kube`'s watcher): collections of JSON objects by path, a
//! `resourceVersion` that grows with every change, `GET <collection>` lists,
//! `GET <collection>?watch=true&resourceVersion=N` streams the changes after
//! N as chunked JSON lines. Selectors in the query are not applied: each
//! test stores only what its client should see, and checks the query it
//! received ([`FakeKubeApi::requests`]).
//!
//! Plain HTTP on 127.0.0.1; [`FakeKubeApi::kubeconfig`] writes a kubeconfig
//! pointing at it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    version: u64,
    /// collection path -> name -> object.
    collections: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// (version, collection, event type, object), oldest first.
    events: Vec<(u64, String, &'static str, serde_json::Value)>,
    requests: Vec<String>,
    closed: bool,
}

/// The fake API server; stops when dropped.
pub struct FakeKubeApi {
    address: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeKubeApi {
    /// Listens on a free loopback port.
    pub fn start() -> FakeKubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
        let address = listener.local_addr().expect("address");
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if shared.0.lock().expect("state").closed {
                    break;
                }
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeKubeApi { address, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Writes a kubeconfig for this server to `path`.
    pub fn kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Adds or replaces `object` (by `metadata.name`) in the collection at
    /// `collection` (e.g. `/api/v1/pods`), as a watch event.
    pub fn apply(&self, collection: &str, mut object: serde_json::Value) {
        let (state, cv) = &*self.state;
        let mut state = state.lock().expect("state");
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let objects = state.collections.entry(collection.to_string()).or_default();
        let kind = if objects.insert(name, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state
            .events
            .push((version, collection.to_string(), kind, object));
        cv.notify_all();
    }

    /// Removes the object named `name`, as a watch event.
    pub fn delete(&self, collection: &str, name: &str) {
        let (state, cv) = &*self.state;
        let mut state = state.lock().expect("state");
        state.version += 1;
        let version = state.version;
        let removed = state
            .collections
            .get_mut(collection)
            .and_then(|objects| objects.remove(name));
        if let Some(mut object) = removed {
            object["metadata"]["resourceVersion"] = version.to_string().into();
            state
                .events
                .push((version, collection.to_string(), "DELETED", object));
        }
        cv.notify_all();
    }

    /// The request targets received so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        self.state.0.lock().expect("state").requests.clone()
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        let (state, cv) = &*self.state;
        state.lock().expect("state").closed = true;
        cv.notify_all();
        // Wake the accept loop so it sees `closed`.
        let _ = TcpStream::connect(self.address);
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        // Headers, up to the blank line; requests here carry no body.
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        shared
            .0
            .lock()
            .expect("state")
            .requests
            .push(target.clone());
        let watch = matches!(query_value(query, "watch"), Some("true" | "1"));
        if watch {
            let since = query_value(query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            stream_events(&mut writer, shared, path, since);
            return;
        }
        let body = {
            let state = shared.0.lock().expect("state");
            let items: Vec<serde_json::Value> = state
                .collections
                .get(path)
                .map(|objects| objects.values().cloned().collect())
                .unwrap_or_default();
            serde_json::json!({
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": state.version.to_string()},
                "items": items,
            })
            .to_string()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Streams the events of `path` after version `since` until the server stops
/// or the client goes away.
fn stream_events(writer: &mut TcpStream, shared: &(Mutex<State>, Condvar), path: &str, since: u64) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (state, cv) = shared;
    let mut seen = since;
    let mut guard = state.lock().expect("state");
    loop {
        if guard.closed {
            let _ = writer.write_all(b"0\r\n\r\n");
            return;
        }
        let mut out = Vec::new();
        for (version, collection, kind, object) in &guard.events {
            if *version > seen && collection == path {
                let line = format!("{}\n", serde_json::json!({"type": kind, "object": object}));
                out.extend_from_slice(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
            }
        }
        seen = guard.version;
        if !out.is_empty() {
            drop(guard);
            if writer
                .write_all(&out)
                .and_then(|()| writer.flush())
                .is_err()
            {
                return;
            }
            guard = state.lock().expect("state");
            continue;
        }
        guard = cv
            .wait_timeout(guard, Duration::from_millis(500))
            .expect("wait")
            .0;
    }
}
