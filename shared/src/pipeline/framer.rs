//! Cuts the dump stream into frames while the dump parser reads it: a frame ends before a table's
//! `COPY … FROM stdin;` statement (before its first line: a name holding a newline spreads it over several),
//! after its `\.` line, and otherwise at the first line end past [`FRAME_TARGET`] that lies between two rows or
//! two statements, never inside a statement. Every frame of SQL therefore holds whole statements, whatever
//! the names, strings and bodies in it hold (a statement longer than a frame makes that one frame longer).
//! Frames are compressed independently (`pipeline::stream`), so each table's rows can later be fetched and
//! decompressed on their own (`domain::dump_layout`).
//!
//! Lines are parsed one by one but copied into the frame in runs, so the bytes of a chunk are copied once.

use crate::domain::dump_layout::{SegmentKind, FRAME_TARGET};
use crate::domain::dump_parser::{DumpParseError, DumpParser, LineKind};
use crate::domain::fingerprint::DumpSummary;

/// A frame of raw SQL, in stream order, with what the layout must learn from it.
#[derive(Debug)]
pub struct RawFrame {
    pub seq: u64,
    pub sql: Vec<u8>,
    /// The segment this frame starts, if it starts one.
    pub starts: Option<SegmentKind>,
    /// The row count of the table whose rows this frame ends.
    pub ends_table_with_rows: Option<u64>,
}

/// The compressors stopped taking frames (they report the cause themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkClosed;

/// Where frames go: the compressors.
pub trait FrameSink {
    fn send(&mut self, frame: RawFrame) -> Result<(), SinkClosed>;
    /// An empty buffer for the next frame (recycled when possible).
    fn buffer(&mut self) -> Vec<u8>;
}

#[derive(Debug, thiserror::Error)]
pub enum FramerError {
    #[error(transparent)]
    Parse(#[from] DumpParseError),
    /// The compressors stopped taking frames; they say why.
    #[error("the compressing stage stopped")]
    SinkStopped,
}

pub struct Framer<S: FrameSink> {
    parser: DumpParser,
    sink: S,
    frame: Vec<u8>,
    /// The segment the current frame starts (`Some` until the frame is sent).
    starts: Option<SegmentKind>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    next_seq: u64,
    /// Stream offset of the frame's first byte.
    frame_start: u64,
    /// Stream offset of the next line to parse (the bytes of `partial` start here).
    pos: u64,
    /// Stream offset of the latest line that began between two statements: where the statement being read
    /// began. A `COPY` naming a table or column whose name holds a newline spans lines, and its segment must
    /// start with its first line, not its last.
    statement_start: u64,
}

impl<S: FrameSink> Framer<S> {
    pub fn new(mut sink: S) -> Self {
        let frame = sink.buffer();
        Framer {
            parser: DumpParser::new(),
            sink,
            frame,
            starts: Some(SegmentKind::Sql),
            partial: Vec::new(),
            next_seq: 0,
            frame_start: 0,
            pos: 0,
            statement_start: 0,
        }
    }

    /// Reads the next chunk of the dump.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), FramerError> {
        let mut first = 0;
        if !self.partial.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..=nl]);
            self.whole_line(&line)?;
            line.clear();
            self.partial = line;
            first = nl + 1;
        }
        // Stream offset of `chunk[0]`; bytes of `chunk` from `run` on are parsed but not yet in the frame.
        let base = self.pos - first as u64;
        let mut run = first;
        let mut start = first;
        for nl in memchr::memchr_iter(b'\n', &chunk[first..]) {
            let end = first + nl + 1;
            let between_statements = self.parser.at_statement_boundary();
            if between_statements {
                self.statement_start = base + start as u64;
            }
            let kind = self.parser.line(&chunk[start..end - 1], end - start)?;
            self.pos = base + end as u64;
            match kind {
                LineKind::CopyStart(target) => {
                    // Everything before the statement's first line goes out with the SQL before it.
                    let cut = self.statement_start.max(base + run as u64);
                    let upto = (cut - base) as usize;
                    self.frame.extend_from_slice(&chunk[run..upto]);
                    run = upto;
                    self.cut_before(self.statement_start)?;
                    self.starts = Some(SegmentKind::Copy {
                        schema: target.schema,
                        name: target.name,
                        statement: target.statement,
                        rows: 0,
                    });
                }
                LineKind::CopyEnd => {
                    self.frame.extend_from_slice(&chunk[run..end]);
                    run = end;
                    let rows = self.parser.last_table_rows();
                    self.cut(rows)?;
                    self.starts = Some(SegmentKind::Sql);
                }
                LineKind::Row | LineKind::Sql => {
                    // Rows may be cut at any line; SQL only between statements, so that every chunk of SQL
                    // holds whole statements and can be read on its own.
                    let may_cut = kind == LineKind::Row || between_statements;
                    if may_cut && self.frame.len() + (start - run) >= FRAME_TARGET {
                        self.frame.extend_from_slice(&chunk[run..start]);
                        run = start;
                        self.cut(None)?;
                    }
                }
            }
            start = end;
        }
        self.frame.extend_from_slice(&chunk[run..start]);
        self.partial.extend_from_slice(&chunk[start..]);
        Ok(())
    }

    /// Ends the stream: checks it ran to pg_dump's end, then sends the last frame; returns the fingerprint and
    /// how many frames were sent. A dump cut short never sends its last frame, so its upload can never be
    /// completed.
    pub fn finish(mut self) -> Result<(DumpSummary, u64), FramerError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.whole_line(&line)?;
        }
        let parser = std::mem::take(&mut self.parser);
        let summary = parser.finish()?;
        self.cut(None)?;
        Ok((summary, self.next_seq))
    }

    /// A line that arrived in pieces (with its newline, unless it is the stream's last); the frame holds
    /// everything before it.
    fn whole_line(&mut self, line: &[u8]) -> Result<(), FramerError> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let between_statements = self.parser.at_statement_boundary();
        if between_statements {
            self.statement_start = self.pos;
        }
        let kind = self.parser.line(text, line.len())?;
        self.pos += line.len() as u64;
        match kind {
            LineKind::CopyStart(target) => {
                self.cut_before(self.statement_start)?;
                self.starts = Some(SegmentKind::Copy {
                    schema: target.schema,
                    name: target.name,
                    statement: target.statement,
                    rows: 0,
                });
                self.frame.extend_from_slice(line);
            }
            LineKind::CopyEnd => {
                self.frame.extend_from_slice(line);
                let rows = self.parser.last_table_rows();
                self.cut(rows)?;
                self.starts = Some(SegmentKind::Sql);
            }
            LineKind::Row | LineKind::Sql => {
                let may_cut = kind == LineKind::Row || between_statements;
                if may_cut && self.frame.len() >= FRAME_TARGET {
                    self.cut(None)?;
                }
                self.frame.extend_from_slice(line);
            }
        }
        Ok(())
    }

    /// Sends the frame's bytes before stream offset `at` (which the frame holds, or ends at) and starts the
    /// next frame with the rest.
    fn cut_before(&mut self, at: u64) -> Result<(), FramerError> {
        let keep = (at - self.frame_start) as usize;
        let rest = self.frame.split_off(keep);
        self.cut(None)?;
        self.frame.extend_from_slice(&rest);
        Ok(())
    }

    /// Sends the current frame (if it holds anything) and starts the next.
    fn cut(&mut self, ends_table_with_rows: Option<u64>) -> Result<(), FramerError> {
        if self.frame.is_empty() {
            return Ok(());
        }
        self.frame_start += self.frame.len() as u64;
        let sql = std::mem::replace(&mut self.frame, self.sink.buffer());
        let frame = RawFrame { seq: self.next_seq, sql, starts: self.starts.take(), ends_table_with_rows };
        self.next_seq += 1;
        self.sink.send(frame).map_err(|SinkClosed| FramerError::SinkStopped)
    }
}

/// A sink that keeps every frame, for tests that look at how a dump is cut.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Collect(pub Vec<RawFrame>);

#[cfg(test)]
impl FrameSink for &mut Collect {
    fn send(&mut self, frame: RawFrame) -> Result<(), SinkClosed> {
        self.0.push(frame);
        Ok(())
    }
    fn buffer(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(rows: usize) -> String {
        let mut d =
            String::from("SET a = 1;\nCREATE TABLE public.t (a int, b text);\nCOPY public.t (a, b) FROM stdin;\n");
        for i in 0..rows {
            d.push_str(&format!("{i}\t{}\n", "x".repeat(200)));
        }
        d.push_str("\\.\n\nCOPY public.u (a) FROM stdin;\n\\.\nCREATE INDEX i ON public.t (a);\n-- PostgreSQL database dump complete\n");
        d
    }

    fn frames_of(sql: &str, chunk: usize) -> (Vec<RawFrame>, DumpSummary) {
        let mut out = Collect::default();
        let mut framer = Framer::new(&mut out);
        for piece in sql.as_bytes().chunks(chunk) {
            framer.feed(piece).unwrap();
        }
        let (summary, sent) = framer.finish().unwrap();
        assert_eq!(sent as usize, out.0.len());
        (out.0, summary)
    }

    #[test]
    fn frames_start_and_end_with_tables_and_concatenate_to_the_dump() {
        let sql = dump(30_000);
        for chunk in [7, 4096, 1 << 20] {
            let (frames, summary) = frames_of(&sql, chunk);
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.sql.clone()).collect();
            assert_eq!(joined, sql.as_bytes(), "chunk {chunk}");
            assert_eq!(summary.fingerprint.table("public", "t").unwrap().rows, 30_000);
            let starts: Vec<String> =
                frames.iter().filter_map(|f| f.starts.as_ref()).map(|k| format!("{k:?}")).collect();
            assert_eq!(starts.len(), 5, "sql, t, sql, u, sql: {starts:?}");
            let t_frames: Vec<&RawFrame> =
                frames.iter().skip(1).take_while(|f| f.starts.is_none() || f.seq == 1).collect();
            assert!(t_frames.len() >= 3, "6 MB of rows span several frames");
            assert!(t_frames[0].sql.starts_with(b"COPY public.t (a, b) FROM stdin;\n"));
            assert!(t_frames.last().unwrap().sql.ends_with(b"\\.\n"));
            assert_eq!(t_frames.last().unwrap().ends_table_with_rows, Some(30_000));
            assert!(frames.iter().all(|f| f.sql.len() < FRAME_TARGET + 300), "frames stay near the target");
            assert!(frames.iter().all(|f| f.sql.ends_with(b"\n")), "frames end at line ends");
        }
    }

    #[test]
    fn a_cut_short_dump_never_sends_its_last_frame() {
        let sql = dump(30_000);
        let cut = &sql[..sql.len() - 200];
        let mut out = Collect::default();
        let mut framer = Framer::new(&mut out);
        framer.feed(cut.as_bytes()).unwrap();
        assert!(framer.finish().is_err());
        let sent: usize = out.0.iter().map(|f| f.sql.len()).sum();
        assert!(sent < cut.len(), "the bytes after the last table never left");
    }

    #[test]
    fn a_copy_that_spans_lines_starts_its_segment_with_its_first_line() {
        // Names may hold newlines: the COPY statement then spans lines, and a frame cut at its last line would
        // leave the SQL before it ending inside a quoted identifier.
        let copy = "COPY \"evil\nschema\".\"COPY x (a) FROM stdin;\" (\"col\n-- PostgreSQL database dump complete\") FROM stdin;";
        let sql = format!("SET a = 1;\n--\n-- Data\n--\n\n{copy}\n1\n2\n\\.\n\nCREATE INDEX i ON public.t (a);\n-- PostgreSQL database dump complete\n");
        for chunk in [1, 3, 17, 4096] {
            let (frames, summary) = frames_of(&sql, chunk);
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.sql.clone()).collect();
            assert_eq!(joined, sql.as_bytes(), "chunk {chunk}");
            let table =
                frames.iter().find(|f| matches!(f.starts, Some(SegmentKind::Copy { .. }))).expect("a table segment");
            assert!(
                table.sql.starts_with(format!("{copy}\n").as_bytes()),
                "chunk {chunk}: {:?}",
                String::from_utf8_lossy(&table.sql)
            );
            let Some(SegmentKind::Copy { schema, name, statement, .. }) = &table.starts else { unreachable!() };
            assert_eq!(
                (schema.as_str(), name.as_str(), statement.as_str()),
                ("evil\nschema", "COPY x (a) FROM stdin;", copy)
            );
            assert!(frames[0].sql.ends_with(b"--\n\n"), "the comments before the COPY stay with the SQL");
            assert_eq!(summary.fingerprint.table("evil\nschema", "COPY x (a) FROM stdin;").unwrap().rows, 2);
        }
    }

    #[test]
    fn sql_frames_are_cut_between_statements_only() {
        // A function body longer than a frame, every line of it shaped like a statement's end.
        let body: String = (0..40_000).map(|i| format!("  PERFORM {i}; -- {}\n", "y".repeat(60))).collect();
        let sql = format!("SET a = 1;\nCREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n{body}END\n$$;\nSELECT 1;\n-- PostgreSQL database dump complete\n");
        assert!(body.len() > FRAME_TARGET);
        let (frames, _) = frames_of(&sql, 4096);
        let mut splitter = crate::domain::sql::splitter::StatementSplitter::new();
        let mut pieces = Vec::new();
        for frame in &frames {
            for line in frame.sql.split(|b| *b == b'\n').take(frame.sql.split(|b| *b == b'\n').count() - 1) {
                splitter.line(line, &mut pieces).unwrap();
            }
            assert!(splitter.at_boundary(), "frame {} ends inside a statement", frame.seq);
        }
        assert!(frames.len() >= 2);
    }
}
