//! Reads a restored copy back to compare it with the backup's fingerprint (scheme v2), over several
//! connections: which tables it has, each table's rows (counted, or read with `COPY … TO STDOUT` and digested
//! exactly as the backup digested its rows), its sequences and its large objects. The schema digest comes
//! from `pg_dump --schema-only` (`psql_restorer`), which v2 makes equal to a full dump's.
//!
//! Rows are read under the settings pg_dump used when it dumped them (its own, plus the source's time zone,
//! `bytea_output` and encoding, from the manifest), so equal data reads as equal text.
//!
//! A big table's rows are digested in pieces of its heap (`ctid` ranges, which PostgreSQL 14 and later scan
//! alone): a digest is a sum, so the pieces add up to the whole table's, and readers left idle at the end of a
//! restore share the last big table instead of waiting on the one reader digesting it whole. Each piece is read
//! under its own snapshot: a copy something rewrote meanwhile (`VACUUM FULL`, `CLUSTER`, an `UPDATE`) could
//! read a row twice or not at all. Nothing writes to a drill's scratch copy; `backstop restore` checks the
//! database it has just made, before anyone is told it is there.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use super::framed_restore::quoted;
use super::pg_wire::{connect, describe};
use crate::domain::dump_layout::{DumpLayout, Segment, SegmentKind};
use crate::domain::dump_parser::SequenceValue;
use crate::domain::fingerprint::{Fingerprint, TableFingerprint};
use crate::domain::manifest::DumpSession;
use crate::domain::row_digest::RowDigest;
use crate::domain::sql::quote_literal as literal;
use crate::domain::verification::RowCheck;
use crate::ports::{ReadBackUnderway, RestoreError, ScratchEndpoint};

fn failed(what: impl Into<String>) -> RestoreError {
    RestoreError::Failed { program: "read back".into(), status: "error".into(), stderr_tail: what.into() }
}

/// A table to read back: its name, pg_dump's `COPY` statement for it (whose column list is read back), and
/// the bytes of its rows in the dump (bigger tables go first).
#[derive(Debug, Clone)]
pub struct TableToRead {
    pub schema: String,
    pub name: String,
    pub statement: String,
    pub bytes: u64,
    /// A partitioned table the dump loaded its partitions' rows into: read through it, every partition at once.
    pub partition_root: bool,
    /// Of such a root's partitions, those whose rows the dump holds in `COPY` blocks of their own (a range
    /// partition beside a sub-tree pg_dump loads through the root): each is read as itself, so the root's read
    /// leaves it out.
    pub read_apart: Vec<(String, String)>,
}

/// Heap blocks per piece of a table digested in pieces (8 MiB of 8 kB blocks).
const BLOCKS_PER_PIECE: u64 = 1024;
/// A table whose rows take fewer bytes in the dump is read whole, without asking its heap's size.
const PIECES_FROM_BYTES: u64 = 2 * BLOCKS_PER_PIECE * 8192;

/// Part of a table's heap, by block number: from `first` to `end` (excluded), or to the table's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocks {
    first: u64,
    end: Option<u64>,
}

/// The pieces a heap of `blocks` blocks is read in: none when it is too small to be worth sharing. The last
/// piece runs to the table's end, so rows in blocks past the size read are read all the same.
fn pieces(blocks: u64) -> Vec<Blocks> {
    if blocks < 2 * BLOCKS_PER_PIECE {
        return Vec::new();
    }
    let starts: Vec<u64> = (0..blocks).step_by(BLOCKS_PER_PIECE as usize).collect();
    starts.iter().enumerate().map(|(i, &first)| Blocks { first, end: starts.get(i + 1).copied() }).collect()
}

/// A table waiting to be read: whole, or one piece of it (the pieces share the table's description).
#[derive(Debug)]
struct Queued {
    table: Arc<TableToRead>,
    blocks: Option<Blocks>,
}

/// A table read in pieces: the pieces not read yet, and the rows and digest sum of those read.
#[derive(Debug, Default)]
struct InPieces {
    left: usize,
    rows: u64,
    sum: u128,
}

/// Tables waiting to be read, and what the readers found: shared by every connection reading, the one a
/// restore starts early (`ReadBack::start_early`) and those the check adds.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes idle readers when a table is queued, the queue closes, or a reader failed.
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    /// No table will be queued any more: an idle reader stops.
    closed: bool,
    /// Tables queued, being read or read: the check does not queue them again.
    taken: BTreeSet<(String, String)>,
    /// Tables whose every row has been read (in pieces or whole).
    found: Vec<TableFingerprint>,
    /// Tables being read in pieces.
    in_pieces: BTreeMap<(String, String), InPieces>,
    /// Readers asking a big table's size, whose pieces may yet be queued: an idle reader waits for them
    /// rather than stop at a queue that is closed and, for the moment, empty.
    sizing: usize,
    /// The first error: every reader stops at its next table.
    error: Option<RestoreError>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("read-back state lock")
    }

    /// Reads queued tables on `client` until the queue is closed and empty, or a reader failed (its error is
    /// kept for the check). Until the queue closes, `wanted` says which tables this reader may read; the
    /// others are given back (untaken) for the check to judge.
    async fn read_queued(
        &self,
        client: &tokio_postgres::Client,
        rows: RowCheck,
        filters: &ExtensionFilters,
        wanted: impl Fn(&TableToRead) -> bool,
    ) {
        let tid_range_scans = match rows {
            RowCheck::Counts => false,
            RowCheck::Digests => match reads_tid_ranges(client).await {
                Ok(scans) => scans,
                Err(e) => return self.fail(e),
            },
        };
        let may_split = |queued: &Queued| {
            tid_range_scans
                && queued.blocks.is_none()
                && queued.table.bytes >= PIECES_FROM_BYTES
                && !queued.table.partition_root
                && queued.table.read_apart.is_empty()
        };
        loop {
            // Made before looking, so a table queued meanwhile still wakes this reader.
            let woken = self.wake.notified();
            let next = {
                let mut state = self.lock();
                if state.error.is_some() {
                    return;
                }
                match state.queue.pop_front() {
                    // Once the check has queued every table it found, whatever is queued is to be read. A piece
                    // is of a table a reader already took.
                    Some(queued) if !state.closed && queued.blocks.is_none() && !wanted(&queued.table) => {
                        state.taken.remove(&(queued.table.schema.clone(), queued.table.name.clone()));
                        continue;
                    }
                    Some(queued) => {
                        state.sizing += usize::from(may_split(&queued));
                        Some(queued)
                    }
                    None if state.closed && state.sizing == 0 => return,
                    None => None,
                }
            };
            let Some(queued) = next else {
                woken.await;
                continue;
            };
            let sizing = may_split(&queued);
            let Queued { table, mut blocks } = queued;
            let selection = match table.read_apart.is_empty() {
                true => filters.get(&(table.schema.clone(), table.name.clone())).cloned(),
                false => Some(leaving_out(&table.read_apart)),
            };
            let filter = selection.as_deref();
            let plain = !table.partition_root && filter.is_none();
            if sizing {
                let pieces = if plain { pieces_of(client, &table).await } else { Ok(Vec::new()) };
                match pieces {
                    Ok(pieces) => blocks = self.share_pieces(&table, pieces),
                    Err(e) => return self.fail(e),
                }
            }
            let read = match (rows, blocks) {
                (RowCheck::Counts, _) => count_rows(client, &table, filter).await,
                (RowCheck::Digests, Some(blocks)) => {
                    digest_selected_rows(client, &table, Some(&blocks.condition())).await
                }
                (RowCheck::Digests, None) if !plain => digest_selected_rows(client, &table, filter).await,
                (RowCheck::Digests, None) => digest_rows(client, &table.schema, &table.name, &table.statement).await,
            };
            match (read, blocks) {
                (Ok(found), None) => self.lock().found.push(found),
                (Ok(piece), Some(_)) => self.piece_read(piece),
                (Err(e), _) => return self.fail(e),
            }
        }
    }

    /// Queues every piece of `table` but the first, at the front for any reader, and returns the first, this
    /// reader's own; none (the table is read whole) when there are no pieces. Either way the sizing is over,
    /// and readers waiting on it look again.
    fn share_pieces(&self, table: &Arc<TableToRead>, pieces: Vec<Blocks>) -> Option<Blocks> {
        let first = {
            let mut state = self.lock();
            state.sizing -= 1;
            pieces.split_first().map(|(first, rest)| {
                let key = (table.schema.clone(), table.name.clone());
                state.in_pieces.insert(key, InPieces { left: pieces.len(), ..InPieces::default() });
                for blocks in rest.iter().rev() {
                    state.queue.push_front(Queued { table: table.clone(), blocks: Some(*blocks) });
                }
                *first
            })
        };
        self.wake.notify_waiters();
        first
    }

    /// Adds a piece's rows and digest to its table's; the table is found once its last piece is.
    fn piece_read(&self, piece: TableFingerprint) {
        let sum = u128::from_str_radix(&piece.digest, 16).expect("a digest RowDigest wrote");
        let mut state = self.lock();
        let key = (piece.schema.clone(), piece.name.clone());
        let Some(table) = state.in_pieces.get_mut(&key) else { return };
        table.left -= 1;
        table.rows += piece.rows;
        table.sum = table.sum.wrapping_add(sum);
        if table.left == 0 {
            let whole = state.in_pieces.remove(&key).expect("the table read in pieces");
            state.found.push(TableFingerprint { rows: whole.rows, digest: format!("{:032x}", whole.sum), ..piece });
        }
    }

    fn fail(&self, error: RestoreError) {
        self.lock().error.get_or_insert(error);
        self.wake.notify_waiters();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }
}

/// A read-back a framed restore started: one connection reads each table the restore hands it
/// ([`ReadBack::offer`]) while the restore goes on, and [`read_back`] takes it over for the check.
#[derive(Debug)]
pub struct ReadBack {
    shared: Arc<Shared>,
    rows: RowCheck,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ReadBack {
    /// Starts the early reader on a connection of its own, under the dump's session settings. Call it once
    /// the schema is committed: the tables it may read are those the copy has then (`user_tables`).
    pub fn start_early(server: &ScratchEndpoint, database: &str, session: &DumpSession, rows: RowCheck) -> Arc<Self> {
        let shared = Arc::new(Shared::default());
        let (server, database, settings, reading) =
            (server.clone(), database.to_string(), session_settings(session), shared.clone());
        let reader = tokio::spawn(async move {
            let started = async {
                let client = connect(&server, &database).await?;
                client
                    .batch_execute(&settings)
                    .await
                    .map_err(|e| failed(format!("cannot set the dump's session settings: {}", describe(&e))))?;
                let present = user_tables(&client).await?;
                let filters = extension_filters(&client).await?;
                reading
                    .read_queued(&client, rows, &filters, |t| present.contains(&(t.schema.clone(), t.name.clone())))
                    .await;
                Ok(())
            };
            if let Err(e) = started.await {
                reading.fail(e);
            }
        });
        Arc::new(ReadBack { shared, rows, reader: Mutex::new(Some(reader)) })
    }

    /// Queues a table whose rows and builds are all in, for the early reader.
    pub fn offer(&self, table: TableToRead) {
        {
            let mut state = self.shared.lock();
            if state.closed || !state.taken.insert((table.schema.clone(), table.name.clone())) {
                return;
            }
            state.queue.push_back(Queued { table: Arc::new(table), blocks: None });
        }
        self.shared.wake.notify_waiters();
    }
}

impl ReadBackUnderway for ReadBack {
    fn rows(&self) -> RowCheck {
        self.rows
    }
    fn tables_read(&self) -> usize {
        self.shared.lock().found.len()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for ReadBack {
    fn drop(&mut self) {
        // Not taken over by a check (the restore failed, or the drill moves on without one): stop reading.
        self.shared.close();
        if let Some(reader) = self.reader.lock().expect("reader lock").take() {
            reader.abort();
        }
    }
}

/// The restored copy's tables, sequences and large objects. Its `schema_digest` is left empty (the caller
/// fills it from a schema-only dump); with [`RowCheck::Counts`] the table digests are empty. `early`, a
/// read-back the restore started for the same `rows`, goes on beside this one's readers, and what it read is
/// kept: each table it took was read after its rows and builds were in, with nothing left in the restore
/// that could write to it (`framed_restore`).
#[allow(clippy::too_many_arguments)]
pub async fn read_back(
    server: &ScratchEndpoint,
    database: &str,
    layout: &DumpLayout,
    expected: &Fingerprint,
    session: &DumpSession,
    rows: RowCheck,
    jobs: usize,
    early: Option<&ReadBack>,
) -> Result<Fingerprint, RestoreError> {
    let main = connect(server, database).await?;
    let mut present = user_tables(&main).await?;
    let filters = Arc::new(extension_filters(&main).await?);
    // Tables the dump loaded rows into that are not ordinary tables: partition roots (pg_dump's `-- load via
    // partition root`). Each is read whole, through the root, and its partitions are not tables of their own.
    let not_ordinary: BTreeSet<(String, String)> =
        tables_in(layout).into_iter().map(|t| (t.schema, t.name)).filter(|t| !present.contains(t)).collect();
    let trees = if not_ordinary.is_empty() { BTreeMap::new() } else { partition_trees(&main, &not_ordinary).await? };
    present.extend(trees.keys().cloned());
    let own_blocks: BTreeSet<(String, String)> = tables_in(layout).into_iter().map(|t| (t.schema, t.name)).collect();
    let early = early.filter(|e| e.rows == rows);
    let shared = early.map_or_else(|| Arc::new(Shared::default()), |e| e.shared.clone());
    let early_reader = early.and_then(|e| e.reader.lock().expect("reader lock").take());
    // What to read: each table the copy has, with the dump's own column list (generated columns are not in
    // it), that the early reader has not taken.
    let mut tables: Vec<TableToRead> = tables_in(layout)
        .into_iter()
        .filter(|t| present.contains(&(t.schema.clone(), t.name.clone())))
        .map(|t| {
            let key = (t.schema.clone(), t.name.clone());
            let read_apart = trees
                .get(&key)
                .map(|partitions| partitions.iter().filter(|p| own_blocks.contains(*p)).cloned().collect())
                .unwrap_or_default();
            TableToRead { partition_root: trees.contains_key(&key), read_apart, ..t }
        })
        .collect();
    tables.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    {
        let mut state = shared.lock();
        for table in tables {
            if state.taken.insert((table.schema.clone(), table.name.clone())) {
                state.queue.push_back(Queued { table: Arc::new(table), blocks: None });
            }
        }
        state.closed = true;
    }
    shared.wake.notify_waiters();
    let settings = session_settings(session);
    let workers = (0..jobs.max(1)).map(|_| {
        let (shared, settings, filters) = (shared.clone(), settings.clone(), filters.clone());
        async move {
            let client = connect(server, database).await?;
            client
                .batch_execute(&settings)
                .await
                .map_err(|e| failed(format!("cannot set the dump's session settings: {}", describe(&e))))?;
            shared.read_queued(&client, rows, &filters, |_| true).await;
            Ok::<(), RestoreError>(())
        }
    });
    futures_util::future::try_join_all(workers).await?;
    if let Some(reader) = early_reader {
        // It finishes the table it is on, then finds the queue empty and closed.
        reader.await.map_err(|e| failed(format!("the early reader stopped: {e}")))?;
    }
    let (mut found, error) = {
        let mut state = shared.lock();
        (std::mem::take(&mut state.found), state.error.take())
    };
    if let Some(e) = error {
        return Err(e);
    }
    // A table read early that the copy no longer has is not the copy's: the table-set check names it.
    found.retain(|t| present.contains(&(t.schema.clone(), t.name.clone())));
    // Tables the copy has and the backup does not: listed with no rows, so the table-set check names them. But
    // for pg_dump's own rule: from a hot standby it dumps no rows of unlogged tables, so the copy has them empty.
    let mut known: BTreeSet<(String, String)> =
        expected.tables.iter().map(|t| (t.schema.clone(), t.name.clone())).collect();
    if session.source_in_recovery {
        known.extend(unlogged_tables(&main).await?);
    }
    known.extend(trees.into_values().flatten());
    for (schema, name) in present.iter().filter(|t| !known.contains(*t)) {
        found.push(TableFingerprint { schema: schema.clone(), name: name.clone(), rows: 0, digest: String::new() });
    }
    found.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(Fingerprint {
        algorithm: expected.algorithm.clone(),
        schema_digest: String::new(),
        tables: found,
        sequences: sequences(&main, &expected.sequences).await?,
        large_objects: large_objects(&main).await?,
    })
}

/// The tables whose rows the dump holds, one entry per `COPY` block.
fn tables_in(layout: &DumpLayout) -> Vec<TableToRead> {
    layout.segments.iter().filter_map(table_to_read).collect()
}

/// The table a segment holds the rows of, if it holds rows.
pub(crate) fn table_to_read(segment: &Segment) -> Option<TableToRead> {
    match &segment.kind {
        SegmentKind::Copy { schema, name, statement, .. } => Some(TableToRead {
            schema: schema.clone(),
            name: name.clone(),
            statement: statement.clone(),
            bytes: segment.chunks.iter().map(|c| c.raw()).sum(),
            partition_root: false,
            read_apart: Vec::new(),
        }),
        SegmentKind::Sql => None,
    }
}

/// pg_dump's own session settings for a dump, and those it inherits from the source; and
/// `standard_conforming_strings`, which pg_dump sets too, so the literals the read-back writes read the same
/// whatever the copy's database was set to.
pub(crate) fn session_settings(session: &DumpSession) -> String {
    format!(
        "SET standard_conforming_strings = on; SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SELECT pg_catalog.set_config('search_path', '', false); \
         SET TimeZone = {}; SET bytea_output = {}; SET client_encoding = {}; SET statement_timeout = 0; SET row_security = off",
        literal(&session.time_zone),
        literal(&session.bytea_output),
        literal(&session.client_encoding)
    )
}

/// Ordinary tables outside the system schemas, the way pg_dump chooses whose rows to dump: an extension's
/// tables only when the extension marked them as configuration.
async fn user_tables(client: &tokio_postgres::Client) -> Result<BTreeSet<(String, String)>, RestoreError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
               AND (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
                    OR c.oid IN (SELECT unnest(e.extconfig) FROM pg_catalog.pg_extension e))",
            &[],
        )
        .await
        .map_err(|e| failed(format!("cannot list the restored tables: {}", describe(&e))))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// An extension's configuration tables whose rows pg_dump dumps only in part, each with the condition it dumps
/// them by (`WHERE …`, as `pg_extension_config_dump` registered it). The rest are the extension's own rows,
/// which `CREATE EXTENSION` makes on the copy (PostGIS's `spatial_ref_sys`): they are not the backup's, and are
/// read past the same way.
type ExtensionFilters = BTreeMap<(String, String), String>;

async fn extension_filters(client: &tokio_postgres::Client) -> Result<ExtensionFilters, RestoreError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, coalesce(e.extcondition[s.i], '')::text \
             FROM pg_catalog.pg_extension e CROSS JOIN LATERAL pg_catalog.generate_subscripts(e.extconfig, 1) AS s(i) \
             JOIN pg_catalog.pg_class c ON c.oid = e.extconfig[s.i] JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(|e| failed(format!("cannot list the extensions' configuration tables: {}", describe(&e))))?;
    Ok(rows
        .iter()
        .map(|r| ((r.get::<_, String>(0), r.get::<_, String>(1)), r.get::<_, String>(2)))
        .filter(|(_, condition)| !condition.trim().is_empty())
        .collect())
}

/// The copy's unlogged tables.
async fn unlogged_tables(client: &tokio_postgres::Client) -> Result<Vec<(String, String)>, RestoreError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND c.relpersistence = 'u'",
            &[],
        )
        .await
        .map_err(|e| failed(format!("cannot list the restored unlogged tables: {}", describe(&e))))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Of `roots`, the partitioned tables the copy has, each with the partitions under it (at every level).
async fn partition_trees(
    client: &tokio_postgres::Client,
    roots: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), Vec<(String, String)>>, RestoreError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, pn.nspname::text, p.relname::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL pg_catalog.pg_partition_tree(c.oid) AS t \
             JOIN pg_catalog.pg_class p ON p.oid = t.relid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
             WHERE c.relkind = 'p' AND t.level > 0",
            &[],
        )
        .await
        .map_err(|e| failed(format!("cannot list the restored partitions: {}", describe(&e))))?;
    let mut trees = BTreeMap::<(String, String), Vec<(String, String)>>::new();
    for row in &rows {
        let root: (String, String) = (row.get(0), row.get(1));
        if roots.contains(&root) {
            trees.entry(root).or_default().push((row.get(2), row.get(3)));
        }
    }
    Ok(trees)
}

async fn count_rows(
    client: &tokio_postgres::Client,
    table: &TableToRead,
    filter: Option<&str>,
) -> Result<TableFingerprint, RestoreError> {
    let (schema, name) = (table.schema.as_str(), table.name.as_str());
    // `ONLY`: an inheritance parent's own rows, as pg_dump dumps them; a partition root's are its partitions'.
    let only = if table.partition_root { "" } else { "ONLY " };
    let sql = format!("SELECT count(*) FROM {only}{}.{} {}", quoted(schema), quoted(name), filter.unwrap_or(""));
    let row =
        client.query_one(&sql, &[]).await.map_err(|e| failed(format!("{} counting {schema}.{name}", describe(&e))))?;
    Ok(TableFingerprint {
        schema: schema.into(),
        name: name.into(),
        rows: row.get::<_, i64>(0) as u64,
        digest: String::new(),
    })
}

/// Reads the table's rows as pg_dump wrote them and folds them as the backup did (`domain::dump_parser`).
pub(crate) async fn digest_rows(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
    statement: &str,
) -> Result<TableFingerprint, RestoreError> {
    let head = statement
        .trim_end()
        .strip_suffix("FROM stdin;")
        .ok_or_else(|| failed(format!("not a COPY statement: {statement}")))?;
    digest_copy_out(client, schema, name, &format!("{head}TO STDOUT")).await
}

/// Folds the rows a `COPY … TO STDOUT` of `schema.name` sends as the backup did.
async fn digest_copy_out(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
    copy: &str,
) -> Result<TableFingerprint, RestoreError> {
    let stream =
        client.copy_out(copy).await.map_err(|e| failed(format!("{} reading {schema}.{name}", describe(&e))))?;
    futures_util::pin_mut!(stream);
    let mut fold = RowDigest::default();
    while let Some(piece) = stream.next().await {
        fold.feed(&piece.map_err(|e| failed(format!("{} reading {schema}.{name}", describe(&e))))?);
    }
    let (rows, digest) = fold.finish().map_err(|e| failed(format!("{e} ({schema}.{name})")))?;
    Ok(TableFingerprint { schema: schema.into(), name: name.into(), rows, digest })
}

impl Blocks {
    /// `WHERE ctid …`: the rows in these blocks.
    fn condition(&self) -> String {
        let first = format!("WHERE ctid >= '({},0)'::pg_catalog.tid", self.first);
        match self.end {
            Some(end) => format!("{first} AND ctid < '({end},0)'::pg_catalog.tid"),
            None => first,
        }
    }
}

/// Whether the server scans a `ctid` range alone (PostgreSQL 14 and later); before, each piece would scan the
/// whole table. Where it can, the scan is switched on for this connection: a database's own settings (the
/// source's, carried to the copy) may have turned it off, and each piece would then scan the whole table too.
async fn reads_tid_ranges(client: &tokio_postgres::Client) -> Result<bool, RestoreError> {
    let row = client
        .query_one("SELECT pg_catalog.current_setting('server_version_num')::integer >= 140000", &[])
        .await
        .map_err(|e| failed(format!("{} asking the server's version", describe(&e))))?;
    let scans: bool = row.get(0);
    if scans {
        client
            .batch_execute("SET enable_tidscan = on")
            .await
            .map_err(|e| failed(format!("{} switching TID range scans on", describe(&e))))?;
    }
    Ok(scans)
}

/// The pieces `table` (a big one) is digested in, from its heap's size now; none for a table read whole: one
/// whose `COPY` names no columns to select (a table of none).
async fn pieces_of(client: &tokio_postgres::Client, table: &TableToRead) -> Result<Vec<Blocks>, RestoreError> {
    if selected_columns(table).is_none() {
        return Ok(Vec::new());
    }
    let (schema, name) = (table.schema.as_str(), table.name.as_str());
    // The name as a parameter: a literal would depend on the copy's `standard_conforming_strings`.
    let sql = "SELECT pg_catalog.pg_relation_size($1::pg_catalog.text::pg_catalog.regclass) \
               / pg_catalog.current_setting('block_size')::bigint";
    let qualified = format!("{}.{}", quoted(schema), quoted(name));
    let row = client
        .query_one(sql, &[&qualified])
        .await
        .map_err(|e| failed(format!("{} sizing {schema}.{name}", describe(&e))))?;
    Ok(pieces(row.get::<_, i64>(0).max(0) as u64))
}

/// `WHERE tableoid NOT IN (…)`: a root's rows but those of the partitions named.
fn leaving_out(partitions: &[(String, String)]) -> String {
    let names: Vec<String> = partitions
        .iter()
        .map(|(schema, name)| {
            format!("{}::pg_catalog.regclass", literal(&format!("{}.{}", quoted(schema), quoted(name))))
        })
        .collect();
    format!("WHERE tableoid NOT IN ({})", names.join(", "))
}

/// As [`digest_rows`], through a query: for a partition root (`COPY` reads no partitioned table), for the rows
/// of an extension's configuration table its `filter` selects, as pg_dump reads them, and for a piece of a
/// table's heap.
async fn digest_selected_rows(
    client: &tokio_postgres::Client,
    table: &TableToRead,
    filter: Option<&str>,
) -> Result<TableFingerprint, RestoreError> {
    let (schema, name) = (table.schema.as_str(), table.name.as_str());
    let columns = selected_columns(table)
        .ok_or_else(|| failed(format!("no column list in the COPY statement of {schema}.{name}")))?;
    let only = if table.partition_root { "" } else { "ONLY " };
    let copy = format!(
        "COPY (SELECT {columns} FROM {only}{}.{} {}) TO STDOUT",
        quoted(schema),
        quoted(name),
        filter.unwrap_or("")
    );
    digest_copy_out(client, schema, name, &copy).await
}

/// The columns pg_dump's `COPY` statement for `table` lists, to select them.
fn selected_columns(table: &TableToRead) -> Option<&str> {
    table.statement.trim_end().strip_suffix("FROM stdin;").and_then(column_list)
}

/// The column list of `COPY name (a, "b(c)") `, without its parentheses: from the first `(` outside a quoted
/// name to the last `)`.
fn column_list(head: &str) -> Option<&str> {
    let mut quoted = false;
    let open = head.char_indices().find_map(|(i, c)| match c {
        '"' => {
            quoted = !quoted;
            None
        }
        '(' if !quoted => Some(i),
        _ => None,
    })?;
    let close = head.rfind(')').filter(|close| *close > open)?;
    Some(&head[open + 1..close])
}

/// The value and `is_called` of each sequence the backup set, read from the copy (absent: not found).
async fn sequences(
    client: &tokio_postgres::Client,
    expected: &[SequenceValue],
) -> Result<Vec<SequenceValue>, RestoreError> {
    let mut out = Vec::new();
    for s in expected {
        // The name is as pg_dump quoted it for setval's regclass argument: a relation name as it stands.
        let sql = format!("SELECT last_value, is_called FROM {}", s.name);
        match client.query_one(&sql, &[]).await {
            Ok(row) => {
                out.push(SequenceValue { name: s.name.clone(), value: row.get::<_, i64>(0), is_called: row.get(1) })
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
            Err(e) => return Err(failed(format!("{} reading sequence {}", describe(&e), s.name))),
        }
    }
    Ok(out)
}

async fn large_objects(client: &tokio_postgres::Client) -> Result<u64, RestoreError> {
    let row = client
        .query_one("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata", &[])
        .await
        .map_err(|e| failed(describe(&e)))?;
    Ok(row.get::<_, i64>(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_is_read_in_pieces_that_cover_it_once_the_last_open_ended() {
        assert!(pieces(2 * BLOCKS_PER_PIECE - 1).is_empty(), "too small to share");
        let of = |blocks| pieces(blocks).into_iter().map(|b| (b.first, b.end)).collect::<Vec<_>>();
        assert_eq!(of(2 * BLOCKS_PER_PIECE), [(0, Some(1024)), (1024, None)]);
        assert_eq!(of(2 * BLOCKS_PER_PIECE + 1), [(0, Some(1024)), (1024, Some(2048)), (2048, None)]);
        assert_eq!(
            Blocks { first: 1024, end: Some(2048) }.condition(),
            "WHERE ctid >= '(1024,0)'::pg_catalog.tid AND ctid < '(2048,0)'::pg_catalog.tid"
        );
        assert_eq!(Blocks { first: 2048, end: None }.condition(), "WHERE ctid >= '(2048,0)'::pg_catalog.tid");
    }

    #[test]
    fn the_column_list_is_found_past_a_quoted_name_with_parentheses() {
        let list = |head| super::column_list(head);
        assert_eq!(list("COPY public.t (id, m) "), Some("id, m"));
        assert_eq!(list("COPY \"sales(2024)\".\"t(x)\" (id, \"a(b)\") "), Some("id, \"a(b)\""));
        assert_eq!(list("COPY public.no_columns  "), None);
        assert_eq!(list("COPY \"(\" "), None);
    }
}
