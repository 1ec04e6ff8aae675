//! gRPC message framing with this exporter's own compression.
//!
//! A gRPC message on the wire is `[compressed flag u8][length u32 BE]
//! [message]`. The request's protobuf bytes (the received segments when no
//! processor changed the batch) are written once, straight into the frame
//! buffer: copied as they are, or compressed from the segments with the
//! configured level. gzip and zstd states are pooled per sender, so a
//! request does not allocate and initialize a fresh compressor.
//!
//! gzip is libdeflate's: it compresses a whole buffer at once, which lets
//! it skip a streaming compressor's bookkeeping. On the bench's spans it is
//! 2.2x faster than zlib (zlib-rs) at level 6 for the same size (19.7%
//! against 19.4% of the input), and at level 1 as fast as zlib's level 1
//! for a fifth fewer bytes (20.7% against 26.1%). A message of several
//! segments is first joined in the state's scratch buffer.

use super::config::Compression;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

/// Length of the gRPC message prefix: flag and length.
pub(super) const PREFIX_LEN: usize = 5;

/// Compressor states kept for reuse; one per concurrent send is enough.
const POOL_SIZE: usize = 16;

/// Frames export requests, compressed as configured.
#[derive(Clone)]
pub(super) struct FrameEncoder {
    /// `None` for no compression, else the algorithm and its level.
    compression: Option<(Compression, i32)>,
    pool: Arc<Mutex<Vec<State>>>,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// One gRPC message on the wire, as the request body: the prefix and the
/// message in one or more chunks, sent in order.
#[derive(Debug)]
pub(super) struct Frame {
    chunks: VecDeque<Bytes>,
}

impl Frame {
    /// Bytes left to send.
    fn remaining(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }
}

impl hyper::body::Body for Frame {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(
            self.chunks
                .pop_front()
                .map(|chunk| Ok(hyper::body::Frame::data(chunk))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining())
    }
}

/// A reusable compressor.
enum State {
    Gzip(Box<Gzip>),
    Zstd(Box<zstd::stream::raw::Encoder<'static>>),
}

/// libdeflate's compressor and the buffer a message of several segments is
/// joined in (its input must be one slice).
struct Gzip {
    compressor: libdeflater::Compressor,
    joined: Vec<u8>,
}

/// A joined message larger than this does not keep its buffer in the pool:
/// requests are split under 4 MiB, so this keeps every usual one while a
/// pooled state never holds more than this much.
const MAX_KEPT_JOIN_BUFFER: usize = 8 << 20;

impl FrameEncoder {
    /// An encoder for `compression` at `level` (`None`: uncompressed).
    pub(super) fn new(compression: Compression, level: Option<i32>) -> Self {
        let compression = match (compression, level) {
            (Compression::None, _) | (_, None) => None,
            (compression, Some(level)) => Some((compression, level)),
        };
        Self {
            compression,
            pool: Arc::default(),
        }
    }

    /// The `grpc-encoding` of the frames, when compressed.
    pub(super) fn encoding(&self) -> Option<&'static str> {
        match self.compression {
            Some((Compression::Gzip, _)) => Some("gzip"),
            Some((Compression::Zstd, _)) => Some("zstd"),
            Some((Compression::None, _)) | None => None,
        }
    }

    /// One gRPC frame holding the message made of `segments`.
    pub(super) fn encode(&self, segments: &[Bytes]) -> Result<Frame, String> {
        let total: usize = segments.iter().map(Bytes::len).sum();
        let Some((compression, level)) = self.compression else {
            // Uncompressed, the segments go out as they are, after the
            // prefix: the transport writes each from its own buffer, so
            // the message is never copied into one.
            let mut prefix = [0; PREFIX_LEN];
            prefix[1..].copy_from_slice(&message_len(total)?.to_be_bytes());
            let mut chunks = VecDeque::with_capacity(1 + segments.len());
            chunks.push_back(Bytes::copy_from_slice(&prefix));
            chunks.extend(segments.iter().filter(|s| !s.is_empty()).cloned());
            return Ok(Frame { chunks });
        };
        let mut state = self.take(compression, level)?;
        let result = match &mut state {
            State::Gzip(state) => gzip(state, segments, total),
            State::Zstd(encoder) => {
                let mut frame = vec![1, 0, 0, 0, 0];
                zstd(encoder, segments, total, &mut frame).map(|()| frame)
            }
        };
        // A state is returned to the pool only after a clean finish (the
        // reset below), so a failed one is never reused.
        let mut frame = result?;
        self.give_back(state);
        let len = message_len(frame.len() - PREFIX_LEN)?;
        frame[1..PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(Frame {
            chunks: VecDeque::from([Bytes::from(frame)]),
        })
    }

    fn take(&self, compression: Compression, level: i32) -> Result<State, String> {
        if let Some(state) = self.pool.lock().pop() {
            return Ok(state);
        }
        match compression {
            Compression::Gzip => {
                let level = libdeflater::CompressionLvl::new(level)
                    .map_err(|e| format!("gzip level {level}: {e:?}"))?;
                Ok(State::Gzip(Box::new(Gzip {
                    compressor: libdeflater::Compressor::new(level),
                    joined: Vec::new(),
                })))
            }
            Compression::Zstd => zstd::stream::raw::Encoder::new(level)
                .map(|encoder| State::Zstd(Box::new(encoder)))
                .map_err(|e| format!("zstd level {level}: {e}")),
            Compression::None => Err("no compression configured".into()),
        }
    }

    fn give_back(&self, mut state: State) {
        let clean = match &mut state {
            State::Gzip(gzip) => {
                // libdeflate keeps no state between messages.
                if gzip.joined.capacity() > MAX_KEPT_JOIN_BUFFER {
                    gzip.joined = Vec::new();
                }
                true
            }
            State::Zstd(encoder) => encoder.reinit().is_ok(),
        };
        let mut pool = self.pool.lock();
        if clean && pool.len() < POOL_SIZE {
            pool.push(state);
        }
    }
}

fn message_len(len: usize) -> Result<u32, String> {
    u32::try_from(len).map_err(|_| format!("message of {len} bytes is too large for gRPC"))
}

/// Room to keep free in the output while compressing, so every call makes
/// progress.
const MIN_SPARE: usize = 4096;

fn ensure_spare(out: &mut Vec<u8>, at_least: usize) {
    if out.capacity() - out.len() < at_least {
        out.reserve(at_least.max(out.capacity() / 4));
    }
}

/// A compressed frame (its length left 0) holding the gzip (RFC 1952, as
/// gRPC's `gzip` encoding) of `segments`.
fn gzip(gzip: &mut Gzip, segments: &[Bytes], total: usize) -> Result<Vec<u8>, String> {
    let input: &[u8] = match segments {
        [] => &[],
        [only] => only,
        _ => {
            gzip.joined.clear();
            gzip.joined.reserve(total);
            for segment in segments {
                gzip.joined.extend_from_slice(segment);
            }
            &gzip.joined
        }
    };
    let bound = gzip.compressor.gzip_compress_bound(input.len());
    // A zeroed allocation (calloc: fresh pages come zeroed, no pass over
    // them), so the bound's unused tail is never touched.
    let mut frame = vec![0; PREFIX_LEN + bound];
    frame[0] = 1;
    let written = gzip
        .compressor
        .gzip_compress(input, &mut frame[PREFIX_LEN..])
        .map_err(|e| format!("gzip: {e:?}"))?;
    frame.truncate(PREFIX_LEN + written);
    Ok(frame)
}

/// zstd of `segments` appended to `out`.
fn zstd(
    encoder: &mut zstd::stream::raw::Encoder<'static>,
    segments: &[Bytes],
    total: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let error = |e: std::io::Error| format!("zstd: {e}");
    encoder
        .set_pledged_src_size(u64::try_from(total).ok())
        .map_err(error)?;
    out.reserve(zstd::zstd_safe::compress_bound(total));
    for segment in segments {
        let mut input = InBuffer::around(segment);
        while input.pos() < segment.len() {
            ensure_spare(out, MIN_SPARE);
            let (pos, read) = (out.len(), input.pos());
            let mut output = OutBuffer::around_pos(out, pos);
            encoder.run(&mut input, &mut output).map_err(error)?;
            if input.pos() == read && output.pos() == pos {
                return Err("zstd: no progress".into());
            }
        }
    }
    loop {
        ensure_spare(out, MIN_SPARE);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        if encoder.finish(&mut output, true).map_err(error)? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector_core::compression::Encoding;

    fn decompress(encoding: &str, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        Encoding::from_header(encoding)
            .ok_or_else(|| format!("unknown encoding {encoding}"))?
            .decompress(data, limit)
            .map_err(|e| e.to_string())
    }

    fn segments() -> Vec<Bytes> {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("span-{} ", i % 977).into_bytes())
            .collect();
        text.chunks(70_001)
            .map(Bytes::copy_from_slice)
            .chain([Bytes::new(), Bytes::from_static(b"end")])
            .collect()
    }

    fn joined(segments: &[Bytes]) -> Vec<u8> {
        segments.iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// What the body sends, read through `Body` as the transport reads it.
    fn sent(mut frame: Frame) -> Vec<u8> {
        use hyper::body::Body;
        let hint = frame.size_hint().exact();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(chunk)) = Pin::new(&mut frame).poll_frame(&mut cx) {
            out.extend_from_slice(chunk.expect("infallible").data_ref().expect("data"));
        }
        assert!(frame.is_end_stream());
        assert_eq!(hint, Some(out.len() as u64));
        out
    }

    fn unframe(frame: &[u8]) -> (bool, &[u8]) {
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(frame.len(), PREFIX_LEN + len);
        (frame[0] == 1, &frame[PREFIX_LEN..])
    }

    #[test]
    fn uncompressed_frames_send_the_segments_as_they_are() {
        let segments = segments();
        let frame = sent(
            FrameEncoder::new(Compression::None, None)
                .encode(&segments)
                .unwrap(),
        );
        let (compressed, message) = unframe(&frame);
        assert!(!compressed);
        assert_eq!(message, joined(&segments));
        // The very buffers: no copy (the empty segment is left out).
        let frame = FrameEncoder::new(Compression::None, None)
            .encode(&segments)
            .unwrap();
        let sent_from: Vec<*const u8> = frame.chunks.iter().skip(1).map(|c| c.as_ptr()).collect();
        let given: Vec<*const u8> = segments
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_ptr())
            .collect();
        assert_eq!(sent_from, given);
        let empty = sent(
            FrameEncoder::new(Compression::None, None)
                .encode(&[])
                .unwrap(),
        );
        assert_eq!(&empty[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn gzip_levels_and_zstd_round_trip_with_pooled_states() {
        let segments = segments();
        let original = joined(&segments);
        let mut sizes = Vec::new();
        for (compression, level) in [
            (Compression::Gzip, 1),
            (Compression::Gzip, 9),
            (Compression::Zstd, 1),
            (Compression::Zstd, 19),
        ] {
            let encoder = FrameEncoder::new(compression, Some(level));
            let name = encoder.encoding().unwrap();
            // The second and third rounds reuse the pooled state.
            for round in 0..3 {
                let input = if round == 1 {
                    &segments[..2]
                } else {
                    &segments
                };
                let frame = sent(encoder.encode(input).unwrap());
                let (compressed, message) = unframe(&frame);
                assert!(compressed);
                let limit = original.len();
                assert_eq!(
                    decompress(name, message, limit).unwrap(),
                    joined(input),
                    "{name} level {level} round {round}"
                );
                if round == 0 {
                    sizes.push(message.len());
                }
            }
            assert_eq!(encoder.pool.lock().len(), 1);
        }
        assert!(
            sizes[1] < sizes[0],
            "gzip 9 is smaller than gzip 1: {sizes:?}"
        );
        assert!(
            sizes[3] < sizes[2],
            "zstd 19 is smaller than zstd 1: {sizes:?}"
        );
        assert!(
            sizes.iter().all(|&size| size < original.len() / 4),
            "{sizes:?}"
        );
    }

    #[test]
    fn empty_messages_compress() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let encoder = FrameEncoder::new(compression, Some(1));
            let frame = sent(encoder.encode(&[]).unwrap());
            let (_, message) = unframe(&frame);
            assert!(
                decompress(encoder.encoding().unwrap(), message, 10)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 100_000];
        let gz = sent(
            FrameEncoder::new(Compression::Gzip, Some(1))
                .encode(&[Bytes::from(big.clone())])
                .unwrap(),
        );
        assert_eq!(decompress("gzip", &gz[5..], 100_000).unwrap(), big);
        assert!(decompress("gzip", &gz[5..], 99_999).is_err());
        assert!(decompress("snappy", &gz[5..], 10).is_err());
        assert!(decompress("gzip", b"not gzip", 10).is_err());
    }
}
