//! The shared harness (`testkit`), plus where this crate's binaries are.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::PathBuf;
pub use testkit::*;

/// Path of a collector binary built by cargo for this test run.
pub fn binary(name: &str) -> PathBuf {
    match name {
        "agent-collector" => PathBuf::from(env!("CARGO_BIN_EXE_agent-collector")),
        "gateway-collector" => PathBuf::from(env!("CARGO_BIN_EXE_gateway-collector")),
        "browser-collector" => PathBuf::from(env!("CARGO_BIN_EXE_browser-collector")),
        other => panic!("unknown binary {other}"),
    }
}

/// Path of a binary of another workspace package (`otel-loadgen`,
/// `otel-sink`), which cargo does not hand to this crate's tests: it sits
/// beside the test executable's folder once `cargo build --workspace` ran
/// (as `cargo xtask ci` does before the tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as `cargo xtask ci` does)",
        path.display()
    );
    path
}
