//! Builds the BPF programs of `ebpf-probe` for `bpfel-unknown-none` and puts
//! the object in OUT_DIR, where `probe::loader` includes it.
//!
//! The probe is compiled by a pinned nightly whose LLVM (22) matches the one
//! `bpf-linker` is built against (a newer nightly's bitcode fails to link
//! with "Invalid record"); `cargo xtask setup` installs both.

use aya_build::{Package, Toolchain};

/// The nightly toolchain with LLVM 22, the LLVM of `bpf-linker` 0.13 built
/// with `--features llvm-22`. Keep in sync with xtask's setup.
const PROBE_TOOLCHAIN: &str = "nightly-2026-06-01";

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf-probe");
    aya_build::build_ebpf(
        [Package {
            name: "ebpf-probe",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(PROBE_TOOLCHAIN),
    )
}
