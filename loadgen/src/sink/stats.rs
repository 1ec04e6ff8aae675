//! The sink's counts over plain HTTP/1.1: any `GET` answers the tally as JSON.
//! A blocking thread is enough (one poller, a few requests a second), and it
//! keeps the endpoint answering even while the async workers are saturated.

use super::tally::Tally;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The most request-head bytes read before answering.
const MAX_REQUEST_HEAD: usize = 8 << 10;

/// Serves `listener` on a new thread for the life of the process.
pub(crate) fn spawn(listener: TcpListener, tally: Arc<Tally>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("otel-sink-stats".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &tally) {
                            eprintln!("otel-sink: stats request: {e}");
                        }
                    }
                    Err(e) => eprintln!("otel-sink: stats accept: {e}"),
                }
            }
        })?;
    Ok(())
}

fn answer(mut stream: TcpStream, tally: &Tally) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let (status, body) = if head.starts_with(b"GET ") {
        ("200 OK", tally.to_json())
    } else {
        (
            "405 Method Not Allowed",
            "{\"error\":\"only GET\"}".to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}
