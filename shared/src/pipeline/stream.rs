//! The streaming engine: dump SQL in, fingerprint + compressed parts uploaded out, in bounded memory.
//!
//! ```text
//! pg_dump stdout ─read─▶ fingerprint ─▶ compressor ─▶ SHA-256 ─▶ part buffer ─channel(1)─▶ uploads (≤ N in flight)
//!                 └──────────── one blocking thread ─────────────────────────┘           └── async tasks ──┘
//! ```
//!
//! Memory is bounded by the read buffer, the part being filled, one queued part, the parts in flight and the
//! compressor's window; none of it depends on the database's size. The stream never completes the upload: it
//! returns what the caller needs to decide (the fingerprint, the parts, the digest) and the caller completes
//! or aborts, after it has also seen pg_dump's exit status.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::domain::fingerprint::{DumpSummary, FingerprintBuilder, FingerprintError};
use crate::ports::{MultipartUpload, PartToUpload, StoreError, UploadedPart};

use super::codec::Codec;
use super::parts::{PartSizer, S3_MAX_PARTS};

const READ_BUFFER: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub codec: Codec,
    pub level: i32,
    /// Compressor worker threads (zstd); 0 or 1 compresses on the reading thread.
    pub compressor_threads: u32,
    pub part_sizer: PartSizer,
    /// Parts uploading at once; with one more queued and one filling, this bounds memory.
    pub parts_in_flight: usize,
}

impl StreamSettings {
    pub fn new(codec: Codec, level: i32) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        StreamSettings { codec, level, compressor_threads: cores.min(4), part_sizer: PartSizer::default(), parts_in_flight: 2 }
    }
}

/// Live counters for progress displays; updated as the stream moves.
#[derive(Debug, Default)]
pub struct Progress {
    pub raw_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub uploaded_bytes: AtomicU64,
}

impl Progress {
    pub fn reset(&self) {
        self.raw_bytes.store(0, Ordering::Relaxed);
        self.stored_bytes.store(0, Ordering::Relaxed);
        self.uploaded_bytes.store(0, Ordering::Relaxed);
    }
}

/// What a stream that ran to the end produced. The upload is still open.
#[derive(Debug, Clone)]
pub struct StreamResult {
    pub summary: DumpSummary,
    pub stored_bytes: u64,
    /// Hex SHA-256 of the whole stored (compressed) object.
    pub sha256: String,
    pub parts: Vec<UploadedPart>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the dump failed: {0}")]
    Read(#[source] io::Error),
    #[error("compressing the dump failed: {0}")]
    Compress(#[source] io::Error),
    #[error("the dump is incomplete: {0}")]
    Incomplete(#[from] FingerprintError),
    #[error("uploading a part failed: {0}")]
    Upload(#[from] StoreError),
    #[error("the dump outgrew S3's {S3_MAX_PARTS} parts (about 8 TiB at Backstop's part sizes)")]
    TooManyParts,
    #[error("a pipeline stage stopped unexpectedly: {0}")]
    Internal(String),
}

/// Streams `source` through fingerprint, compression and hashing into `upload`'s parts.
pub async fn stream_to_upload(
    source: Box<dyn Read + Send>,
    upload: Arc<dyn MultipartUpload>,
    settings: StreamSettings,
    progress: Arc<Progress>,
) -> Result<StreamResult, StreamError> {
    let (parts_tx, parts_rx) = mpsc::channel::<PartToUpload>(1);
    let producer_progress = progress.clone();
    let producer = tokio::task::spawn_blocking(move || produce_parts(source, settings, parts_tx, producer_progress));
    let uploaded = upload_parts(parts_rx, upload, settings.parts_in_flight, &progress).await;

    let produced = producer.await.map_err(|e| StreamError::Internal(format!("the compressing thread panicked: {e}")))?;
    // An upload failure makes the producer fail too (its channel closes); the upload's error is the cause.
    let parts = uploaded?;
    let (summary, stored_bytes, sha256) = produced?;
    Ok(StreamResult { summary, stored_bytes, sha256, parts })
}

/// The blocking half: read, fingerprint, compress, hash, cut into parts.
fn produce_parts(
    mut source: Box<dyn Read + Send>,
    settings: StreamSettings,
    parts_tx: mpsc::Sender<PartToUpload>,
    progress: Arc<Progress>,
) -> Result<(DumpSummary, u64, String), StreamError> {
    let writer = PartWriter::new(settings.part_sizer, parts_tx, progress.clone());
    let mut encoder = settings
        .codec
        .encoder(writer, settings.level, settings.compressor_threads)
        .map_err(StreamError::Compress)?;
    let mut fingerprint = FingerprintBuilder::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        let chunk = &buffer[..n];
        fingerprint.feed(chunk)?;
        encoder.write_all(chunk).map_err(writer_error)?;
        progress.raw_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Checked before the compressor's trailer is written: a cut-short dump never yields a final part.
    let summary = fingerprint.finish()?;
    let writer = encoder.finish().map_err(writer_error)?;
    let (stored_bytes, sha256) = writer.finish()?;
    Ok((summary, stored_bytes, sha256))
}

/// Why the part writer refused bytes; carried inside the `io::Error` the compressor hands back.
#[derive(Debug, thiserror::Error)]
enum PartWriterStop {
    #[error("the part uploads stopped")]
    UploadsStopped,
    #[error("too many parts")]
    TooManyParts,
}

fn writer_error(e: io::Error) -> StreamError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<PartWriterStop>()) {
        // The upload side failed and reports its own error; this one only says the producer stopped for it.
        Some(PartWriterStop::UploadsStopped) => StreamError::Internal(PartWriterStop::UploadsStopped.to_string()),
        Some(PartWriterStop::TooManyParts) => StreamError::TooManyParts,
        None => StreamError::Compress(e),
    }
}

/// Collects compressed bytes into parts of the sizer's size, hashing the whole object and each part.
struct PartWriter {
    sizer: PartSizer,
    buffer: Vec<u8>,
    next_part: u32,
    part_hasher: Sha256,
    object_hasher: Sha256,
    stored_bytes: u64,
    parts_tx: mpsc::Sender<PartToUpload>,
    progress: Arc<Progress>,
}

impl PartWriter {
    fn new(sizer: PartSizer, parts_tx: mpsc::Sender<PartToUpload>, progress: Arc<Progress>) -> Self {
        PartWriter {
            sizer,
            buffer: Vec::with_capacity(sizer.size_of(1)),
            next_part: 1,
            part_hasher: Sha256::new(),
            object_hasher: Sha256::new(),
            stored_bytes: 0,
            parts_tx,
            progress,
        }
    }

    fn send_part(&mut self) -> io::Result<()> {
        if self.next_part > S3_MAX_PARTS {
            return Err(io::Error::other(PartWriterStop::TooManyParts));
        }
        let number = self.next_part;
        self.next_part += 1;
        let capacity = self.sizer.size_of(self.next_part);
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(capacity));
        let sha256 = std::mem::take(&mut self.part_hasher).finalize().into();
        self.parts_tx
            .blocking_send(PartToUpload { number, body: Bytes::from(body), sha256 })
            .map_err(|_| io::Error::other(PartWriterStop::UploadsStopped))
    }

    /// Sends the last part (possibly short: S3 allows it) and returns the object's size and SHA-256.
    fn finish(mut self) -> Result<(u64, String), StreamError> {
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part().map_err(writer_error)?;
        }
        Ok((self.stored_bytes, hex::encode(self.object_hasher.finalize())))
    }
}

impl Write for PartWriter {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        self.object_hasher.update(data);
        self.stored_bytes += data.len() as u64;
        self.progress.stored_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        while !data.is_empty() {
            let room = self.sizer.size_of(self.next_part) - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            self.part_hasher.update(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.sizer.size_of(self.next_part) {
                self.send_part()?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The async half: upload parts as they come, at most `in_flight` at once, in any order.
async fn upload_parts(
    mut parts_rx: mpsc::Receiver<PartToUpload>,
    upload: Arc<dyn MultipartUpload>,
    in_flight: usize,
    progress: &Progress,
) -> Result<Vec<UploadedPart>, StreamError> {
    let mut running: JoinSet<Result<(UploadedPart, u64), StoreError>> = JoinSet::new();
    let mut done = Vec::new();
    let mut receiving = true;
    while receiving || !running.is_empty() {
        tokio::select! {
            part = parts_rx.recv(), if receiving && running.len() < in_flight.max(1) => match part {
                Some(part) => {
                    let upload = upload.clone();
                    running.spawn(async move {
                        let len = part.body.len() as u64;
                        upload.upload_part(part).await.map(|p| (p, len))
                    });
                }
                None => receiving = false,
            },
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let (part, len) = joined.map_err(|e| StreamError::Internal(format!("a part upload panicked: {e}")))??;
                progress.uploaded_bytes.fetch_add(len, Ordering::Relaxed);
                done.push(part);
            }
        }
    }
    done.sort_by_key(|p| p.number);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryStore;
    use crate::ports::ObjectStore;

    const DUMP: &[u8] = b"-- Dumped from database version 15.18\nCOPY public.t (a) FROM stdin;\n1\n2\n\\.\n--\n-- PostgreSQL database dump complete\n--\n";

    fn small_parts() -> StreamSettings {
        StreamSettings {
            codec: Codec::Gzip,
            level: 1,
            compressor_threads: 1,
            // Tiny parts so a small test input spans many of them; the memory store does not enforce S3's minimum.
            part_sizer: PartSizer { initial: 1024, parts_per_doubling: 3 },
            parts_in_flight: 2,
        }
    }

    fn big_dump() -> Vec<u8> {
        let mut dump = b"COPY public.big (a, b) FROM stdin;\n".to_vec();
        for i in 0..20_000u32 {
            // Pseudo-random text so the compressed output spans many parts.
            dump.extend_from_slice(format!("{i}\t{:x}\n", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).as_bytes());
        }
        dump.extend_from_slice(b"\\.\n-- PostgreSQL database dump complete\n");
        dump
    }

    #[tokio::test]
    async fn given_a_dump_spanning_many_parts_then_the_parts_reassemble_to_the_compressed_dump() {
        let store = MemoryStore::default();
        let upload = store.create_multipart("k", "x").await.unwrap();
        let dump = big_dump();
        let result = stream_to_upload(Box::new(std::io::Cursor::new(dump.clone())), upload.clone(), small_parts(), Arc::default())
            .await
            .unwrap();
        assert!(result.parts.len() > 5, "{} parts", result.parts.len());
        assert_eq!(result.summary.fingerprint.table("public", "big").unwrap().rows, 20_000);
        upload.complete(result.parts.clone()).await.unwrap();
        let stored = store.object_bytes("k").unwrap();
        assert_eq!(stored.len() as u64, result.stored_bytes);
        assert_eq!(hex::encode(Sha256::digest(&stored)), result.sha256);
        assert_eq!(crate::pipeline::codec::decode_all(Codec::Gzip, &stored).unwrap(), dump);
    }

    #[tokio::test]
    async fn given_a_cut_short_dump_then_the_stream_fails_and_nothing_is_completed() {
        let store = MemoryStore::default();
        let upload = store.create_multipart("k", "x").await.unwrap();
        let cut = DUMP[..40].to_vec();
        let err = stream_to_upload(Box::new(std::io::Cursor::new(cut)), upload, small_parts(), Arc::default()).await.unwrap_err();
        assert!(matches!(err, StreamError::Incomplete(_)), "{err}");
        assert!(store.object_bytes("k").is_none());
    }

    #[tokio::test]
    async fn given_a_failing_part_upload_then_the_stream_fails_with_the_upload_error() {
        let store = MemoryStore::default();
        store.fail_part_uploads_from(3);
        let upload = store.create_multipart("k", "x").await.unwrap();
        let err = stream_to_upload(Box::new(std::io::Cursor::new(big_dump())), upload, small_parts(), Arc::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::Upload(_)), "{err}");
    }

    #[tokio::test]
    async fn given_a_read_error_then_the_stream_fails() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset"))
            }
        }
        let store = MemoryStore::default();
        let upload = store.create_multipart("k", "x").await.unwrap();
        let err = stream_to_upload(Box::new(Broken), upload, small_parts(), Arc::default()).await.unwrap_err();
        assert!(matches!(err, StreamError::Read(_)), "{err}");
    }
}
