//! Information about the client that sent a batch (otelcol's `client.Info`).

use std::net::SocketAddr;
use std::sync::Arc;

/// The sender of a batch: its address and, with the receiver's
/// `include_metadata`, its request headers / gRPC metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientInfo {
    /// Peer address of the connection.
    pub addr: Option<SocketAddr>,
    metadata: Option<Arc<Vec<(String, String)>>>,
}

impl ClientInfo {
    /// Client information with only a peer address.
    pub fn from_addr(addr: Option<SocketAddr>) -> Self {
        Self {
            addr,
            metadata: None,
        }
    }

    /// Client information with metadata. Keys are stored lower-case.
    pub fn with_metadata(addr: Option<SocketAddr>, metadata: Vec<(String, String)>) -> Self {
        let metadata = metadata
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Self {
            addr,
            metadata: Some(Arc::new(metadata)),
        }
    }

    /// All values of a metadata key (case-insensitive), in arrival order.
    pub fn get(&self, key: &str) -> Vec<&str> {
        let Some(metadata) = &self.metadata else {
            return Vec::new();
        };
        metadata
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when metadata was captured.
    pub fn has_metadata(&self) -> bool {
        self.metadata.is_some()
    }
}
