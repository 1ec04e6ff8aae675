//! The BPF programs of the eBPF agent: syscall tracepoints that follow the
//! TCP connections of selected processes and copy the first bytes of every
//! read and write on them to a ring buffer. Built for `bpfel-unknown-none` by
//! the agent's build script; on the host this is an empty program.
//!
//! Only tracepoints: the kernels this runs on may lack kprobes (and fentry),
//! and syscall tracepoints are a stable ABI. The cost for an unselected
//! process is one hash lookup per hooked syscall.

#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
