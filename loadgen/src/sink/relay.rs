//! The byte-relay floor: accepts TCP connections and copies bytes both ways
//! to an upstream, with no parsing at all. The cheapest any collector could
//! be while still moving the bytes through a process of its own.

use anyhow::Context;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// Bytes read per syscall in each direction.
const COPY_BUFFER: usize = 256 << 10;

/// Relays every connection accepted on `listener` to `upstream`, for ever.
pub(crate) async fn run(listener: TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    loop {
        let (mut inbound, peer) = listener.accept().await.context("accepting a connection")?;
        tokio::spawn(async move {
            let mut outbound = match TcpStream::connect(upstream).await {
                Ok(stream) => stream,
                Err(e) => {
                    eprintln!("otel-sink relay: connecting to {upstream} for {peer}: {e}");
                    return;
                }
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let copied = tokio::io::copy_bidirectional_with_sizes(
                &mut inbound,
                &mut outbound,
                COPY_BUFFER,
                COPY_BUFFER,
            )
            .await;
            if let Err(e) = copied
                && e.kind() != std::io::ErrorKind::ConnectionReset
            {
                eprintln!("otel-sink relay: {peer} <-> {upstream}: {e}");
            }
        });
    }
}
