//! `opamp-test-server`: the test OpAMP server (OllyScale-like, see
//! `testkit::opamp_server`) as a process, for `cargo xtask demo`.
//!
//! `opamp-test-server --ws 127.0.0.1:14320 [--heartbeat 1] --edit processors.batch.timeout=1s`
//! waits for the first agent, prints who it is, takes the effective config it
//! reports, applies the `--edit`s to it (as an operator edits it in the UI),
//! pushes it back as a remote config, prints the agent's remote-config
//! status once it is final, and keeps serving until killed. `--heartbeat N`
//! offers agents an N-second heartbeat (OllyScale's server offers none; the
//! agent's default is 30 s, and a pushed config waits for the next message).
//! `--observe` only serves: agents connect and report, nothing is pushed
//! (the soak runs it so the gateways' OpAMP clients have a server).

use collector_core::config::load::{apply_set, parse_yaml};
use collector_core::extension::opamp::proto::{self, RemoteConfigStatuses};
use std::net::SocketAddr;
use testkit::opamp_server::OpampServer;

fn usage() -> ! {
    eprintln!(
        "usage: opamp-test-server --ws HOST:PORT [--heartbeat SECONDS] [--observe | --edit KEY=VALUE...]"
    );
    std::process::exit(2)
}

fn main() {
    let mut ws: Option<SocketAddr> = None;
    let mut edits = Vec::new();
    let mut heartbeat: Option<u64> = None;
    let mut observe = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ws" => ws = args.next().and_then(|a| a.parse().ok()),
            "--edit" => edits.push(args.next().unwrap_or_else(|| usage())),
            "--heartbeat" => heartbeat = args.next().and_then(|a| a.parse().ok()),
            "--observe" => observe = true,
            _ => usage(),
        }
    }
    let Some(ws) = ws else { usage() };
    let http: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| usage());
    let server = OpampServer::start_on(ws, http);
    if let Some(seconds) = heartbeat {
        server.offer_heartbeat(seconds);
    }
    println!("opamp: listening on {}", server.ws_url());
    if observe {
        loop {
            std::thread::park();
        }
    }

    let uid = server.wait_for_agent();
    server.wait_for("the agent's effective config", |s| {
        s.effective_config(&uid).is_some()
    });
    let (description, effective) = {
        let state = server.state();
        (state.description(&uid), state.effective_config(&uid))
    };
    let attributes = description
        .map(|d| d.identifying_attributes)
        .unwrap_or_default();
    let name = |key: &str| {
        proto::find_string(&attributes, key)
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "opamp: agent connected: service.name={} service.version={} service.instance.id={}",
        name("service.name"),
        name("service.version"),
        name("service.instance.id")
    );

    let mut config = match parse_yaml("effective config", &effective.unwrap_or_default()) {
        Ok(config) => config,
        Err(e) => {
            println!("opamp: the effective config does not parse: {e}");
            std::process::exit(1);
        }
    };
    for edit in &edits {
        if let Err(e) = apply_set(&mut config, edit) {
            println!("opamp: --edit {edit}: {e}");
            std::process::exit(1);
        }
    }
    let yaml = serde_yaml_ng::to_string(&config).unwrap_or_default();
    let hash = server.push_config(&uid, &yaml);
    println!("opamp: pushed a remote config ({})", edits.join(", "));
    server.wait_for("a final remote config status", |s| {
        s.remote_status(&uid).is_some_and(|st| {
            st.last_remote_config_hash == hash && st.status != RemoteConfigStatuses::Applying as i32
        })
    });
    let status = server.state().remote_status(&uid).unwrap_or_default();
    let state = RemoteConfigStatuses::try_from(status.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("RemoteConfigStatuses_")
                .to_string()
        })
        .unwrap_or_else(|_| status.status.to_string());
    println!(
        "opamp: remote config status: {state}{}",
        if status.error_message.is_empty() {
            String::new()
        } else {
            format!(" ({})", status.error_message)
        }
    );
    // Serve on, so the agent stays connected, until the demo ends.
    loop {
        std::thread::park();
    }
}
