//! How a stored dump is laid out, so a restore can read its pieces in parallel.
//!
//! The backup compresses the SQL in independent frames (zstd frames or gzip members), and never lets a frame
//! span the start or end of a table's rows. The stored object is still one ordinary `.sql.zst` / `.sql.gz`
//! that `zstd -dc` or `gunzip -c` turns back into the whole dump; the layout, kept in the manifest, says where
//! each piece starts:
//!
//! - a [`Segment`] is either SQL (statements, comments) or one table's rows (`Copy`): its first chunk starts
//!   with the `COPY … FROM stdin;` line and its last ends with the `\.` line;
//! - a [`Chunk`] is a run of whole frames of one segment, up to about [`CHUNK_TARGET`] of SQL: the unit a
//!   restore worker fetches (one ranged GET), decompresses and loads.
//!
//! Offsets are not stored: a chunk starts where the previous one ended, in stored and in raw bytes.

use serde::{Deserialize, Serialize};

/// SQL per compressed frame: small enough to keep memory bounded with several in flight, large enough that
/// independent frames compress as well as one stream (zstd level 1's window is 512 KiB; gzip's 32 KiB).
pub const FRAME_TARGET: usize = 2 * 1024 * 1024;

/// SQL per chunk: the unit of parallel restore. Big tables become several chunks that load side by side.
pub const CHUNK_TARGET: u64 = 32 * 1024 * 1024;

/// The current layout format.
pub const LAYOUT_FORMAT: u32 = 1;

/// Tails ([`DumpLayout::tail`]) larger than this (stored) are not read ahead of the in-order read: their
/// statements are read in order. A schema with tens of thousands of indexes stays well under it; the cap keeps
/// the read-ahead's memory bounded.
pub const MAX_TAIL_AHEAD: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpLayout {
    pub format: u32,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(flatten)]
    pub kind: SegmentKind,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentKind {
    Sql,
    /// One table's rows; `statement` is the `COPY … FROM stdin;` that starts them.
    Copy {
        schema: String,
        name: String,
        statement: String,
        rows: u64,
    },
}

/// A run of frames: `[stored bytes, raw (SQL) bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk(pub u64, pub u64);

impl Chunk {
    pub fn stored(&self) -> u64 {
        self.0
    }
    pub fn raw(&self) -> u64 {
        self.1
    }
}

/// The dump's tail: the SQL after the last table's rows (index and constraint builds, keys, grants), which a
/// restore reads ahead with one ranged read to build each table's indexes as soon as its rows are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The first segment after the last table's rows: the tail is it and every segment after it.
    pub first_segment: usize,
    pub stored_offset: u64,
    pub stored_len: u64,
}

/// A chunk with its place in the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub segment: usize,
    /// Its index within the segment.
    pub index: usize,
    pub stored_offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
}

impl DumpLayout {
    /// Every chunk in order, with its stored offset.
    pub fn chunk_ranges(&self) -> Vec<ChunkRange> {
        let mut offset = 0;
        let mut out = Vec::new();
        for (segment, s) in self.segments.iter().enumerate() {
            for (index, c) in s.chunks.iter().enumerate() {
                out.push(ChunkRange {
                    segment,
                    index,
                    stored_offset: offset,
                    stored_len: c.stored(),
                    raw_len: c.raw(),
                });
                offset += c.stored();
            }
        }
        out
    }

    /// The dump's [`Tail`]; `None` when it has no rows, or nothing after them.
    pub fn tail(&self) -> Option<Tail> {
        let last_copy = self.segments.iter().rposition(|s| matches!(s.kind, SegmentKind::Copy { .. }))?;
        let first_segment = last_copy + 1;
        let stored_offset = self.chunk_ranges().into_iter().find(|c| c.segment == first_segment)?.stored_offset;
        Some(Tail { first_segment, stored_offset, stored_len: self.stored_bytes() - stored_offset })
    }

    pub fn stored_bytes(&self) -> u64 {
        self.segments.iter().flat_map(|s| &s.chunks).map(Chunk::stored).sum()
    }

    pub fn raw_bytes(&self) -> u64 {
        self.segments.iter().flat_map(|s| &s.chunks).map(Chunk::raw).sum()
    }

    /// Checks the layout against the object it describes: it must cover exactly `stored` bytes of storage and
    /// `raw` bytes of SQL, every segment must have a chunk, and tables must alternate with SQL as pg_dump
    /// writes them. A layout that fails this is not used (the restore reads the object whole instead).
    pub fn validate(&self, stored: u64, raw: u64) -> Result<(), String> {
        if self.format != LAYOUT_FORMAT {
            return Err(format!("layout format {} is not one this version reads ({LAYOUT_FORMAT})", self.format));
        }
        if self.stored_bytes() != stored || self.raw_bytes() != raw {
            return Err(format!(
                "the layout covers {} stored and {} SQL bytes, the dump has {stored} and {raw}",
                self.stored_bytes(),
                self.raw_bytes()
            ));
        }
        if let Some(i) = self.segments.iter().position(|s| s.chunks.is_empty()) {
            return Err(format!("segment {i} has no chunk"));
        }
        if !matches!(self.segments.first().map(|s| &s.kind), Some(SegmentKind::Sql)) {
            return Err("the layout does not start with SQL".into());
        }
        Ok(())
    }
}

/// Builds a layout frame by frame, in stream order.
#[derive(Debug, Default)]
pub struct LayoutBuilder {
    segments: Vec<Segment>,
}

impl LayoutBuilder {
    /// Starts a segment; the frames that follow belong to it.
    pub fn start_segment(&mut self, kind: SegmentKind) {
        self.segments.push(Segment { kind, chunks: Vec::new() });
    }

    /// Sets the row count of the current (table) segment once its rows are over.
    pub fn set_rows(&mut self, rows_read: u64) {
        if let Some(Segment { kind: SegmentKind::Copy { rows, .. }, .. }) = self.segments.last_mut() {
            *rows = rows_read;
        }
    }

    /// Adds a frame to the current segment: to its last chunk, or a new one once that one holds `CHUNK_TARGET`.
    pub fn add_frame(&mut self, stored: u64, raw: u64) {
        let segment = self.segments.last_mut().expect("a segment is started before its frames");
        match segment.chunks.last_mut() {
            Some(chunk) if chunk.raw() < CHUNK_TARGET => {
                chunk.0 += stored;
                chunk.1 += raw;
            }
            _ => segment.chunks.push(Chunk(stored, raw)),
        }
    }

    pub fn finish(self) -> DumpLayout {
        DumpLayout {
            format: LAYOUT_FORMAT,
            segments: self.segments.into_iter().filter(|s| !s.chunks.is_empty()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(name: &str) -> SegmentKind {
        SegmentKind::Copy {
            schema: "public".into(),
            name: name.into(),
            statement: format!("COPY public.{name} (a) FROM stdin;"),
            rows: 0,
        }
    }

    #[test]
    fn frames_group_into_chunks_of_about_the_target_and_offsets_run_on() {
        let mut b = LayoutBuilder::default();
        b.start_segment(SegmentKind::Sql);
        b.add_frame(10, 100);
        b.start_segment(copy("big"));
        for _ in 0..40 {
            b.add_frame(1_000_000, FRAME_TARGET as u64);
        }
        b.set_rows(7);
        b.start_segment(SegmentKind::Sql);
        b.add_frame(5, 50);
        let layout = b.finish();
        assert_eq!(layout.segments.len(), 3);
        let big = &layout.segments[1];
        assert_eq!(big.chunks.len(), 3, "40 frames of 2 MiB make chunks of 16 frames, 16, then 8: {:?}", big.chunks);
        assert!(matches!(big.kind, SegmentKind::Copy { rows: 7, .. }));
        let ranges = layout.chunk_ranges();
        assert_eq!(
            ranges.iter().map(|r| r.stored_offset).collect::<Vec<_>>(),
            vec![0, 10, 16_000_010, 32_000_010, 40_000_010]
        );
        assert!(layout.validate(40_000_015, 150 + 40 * FRAME_TARGET as u64).is_ok());
        assert!(layout.validate(40_000_014, 150 + 40 * FRAME_TARGET as u64).is_err());
    }

    #[test]
    fn the_tail_is_what_follows_the_last_tables_rows_to_the_end() {
        let layout_of = |segments: &[(SegmentKind, u64)]| {
            let mut b = LayoutBuilder::default();
            for (kind, stored) in segments {
                b.start_segment(kind.clone());
                b.add_frame(*stored, *stored * 3);
            }
            b.finish()
        };
        let layout = layout_of(&[
            (SegmentKind::Sql, 10),
            (copy("a"), 100),
            (SegmentKind::Sql, 5),
            (copy("b"), 200),
            (SegmentKind::Sql, 7),
            (SegmentKind::Sql, 8),
        ]);
        assert_eq!(layout.tail(), Some(Tail { first_segment: 4, stored_offset: 315, stored_len: 15 }));
        assert_eq!(layout_of(&[(SegmentKind::Sql, 10)]).tail(), None, "no rows: nothing to build early");
        assert_eq!(layout_of(&[(SegmentKind::Sql, 10), (copy("a"), 100)]).tail(), None, "nothing after the rows");
    }

    #[test]
    fn the_layout_reads_back_from_its_json() {
        let mut b = LayoutBuilder::default();
        b.start_segment(SegmentKind::Sql);
        b.add_frame(1, 2);
        b.start_segment(copy("t"));
        b.add_frame(3, 4);
        let layout = b.finish();
        let json = serde_json::to_string(&layout).unwrap();
        assert!(json.contains(r#"{"kind":"copy","schema":"public","name":"t""#), "{json}");
        assert_eq!(serde_json::from_str::<DumpLayout>(&json).unwrap(), layout);
    }
}
