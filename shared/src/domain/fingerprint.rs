//! The fingerprint of a plain-format dump: what a backup holds, read off the dump stream itself. This module
//! holds the fingerprint's types and scheme v1, which backups made before scheme v2 (`domain::dump_parser`)
//! carry and drills of those backups recompute; new backups use v2.
//!
//! pg_dump writes each table's rows as a `COPY … FROM stdin;` block, one row per line (text format escapes
//! newlines inside values), ended by `\.`. While the dump streams past, [`FingerprintBuilder`] counts each
//! block's rows and folds a digest of each row into the table's content digest; everything outside the blocks
//! (DDL, sequence values, grants) goes into one schema digest. The source database pays nothing for it, and
//! it describes exactly the snapshot the dump holds.
//!
//! The row digest is order-independent on purpose: the wrapping sum of each row's 128-bit xxh3 hash (a
//! multiset hash). A restore that loads rows in another order (a parallel restore, a different heap layout)
//! yields the same digest; one changed, missing or extra row changes it with probability 1 − 2⁻¹²⁸. It guards
//! against corruption and mistakes, not against an adversary who controls the data and the manifest (the
//! object's SHA-256 and S3's checksums cover the bytes).
//!
//! Lines that differ between two dumps of identical data are left out of the schema digest: comments (they
//! carry versions and timestamps) and pg_dump's random `\restrict` / `\unrestrict` tokens.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

use super::dump_parser::SequenceValue;

/// Names the digest scheme, so a later change of scheme is never compared against an older fingerprint.
pub const FINGERPRINT_ALGORITHM: &str = "rows:xxh3-128-wrapping-sum/schema:sha256/v1";

/// pg_dump's last line in a plain dump that ran to the end; its absence means the stream was cut short.
const TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

/// What a backup holds: its tables with row counts and content digests, and a digest of everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub algorithm: String,
    pub schema_digest: String,
    pub tables: Vec<TableFingerprint>,
    /// Sequence values the dump sets (scheme v2; v1 folds them into the schema digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<SequenceValue>,
    /// Large objects the dump creates (scheme v2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub large_objects: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One table's rows as the dump holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    pub schema: String,
    pub name: String,
    pub rows: u64,
    /// Hex of the 128-bit wrapping sum of every row's xxh3-128 hash.
    pub digest: String,
}

impl TableFingerprint {
    /// `schema.table` quoted the way PostgreSQL would need it, for messages and reports.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl Fingerprint {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&TableFingerprint> {
        self.tables.iter().find(|t| t.schema == schema && t.name == name)
    }
}

/// What pg_dump said about itself and the server in the dump's header comments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpVersions {
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
}

/// Everything read off a finished dump stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    pub fingerprint: Fingerprint,
    pub versions: DumpVersions,
    /// Bytes of SQL read.
    pub raw_bytes: u64,
    /// The tablespaces the dump puts objects in (its `SET default_tablespace`), by name, sorted.
    pub tablespaces: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FingerprintError {
    #[error("the dump ended inside the data of table {table} (no `\\.` terminator): the stream was cut short")]
    EndedInsideCopy { table: String },
    #[error("the dump ended without pg_dump's completion line: the stream was cut short")]
    MissingTrailer,
    #[error("cannot read the table name in the dump line {line:?}")]
    UnreadableCopyHeader { line: String },
}

enum State {
    Outside,
    InCopy(TableAccumulator),
}

struct TableAccumulator {
    schema: String,
    name: String,
    rows: u64,
    digest: u128,
}

/// Folds a plain-format dump, fed in chunks of any size, into a [`Fingerprint`].
pub struct FingerprintBuilder {
    state: State,
    /// The start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
    schema_hasher: Sha256,
    tables: Vec<TableFingerprint>,
    versions: DumpVersions,
    saw_trailer: bool,
    raw_bytes: u64,
}

impl Default for FingerprintBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FingerprintBuilder {
    pub fn new() -> Self {
        Self {
            state: State::Outside,
            partial_line: Vec::new(),
            schema_hasher: Sha256::new(),
            tables: Vec::new(),
            versions: DumpVersions::default(),
            saw_trailer: false,
            raw_bytes: 0,
        }
    }

    /// Feeds the next chunk of the dump.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), FingerprintError> {
        self.raw_bytes += chunk.len() as u64;
        let mut rest = chunk;
        if !self.partial_line.is_empty() {
            match memchr::memchr(b'\n', rest) {
                None => {
                    self.partial_line.extend_from_slice(rest);
                    return Ok(());
                }
                Some(end) => {
                    let mut line = std::mem::take(&mut self.partial_line);
                    line.extend_from_slice(&rest[..end]);
                    self.line(&line)?;
                    line.clear();
                    self.partial_line = line; // keep the allocation
                    rest = &rest[end + 1..];
                }
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            self.line(&rest[start..end])?;
            start = end + 1;
        }
        self.partial_line.extend_from_slice(&rest[start..]);
        Ok(())
    }

    /// Ends the stream; fails if it was cut short.
    pub fn finish(mut self) -> Result<DumpSummary, FingerprintError> {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.line(&line)?;
        }
        if let State::InCopy(acc) = &self.state {
            return Err(FingerprintError::EndedInsideCopy {
                table: format!("{}.{}", quote_ident(&acc.schema), quote_ident(&acc.name)),
            });
        }
        if !self.saw_trailer {
            return Err(FingerprintError::MissingTrailer);
        }
        let mut tables = self.tables;
        // Sorted, so two fingerprints of the same data compare equal whatever order pg_dump chose.
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(DumpSummary {
            fingerprint: Fingerprint {
                algorithm: FINGERPRINT_ALGORITHM.to_string(),
                schema_digest: hex::encode(self.schema_hasher.finalize()),
                tables,
                sequences: Vec::new(),
                large_objects: 0,
            },
            versions: self.versions,
            raw_bytes: self.raw_bytes,
            // Fingerprint v1 backups are restored as they are; their tablespaces are not read.
            tablespaces: Vec::new(),
        })
    }

    fn line(&mut self, line: &[u8]) -> Result<(), FingerprintError> {
        match &mut self.state {
            State::InCopy(acc) => {
                if line == b"\\." {
                    let State::InCopy(acc) = std::mem::replace(&mut self.state, State::Outside) else {
                        unreachable!("matched InCopy above")
                    };
                    self.tables.push(TableFingerprint {
                        schema: acc.schema,
                        name: acc.name,
                        rows: acc.rows,
                        digest: format!("{:032x}", acc.digest),
                    });
                } else {
                    acc.rows += 1;
                    acc.digest = acc.digest.wrapping_add(xxh3_128(line));
                }
                Ok(())
            }
            State::Outside => self.outside_line(line),
        }
    }

    fn outside_line(&mut self, line: &[u8]) -> Result<(), FingerprintError> {
        if line.starts_with(b"--") {
            self.header_comment(line);
            return Ok(());
        }
        if line.starts_with(b"\\restrict") || line.starts_with(b"\\unrestrict") {
            return Ok(());
        }
        self.schema_hasher.update(line);
        self.schema_hasher.update(b"\n");
        if line.starts_with(b"COPY ") && line.ends_with(b" FROM stdin;") {
            let (schema, name) = parse_copy_target(line).ok_or_else(|| FingerprintError::UnreadableCopyHeader {
                line: String::from_utf8_lossy(line).into_owned(),
            })?;
            self.state = State::InCopy(TableAccumulator { schema, name, rows: 0, digest: 0 });
        }
        Ok(())
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

/// Reads `schema.table` out of `COPY "s"."t" (cols) FROM stdin;`, undoing pg_dump's identifier quoting.
fn parse_copy_target(line: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(&line[b"COPY ".len()..]).ok()?;
    let (schema, rest) = parse_ident(text)?;
    let rest = rest.strip_prefix('.')?;
    let (name, rest) = parse_ident(rest)?;
    if !rest.starts_with(' ') {
        return None;
    }
    Some((schema, name))
}

/// One identifier, quoted (`"a""b"`) or bare, and what follows it.
fn parse_ident(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = text.find(['.', ' ']).unwrap_or(text.len());
        (end > 0).then(|| (text[..end].to_string(), &text[end..]))
    }
}

/// Quotes an identifier when PostgreSQL would need it (anything but lower-case letters, digits and `_`).
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\
-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n\
SET statement_timeout = 0;\nCREATE TABLE public.t (id integer, v text);\n\
COPY public.t (id, v) FROM stdin;\n1\ta\n2\tb\\nc\n\\.\n\n\
COPY \"My Schema\".\"with \"\"quotes\"\"\" (\"from\") FROM stdin;\n\\.\n\n\
COPY \"select\".\"a.b\" (x) FROM stdin;\n\\N\n\\.\n\
SELECT pg_catalog.setval('public.s', 42, true);\n\\unrestrict abc123\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

    fn fingerprint_of(chunks: &[&[u8]]) -> Result<DumpSummary, FingerprintError> {
        let mut b = FingerprintBuilder::new();
        for c in chunks {
            b.feed(c)?;
        }
        b.finish()
    }

    #[test]
    fn given_a_dump_when_fingerprinted_then_every_copy_block_is_a_table_with_its_rows() {
        let s = fingerprint_of(&[DUMP.as_bytes()]).unwrap();
        let names: Vec<_> = s.fingerprint.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str(), t.rows)).collect();
        assert_eq!(names, vec![("My Schema", "with \"quotes\"", 0), ("public", "t", 2), ("select", "a.b", 1)]);
        assert_eq!(s.versions.server_version.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        assert_eq!(s.versions.pg_dump_version.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        assert_eq!(s.raw_bytes, DUMP.len() as u64);
    }

    #[test]
    fn given_any_chunking_when_fingerprinted_then_the_result_is_the_same() {
        let whole = fingerprint_of(&[DUMP.as_bytes()]).unwrap();
        let bytes = DUMP.as_bytes();
        for size in [1, 2, 3, 7, 64] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(fingerprint_of(&chunks).unwrap(), whole, "chunk size {size}");
        }
    }

    #[test]
    fn given_one_changed_or_missing_row_then_the_table_digest_changes() {
        let base = fingerprint_of(&[DUMP.as_bytes()]).unwrap().fingerprint;
        let changed = fingerprint_of(&[DUMP.replace("2\tb\\nc", "2\tb\\nd").as_bytes()]).unwrap().fingerprint;
        let missing = fingerprint_of(&[DUMP.replace("1\ta\n", "").as_bytes()]).unwrap().fingerprint;
        assert_ne!(base.table("public", "t").unwrap().digest, changed.table("public", "t").unwrap().digest);
        assert_eq!(base.table("public", "t").unwrap().rows, changed.table("public", "t").unwrap().rows);
        assert_eq!(missing.table("public", "t").unwrap().rows, 1);
        assert_eq!(base.schema_digest, changed.schema_digest, "data changes stay out of the schema digest");
    }

    #[test]
    fn given_rows_in_another_order_then_the_digest_is_the_same() {
        let a = fingerprint_of(&[DUMP.as_bytes()]).unwrap().fingerprint;
        let swapped = DUMP.replace("1\ta\n2\tb\\nc\n", "2\tb\\nc\n1\ta\n");
        assert_eq!(a, fingerprint_of(&[swapped.as_bytes()]).unwrap().fingerprint);
    }

    #[test]
    fn given_different_restrict_tokens_and_comments_then_the_schema_digest_is_the_same() {
        let a = fingerprint_of(&[DUMP.as_bytes()]).unwrap().fingerprint;
        let other = DUMP.replace("abc123", "zzz999").replace("15.18 (Debian", "15.19 (Debian");
        assert_eq!(a, fingerprint_of(&[other.as_bytes()]).unwrap().fingerprint);
        let ddl = DUMP.replace("v text", "v varchar");
        assert_ne!(a.schema_digest, fingerprint_of(&[ddl.as_bytes()]).unwrap().fingerprint.schema_digest);
    }

    #[test]
    fn given_a_stream_cut_inside_a_table_then_it_is_an_error() {
        let cut = &DUMP[..DUMP.find("2\tb").unwrap()];
        assert!(matches!(fingerprint_of(&[cut.as_bytes()]), Err(FingerprintError::EndedInsideCopy { .. })));
    }

    #[test]
    fn given_a_stream_cut_before_the_trailer_then_it_is_an_error() {
        let cut = &DUMP[..DUMP.find("-- PostgreSQL database dump complete").unwrap()];
        assert_eq!(fingerprint_of(&[cut.as_bytes()]), Err(FingerprintError::MissingTrailer));
    }

    #[test]
    fn quote_ident_quotes_only_what_needs_it() {
        assert_eq!(quote_ident("orders"), "orders");
        assert_eq!(quote_ident("Mixed"), "\"Mixed\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("ünï"), "\"ünï\"");
    }
}
