//! Compression codecs by their HTTP `Content-Encoding` names, with
//! decompression that stops at a size limit instead of inflating a bomb.

use std::io::Read;

/// A supported content encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// No compression (`identity` or absent).
    Identity,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// zlib-wrapped deflate (HTTP's `deflate`; also accepted as `zlib`).
    Deflate,
    /// Snappy: the block format, falling back to the framed format.
    Snappy,
    /// Snappy framed format (`x-snappy-framed`).
    SnappyFramed,
    /// LZ4 frame format.
    Lz4,
}

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The decompressed data would exceed the limit.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The data is not valid for its encoding.
    #[error("invalid {encoding} data: {reason}")]
    Invalid {
        /// The encoding name.
        encoding: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl Encoding {
    /// Parses a `Content-Encoding` value (case-insensitive). `None` for unknown ones.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "zstd" => Some(Encoding::Zstd),
            "deflate" | "zlib" => Some(Encoding::Deflate),
            "snappy" => Some(Encoding::Snappy),
            "x-snappy-framed" => Some(Encoding::SnappyFramed),
            "lz4" => Some(Encoding::Lz4),
            _ => None,
        }
    }

    /// The canonical header name.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Deflate => "deflate",
            Encoding::Snappy => "snappy",
            Encoding::SnappyFramed => "x-snappy-framed",
            Encoding::Lz4 => "lz4",
        }
    }

    /// Decompresses `data`, failing as soon as the output passes `limit`
    /// bytes: at most `limit + 1` bytes are ever produced.
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
        let invalid = |e: &dyn std::fmt::Display| DecompressError::Invalid {
            encoding: self.as_str(),
            reason: e.to_string(),
        };
        match self {
            Encoding::Identity => {
                if data.len() > limit {
                    return Err(DecompressError::TooLarge { limit });
                }
                Ok(data.to_vec())
            }
            Encoding::Gzip => read_limited(flate2::read::GzDecoder::new(data), limit, self),
            Encoding::Deflate => read_limited(flate2::read::ZlibDecoder::new(data), limit, self),
            Encoding::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| invalid(&e))?;
                read_limited(decoder, limit, self)
            }
            Encoding::Lz4 => read_limited(lz4_flex::frame::FrameDecoder::new(data), limit, self),
            Encoding::SnappyFramed => {
                read_limited(snap::read::FrameDecoder::new(data), limit, self)
            }
            Encoding::Snappy => {
                // The block format states its length up front: check it before allocating.
                match snap::raw::decompress_len(data) {
                    Ok(len) if len > limit => Err(DecompressError::TooLarge { limit }),
                    Ok(_) => match snap::raw::Decoder::new().decompress_vec(data) {
                        Ok(out) => Ok(out),
                        Err(block_err) => {
                            read_limited(snap::read::FrameDecoder::new(data), limit, self)
                                .map_err(|_| invalid(&block_err))
                        }
                    },
                    Err(_) => read_limited(snap::read::FrameDecoder::new(data), limit, self),
                }
            }
        }
    }

    /// Compresses `data` (used by exporters).
    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Encoding::Identity => Ok(data.to_vec()),
            // libdeflate at level 1, as the otlp exporter: whole buffers,
            // about as fast as zlib's level 1 and a fifth smaller (README,
            // "Performance").
            Encoding::Gzip => deflate_whole(
                data,
                |c, n| c.gzip_compress_bound(n),
                |c, i, o| c.gzip_compress(i, o),
            ),
            Encoding::Deflate => deflate_whole(
                data,
                |c, n| c.zlib_compress_bound(n),
                |c, i, o| c.zlib_compress(i, o),
            ),
            Encoding::Zstd => zstd::bulk::compress(data, 1),
            Encoding::Snappy => snap::raw::Encoder::new()
                .compress_vec(data)
                .map_err(std::io::Error::other),
            Encoding::SnappyFramed => {
                let mut e = snap::write::FrameEncoder::new(Vec::new());
                e.write_all(data)?;
                e.into_inner()
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }
            Encoding::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(data)?;
                e.finish().map_err(std::io::Error::other)
            }
        }
    }
}

fn read_limited(
    reader: impl Read,
    limit: usize,
    encoding: Encoding,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Invalid {
            encoding: encoding.as_str(),
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

/// `data` compressed whole by libdeflate at level 1, in the container
/// `compress` writes (gzip or zlib), into a buffer of `bound`'s size.
fn deflate_whole(
    data: &[u8],
    bound: impl Fn(&mut libdeflater::Compressor, usize) -> usize,
    compress: impl Fn(
        &mut libdeflater::Compressor,
        &[u8],
        &mut [u8],
    ) -> Result<usize, libdeflater::CompressionError>,
) -> std::io::Result<Vec<u8>> {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::fastest());
    let mut out = vec![0; bound(&mut compressor, data.len())];
    let written = compress(&mut compressor, data, &mut out).map_err(std::io::Error::other)?;
    out.truncate(written);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Encoding; 7] = [
        Encoding::Identity,
        Encoding::Gzip,
        Encoding::Zstd,
        Encoding::Deflate,
        Encoding::Snappy,
        Encoding::SnappyFramed,
        Encoding::Lz4,
    ];

    #[test]
    fn round_trips_every_encoding() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for encoding in ALL {
            let packed = encoding.compress(&data).unwrap_or_default();
            let unpacked = encoding.decompress(&packed, data.len()).unwrap_or_default();
            assert_eq!(unpacked, data, "{encoding:?}");
        }
    }

    #[test]
    fn stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for encoding in ALL {
            let packed = encoding.compress(&zeros).unwrap_or_default();
            let result = encoding.decompress(&packed, 1 << 20);
            assert!(
                matches!(result, Err(DecompressError::TooLarge { .. })),
                "{encoding:?}: {result:?}"
            );
        }
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for encoding in ALL.into_iter().skip(1) {
            assert!(
                encoding.decompress(b"\xff\x00garbage", 1 << 20).is_err(),
                "{encoding:?}"
            );
        }
        assert_eq!(Encoding::from_header("br"), None);
        assert_eq!(Encoding::from_header("GZIP"), Some(Encoding::Gzip));
    }
}
