//! The TLS crypto provider of every component (receivers, exporters,
//! extensions): one place to change it.

use rustls::crypto::CryptoProvider;
use std::sync::Arc;

/// rustls with *ring*, the backend the workspace builds rustls with.
///
/// rustls 0.23.48 deprecates `ring::default_provider` because *ring* has
/// no post-quantum key exchange; its classical suites are what otelcol
/// (Go's crypto/tls) offers by default too. Moving to aws-lc-rs, which
/// has them, happens here.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
