//! The three collector binaries share this crate: the component list, the
//! embedded default config of each role, and the command line.

#![warn(missing_docs, missing_debug_implementations)]

pub mod cli;
pub mod components;
pub mod role;
