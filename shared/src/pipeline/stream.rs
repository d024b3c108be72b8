//! The streaming engine: dump SQL in, fingerprint + independently compressed frames uploaded out, in bounded
//! memory.
//!
//! ```text
//! pg_dump stdout ─▶ reader ─chunks─▶ framer (parse, fingerprint, cut) ─frames─▶ compressors ×N ─▶ sink ─parts─▶ uploads
//!                   thread          (the blocking task)                          threads        (order,     (async, ≤ M
//!                                                                                                SHA-256)    in flight)
//! ```
//!
//! - The **reader** only moves pg_dump's output into a few buffers, so a momentary stall downstream never
//!   stops pg_dump (and the server process behind it) while those buffers last.
//! - The **framer** (`pipeline::framer`) reads the SQL with the dump parser and cuts it into frames at table
//!   boundaries; the **compressors** compress frames side by side, each into an independent zstd frame or
//!   gzip member; the **sink** puts them back in order, hashes the object and each part, notes the layout
//!   (`domain::dump_layout`) and cuts S3 parts.
//!
//! Every channel between stages is bounded and the read and frame buffers are recycled (a compressed frame is a
//! fresh buffer, freed once in its part), so memory is bounded by the stages' buffers, never by the database's
//! size. The stream never completes the upload: it returns what the caller needs to decide (the fingerprint,
//! the layout, the parts, the digest) and the caller completes or aborts, after it has also seen pg_dump's exit
//! status. A dump cut short never yields its last frame, so never its last part.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::domain::dump_layout::{DumpLayout, LayoutBuilder, SegmentKind, FRAME_TARGET};
use crate::domain::dump_parser::DumpParseError;
use crate::domain::fingerprint::DumpSummary;
use crate::ports::{MultipartUpload, PartToUpload, StoreError, UploadedPart};

use super::codec::{Codec, FrameCompressor};
use super::framer::{FrameSink, Framer, FramerError, RawFrame, SinkClosed};
use super::parts::{PartSizer, S3_MAX_PARTS};

/// pg_dump's output is read in pieces of this size, with this many pieces queued ahead of the framer (beside
/// the 1 MiB pipe itself): slack for a moment's stall downstream, not throughput, which the CPU bounds.
const READ_BUFFER: usize = 1024 * 1024;
const READ_AHEAD: usize = 2;
/// Frames queued for the compressors, and compressed frames queued for the sink. One frame waiting for
/// whichever compressor frees first keeps them busy (the framer cuts the next meanwhile); every queued frame is
/// 2 MiB of the backup's memory.
const FRAMES_QUEUED: usize = 1;
const COMPRESSED_QUEUED: usize = 2;

#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub codec: Codec,
    pub level: i32,
    /// Frames compressed side by side (at least 1).
    pub compressor_threads: u32,
    pub part_sizer: PartSizer,
    /// Parts uploading at once; with the one filling, this bounds memory (a full part waits for a free slot).
    pub parts_in_flight: usize,
}

impl StreamSettings {
    pub fn new(codec: Codec, level: i32) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        StreamSettings {
            codec,
            level,
            compressor_threads: cores.clamp(1, 4),
            part_sizer: PartSizer::default(),
            parts_in_flight: 2,
        }
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
    pub layout: DumpLayout,
    pub stored_bytes: u64,
    /// Hex SHA-256 of the whole stored (compressed) object.
    pub sha256: String,
    pub parts: Vec<UploadedPart>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the dump failed: {0}")]
    Read(io::Error),
    #[error("compressing the dump failed: {0}")]
    Compress(io::Error),
    #[error("the dump is incomplete: {0}")]
    Incomplete(DumpParseError),
    #[error("uploading a part failed: {0}")]
    Upload(StoreError),
    #[error("the dump outgrew S3's {S3_MAX_PARTS} parts (about 5.9 TiB at Backstop's part sizes)")]
    TooManyParts,
    #[error("a pipeline stage stopped unexpectedly: {0}")]
    Internal(String),
}

// `?` wraps these causes in their variant; the message carries the cause, so it is not also a `source()`.
impl From<DumpParseError> for StreamError {
    fn from(cause: DumpParseError) -> Self {
        StreamError::Incomplete(cause)
    }
}
impl From<StoreError> for StreamError {
    fn from(cause: StoreError) -> Self {
        StreamError::Upload(cause)
    }
}

impl StreamError {
    /// Only says that another stage stopped first (that stage's error is the cause).
    fn is_consequence(&self) -> bool {
        matches!(self, StreamError::Internal(m) if m == STOPPED)
    }
}

const STOPPED: &str = "another stage stopped";

/// Streams `source` through parsing, framing, compression and hashing into `upload`'s parts.
pub async fn stream_to_upload(
    source: Box<dyn Read + Send>,
    upload: Arc<dyn MultipartUpload>,
    settings: StreamSettings,
    progress: Arc<Progress>,
) -> Result<StreamResult, StreamError> {
    let (parts_tx, parts_rx) = mpsc::channel::<PartToUpload>(1);
    let (slots_tx, slots_rx) = upload_slots(settings.parts_in_flight.max(1));
    let out = PartsOut { parts: parts_tx, free_slots: slots_rx };
    let producer_progress = progress.clone();
    let producer = tokio::task::spawn_blocking(move || produce_parts(source, settings, out, producer_progress));
    let uploaded = upload_parts(parts_rx, slots_tx, upload, &progress).await;

    let produced =
        producer.await.map_err(|e| StreamError::Internal(format!("the compressing thread panicked: {e}")))?;
    // An upload failure makes the producer fail too (its channel closes); the upload's error is the cause.
    let parts = uploaded?;
    let produced = produced?;
    Ok(StreamResult {
        summary: produced.summary,
        layout: produced.layout,
        stored_bytes: produced.stored_bytes,
        sha256: produced.sha256,
        parts,
    })
}

struct Produced {
    summary: DumpSummary,
    layout: DumpLayout,
    stored_bytes: u64,
    sha256: String,
}

/// A compressed frame on its way to the sink, or the end of the stream (sent only by a framer that finished).
enum Compressed {
    Frame { raw_len: u64, starts: Option<SegmentKind>, ends_table_with_rows: Option<u64>, stored: Vec<u8> },
    End,
}

type NumberedFrame = (u64, Option<RawFrame>);
type NumberedResult = (u64, io::Result<Compressed>);

/// Where full parts go: to the uploads, each only once one of the `in_flight` upload slots is free. A part
/// waits for its slot in the sink, before the next one starts filling, so at most `in_flight` parts upload or
/// wait in the channel and one more fills: a queued part beside them would be another part's size of memory
/// for no speed (the compressors, not the uploads, bound the stream).
struct PartsOut {
    parts: mpsc::Sender<PartToUpload>,
    /// One message per upload slot freed; closed when the uploads stop.
    free_slots: Receiver<()>,
}

/// The upload slots' two ends, with every slot free.
fn upload_slots(in_flight: usize) -> (SyncSender<()>, Receiver<()>) {
    let (tx, rx) = sync_channel(in_flight);
    for _ in 0..in_flight {
        tx.send(()).expect("the channel holds every slot");
    }
    (tx, rx)
}

/// The blocking half: reader, framer, compressors and sink, on threads of their own, joined before return.
fn produce_parts(
    source: Box<dyn Read + Send>,
    settings: StreamSettings,
    parts_out: PartsOut,
    progress: Arc<Progress>,
) -> Result<Produced, StreamError> {
    let compressors = settings.compressor_threads.max(1) as usize;
    let (chunks_tx, chunks_rx) = sync_channel::<io::Result<Chunk>>(READ_AHEAD);
    let (spent_chunks_tx, spent_chunks_rx) = sync_channel::<Vec<u8>>(READ_AHEAD + 2);
    let (frames_tx, frames_rx) = sync_channel::<NumberedFrame>(FRAMES_QUEUED);
    let frames_rx = Arc::new(Mutex::new(frames_rx));
    let (compressed_tx, compressed_rx) = sync_channel::<NumberedResult>(COMPRESSED_QUEUED);
    let (spent_frames_tx, spent_frames_rx) = sync_channel::<Vec<u8>>(FRAMES_QUEUED + compressors + 2);

    std::thread::scope(|scope| {
        scope.spawn(|| read_chunks(source, chunks_tx, spent_chunks_rx, &progress));
        for _ in 0..compressors {
            let (frames, out) = (frames_rx.clone(), compressed_tx.clone());
            let spent_frames = spent_frames_tx.clone();
            scope.spawn(move || compress_frames(settings, frames, out, spent_frames));
        }
        // Only the compressors keep these ends: once they are all gone (the sink stopped), the framer's next frame
        // finds no one to take it and it stops too, instead of waiting on a channel kept open here.
        drop((compressed_tx, spent_frames_tx, frames_rx));
        let sink = scope.spawn(|| sink(compressed_rx, settings.part_sizer, parts_out, &progress));

        let framed = frame_chunks(chunks_rx, spent_chunks_tx, frames_tx, spent_frames_rx);
        let sunk = sink.join().unwrap_or_else(|_| Err(StreamError::Internal("the sink thread panicked".into())));
        // The framer's error is the cause unless it only saw a later stage stop.
        match (framed, sunk) {
            (Ok(summary), Ok((layout, stored_bytes, sha256))) => Ok(Produced { summary, layout, stored_bytes, sha256 }),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(framer), Err(sink)) => Err(if framer.is_consequence() { sink } else { framer }),
        }
    })
}

/// A buffer of pg_dump's output: its bytes are `.0[..1]`. Buffers keep their full length while recycled, so
/// none is ever cleared again (a pipe read returns far less than a buffer holds).
type Chunk = (Vec<u8>, usize);

/// Reads pg_dump's output into recycled buffers, ahead of the framer.
fn read_chunks(
    mut source: Box<dyn Read + Send>,
    chunks: SyncSender<io::Result<Chunk>>,
    spent: Receiver<Vec<u8>>,
    progress: &Progress,
) {
    loop {
        let mut buffer = spent.try_recv().unwrap_or_else(|_| vec![0u8; READ_BUFFER]);
        let read = loop {
            match source.read(&mut buffer) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let message = match read {
            Ok(0) => return,
            Ok(n) => {
                progress.raw_bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok((buffer, n))
            }
            Err(e) => Err(e),
        };
        let failed = message.is_err();
        if chunks.send(message).is_err() || failed {
            return;
        }
    }
}

/// Frames go to the compressors numbered; their buffers come back for the next frames.
struct ToCompressors {
    frames: SyncSender<NumberedFrame>,
    spent: Receiver<Vec<u8>>,
}

impl FrameSink for ToCompressors {
    fn send(&mut self, frame: RawFrame) -> Result<(), SinkClosed> {
        self.frames.send((frame.seq, Some(frame))).map_err(|_| SinkClosed)
    }

    fn buffer(&mut self) -> Vec<u8> {
        match self.spent.try_recv() {
            Ok(mut buffer) => {
                buffer.clear();
                buffer
            }
            Err(_) => Vec::with_capacity(FRAME_TARGET + 64 * 1024),
        }
    }
}

/// The framer's loop: chunks in, frames out, then the end marker once the dump proved complete.
fn frame_chunks(
    chunks: Receiver<io::Result<Chunk>>,
    spent_chunks: SyncSender<Vec<u8>>,
    frames: SyncSender<NumberedFrame>,
    spent_frames: Receiver<Vec<u8>>,
) -> Result<DumpSummary, StreamError> {
    let end_marker = frames.clone();
    let mut framer = Framer::new(ToCompressors { frames, spent: spent_frames });
    let framer_error = |e: FramerError| match e {
        FramerError::Parse(e) => StreamError::Incomplete(e),
        FramerError::SinkStopped => StreamError::Internal(STOPPED.into()),
    };
    for chunk in chunks {
        let (buffer, len) = chunk.map_err(StreamError::Read)?;
        framer.feed(&buffer[..len]).map_err(framer_error)?;
        let _ = spent_chunks.try_send(buffer);
    }
    let (summary, frames_sent) = framer.finish().map_err(framer_error)?;
    end_marker.send((frames_sent, None)).map_err(|_| StreamError::Internal(STOPPED.into()))?;
    Ok(summary)
}

/// A compressor thread: frames in, compressed frames out, in whatever order they finish.
fn compress_frames(
    settings: StreamSettings,
    frames: Arc<Mutex<Receiver<NumberedFrame>>>,
    out: SyncSender<NumberedResult>,
    spent_frames: SyncSender<Vec<u8>>,
) {
    let mut compressor = match FrameCompressor::new(settings.codec, settings.level) {
        Ok(c) => c,
        Err(e) => {
            let _ = out.send((0, Err(e)));
            return;
        }
    };
    loop {
        // The lock is held while waiting for the next frame, never while compressing.
        let next = frames.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok((seq, frame)) = next else { return };
        let result = match frame {
            None => Ok(Compressed::End),
            Some(frame) => {
                // A fresh buffer, not a recycled one: it has room for the worst case (a frame that does not
                // compress), but only the pages the compressed bytes fill become memory, and they are returned
                // when the sink has copied them. A recycled buffer would keep the largest frame it ever held.
                let mut stored = Vec::new();
                let compressed = compressor.compress(&frame.sql, &mut stored);
                let raw_len = frame.sql.len() as u64;
                let _ = spent_frames.try_send(frame.sql);
                compressed.map(|()| Compressed::Frame {
                    raw_len,
                    starts: frame.starts,
                    ends_table_with_rows: frame.ends_table_with_rows,
                    stored,
                })
            }
        };
        let failed = result.is_err();
        if out.send((seq, result)).is_err() || failed {
            return;
        }
    }
}

/// Puts compressed frames back in stream order, notes the layout, and writes them into parts. The last part
/// goes out only at the end marker, which only a framer that saw the whole dump sends.
fn sink(
    compressed: Receiver<NumberedResult>,
    sizer: PartSizer,
    parts_out: PartsOut,
    progress: &Progress,
) -> Result<(DumpLayout, u64, String), StreamError> {
    let mut writer = PartWriter::new(sizer, parts_out, progress);
    let mut layout = LayoutBuilder::default();
    let mut waiting: BTreeMap<u64, Compressed> = BTreeMap::new();
    let mut next = 0u64;
    loop {
        while let Some(item) = waiting.remove(&next) {
            match item {
                Compressed::End => {
                    let (stored_bytes, sha256) = writer.finish()?;
                    return Ok((layout.finish(), stored_bytes, sha256));
                }
                Compressed::Frame { raw_len, starts, ends_table_with_rows, stored } => {
                    if let Some(kind) = starts {
                        layout.start_segment(kind);
                    }
                    layout.add_frame(stored.len() as u64, raw_len);
                    if let Some(rows) = ends_table_with_rows {
                        layout.set_rows(rows);
                    }
                    writer.write_all(&stored).map_err(writer_error)?;
                }
            }
            next += 1;
        }
        match compressed.recv() {
            Ok((seq, Ok(item))) => {
                waiting.insert(seq, item);
            }
            Ok((_, Err(e))) => return Err(StreamError::Compress(e)),
            // Every compressor is gone and the end never came: an earlier stage failed and says why.
            Err(_) => return Err(StreamError::Internal(STOPPED.into())),
        }
    }
}

/// Why the part writer refused bytes; carried inside the `io::Error` it hands back.
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
struct PartWriter<'a> {
    sizer: PartSizer,
    buffer: Vec<u8>,
    next_part: u32,
    part_hasher: Sha256,
    object_hasher: Sha256,
    stored_bytes: u64,
    out: PartsOut,
    progress: &'a Progress,
}

impl<'a> PartWriter<'a> {
    fn new(sizer: PartSizer, out: PartsOut, progress: &'a Progress) -> Self {
        PartWriter {
            sizer,
            buffer: Vec::with_capacity(sizer.size_of(1)),
            next_part: 1,
            part_hasher: Sha256::new(),
            object_hasher: Sha256::new(),
            stored_bytes: 0,
            out,
            progress,
        }
    }

    fn send_part(&mut self) -> io::Result<()> {
        if self.next_part > S3_MAX_PARTS {
            return Err(io::Error::other(PartWriterStop::TooManyParts));
        }
        let stopped = || io::Error::other(PartWriterStop::UploadsStopped);
        // The part waits here, whole, for an upload slot; the next one's buffer is taken only after.
        self.out.free_slots.recv().map_err(|_| stopped())?;
        let number = self.next_part;
        self.next_part += 1;
        let capacity = self.sizer.size_of(self.next_part);
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(capacity));
        let sha256 = std::mem::take(&mut self.part_hasher).finalize().into();
        self.out.parts.blocking_send(PartToUpload { number, body: Bytes::from(body), sha256 }).map_err(|_| stopped())
    }

    /// Sends the last part (possibly short: S3 allows it) and returns the object's size and SHA-256.
    fn finish(mut self) -> Result<(u64, String), StreamError> {
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part().map_err(writer_error)?;
        }
        Ok((self.stored_bytes, hex::encode(self.object_hasher.finalize())))
    }
}

impl Write for PartWriter<'_> {
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

/// The async half: upload parts as they come, in any order. The slots bound them: a part is sent only with a
/// slot it took, given back here once it is uploaded, so at most `StreamSettings::parts_in_flight` upload at once.
async fn upload_parts(
    mut parts_rx: mpsc::Receiver<PartToUpload>,
    free_slots: SyncSender<()>,
    upload: Arc<dyn MultipartUpload>,
    progress: &Progress,
) -> Result<Vec<UploadedPart>, StreamError> {
    let mut running: JoinSet<Result<(UploadedPart, u64), StoreError>> = JoinSet::new();
    let mut done = Vec::new();
    let mut receiving = true;
    while receiving || !running.is_empty() {
        tokio::select! {
            part = parts_rx.recv(), if receiving => match part {
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
                // Never blocks: the slot taken for this part is the one given back. Fails once the sink is done.
                let _ = free_slots.try_send(());
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
        let result = stream_to_upload(
            Box::new(std::io::Cursor::new(dump.clone())),
            upload.clone(),
            small_parts(),
            Arc::default(),
        )
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

    /// An upload whose parts wait at a gate the test opens.
    struct GatedUpload {
        inner: Arc<dyn MultipartUpload>,
        gate: tokio::sync::Semaphore,
        started: AtomicU64,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for GatedUpload {
        fn key(&self) -> &str {
            self.inner.key()
        }
        async fn upload_part(&self, part: PartToUpload) -> Result<UploadedPart, StoreError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.expect("the gate stays open").forget();
            self.inner.upload_part(part).await
        }
        async fn complete(&self, parts: Vec<UploadedPart>) -> Result<crate::ports::StoredVersion, StoreError> {
            self.inner.complete(parts).await
        }
        async fn abort(&self) -> Result<(), StoreError> {
            self.inner.abort().await
        }
    }

    /// Parts of 4 KiB, far larger than a frame of [`many_tables_dump`], two uploading at once.
    const SMALL_PART: usize = 4096;
    fn small_parts_of_many_frames() -> StreamSettings {
        StreamSettings { part_sizer: PartSizer { initial: SMALL_PART, parts_per_doubling: 1_000 }, ..small_parts() }
    }

    /// Hundreds of small tables: every table's rows are a frame of their own, far smaller than a 4 KiB part.
    fn many_tables_dump() -> Vec<u8> {
        let mut dump = Vec::new();
        for t in 0..400u64 {
            dump.extend_from_slice(format!("COPY public.t{t} (a) FROM stdin;\n").as_bytes());
            for r in 0..8u64 {
                dump.extend_from_slice(format!("{:x}\n", (t * 8 + r).wrapping_mul(0x9e37_79b9_7f4a_7c15)).as_bytes());
            }
            dump.extend_from_slice(b"\\.\n");
        }
        dump.extend_from_slice(b"-- PostgreSQL database dump complete\n");
        dump
    }

    #[tokio::test]
    async fn given_a_failing_part_upload_in_a_dump_of_many_frames_then_the_stream_stops_with_the_upload_error() {
        // The sink stops at the failed upload while the framer still has frames to hand out: every stage must
        // stop, not wait on a compressor that is gone (the framer's channel was held open, and the stream hung).
        let store = MemoryStore::default();
        store.fail_part_uploads_from(3);
        let upload = store.create_multipart("k", "x").await.unwrap();
        let settings = small_parts_of_many_frames();
        let streaming =
            stream_to_upload(Box::new(std::io::Cursor::new(many_tables_dump())), upload, settings, Arc::default());
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), streaming)
            .await
            .expect("the stream stops")
            .unwrap_err();
        assert!(matches!(err, StreamError::Upload(_)), "{err}");
    }

    #[tokio::test]
    async fn given_stalled_uploads_then_the_stream_holds_no_more_than_the_parts_in_flight_and_the_one_waiting() {
        const PART: usize = SMALL_PART;
        let dump = many_tables_dump();
        let store = MemoryStore::default();
        let upload = Arc::new(GatedUpload {
            inner: store.create_multipart("k", "x").await.unwrap(),
            gate: tokio::sync::Semaphore::new(0),
            started: AtomicU64::new(0),
        });
        let settings = small_parts_of_many_frames();
        assert_eq!(settings.parts_in_flight, 2);
        let progress = Arc::new(Progress::default());
        let stream = tokio::spawn(stream_to_upload(
            Box::new(std::io::Cursor::new(dump.clone())),
            upload.clone(),
            settings,
            progress.clone(),
        ));

        // Until the producer stops moving: both uploads started, and nothing more written for half a second.
        let (mut written, mut still) = (0, 0);
        for _ in 0..200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let now = progress.stored_bytes.load(Ordering::SeqCst);
            still = if now == written && upload.started.load(Ordering::SeqCst) == 2 { still + 1 } else { 0 };
            written = now;
            if still == 10 {
                break;
            }
        }
        let started = upload.started.load(Ordering::SeqCst);
        // Opened before judging: a stream left blocked would keep the runtime (and the test) from ending.
        upload.gate.add_permits(1_000);
        let result = stream.await.unwrap().unwrap();
        assert_eq!(started, 2, "two parts upload at once");
        // Two parts at the uploads and a third, full, waiting for a slot; the frame being written counts whole.
        assert!(written > 2 * PART as u64, "the producer stopped before the uploads did: {written} bytes");
        assert!(written < 3 * PART as u64 + 1024, "{written} bytes written while two parts could upload");
        upload.complete(result.parts.clone()).await.unwrap();
        assert_eq!(crate::pipeline::codec::decode_all(Codec::Gzip, &store.object_bytes("k").unwrap()).unwrap(), dump);
    }

    #[tokio::test]
    async fn given_a_cut_short_dump_then_the_stream_fails_and_nothing_is_completed() {
        let store = MemoryStore::default();
        let upload = store.create_multipart("k", "x").await.unwrap();
        let cut = DUMP[..40].to_vec();
        let err = stream_to_upload(Box::new(std::io::Cursor::new(cut)), upload, small_parts(), Arc::default())
            .await
            .unwrap_err();
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
