//! Receivers.

pub mod otlp;
pub(crate) mod server;
pub mod tls;
