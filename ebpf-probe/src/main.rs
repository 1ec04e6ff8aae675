//! The BPF programs of the eBPF agent: tracepoints on syscall entry and
//! exit (BTF tracepoints, or raw ones on kernels without BTF) that follow
//! the TCP connections of selected processes and copy the first bytes of
//! every read and write on them to a ring buffer. Built for
//! `bpfel-unknown-none` by the agent's build script; on the host this is an
//! empty program.
//!
//! Only tracepoints: the kernels this runs on may lack kprobes (and fentry),
//! and the `sys_enter`/`sys_exit` tracepoints are a stable ABI. The cost
//! for an unselected process is two array loads per syscall it makes.

#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
