//! The fingerprint of a plain-format dump (scheme v2), read line by line off the dump stream itself.
//!
//! Each `COPY … FROM stdin;` statement starts a table's rows, one per line, ended by `\.`: the parser counts
//! them and folds each row's 128-bit xxh3 into the table's digest by a wrapping sum (order-independent, so a
//! parallel restore that loads rows in another order yields the same digest; one changed, missing or extra
//! row changes it with probability 1 − 2⁻¹²⁸). Outside the rows, psql's statement boundaries
//! ([`StatementSplitter`]) divide the SQL: schema statements go, in order, into the schema digest; data
//! statements (`sql::statement::is_data_statement`: sequence values, large objects, materialized-view
//! refreshes) stay out of it, so `pg_dump --schema-only` of a restored copy reproduces the digest without
//! re-reading any row. Sequence values are kept one by one instead, and large objects counted.
//!
//! Statement boundaries (rather than lines) are what makes this robust: a function body or string holding a
//! line that looks like `COPY x FROM stdin;` or like a pg_dump comment header is part of one statement.
//! Comments, blank lines and psql meta-commands (pg_dump's random `\restrict` tokens) are left out: they differ
//! between two dumps of the same data.
//!
//! [`DumpParser::line`] also says what each line is ([`LineKind`]), so the backup stream can cut its frames
//! at table boundaries (`pipeline::framer`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

use super::fingerprint::{quote_ident, DumpSummary, DumpVersions, Fingerprint, TableFingerprint};
use crate::domain::sql::splitter::{Piece, SqlError, StatementSplitter};
use crate::domain::sql::statement::{
    copy_from_stdin, default_tablespace, is_data_statement, is_large_object_create, sequence_value, CopyTarget,
};

/// Names this scheme in fingerprints, so it is never compared with another.
pub const FINGERPRINT_V2: &str = "rows:xxh3-128-wrapping-sum/schema:sha256-statements/v2";

/// pg_dump's last line in a plain dump that ran to the end; its absence means the stream was cut short.
const TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

/// A sequence's state as the dump sets it (`SELECT pg_catalog.setval(name, value, is_called)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceValue {
    /// As pg_dump quoted it: usable as a relation name in SQL.
    pub name: String,
    pub value: i64,
    pub is_called: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DumpParseError {
    #[error("the dump ended inside the data of table {table} (no `\\.` terminator): the stream was cut short")]
    EndedInsideCopy { table: String },
    #[error("the dump ended without pg_dump's completion line: the stream was cut short")]
    MissingTrailer,
    #[error("the dump's SQL cannot be read as psql would: {0}")]
    Sql(SqlError),
}

// `?` wraps the reader's error; the message carries it, so it is not also a `source()`.
impl From<SqlError> for DumpParseError {
    fn from(cause: SqlError) -> Self {
        DumpParseError::Sql(cause)
    }
}

/// What a line of the dump is, for whoever cuts the stream into pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// SQL outside table data (statements, comments, meta-commands).
    Sql,
    /// `COPY … FROM stdin;`: the table's rows follow.
    CopyStart(CopyTarget),
    /// One row of the current table.
    Row,
    /// `\.`: the table's rows are over.
    CopyEnd,
}

struct TableAccumulator {
    target: CopyTarget,
    rows: u64,
    digest: u128,
}

/// Folds a plain-format dump, line by line or in chunks of any size, into its fingerprint.
pub struct DumpParser {
    splitter: StatementSplitter,
    copy: Option<TableAccumulator>,
    schema_hasher: Sha256,
    tables: Vec<TableFingerprint>,
    sequences: Vec<SequenceValue>,
    large_objects: u64,
    tablespaces: std::collections::BTreeSet<String>,
    versions: DumpVersions,
    saw_trailer: bool,
    raw_bytes: u64,
    pieces: Vec<Piece>,
    /// For [`DumpParser::feed`]: the start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
}

impl Default for DumpParser {
    fn default() -> Self {
        Self::new()
    }
}

impl DumpParser {
    pub fn new() -> Self {
        DumpParser {
            splitter: StatementSplitter::new(),
            copy: None,
            schema_hasher: Sha256::new(),
            tables: Vec::new(),
            sequences: Vec::new(),
            large_objects: 0,
            tablespaces: Default::default(),
            versions: DumpVersions::default(),
            saw_trailer: false,
            raw_bytes: 0,
            pieces: Vec::new(),
            partial_line: Vec::new(),
        }
    }

    /// Reads one line (without its newline; `raw_len` counts the bytes it took in the stream).
    pub fn line(&mut self, line: &[u8], raw_len: usize) -> Result<LineKind, DumpParseError> {
        self.raw_bytes += raw_len as u64;
        if let Some(acc) = &mut self.copy {
            if line == b"\\." {
                let acc = self.copy.take().expect("in a table's rows");
                self.tables.push(TableFingerprint {
                    schema: acc.target.schema,
                    name: acc.target.name,
                    rows: acc.rows,
                    digest: format!("{:032x}", acc.digest),
                });
                return Ok(LineKind::CopyEnd);
            }
            acc.rows += 1;
            acc.digest = acc.digest.wrapping_add(xxh3_128(line));
            return Ok(LineKind::Row);
        }
        if self.splitter.at_boundary() && line.starts_with(b"--") {
            self.header_comment(line);
            return Ok(LineKind::Sql);
        }
        self.splitter.line(line, &mut self.pieces)?;
        let mut kind = LineKind::Sql;
        for piece in std::mem::take(&mut self.pieces) {
            let Piece::Statement(statement) = piece else { continue };
            if let Some(target) = copy_from_stdin(&statement) {
                // pg_dump writes the statement on a line of its own; its rows start on the next line.
                self.copy = Some(TableAccumulator { target: target.clone(), rows: 0, digest: 0 });
                kind = LineKind::CopyStart(target);
            } else if is_data_statement(&statement) {
                if let Some((name, value, is_called)) = sequence_value(&statement) {
                    self.sequences.push(SequenceValue { name, value, is_called });
                }
                self.large_objects += u64::from(is_large_object_create(&statement));
            } else {
                if let Some(tablespace) = default_tablespace(&statement) {
                    self.tablespaces.insert(tablespace);
                }
                self.schema_hasher.update(statement.trim_ascii_end());
                self.schema_hasher.update(b"\n");
            }
        }
        Ok(kind)
    }

    /// Between two statements, outside any table's rows: the stream may be cut here without splitting a
    /// statement (a name, string or body may hold newlines, so a line end alone is no such place).
    pub fn at_statement_boundary(&self) -> bool {
        self.copy.is_none() && self.splitter.at_boundary()
    }

    /// The row count of the table whose rows ended last.
    pub fn last_table_rows(&self) -> Option<u64> {
        self.tables.last().map(|t| t.rows)
    }

    /// Feeds the next chunk of the dump, split into lines here.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DumpParseError> {
        let mut rest = chunk;
        if !self.partial_line.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.partial_line.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial_line);
            line.extend_from_slice(&rest[..end]);
            self.line(&line, line.len() + 1)?;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            self.line(&rest[start..end], end - start + 1)?;
            start = end + 1;
        }
        self.partial_line.extend_from_slice(&rest[start..]);
        Ok(())
    }

    /// Ends the stream; fails if it was cut short.
    pub fn finish(mut self) -> Result<DumpSummary, DumpParseError> {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.line(&line, line.len())?;
        }
        if let Some(acc) = &self.copy {
            return Err(DumpParseError::EndedInsideCopy {
                table: format!("{}.{}", quote_ident(&acc.target.schema), quote_ident(&acc.target.name)),
            });
        }
        self.splitter.finish()?;
        if !self.saw_trailer {
            return Err(DumpParseError::MissingTrailer);
        }
        let mut tables = self.tables;
        // Sorted, so two fingerprints of the same data compare equal whatever order pg_dump chose.
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        let tables = one_entry_per_table(tables);
        let mut sequences = self.sequences;
        sequences.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(DumpSummary {
            fingerprint: Fingerprint {
                algorithm: FINGERPRINT_V2.to_string(),
                schema_digest: hex::encode(self.schema_hasher.finalize()),
                tables,
                sequences,
                large_objects: self.large_objects,
            },
            versions: self.versions,
            raw_bytes: self.raw_bytes,
            tablespaces: self.tablespaces.into_iter().collect(),
        })
    }

    fn header_comment(&mut self, line: &[u8]) {
        if line == TRAILER {
            self.saw_trailer = true;
        } else if let Some(v) = line.strip_prefix(b"-- Dumped from database version ") {
            self.versions.server_version = Some(String::from_utf8_lossy(v).trim().to_string());
        } else if let Some(v) = line.strip_prefix(b"-- Dumped by pg_dump version ") {
            self.versions.pg_dump_version = Some(String::from_utf8_lossy(v).trim().to_string());
        }
    }
}

/// The fingerprint of a whole dump held in memory (tests, small dumps).
pub fn fingerprint_of(sql: &[u8]) -> Result<DumpSummary, DumpParseError> {
    let mut parser = DumpParser::new();
    parser.feed(sql)?;
    parser.finish()
}

/// One entry per table of `sorted`, whose rows pg_dump may have written in several `COPY` blocks: when it loads
/// partitions through their root (`-- load via partition root`, which it does itself for a hash partition key
/// on an enum, whose hashes a restore's new enum values would change), each partition's rows are a `COPY` into
/// the root. Their counts add up, and so do their digests (a wrapping sum, whatever the order).
fn one_entry_per_table(sorted: Vec<TableFingerprint>) -> Vec<TableFingerprint> {
    let mut out: Vec<TableFingerprint> = Vec::with_capacity(sorted.len());
    for table in sorted {
        match out.last_mut() {
            Some(last) if last.schema == table.schema && last.name == table.name => {
                let sum = digest_value(&last.digest).wrapping_add(digest_value(&table.digest));
                last.rows += table.rows;
                last.digest = format!("{sum:032x}");
            }
            _ => out.push(table),
        }
    }
    out
}

fn digest_value(hex: &str) -> u128 {
    u128::from_str_radix(hex, 16).expect("a digest this parser wrote")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\
-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n\
SET statement_timeout = 0;\nCREATE TABLE public.t (id integer, v text);\n\
CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\nCOPY public.t (id, v) FROM stdin;\n-- PostgreSQL database dump complete\nEND\n$$;\n\
--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n\
COPY public.t (id, v) FROM stdin;\n1\ta\n2\tb\\nc\n\\.\n\n\
COPY \"My Schema\".\"with \"\"quotes\"\"\" (\"from\") FROM stdin;\n\\.\n\n\
SELECT pg_catalog.setval('public.s', 42, true);\nSELECT pg_catalog.lo_create('16385');\n\
CREATE INDEX i ON public.t USING btree (id);\n\\unrestrict abc123\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

    #[test]
    fn tables_rows_sequences_and_large_objects_are_read_off_the_dump() {
        let s = fingerprint_of(DUMP.as_bytes()).unwrap();
        let tables: Vec<_> =
            s.fingerprint.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str(), t.rows)).collect();
        assert_eq!(
            tables,
            vec![("My Schema", "with \"quotes\"", 0), ("public", "t", 2)],
            "a COPY line inside a function body starts nothing"
        );
        assert_eq!(
            s.fingerprint.sequences,
            vec![SequenceValue { name: "public.s".into(), value: 42, is_called: true }]
        );
        assert_eq!(s.fingerprint.large_objects, 1);
        assert_eq!(s.versions.server_version.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        assert_eq!(s.raw_bytes, DUMP.len() as u64);
    }

    #[test]
    fn rows_loaded_through_a_partition_root_are_the_roots_whatever_the_blocks() {
        let dump = |blocks: &[&str]| {
            let copies: String = blocks
                .iter()
                .map(|rows| {
                    format!("-- load via partition root public.t\nCOPY public.t (id, m) FROM stdin;\n{rows}\\.\n\n")
                })
                .collect();
            let sql =
                format!("CREATE TABLE public.t (id integer, m text);\n{copies}-- PostgreSQL database dump complete\n");
            fingerprint_of(sql.as_bytes()).unwrap().fingerprint.tables
        };
        let split = dump(&["1\tsad\n4\tok\n", "2\tok\n", "3\thappy\n"]);
        assert_eq!(split.len(), 1, "{split:?}");
        assert_eq!(split[0].rows, 4);
        assert_eq!(split, dump(&["3\thappy\n2\tok\n4\tok\n1\tsad\n"]), "as if in one block, in any order");
        assert_ne!(split, dump(&["1\tsad\n4\tok\n", "2\tok\n", "3\tsad\n"]));
    }

    #[test]
    fn the_schema_digest_is_that_of_a_schema_only_dump() {
        let full = fingerprint_of(DUMP.as_bytes()).unwrap().fingerprint;
        // What `pg_dump --schema-only` writes for the same database: no data statements, no rows.
        let schema_only = "--\n\\restrict zzz\nSET statement_timeout = 0;\nCREATE TABLE public.t (id integer, v text);\n\
CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\nCOPY public.t (id, v) FROM stdin;\n-- PostgreSQL database dump complete\nEND\n$$;\n\n\
CREATE INDEX i ON public.t USING btree (id);\n\\unrestrict zzz\n-- PostgreSQL database dump complete\n";
        assert_eq!(fingerprint_of(schema_only.as_bytes()).unwrap().fingerprint.schema_digest, full.schema_digest);
        let changed = DUMP.replace("btree (id)", "btree (v)");
        assert_ne!(fingerprint_of(changed.as_bytes()).unwrap().fingerprint.schema_digest, full.schema_digest);
    }

    #[test]
    fn any_chunking_and_any_row_order_give_the_same_fingerprint() {
        let whole = fingerprint_of(DUMP.as_bytes()).unwrap();
        for size in [1, 2, 3, 7, 64] {
            let mut p = DumpParser::new();
            for chunk in DUMP.as_bytes().chunks(size) {
                p.feed(chunk).unwrap();
            }
            assert_eq!(p.finish().unwrap(), whole, "chunk size {size}");
        }
        let swapped = DUMP.replace("1\ta\n2\tb\\nc\n", "2\tb\\nc\n1\ta\n");
        assert_eq!(fingerprint_of(swapped.as_bytes()).unwrap().fingerprint, whole.fingerprint);
        let changed = DUMP.replace("2\tb\\nc", "2\tb\\nd");
        assert_ne!(fingerprint_of(changed.as_bytes()).unwrap().fingerprint.tables, whole.fingerprint.tables);
    }

    #[test]
    fn a_cut_short_dump_is_an_error() {
        let inside = &DUMP[..DUMP.find("2\tb").unwrap()];
        assert!(matches!(fingerprint_of(inside.as_bytes()), Err(DumpParseError::EndedInsideCopy { .. })));
        let before_trailer = &DUMP[..DUMP.rfind("-- PostgreSQL database dump complete").unwrap()];
        assert_eq!(fingerprint_of(before_trailer.as_bytes()), Err(DumpParseError::MissingTrailer));
        let in_body = &DUMP[..DUMP.find("END\n$$;").unwrap()];
        assert!(matches!(fingerprint_of(in_body.as_bytes()), Err(DumpParseError::Sql(_))));
    }

    #[test]
    fn lines_say_what_they_are() {
        let mut p = DumpParser::new();
        let kinds: Vec<LineKind> = DUMP.split('\n').map(|l| p.line(l.as_bytes(), l.len() + 1).unwrap()).collect();
        let starts: Vec<&str> = kinds
            .iter()
            .filter_map(|k| if let LineKind::CopyStart(t) = k { Some(t.name.as_str()) } else { None })
            .collect();
        assert_eq!(starts, vec!["t", "with \"quotes\""]);
        assert_eq!(kinds.iter().filter(|k| **k == LineKind::Row).count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == LineKind::CopyEnd).count(), 2);
    }
}
