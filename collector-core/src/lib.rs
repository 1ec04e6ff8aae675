//! Runtime of the ollyscale-otel collectors.
//!
//! Data path: a receiver ([`receiver::otlp`]) decodes a request into a
//! [`pdata::Telemetry`] batch and hands it to its pipelines; processors
//! ([`processor`]) transform it in order; exporters (in the `exporters` crate)
//! send it on. [`config`] reads otelcol YAML, [`pipeline`] checks it against
//! the [`component::Factories`] a binary registers and builds the graph, and
//! [`service`] runs it with signals, reloads and graceful shutdown.

#![warn(missing_docs, missing_debug_implementations)]

pub mod cli;
pub mod component;
pub mod compression;
pub mod config;
pub mod consumer;
pub mod crypto;
pub mod extension;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod observe;
pub mod pdata;
pub mod pem;
pub mod pipeline;
pub mod processor;
pub mod receiver;
pub mod service;
