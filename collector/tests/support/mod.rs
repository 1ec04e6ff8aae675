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
