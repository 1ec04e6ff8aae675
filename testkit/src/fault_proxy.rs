//! A TCP proxy between two processes of a test (an agent and a gateway)
//! whose behaviour a test changes while traffic flows: pass-through, added
//! latency, reset, blackhole. It works on bytes, so it breaks a gRPC (or any
//! other) connection the way the network does, without the processes
//! knowing they are tested.
//!
//! It listens on a free loopback port and opens one connection to the
//! target per connection it accepts. A mode change applies at once to the
//! connections already open, not only to new ones: that is what a network
//! fault does, and what a client's connection pool has to survive.
//!
//! It counts connections, bytes and what each fault did, so a test can
//! check that the fault it asked for was met before asserting on its
//! outcome (a fault nobody ran into proves nothing).

use socket2::SockRef;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

/// What the proxy does with the bytes of every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways as they come.
    PassThrough,
    /// Holds each chunk read, in either direction, this long before
    /// forwarding it (a slow or distant link; chunks keep their order).
    Latency(Duration),
    /// Resets every connection, open or new (RST, as a peer that crashed
    /// or a firewall rejecting does): the client sees "connection reset".
    Reset,
    /// Accepts connections and reads everything, but forwards and answers
    /// nothing (a route that silently drops packets, a frozen peer behind a
    /// load balancer). The client's writes succeed; only its timeouts and
    /// keepalives can tell.
    Blackhole,
}

/// What the proxy has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes forwarded client -> target.
    pub bytes_up: u64,
    /// Bytes forwarded target -> client.
    pub bytes_down: u64,
    /// Chunks forwarded after the added latency.
    pub delayed_chunks: u64,
    /// Connections reset (RST sent to the client).
    pub resets: u64,
    /// Bytes read and thrown away while blackholed (either direction).
    pub bytes_discarded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    delayed_chunks: AtomicU64,
    resets: AtomicU64,
    bytes_discarded: AtomicU64,
}

/// The running proxy; stops when dropped (its runtime, and with it every
/// connection, goes away).
pub struct FaultProxy {
    /// Where it listens; give this to the client instead of the target.
    pub address: SocketAddr,
    /// Where it forwards to.
    pub target: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FaultProxy {
    /// Starts a pass-through proxy to `target` on a free loopback port, on
    /// its own runtime and thread (so it keeps working while the test's
    /// thread blocks on a process or a wait).
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let (mode, _) = watch::channel(Mode::PassThrough);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accept_mode = mode.clone();
        let accept_counters = counters.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        accept_counters.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(connection(
                            client,
                            target,
                            accept_mode.subscribe(),
                            accept_counters.clone(),
                        ));
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    () = accept => {}
                }
            });
            // Dropping the runtime here ends every connection task; their
            // sockets close with it.
        });
        FaultProxy {
            address,
            target,
            mode,
            counters,
            _stop: stop,
        }
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            delayed_chunks: c.delayed_chunks.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            bytes_discarded: c.bytes_discarded.load(Ordering::Relaxed),
        }
    }
}

/// Closes `stream` with RST instead of FIN: SO_LINGER with a zero timeout
/// makes the kernel abort the connection when the socket is closed, which
/// is what a client sees when its peer crashed or a middlebox rejected it.
fn abort(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One accepted connection, from its first byte to its end.
async fn connection(
    client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    let current = *mode.borrow_and_update();
    match current {
        Mode::Reset => {
            abort(&client);
            counters.resets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Mode::Blackhole => {
            // Never connects to the target: a connection accepted into a
            // hole has nothing behind it, even when the hole closes later.
            blackholed(client, mode, counters).await;
            return;
        }
        Mode::PassThrough | Mode::Latency(_) => {}
    }
    let upstream = match TcpStream::connect(target).await {
        Ok(upstream) => upstream,
        Err(_) => {
            // The target is down: the client sees its connection reset,
            // as close to "connection refused" as a proxy can get once it
            // accepted.
            abort(&client);
            counters.resets.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // Set when the connection met a blackhole: bytes were thrown away, so
    // its byte stream has a hole and can never be forwarded again (it
    // stays dead, as a connection whose packets were lost for good does,
    // until the client gives up on it or a reset ends it).
    let holed = Arc::new(AtomicBool::new(false));
    let up = pump(
        client_read,
        upstream_write,
        Direction::Up,
        mode.clone(),
        counters.clone(),
        holed.clone(),
    );
    let down = pump(
        upstream_read,
        client_write,
        Direction::Down,
        mode,
        counters.clone(),
        holed,
    );
    // Each direction ends on its own (a half-close is passed on and the
    // answer still flows back); a reset ends both, as both watch the mode.
    let (up, down) = tokio::join!(up, down);
    if up || down {
        counters.resets.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection accepted while blackholed: read and discard until the
/// client closes it or a reset comes.
async fn blackholed(client: TcpStream, mut mode: watch::Receiver<Mode>, counters: Arc<Counters>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut client = client;
    loop {
        tokio::select! {
            read = client.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    counters.bytes_discarded.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow_and_update() == Mode::Reset {
                    abort(&client);
                    counters.resets.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Client -> target.
    Up,
    /// Target -> client.
    Down,
}

/// Copies one direction under the current mode. Returns whether it ended
/// with a reset (the sockets then close with RST when their halves drop).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
    holed: Arc<AtomicBool>,
) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    // Both sockets are aborted, so that the target's side is reset too: a
    // gateway should see its peer vanish, not a clean close. The write half
    // is forgotten rather than dropped: dropping it would shut its
    // direction down (FIN) first, and a client that reads that FIN before
    // the RST sees a clean end instead of a reset.
    let reset = |from: &OwnedReadHalf, to: OwnedWriteHalf| {
        abort(from.as_ref());
        abort(to.as_ref());
        to.forget();
    };
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    // Passes the end on (FIN) so the other side sees it.
                    let _ = to.shutdown().await;
                    return false;
                }
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return false;
                }
                if *mode.borrow_and_update() == Mode::Reset {
                    reset(&from, to);
                    return true;
                }
                continue;
            }
        };
        let current = *mode.borrow_and_update();
        if current == Mode::Blackhole {
            holed.store(true, Ordering::Relaxed);
        }
        if holed.load(Ordering::Relaxed) {
            counters
                .bytes_discarded
                .fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        match current {
            Mode::Reset => {
                reset(&from, to);
                return true;
            }
            Mode::Latency(delay) => {
                tokio::time::sleep(delay).await;
                counters.delayed_chunks.fetch_add(1, Ordering::Relaxed);
                // The mode may have changed while the chunk was held.
                if *mode.borrow() == Mode::Reset {
                    reset(&from, to);
                    return true;
                }
            }
            Mode::PassThrough | Mode::Blackhole => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return false;
        }
        let counter = match direction {
            Direction::Up => &counters.bytes_up,
            Direction::Down => &counters.bytes_down,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::time::Instant;

    /// An echo server on its own thread: writes back what it reads.
    fn echo() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    fn connect(proxy: &FaultProxy) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(proxy.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
    }

    fn round_trip(stream: &mut std::net::TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(data)?;
        let mut back = vec![0u8; data.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn modes_apply_to_open_and_new_connections() {
        let proxy = FaultProxy::start(echo());
        let mut open = connect(&proxy);
        assert_eq!(round_trip(&mut open, b"hello").expect("echo"), b"hello");

        proxy.set(Mode::Latency(Duration::from_millis(100)));
        let started = Instant::now();
        assert_eq!(round_trip(&mut open, b"slow").expect("echo"), b"slow");
        // One chunk up and one down, 100 ms each.
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(proxy.stats().delayed_chunks >= 2);

        proxy.set(Mode::Blackhole);
        let mut holed = connect(&proxy);
        holed
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let lost = round_trip(&mut holed, b"lost").expect_err("no answer");
        assert!(matches!(
            lost.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        crate::eventually(
            "the blackholed bytes discarded",
            || proxy.stats().bytes_discarded,
            |n| *n >= 4,
        );

        proxy.set(Mode::Reset);
        // The open connection is reset by the proxy, not closed.
        let error = round_trip(&mut open, b"x").expect_err("reset");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
        let mut fresh = connect(&proxy);
        let error = round_trip(&mut fresh, b"x").expect_err("reset");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");

        proxy.set(Mode::PassThrough);
        let mut again = connect(&proxy);
        assert_eq!(round_trip(&mut again, b"back").expect("echo"), b"back");
        // A chunk is counted once written, which the client may see first.
        let stats = crate::eventually(
            "the echoed bytes counted",
            || proxy.stats(),
            |s| s.bytes_down == 13,
        );
        assert_eq!(stats.bytes_up, 13, "{stats:?}");
        assert_eq!(stats.connections, 4);
        assert_eq!(stats.resets, 3, "open, blackholed and fresh: {stats:?}");
    }
}
