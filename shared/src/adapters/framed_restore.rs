//! Restores a framed dump (`domain::dump_layout`) into a scratch server over several connections, as
//! `pg_restore -j` does for a directory-format dump, straight from one read of the stored object:
//!
//! 1. the SQL before the first table's rows (schema: types, tables, functions) runs in one transaction;
//! 2. the tables' rows load side by side: as the object streams in, each chunk of rows goes to the next free
//!    connection, which decompresses it on its own and sends it with `COPY … FROM STDIN`. On a
//!    `wal_level=minimal` server (a scratch server's setting), a table loads in one transaction that first
//!    empties it (`TRUNCATE ONLY`), which lets the server skip writing WAL for its rows, and with `FREEZE`, so
//!    they are written as visible to all and no index build or read-back has to mark them so later. A table of
//!    several chunks loads that way too, every chunk on the connection that took the first, when its later
//!    chunks fit in what is left of [`FramedRestorer::one_transaction_ahead`]: the one read of the object holds
//!    them in memory for that connection and goes on to the next tables for the others, so no connection waits
//!    on one table. A bigger table's later chunks are spilled instead, as stored, to a file of its own in the
//!    temp directory, reserved whole before the table starts (within [`FramedRestorer::spill_ahead`], never on
//!    memory-backed storage, and in half of what the disk has free beyond what the restore still needs:
//!    `adapters::spill`), which that connection reads back. Only a table too big for that too goes side by
//!    side, each chunk on the next free connection in a transaction of its own, writing WAL, as do the tables
//!    that cannot be emptied first (a partitioned root, an extension's configuration table, a table whose rows
//!    the dump splits over several segments);
//! 3. the SQL after the rows runs in order, except that indexes and constraints build side by side (one
//!    table's on one connection, so no two statements fight over a table) and foreign keys too, after them,
//!    with a deadlock the server breaks retried alone. Every other statement is a barrier that runs alone.
//!    A table's own index and constraint builds do not wait for the last row of the dump: read ahead from the
//!    dump's tail, they run on the loading connections as soon as that table's rows are in, and a foreign key
//!    as soon as both its tables' rows and builds are (`early_indexes`, pg_restore's scheduling).
//!
//! Each connection first takes the session settings the dump sets (`SET …`, `set_config`), as psql would
//! have had them. Statements are split as psql splits them (`sql::splitter`). Any error stops the restore: a
//! drill's restore either succeeds whole or fails with the server's message and the statement.
//!
//! The one read of the object is also its integrity check: every byte passes through SHA-256 in order (read
//! to the end even when the restore stopped early), so the object checks compare the whole object with the
//! record and the manifest exactly as a sequential restore would. Reading the object once, in order, is also
//! what object stores (and their emulators) serve fastest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::SinkExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_postgres::Client;

use super::early_indexes::{read_ahead, single_segment_tables, split_early, table_key, IndexScheduler, PostDataAhead};
use super::pg_wire::{connect, describe, is_deadlock};
use super::read_back::{table_to_read, ReadBack, TableToRead};
use super::spill::SpillFile;
use crate::domain::dump_layout::{DumpLayout, SegmentKind};
use crate::domain::sql::splitter::{Piece, StatementSplitter};
use crate::domain::sql::statement::{may_bring_code_that_writes, post_data_kind, PostDataKind};
use crate::pipeline::codec::Codec;
use crate::ports::{
    FramedDump, FramedRestoreReport, ObjectStore, OpenedDump, ReadBackUnderway, RestoreError, ScratchEndpoint,
};

/// Decompressed bytes per COPY message.
const COPY_PIECE: usize = 256 * 1024;
/// Statements in flight on one connection before the first answer is awaited (pipelining).
const PIPELINE: usize = 64;
/// Schema statements per transaction. Each `CREATE` holds a lock until its transaction ends (a table with a
/// TOAST table, three), and a server's lock table is shared and sized by `max_locks_per_transaction` times its
/// connections: a database of thousands of tables made in one transaction runs it out ("out of shared memory"),
/// where pg_dump, which only reads them, did not.
const SCHEMA_STATEMENTS_PER_TRANSACTION: usize = 1000;

fn failed(what: impl Into<String>) -> RestoreError {
    RestoreError::Failed { program: "restore".into(), status: "error".into(), stderr_tail: what.into() }
}

/// `"name"` with quotes doubled: safe for any identifier.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn excerpt(statement: &[u8]) -> String {
    let text = String::from_utf8_lossy(statement);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 160 {
        format!("{}…", one_line.chars().take(160).collect::<String>())
    } else {
        one_line
    }
}

/// Session settings as the dump sets them, to replay on every connection (latest value per setting wins).
#[derive(Debug, Clone, Default)]
struct Session {
    settings: Vec<(String, Vec<u8>)>,
}

impl Session {
    /// Records `statement` if it is a session setting; true when it was one.
    fn note(&mut self, statement: &[u8]) -> bool {
        let text = String::from_utf8_lossy(statement);
        let text = text.trim();
        let name = if let Some(rest) = text.strip_prefix("SET ") {
            rest.split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or_default().to_ascii_lowercase()
        } else if let Some(rest) = text.strip_prefix("SELECT pg_catalog.set_config('") {
            rest.split('\'').next().unwrap_or_default().to_ascii_lowercase()
        } else {
            return false;
        };
        self.settings.retain(|(n, _)| *n != name);
        self.settings.push((name, statement.to_vec()));
        true
    }

    fn script(&self) -> String {
        self.settings.iter().map(|(_, s)| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join("\n")
    }
}

async fn apply(client: &Client, session: &Session) -> Result<(), RestoreError> {
    if session.settings.is_empty() {
        return Ok(());
    }
    client
        .batch_execute(&session.script())
        .await
        .map_err(|e| failed(format!("the dump's session settings failed: {}", describe(&e))))
}

/// Splits SQL into statements, carrying the split across chunks; psql meta-commands pg_dump writes
/// (`\restrict`, `\unrestrict`: psql's own safeguards) are dropped, any other is refused.
pub(super) fn statements_of(splitter: &mut StatementSplitter, sql: &[u8]) -> Result<Vec<Vec<u8>>, RestoreError> {
    let mut pieces = Vec::new();
    let mut out = Vec::new();
    for line in sql.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        splitter.line(line, &mut pieces).map_err(|e| failed(e.to_string()))?;
        for piece in pieces.drain(..) {
            match piece {
                Piece::Statement(s) => out.push(s),
                Piece::MetaCommand(m) if m.starts_with(b"\\restrict") || m.starts_with(b"\\unrestrict") => {}
                Piece::MetaCommand(m) => {
                    return Err(failed(format!(
                        "the dump holds a psql command a restore drill does not run: {}",
                        excerpt(&m)
                    )))
                }
            }
        }
    }
    Ok(out)
}

/// Runs statements in order on one connection, pipelined; the first error stops it and names the statement.
async fn run_in_order(client: &Client, statements: &[Vec<u8>]) -> Result<(), RestoreError> {
    use futures_util::stream::{FuturesOrdered, StreamExt};
    let mut in_flight = FuturesOrdered::new();
    for statement in statements {
        let text = String::from_utf8_lossy(statement).into_owned();
        in_flight.push_back(async move {
            client
                .batch_execute(&text)
                .await
                .map_err(|e| failed(format!("{} in: {}", describe(&e), excerpt(statement))))
        });
        if in_flight.len() >= PIPELINE {
            if let Some(done) = in_flight.next().await {
                done?;
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(())
}

/// Runs schema statements in the open schema transaction, which is committed and opened again every
/// [`SCHEMA_STATEMENTS_PER_TRANSACTION`] statements; `in_transaction` counts those it holds.
async fn run_in_schema_transaction(
    client: &Client,
    statements: &[Vec<u8>],
    in_transaction: &mut usize,
) -> Result<(), RestoreError> {
    let mut rest = statements;
    while !rest.is_empty() {
        let room = SCHEMA_STATEMENTS_PER_TRANSACTION - *in_transaction;
        let (now, later) = rest.split_at(room.min(rest.len()));
        run_in_order(client, now).await?;
        *in_transaction += now.len();
        rest = later;
        if *in_transaction == SCHEMA_STATEMENTS_PER_TRANSACTION {
            for step in ["COMMIT", "BEGIN"] {
                client.batch_execute(step).await.map_err(|e| failed(describe(&e)))?;
            }
            *in_transaction = 0;
        }
    }
    Ok(())
}

pub struct FramedRestorer {
    pub jobs: usize,
    /// The most that chunks read ahead may hold in memory (stored bytes): a table whose chunks after its first
    /// fit in what is left of it loads in one transaction, those chunks waiting for the connection that took the
    /// first one.
    pub one_transaction_ahead: u64,
    /// The most that chunks read ahead may hold on local disk (stored bytes, in the temp directory, and only in
    /// half of what it has free beyond what the rest of the restore needs: `adapters::spill`): a table too big
    /// for the memory left loads in one transaction all the same when its later chunks fit here, in a file of
    /// its own that goes once they are loaded.
    pub spill_ahead: u64,
}

/// [`FramedRestorer::one_transaction_ahead`] by default: with the corpus's 3.3× compression, a table of up to
/// about 130 MiB of SQL (its first chunk is not held ahead). The dump's bytes in flight besides are a chunk per
/// connection loading and as many queued (`CHUNK_TARGET` of SQL each, about 10 MiB stored), so two connections
/// hold at most about 80 MiB of it; the drill's whole peak measured 75 MiB on medium and 87 MiB on large with
/// it (docs/benchmarks.md), against a target of 128 MiB.
pub const ONE_TRANSACTION_AHEAD: u64 = 32 * 1024 * 1024;

/// [`FramedRestorer::spill_ahead`] by default: a table of up to about 13 GB of SQL at the corpus's compression,
/// where the disk has twice the room (a Lambda function's /tmp has up to 10 GB).
pub const SPILL_AHEAD: u64 = 4 * 1024 * 1024 * 1024;

impl FramedRestorer {
    pub fn new(jobs: usize) -> Self {
        FramedRestorer { jobs, one_transaction_ahead: ONE_TRANSACTION_AHEAD, spill_ahead: SPILL_AHEAD }
    }
}

/// The object as it streams in: every byte through SHA-256, counted.
struct HashedStream {
    body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    hasher: Sha256,
    size: u64,
    /// The first read error, if the stream broke.
    error: Option<String>,
}

impl HashedStream {
    /// Exactly `len` bytes, or an error (the object is shorter than its layout, or the read failed).
    async fn read_exact(&mut self, len: u64) -> Result<Bytes, String> {
        let mut buffer = bytes::BytesMut::zeroed(len as usize);
        let mut filled = 0;
        while filled < buffer.len() {
            match self.body.read(&mut buffer[filled..]).await {
                Ok(0) => {
                    self.hasher.update(&buffer[..filled]);
                    self.size += filled as u64;
                    return Err(format!(
                        "the object ended {} bytes before its layout says it does",
                        buffer.len() - filled
                    ));
                }
                Ok(n) => filled += n,
                Err(e) => {
                    self.hasher.update(&buffer[..filled]);
                    self.size += filled as u64;
                    let message = format!("reading the dump failed: {e}");
                    self.error = Some(message.clone());
                    return Err(message);
                }
            }
        }
        self.hasher.update(&buffer);
        self.size += len;
        Ok(buffer.freeze())
    }

    /// Reads to the end, so the checksum covers the whole object even when the restore stopped early, or the
    /// object is longer than its layout.
    async fn drain(&mut self) {
        let mut buffer = vec![0u8; 1 << 20];
        while self.error.is_none() {
            match self.body.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => {
                    self.hasher.update(&buffer[..n]);
                    self.size += n as u64;
                }
                Err(e) => self.error = Some(format!("reading the dump failed: {e}")),
            }
        }
    }
}

/// The first error any connection hit: the others stop taking work once it is set.
#[derive(Default)]
struct FirstError(Mutex<Option<RestoreError>>);

impl FirstError {
    fn set(&self, e: RestoreError) {
        let mut slot = self.0.lock().expect("error slot lock");
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn is_set(&self) -> bool {
        self.0.lock().expect("error slot lock").is_some()
    }
    fn take(&self) -> Option<RestoreError> {
        self.0.lock().expect("error slot lock").take()
    }
}

impl FramedRestorer {
    pub async fn restore(
        &self,
        store: Arc<dyn ObjectStore>,
        server: &ScratchEndpoint,
        database: &str,
        mut dump: FramedDump<'_>,
    ) -> Result<FramedRestoreReport, RestoreError> {
        // The tail's ranged read and the object's own read start together, and while the caller still makes
        // the database: none waits for another. Or the caller started them earlier still.
        let mut opened = match dump.opened.take() {
            Some(opened) => opened,
            None => OpenedDump::open(store.as_ref(), dump.key, dump.version_id, dump.layout).await,
        };
        let ahead = read_ahead(&dump, opened.tail.take()).await;
        let fetched = opened.object();
        if let Some(ready) = dump.server_ready.take() {
            if !ready.await.unwrap_or(false) {
                // The caller reports why; nothing was sent to the server, and the object's reads are dropped.
                return Err(failed("not started: the server was not made ready for the restore"));
            }
        }
        let fetched = fetched.map_err(|e| failed(e.to_string()))?;
        let head = fetched.head.clone();
        let mut stream = HashedStream { body: fetched.body, hasher: Sha256::new(), size: 0, error: None };
        let mut report = FramedRestoreReport::default();
        let restored = self.restore_stream(&mut stream, server, database, &dump, ahead, &mut report).await;
        stream.drain().await;
        // The object is read whole either way, so its checks say whether the bytes were right even when the
        // restore stopped early. A read-back started during a restore that failed is dropped, which stops it.
        match restored {
            Ok(early) => report.read_early = early.map(|e| e as Arc<dyn ReadBackUnderway>),
            Err(e) => report.restore_error = Some(e.to_string()),
        }
        report.object_sha256 = hex::encode(std::mem::take(&mut stream.hasher).finalize());
        report.object_size = stream.size;
        report.object_head = Some(head);
        report.object_error = stream.error.take();
        Ok(report)
    }

    async fn restore_stream(
        &self,
        stream: &mut HashedStream,
        server: &ScratchEndpoint,
        database: &str,
        dump: &FramedDump<'_>,
        ahead: Option<PostDataAhead>,
        report: &mut FramedRestoreReport,
    ) -> Result<Option<Arc<ReadBack>>, RestoreError> {
        let layout = dump.layout;
        let last_copy = layout.segments.iter().rposition(|s| matches!(s.kind, SegmentKind::Copy { .. }));
        // Tables are read back early only when asked to and when no statement of the dump brings code that a
        // later statement could run to write rows (`may_bring_code_that_writes`): the tail must be read ahead
        // to know, and the statements before the rows are looked at as they run.
        let mut read_early = dump
            .read_early
            .filter(|_| ahead.as_ref().is_some_and(|a| !a.statements.iter().any(|s| may_bring_code_that_writes(s))));
        let mut early_reader: Option<Arc<ReadBack>> = None;
        // With the tail read ahead, its index builds are handed to the loading connections table by table,
        // and its bytes, when the in-order read reaches them, are only compared with what was read ahead.
        let (early, mut after, tail_ahead) = match ahead {
            Some(PostDataAhead { first_segment, stored, statements }) => {
                report.statements += statements.len();
                let (early, later) = split_early(layout, statements);
                (early, later, Some((first_segment, stored)))
            }
            None => (Default::default(), Vec::new(), None),
        };
        let scheduler = Arc::new(IndexScheduler::new(layout, early));
        let mut tail_streamed = bytes::BytesMut::new();
        let main = connect(server, database).await?;
        main.batch_execute("BEGIN").await.map_err(|e| failed(describe(&e)))?;
        let mut session = Session::default();
        let mut schema_open = true;
        let mut in_schema_transaction = 0;
        let (work_tx, work_rx) = tokio::sync::mpsc::channel::<Handout>(self.jobs.max(1));
        let mut work_tx = Some(work_tx);
        let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
        let first_error = Arc::new(FirstError::default());
        let rows = Arc::new(Mutex::new(BTreeMap::<(String, String), u64>::new()));
        let mut workers = tokio::task::JoinSet::new();
        // Tables whose rows are in one segment of the layout. pg_dump writes one table's rows in several when it
        // loads partitions through their root (`-- load via partition root`): each then goes in as it is.
        let in_one_segment = single_segment_tables(layout);
        // Tables not emptied before their rows go in, known once the schema is in: a partitioned root (it takes its
        // partitions' rows, and neither `TRUNCATE ONLY` nor `COPY … FREEZE` applies to it), and an extension's
        // configuration table, which `CREATE EXTENSION` filled with the extension's own rows (pg_dump dumps only
        // those its filter selects: emptying it would lose the others).
        let mut not_emptied = BTreeSet::<(String, String)>::new();
        let mut minimal_wal = false;
        // Stored bytes of chunks read ahead for tables loading in one transaction, not yet loaded: in memory, and
        // spilled to local disk.
        let held_ahead = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let spilled_ahead = Arc::new(std::sync::atomic::AtomicU64::new(0));

        for (i, segment) in layout.segments.iter().enumerate() {
            let mut splitter = StatementSplitter::new();
            let count = segment.chunks.len();
            // The way to the connection loading this table in one transaction, for its chunks after the first,
            // and, for a table past the memory left, the file they are spilled to and where the next one goes.
            let mut later_chunks: Option<tokio::sync::mpsc::UnboundedSender<(CopyWork, ReadAhead)>> = None;
            let mut spill: Option<(Arc<SpillFile>, u64)> = None;
            for (index, chunk) in segment.chunks.iter().enumerate() {
                if first_error.is_set() {
                    return Err(first_error.take().expect("set"));
                }
                let stored = stream.read_exact(chunk.stored()).await.map_err(failed)?;
                match &segment.kind {
                    SegmentKind::Sql if tail_ahead.as_ref().is_some_and(|(first, _)| i >= *first) => {
                        tail_streamed.extend_from_slice(&stored);
                    }
                    SegmentKind::Sql => {
                        let statements = statements_of(&mut splitter, &decode_sql(dump.codec, stored).await?)?;
                        report.statements += statements.len();
                        if last_copy.is_some_and(|last| i > last) {
                            // After the rows: run once they are all in, with the post-data scheduler.
                            after.extend(statements);
                        } else {
                            // The schema, or the data section's own statements (independent of the rows).
                            for statement in &statements {
                                session.note(statement);
                            }
                            if statements.iter().any(|s| may_bring_code_that_writes(s)) {
                                // What was read early may be written yet: the check reads every table.
                                read_early = None;
                                scheduler.stop_announcing();
                                early_reader = None;
                            }
                            if schema_open {
                                run_in_schema_transaction(&main, &statements, &mut in_schema_transaction).await?;
                            } else {
                                run_in_order(&main, &statements).await?;
                            }
                        }
                    }
                    SegmentKind::Copy { schema, name, statement, .. } => {
                        if schema_open {
                            main.batch_execute("COMMIT").await.map_err(|e| failed(describe(&e)))?;
                            schema_open = false;
                            minimal_wal = main
                                .query_one("SELECT current_setting('wal_level') = 'minimal'", &[])
                                .await
                                .map(|r| r.get::<_, bool>(0))
                                .unwrap_or(false);
                            not_emptied = main
                                .query(
                                    "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p' \
                                     OR c.oid IN (SELECT unnest(e.extconfig) FROM pg_catalog.pg_extension e)",
                                    &[],
                                )
                                .await
                                .map_err(|e| {
                                    failed(format!(
                                        "cannot list the partitioned and extension configuration tables: {}",
                                        describe(&e)
                                    ))
                                })?
                                .iter()
                                .map(|r| (r.get(0), r.get(1)))
                                .collect();
                            if let Some(how) = &read_early {
                                // The schema is committed: the reader sees every table, and reads each as it
                                // settles (rows in, early builds run).
                                let reader = ReadBack::start_early(server, database, how.session, how.rows);
                                let tables = tables_read_whole(layout);
                                let offered = reader.clone();
                                scheduler.announce_settled(Arc::new(move |segment| {
                                    if let Some(table) = tables.get(&segment) {
                                        offered.offer(table.clone());
                                    }
                                }));
                                early_reader = Some(reader);
                            }
                            for _ in 0..self.jobs.max(1) {
                                let (rx, rows, first_error, session, scheduler) = (
                                    work_rx.clone(),
                                    rows.clone(),
                                    first_error.clone(),
                                    session.clone(),
                                    scheduler.clone(),
                                );
                                let (server, database, codec) = (server.clone(), database.to_string(), dump.codec);
                                workers.spawn(async move {
                                    use futures_util::FutureExt;
                                    let closing = rx.clone();
                                    let loading = load_rows(
                                        rx,
                                        &server,
                                        &database,
                                        codec,
                                        &session,
                                        &rows,
                                        &scheduler,
                                        &first_error,
                                    );
                                    // A panic is a failure like any other: it must stop the restore, not leave
                                    // its hand-outs unloaded (or the stream waiting for this connection).
                                    match std::panic::AssertUnwindSafe(loading).catch_unwind().await {
                                        Ok(Ok(())) => {}
                                        Ok(Err(e)) => first_error.set(e),
                                        Err(_) => first_error.set(failed(
                                            "a loading connection failed unexpectedly (a bug: see the log)",
                                        )),
                                    }
                                    if first_error.is_set() {
                                        // The stream must not wait for room that no connection will make: with the
                                        // channel closed, its next hand-out fails and it stops.
                                        closing.lock().await.close();
                                    }
                                });
                            }
                        }
                        let work = CopyWork {
                            segment: i,
                            schema: schema.clone(),
                            name: name.clone(),
                            statement: statement.clone(),
                            first: index == 0,
                            last: index + 1 == count,
                        };
                        if index > 0 {
                            if let Some(lane) = &later_chunks {
                                // To the connection loading the table, read ahead: this never waits (but for the
                                // disk), and what it holds is within the budget the table was let in on.
                                let len = stored.len() as u64;
                                let ahead = match &mut spill {
                                    None => {
                                        held_ahead.fetch_add(len, std::sync::atomic::Ordering::SeqCst);
                                        ReadAhead::Memory(stored)
                                    }
                                    Some((file, next)) => {
                                        let offset = *next;
                                        *next += len;
                                        file.write_at(offset, stored).await.map_err(failed)?;
                                        ReadAhead::Spilled { file: file.clone(), offset, len }
                                    }
                                };
                                if lane.send((work, ahead)).is_ok() {
                                    continue;
                                }
                                // That connection failed: the rows stop here, never leaving a segment half read.
                                return Err(when_loaders_stopped(later_chunks, work_tx, workers, &first_error).await);
                            }
                        }
                        let mut handout = Handout { work, stored, one_transaction: false, later: None };
                        if index == 0 {
                            let later: u64 = segment.chunks[1..].iter().map(|c| c.stored()).sum();
                            // Only this reader adds to what is held, and the loaders only take from it: what is
                            // read ahead in memory never passes the budget (on disk: `SpillFile::reserve`).
                            let memory_left = self
                                .one_transaction_ahead
                                .saturating_sub(held_ahead.load(std::sync::atomic::Ordering::SeqCst));
                            let emptied = minimal_wal
                                && in_one_segment.contains_key(&table_key(schema, name))
                                && !not_emptied.contains(&(schema.clone(), name.clone()));
                            let in_memory = later <= memory_left;
                            if emptied && !in_memory {
                                // Reserved whole now, or not at all (the table then loads side by side), leaving
                                // room for what the restore may still write: twice the SQL from here on, as a
                                // scratch server is sized.
                                let still: u64 =
                                    layout.segments[i..].iter().flat_map(|s| &s.chunks).map(|c| c.raw()).sum();
                                spill = SpillFile::reserve(
                                    later,
                                    self.spill_ahead,
                                    still.saturating_mul(2),
                                    &spilled_ahead,
                                )
                                .map(|file| (Arc::new(file), 0));
                            }
                            handout.one_transaction = emptied && (in_memory || spill.is_some());
                            if handout.one_transaction && count > 1 {
                                let (lane, chunks) = tokio::sync::mpsc::unbounded_channel();
                                later_chunks = Some(lane);
                                handout.later = Some(LaterChunks { chunks, held: held_ahead.clone() });
                            }
                        }
                        let sender = work_tx.as_ref().expect("open until the rows are over");
                        if sender.send(handout).await.is_err() {
                            // Every connection stopped taking rows (one failed, the others gave up).
                            return Err(when_loaders_stopped(later_chunks, work_tx, workers, &first_error).await);
                        }
                    }
                }
            }
            // Chunks of SQL hold whole statements (the backup cuts them between statements): one that ends inside
            // a statement is a layout this restore cannot follow.
            splitter
                .finish()
                .map_err(|e| failed(format!("segment {i} of the layout ends inside a statement ({e})")))?;
        }
        // The rows are all handed out: wait for the connections to finish loading them.
        drop(work_tx.take());
        while workers.join_next().await.is_some() {}
        if let Some(e) = first_error.take() {
            return Err(e);
        }
        if schema_open {
            main.batch_execute("COMMIT").await.map_err(|e| failed(describe(&e)))?;
        }
        if let Some((_, read_ahead)) = &tail_ahead {
            if tail_streamed.as_ref() != read_ahead.as_ref() {
                return Err(failed(format!(
                    "the dump's last {} bytes differ between the read ahead and the read in order (the object \
                     changed or a read was corrupted): the restore is not trusted",
                    read_ahead.len()
                )));
            }
        }
        report.built_during_load = scheduler.handed_out.load(std::sync::atomic::Ordering::Relaxed);
        // Builds whose table's rows never all came in (none, unless the restore is failing) keep their place.
        let mut leftover = scheduler.leftover();
        leftover.append(&mut after);
        let (after, moved) = crate::domain::sql::statement::event_triggers_last(leftover);
        report.event_triggers_moved_last = moved;
        report.rows_loaded = std::mem::take(&mut *rows.lock().expect("rows lock"));
        let weights: BTreeMap<String, u64> = layout
            .segments
            .iter()
            .filter_map(|s| match &s.kind {
                SegmentKind::Copy { schema, name, .. } => {
                    Some((table_key(schema, name), s.chunks.iter().map(|c| c.raw()).sum()))
                }
                SegmentKind::Sql => None,
            })
            .collect();
        report.retried_alone = self.post_data(&main, server, database, &mut session, after, &weights).await?;
        scheduler.stop_announcing();
        Ok(early_reader)
    }

    /// Runs the statements after the rows: batches of indexes (and of foreign keys) side by side, the rest
    /// alone in order. Returns how many statements were run again alone after a deadlock.
    async fn post_data(
        &self,
        main: &Client,
        server: &ScratchEndpoint,
        database: &str,
        session: &mut Session,
        statements: Vec<Vec<u8>>,
        weights: &BTreeMap<String, u64>,
    ) -> Result<usize, RestoreError> {
        let mut batch = Batch::default();
        let mut retried = 0;
        let mut workers: Vec<Client> = Vec::new();
        for statement in statements {
            let kind = post_data_kind(&statement);
            let joins = matches!(
                (&batch.kind, &kind),
                (_, PostDataKind::Annotation)
                    | (Some(BatchKind::Indexes), PostDataKind::Index { .. })
                    | (Some(BatchKind::ForeignKeys), PostDataKind::ForeignKey { .. })
                    | (None, PostDataKind::Index { .. } | PostDataKind::ForeignKey { .. })
            );
            if !joins {
                retried += self.flush(&mut batch, main, server, database, session, weights, &mut workers).await?;
            }
            match kind {
                PostDataKind::Index { table } => batch.add(BatchKind::Indexes, table, statement),
                PostDataKind::ForeignKey { table } => batch.add(BatchKind::ForeignKeys, table, statement),
                PostDataKind::Annotation => batch.annotations.push(statement),
                PostDataKind::Barrier => {
                    session.note(&statement);
                    run_in_order(main, std::slice::from_ref(&statement)).await?;
                }
            }
        }
        retried += self.flush(&mut batch, main, server, database, session, weights, &mut workers).await?;
        Ok(retried)
    }

    /// Runs a batch: its statements grouped by table over the worker connections, then its annotations.
    #[allow(clippy::too_many_arguments)]
    async fn flush(
        &self,
        batch: &mut Batch,
        main: &Client,
        server: &ScratchEndpoint,
        database: &str,
        session: &Session,
        weights: &BTreeMap<String, u64>,
        workers: &mut Vec<Client>,
    ) -> Result<usize, RestoreError> {
        let Batch { kind, groups, annotations } = std::mem::take(batch);
        let mut retried = 0;
        if kind.is_some() {
            while workers.len() < self.jobs.max(1) {
                workers.push(connect(server, database).await?);
            }
            for worker in workers.iter() {
                // Settings may have changed since the last batch (`SET default_tablespace` before an index).
                apply(worker, session).await?;
            }
            let mut groups: Vec<(String, Vec<Vec<u8>>)> = groups.into_iter().collect();
            groups.sort_by_key(|(table, _)| std::cmp::Reverse(weights.get(table).copied().unwrap_or(0)));
            let queue = Arc::new(Mutex::new(VecDeque::from(groups)));
            let deadlocked = Arc::new(Mutex::new(Vec::new()));
            let runs = workers.iter().map(|client| {
                let (queue, deadlocked) = (queue.clone(), deadlocked.clone());
                async move {
                    loop {
                        let Some((_, statements)) = queue.lock().expect("batch queue lock").pop_front() else {
                            return Ok::<(), RestoreError>(());
                        };
                        for statement in statements {
                            let text = String::from_utf8_lossy(&statement).into_owned();
                            match client.batch_execute(&text).await {
                                Ok(()) => {}
                                Err(e) if is_deadlock(&e) => {
                                    deadlocked.lock().expect("deadlock list lock").push(statement)
                                }
                                Err(e) => return Err(failed(format!("{} in: {}", describe(&e), excerpt(&statement)))),
                            }
                        }
                    }
                }
            });
            futures_util::future::try_join_all(runs).await?;
            let deadlocked = std::mem::take(&mut *deadlocked.lock().expect("deadlock list lock"));
            retried = deadlocked.len();
            run_in_order(main, &deadlocked).await?;
        }
        run_in_order(main, &annotations).await?;
        Ok(retried)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Indexes,
    ForeignKeys,
}

/// Statements that may run side by side: per table, in order.
#[derive(Default)]
struct Batch {
    kind: Option<BatchKind>,
    groups: BTreeMap<String, Vec<Vec<u8>>>,
    annotations: Vec<Vec<u8>>,
}

impl Batch {
    fn add(&mut self, kind: BatchKind, table: String, statement: Vec<u8>) {
        self.kind = Some(kind);
        self.groups.entry(table).or_default().push(statement);
    }
}

/// By segment, the tables an early read-back may take when that segment settles: those whose rows are all
/// in that one segment (a table in several would be read before its last rows).
fn tables_read_whole(layout: &DumpLayout) -> BTreeMap<usize, TableToRead> {
    single_segment_tables(layout)
        .into_values()
        .filter_map(|segment| table_to_read(&layout.segments[segment]).map(|table| (segment, table)))
        .collect()
}

/// One chunk of one table's rows.
#[derive(Debug, Clone)]
struct CopyWork {
    /// The table's segment in the layout.
    segment: usize,
    schema: String,
    name: String,
    statement: String,
    first: bool,
    last: bool,
}

/// What the stream hands the next free connection: a chunk, and for a table's first chunk how the table loads.
struct Handout {
    work: CopyWork,
    stored: Bytes,
    /// The table loads whole on this connection, in the transaction that empties it (`TRUNCATE`, `FREEZE`).
    one_transaction: bool,
    /// With `one_transaction`: the table's other chunks, as the stream reads them.
    later: Option<LaterChunks>,
}

/// A table's chunks after its first, read ahead for the connection loading it in one transaction.
struct LaterChunks {
    chunks: tokio::sync::mpsc::UnboundedReceiver<(CopyWork, ReadAhead)>,
    /// What the restore holds read ahead in memory, which a chunk leaves once loaded (a spill file leaves what
    /// it holds on disk when it goes).
    held: Arc<std::sync::atomic::AtomicU64>,
}

/// A chunk read ahead for the connection loading its table: in memory, or in the table's spill file.
enum ReadAhead {
    Memory(Bytes),
    Spilled { file: Arc<SpillFile>, offset: u64, len: u64 },
}

/// Why the loading connections stopped taking rows, once they all have: the first error one of them met. The
/// stream's senders are dropped first, so a connection still waiting for rows sees them end.
async fn when_loaders_stopped(
    later_chunks: Option<tokio::sync::mpsc::UnboundedSender<(CopyWork, ReadAhead)>>,
    work: Option<tokio::sync::mpsc::Sender<Handout>>,
    mut workers: tokio::task::JoinSet<()>,
    first_error: &FirstError,
) -> RestoreError {
    drop((later_chunks, work));
    while workers.join_next().await.is_some() {}
    first_error.take().unwrap_or_else(|| failed("the loading connections stopped before the rows were all in"))
}

/// Decompresses a chunk of SQL (small: the schema, or the comments between tables).
pub(super) async fn decode_sql(codec: Codec, stored: Bytes) -> Result<Vec<u8>, RestoreError> {
    tokio::task::spawn_blocking(move || crate::pipeline::codec::decode_all(codec, &stored))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("a chunk of the dump does not decompress: {e}")))
}

/// A loading connection: runs a table's index builds as soon as they are ready, otherwise takes the next chunk
/// as the stream hands it out, until the rows are over (and no build is ready) or another connection failed.
#[allow(clippy::too_many_arguments)]
async fn load_rows(
    work: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Handout>>>,
    server: &ScratchEndpoint,
    database: &str,
    codec: Codec,
    session: &Session,
    rows: &Mutex<BTreeMap<(String, String), u64>>,
    scheduler: &IndexScheduler,
    first_error: &FirstError,
) -> Result<(), RestoreError> {
    let client = connect(server, database).await?;
    apply(&client, session).await?;
    let mut rows_over = false;
    loop {
        if first_error.is_set() {
            return Ok(());
        }
        // Made before looking, so a build that becomes ready or finishes meanwhile still wakes this connection.
        let woken = scheduler.ready_signal.notified();
        if let Some(build) = scheduler.next_ready() {
            // A table's constraints (in dump order), one of its index builds, or a foreign key (`early_indexes`).
            let ran = run_in_order(&client, &build.statements).await;
            scheduler.finished(&build, ran.is_ok());
            ran?;
            continue;
        }
        if rows_over {
            if scheduler.builds_pending() {
                // Builds wait for their table, busy on another connection, or foreign keys for builds running
                // there: run them once they can.
                woken.await;
                continue;
            }
            return Ok(());
        }
        let next = tokio::select! {
            // A build became ready (or its table free) while this connection waited for rows: run it first.
            _ = woken => continue,
            next = async { work.lock().await.recv().await } => next,
        };
        let Some(handout) = next else {
            rows_over = true;
            continue;
        };
        if first_error.is_set() {
            return Ok(());
        }
        let (segment, key) = (handout.work.segment, (handout.work.schema.clone(), handout.work.name.clone()));
        let (count, chunks) = if handout.one_transaction {
            load_in_one_transaction(&client, codec, handout, first_error).await?
        } else {
            (copy_chunk(&client, codec, &handout.work, handout.stored, false).await?, 1)
        };
        *rows.lock().expect("rows lock").entry(key).or_default() += count;
        // Counted once committed: the table's builds and its read-back, on other connections, see its rows.
        for _ in 0..chunks {
            scheduler.chunk_loaded(segment);
        }
    }
}

/// Loads a whole table in one transaction that first empties it (`TRUNCATE ONLY`): a `wal_level=minimal` server
/// then writes no WAL for its rows, and `FREEZE` writes them as visible to all. The first chunk is `handout`'s,
/// the others come through its `later` as the stream reads them. Returns the rows and the chunks loaded.
async fn load_in_one_transaction(
    client: &Client,
    codec: Codec,
    handout: Handout,
    first_error: &FirstError,
) -> Result<(u64, usize), RestoreError> {
    let Handout { work, stored, later, .. } = handout;
    let table = format!("{}.{}", quoted(&work.schema), quoted(&work.name));
    client
        .batch_execute(&format!("BEGIN; TRUNCATE ONLY {table}"))
        .await
        .map_err(|e| failed(format!("{} (preparing to load {table})", describe(&e))))?;
    let mut last = work.last;
    let mut rows = copy_chunk(client, codec, &work, stored, true).await?;
    let mut chunks = 1;
    if let Some(mut later) = later {
        while let Some((work, ahead)) = later.chunks.recv().await {
            if first_error.is_set() {
                return Err(failed(format!("stopped loading {table}: another connection failed")));
            }
            let (stored, in_memory) = match ahead {
                ReadAhead::Memory(stored) => (stored, true),
                ReadAhead::Spilled { file, offset, len } => (file.read_at(offset, len).await.map_err(failed)?, false),
            };
            let size = stored.len() as u64;
            let copied = copy_chunk(client, codec, &work, stored, true).await;
            if in_memory {
                later.held.fetch_sub(size, std::sync::atomic::Ordering::SeqCst);
            }
            rows += copied?;
            chunks += 1;
            last = work.last;
        }
    }
    if !last {
        // The stream stopped inside the table (the restore is failing for it): its rows are not committed.
        return Err(failed(format!("the rows of {table} stopped before their last chunk")));
    }
    client.batch_execute("COMMIT").await.map_err(|e| failed(format!("{} (loading {table})", describe(&e))))?;
    Ok((rows, chunks))
}

/// Sends one chunk as a `COPY` (with `FREEZE` in the transaction that emptied its table): decompressed on a
/// blocking thread, sent as COPY data. Returns the rows the server took.
async fn copy_chunk(
    client: &Client,
    codec: Codec,
    item: &CopyWork,
    stored: Bytes,
    freeze: bool,
) -> Result<u64, RestoreError> {
    let table = format!("{}.{}", quoted(&item.schema), quoted(&item.name));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (header, terminator) = (item.first.then(|| item.statement.clone()), item.last);
    let decoding =
        tokio::task::spawn_blocking(move || decode_rows(codec, std::io::Cursor::new(stored), header, terminator, tx));
    let head = item
        .statement
        .trim_end()
        .strip_suffix("FROM stdin;")
        .ok_or_else(|| failed(format!("not a COPY statement: {}", item.statement)))?;
    let sink = client
        .copy_in::<_, Bytes>(&format!("{head}FROM STDIN{}", if freeze { " WITH (FREEZE)" } else { "" }))
        .await
        .map_err(|e| failed(format!("{} (loading {table})", describe(&e))))?;
    futures_util::pin_mut!(sink);
    let mut send_error = None;
    while let Some(piece) = rx.recv().await {
        if let Err(e) = sink.send(piece).await {
            send_error = Some(e);
            break;
        }
    }
    drop(rx);
    let decoded = decoding.await.map_err(|e| failed(e.to_string()))?;
    if let Err(e) = decoded {
        // The COPY is abandoned with its connection's transaction: the drill has failed anyway.
        return Err(failed(format!("the rows of {table} cannot be read from the dump: {e}")));
    }
    if let Some(e) = send_error {
        return Err(failed(format!("{} (loading {table})", describe(&e))));
    }
    sink.as_mut().finish().await.map_err(|e| failed(format!("{} (loading {table})", describe(&e))))
}

/// Decompresses a chunk of rows and hands them on in pieces, without the first chunk's `COPY` line (checked
/// against the layout) and the last chunk's `\.` line (checked too).
pub(crate) fn decode_rows(
    codec: Codec,
    raw: impl Read + Send + 'static,
    header: Option<String>,
    terminator: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(), String> {
    let mut decoder: Box<dyn Read + Send> = match codec {
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).map_err(|e| e.to_string())?),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
    };
    let mut held: Vec<u8> = Vec::with_capacity(COPY_PIECE + 4096);
    let mut buffer = vec![0u8; COPY_PIECE];
    let mut header = header;
    loop {
        let n = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        held.extend_from_slice(&buffer[..n]);
        if let Some(expected) = &header {
            // The statement, then the newline that ends it: it may span lines (names may hold newlines).
            let expected = expected.as_bytes();
            if held.len() <= expected.len() {
                continue;
            }
            if !held.starts_with(expected) || held[expected.len()] != b'\n' {
                let seen = &held[..held.len().min(expected.len() + 1).min(200)];
                return Err(format!(
                    "the chunk starts with {:?}, not the table's COPY statement",
                    String::from_utf8_lossy(seen)
                ));
            }
            held.drain(..=expected.len());
            header = None;
        }
        // Keep back what might be the terminator line until the end is known.
        if held.len() > COPY_PIECE {
            let keep = 3;
            let send: Vec<u8> = held.drain(..held.len() - keep).collect();
            if tx.blocking_send(Bytes::from(send)).is_err() {
                return Ok(()); // the loader stopped; it reports why
            }
        }
    }
    if header.is_some() {
        return Err("the chunk ended before the table's COPY statement did".into());
    }
    if terminator {
        let Some(rest) = held.strip_suffix(b"\\.\n") else {
            return Err("the table's rows do not end with pg_dump's `\\.` line".into());
        };
        held.truncate(rest.len());
    }
    if !held.is_empty() && tx.blocking_send(Bytes::from(held)).is_err() {
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_settings_keep_the_latest_value_of_each() {
        let mut s = Session::default();
        assert!(s.note(b"SET client_encoding = 'UTF8';"));
        assert!(s.note(b"SELECT pg_catalog.set_config('search_path', '', false);"));
        assert!(s.note(b"SET default_tablespace = '';"));
        assert!(s.note(b"SET default_tablespace = fast;"));
        assert!(!s.note(b"CREATE TABLE t (a int);"));
        assert_eq!(s.script(), "SET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\nSET default_tablespace = fast;");
    }

    fn rows_through(codec: Codec, sql: &str, header: Option<&str>, terminator: bool) -> Result<String, String> {
        let mut c = crate::pipeline::codec::FrameCompressor::new(codec, 1).unwrap();
        let mut stored = Vec::new();
        c.compress(sql.as_bytes(), &mut stored).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        decode_rows(codec, std::io::Cursor::new(stored), header.map(str::to_string), terminator, tx)?;
        let mut out = Vec::new();
        while let Ok(piece) = rx.try_recv() {
            out.extend_from_slice(&piece);
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn chunks_lose_their_copy_line_and_terminator_and_nothing_else() {
        let rows: String = (0..100_000).map(|i| format!("{i}\tx\n")).collect();
        let whole = format!("COPY public.t (a, b) FROM stdin;\n{rows}\\.\n");
        for codec in [Codec::Zstd, Codec::Gzip] {
            assert_eq!(rows_through(codec, &whole, Some("COPY public.t (a, b) FROM stdin;"), true).unwrap(), rows);
            assert_eq!(rows_through(codec, &rows, None, false).unwrap(), rows, "a middle chunk passes whole");
            assert!(
                rows_through(codec, &whole, Some("COPY public.u (a) FROM stdin;"), true).is_err(),
                "another table's chunk is refused"
            );
            assert!(rows_through(codec, &rows, None, true).is_err(), "a last chunk without `\\.` is refused");
        }
    }

    #[test]
    fn a_copy_statement_over_several_lines_is_the_chunk_header_whole() {
        let statement = "COPY \"evil\nschema\".\"t\" (\"col\n\\.\") FROM stdin;";
        let rows = "1\n2\n";
        let whole = format!("{statement}\n{rows}\\.\n");
        for codec in [Codec::Zstd, Codec::Gzip] {
            assert_eq!(rows_through(codec, &whole, Some(statement), true).unwrap(), rows);
            // A layout cut at the statement's last line (as backups before this fix made them) is refused, and the
            // drill restores that dump on one connection instead.
            let from_last_line = &whole[statement.rfind('\n').unwrap() + 1..];
            assert!(
                rows_through(codec, from_last_line, Some(statement), true).is_err(),
                "a chunk holding half the statement is refused"
            );
        }
    }
}
