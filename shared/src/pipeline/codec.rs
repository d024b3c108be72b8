//! Compression codecs for dumps: zstd (multi-threaded) and gzip, both restorable with stock command-line tools.
//!
//! zstd is the default: measured on this project's corpus it keeps up with pg_dump on one spare core while
//! gzip cannot (docs/benchmarks.md). Frames carry their own checksum, so `zstd -t` / `gzip -t` can test a
//! downloaded dump without Backstop.

use std::io::{self, Write};

pub use crate::domain::codec::Codec;

/// Compresses frames one at a time, each into an independent zstd frame (with its checksum) or gzip member:
/// concatenated, they are one ordinary `.zst` / `.gz` file; apart, each decompresses on its own.
pub enum FrameCompressor {
    Zstd(zstd::bulk::Compressor<'static>),
    Gzip(flate2::Compression),
}

impl FrameCompressor {
    pub fn new(codec: Codec, level: i32) -> io::Result<Self> {
        Ok(match codec {
            Codec::Zstd => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                FrameCompressor::Zstd(c)
            }
            Codec::Gzip => FrameCompressor::Gzip(flate2::Compression::new(level as u32)),
        })
    }

    /// Replaces `out`'s contents with `frame` compressed.
    pub fn compress(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        match self {
            FrameCompressor::Zstd(c) => {
                out.reserve(zstd::zstd_safe::compress_bound(frame.len()));
                c.compress_to_buffer(frame, out)?;
            }
            FrameCompressor::Gzip(level) => {
                let mut e = flate2::write::GzEncoder::new(std::mem::take(out), *level);
                e.write_all(frame)?;
                *out = e.finish()?;
            }
        }
        Ok(())
    }
}

/// A running compressor; [`Encoder::finish`] writes the trailer and hands back the inner writer.
pub enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// Wraps `inner` in a compressor. `threads` > 1 enables zstd's multi-threaded mode (gzip is single-threaded).
    pub fn new(codec: Codec, inner: W, level: i32, threads: u32) -> io::Result<Encoder<W>> {
        Ok(match codec {
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, level)?;
                e.include_checksum(true)?;
                if threads > 1 {
                    e.multithread(threads)?;
                }
                Encoder::Zstd(e)
            }
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(inner, flate2::Compression::new(level as u32))),
        })
    }
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
        }
    }
}

/// Decompresses a whole stored object; used by tests and small objects, never on the backup path.
pub fn decode_all(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Codec::Zstd => zstd::stream::decode_all(data),
        Codec::Gzip => {
            let mut out = Vec::new();
            io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(data), &mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_frames_concatenate_to_one_ordinary_file() {
        let data: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Codec::Zstd, Codec::Gzip] {
            let mut c = FrameCompressor::new(codec, codec.default_level()).unwrap();
            let mut stored = Vec::new();
            let mut frame = Vec::new();
            for piece in data.chunks(1 << 20) {
                c.compress(piece, &mut frame).unwrap();
                assert_eq!(decode_all(codec, &frame).unwrap(), piece, "{codec:?}: a frame decodes alone");
                stored.extend_from_slice(&frame);
            }
            assert_eq!(decode_all(codec, &stored).unwrap(), data, "{codec:?}: the frames decode as one file");
        }
    }

    #[test]
    fn every_codec_round_trips_single_and_multi_threaded() {
        let data: Vec<u8> = (0..2_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Codec::Zstd, Codec::Gzip] {
            for threads in [1, 2] {
                let mut e = Encoder::new(codec, Vec::new(), codec.default_level(), threads).unwrap();
                e.write_all(&data).unwrap();
                let out = e.finish().unwrap();
                assert!(out.len() < data.len() / 4, "{codec:?} compresses");
                assert_eq!(decode_all(codec, &out).unwrap(), data, "{codec:?} threads={threads}");
            }
        }
    }
}
