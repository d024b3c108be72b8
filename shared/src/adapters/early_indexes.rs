//! pg_restore's scheduling for a framed restore: a table's indexes and constraints build as soon as that
//! table's rows are in, while other tables still load, instead of after the last row.
//!
//! The object is read once, in order, and the index definitions come after every row. So before that read,
//! the dump's tail (the SQL after the last table's rows, small beside the rows) is read ahead with one ranged
//! GET and split into statements. Of those, the leading run of index and constraint builds (`CREATE INDEX`,
//! `ALTER TABLE ONLY … ADD CONSTRAINT` with a primary key, unique, exclusion or check constraint: statements
//! that need nothing but their own table and its rows) is taken out and handed to the loading connections, one
//! table's statements together, when that table's last chunk of rows has loaded. The run starts after the
//! data section's last statements, which touch no table (sequences set, large objects written), and ends at
//! the first other statement (a foreign key, a trigger, a setting, a grant): that and everything after it,
//! and whatever the run does not take, runs after the rows, in order, as before.
//!
//! Foreign keys go early too when they safely can: one whose two tables are loaded tables whose every build
//! was taken early (so the key it references exists once those have run), with no setting before it in the
//! tail, runs as soon as both tables' rows are in and their builds have run, holding both tables alone (it
//! locks both against writes and index builds), instead of after the last table's rows and indexes.
//!
//! The in-order read still covers the tail: its bytes must equal those read ahead, or the restore fails, so
//! what ran early is exactly what the hashed object holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::framed_restore::{decode_sql, statements_of};
use crate::domain::dump_layout::{DumpLayout, SegmentKind, Tail};
use crate::domain::sql::splitter::StatementSplitter;
use crate::domain::sql::statement::{foreign_key_tables, post_data_kind, PostDataKind};
use crate::ports::FramedDump;

/// Statements of the dump, each as it is written there.
type Statements = Vec<Vec<u8>>;

/// The dump's tail, read ahead of the in-order read.
pub(super) struct PostDataAhead {
    /// The first segment after the last table's rows: the tail is it and every segment after it.
    pub first_segment: usize,
    /// The tail's stored bytes, to compare with what the in-order read finds there.
    pub stored: Bytes,
    /// The tail's statements, in dump order.
    pub statements: Statements,
}

/// The dump's tail, from its ranged read (`ports::OpenedDump`), split into statements. `None` when there is
/// nothing to gain (no rows, no tail), the tail was over `dump_layout::MAX_TAIL_AHEAD` and not read, or the
/// read or its decoding failed: the in-order read then reads the tail as before, and reports any fault in it
/// where it always has.
pub(super) async fn read_ahead(dump: &FramedDump<'_>, read: Option<Result<Vec<u8>, String>>) -> Option<PostDataAhead> {
    let layout = dump.layout;
    let Tail { first_segment, stored_len, .. } = layout.tail()?;
    let stored = match read {
        Some(Ok(bytes)) => Bytes::from(bytes),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "could not read the dump's tail ahead; indexes build after the rows");
            return None;
        }
        None => {
            tracing::info!(
                tail_bytes = stored_len,
                "the dump's tail is too large to read ahead; indexes build after the rows"
            );
            return None;
        }
    };
    let mut statements = Vec::new();
    let mut offset = 0usize;
    for segment in &layout.segments[first_segment..] {
        let mut splitter = StatementSplitter::new();
        for chunk in &segment.chunks {
            let piece = stored.slice(offset..offset + chunk.stored() as usize);
            offset += chunk.stored() as usize;
            let sql = decode_sql(dump.codec, piece).await.ok()?;
            statements.extend(statements_of(&mut splitter, &sql).ok()?);
        }
        splitter.finish().ok()?;
    }
    Some(PostDataAhead { first_segment, stored, statements })
}

/// What the tail's statements let run while rows still load.
#[derive(Default)]
pub(super) struct EarlyWork {
    /// By the table's segment in the layout: its index and constraint builds, in dump order.
    pub builds: BTreeMap<usize, Statements>,
    /// Foreign keys, each with the segments of the tables it locks (its own, and the one it references).
    pub foreign_keys: Vec<(Vec<usize>, Vec<u8>)>,
}

/// A table's key in the maps of this module and `framed_restore`: its schema and name joined by U+001F.
pub(super) fn table_key(schema: &str, name: &str) -> String {
    format!("{schema}\u{1f}{name}")
}

/// Tables whose rows are one segment with chunks in it, by table key (`schema` U+001F `name`): for them "its
/// rows are in" is a count of chunks. A table in several segments, or in one without chunks, is not here.
pub(super) fn single_segment_tables(layout: &DumpLayout) -> BTreeMap<String, usize> {
    let mut segment_of = BTreeMap::<String, Option<usize>>::new();
    for (i, s) in layout.segments.iter().enumerate() {
        if let SegmentKind::Copy { schema, name, .. } = &s.kind {
            let seen = segment_of.entry(table_key(schema, name)).or_insert(Some(i));
            if *seen != Some(i) || s.chunks.is_empty() {
                *seen = None;
            }
        }
    }
    segment_of.into_iter().filter_map(|(table, segment)| Some((table, segment?))).collect()
}

/// The tail's statements split: those that build as soon as their tables' rows are in, and the rest, in dump
/// order, for after the rows.
pub(super) fn split_early(layout: &DumpLayout, statements: Statements) -> (EarlyWork, Statements) {
    let segment_of = single_segment_tables(layout);
    let segment = |table: &str| segment_of.get(table).copied();
    let mut early = EarlyWork::default();
    let mut later = Vec::new();
    // A table with a build left for after the rows may lack the key a foreign key references, or be locked
    // by that build: foreign keys on it wait for the rows too.
    let mut unsettled = BTreeSet::<String>::new();
    let mut leading = true;
    for statement in statements {
        let kind = post_data_kind(&statement);
        leading &=
            matches!(kind, PostDataKind::Index { .. } | PostDataKind::Annotation) || touches_no_table(&statement);
        let at = match &kind {
            PostDataKind::Index { table } if leading && touches_only_its_table(&statement) => segment(table),
            _ => None,
        };
        match (at, kind) {
            (Some(at), _) => early.builds.entry(at).or_default().push(statement),
            (None, PostDataKind::Index { table }) => {
                unsettled.insert(table);
                later.push(statement);
            }
            // Comments on indexes stay in order after the rows, when every index they may name exists.
            (None, _) => later.push(statement),
        }
    }
    let mut kept = Vec::with_capacity(later.len());
    let mut setting_seen = false;
    for statement in later {
        setting_seen |= changes_the_session(&statement);
        let tables = match foreign_key_tables(&statement) {
            Some((table, referenced))
                if !setting_seen && !unsettled.contains(&table) && !unsettled.contains(&referenced) =>
            {
                segment(&table).zip(segment(&referenced))
            }
            _ => None,
        };
        match tables {
            Some((own, other)) => {
                let segments = if own == other { vec![own] } else { vec![own, other] };
                early.foreign_keys.push((segments, statement));
            }
            None => kept.push(statement),
        }
    }
    (early, kept)
}

/// A setting the statements after it run under (`SET default_tablespace`, `set_config`).
fn changes_the_session(statement: &[u8]) -> bool {
    let text = String::from_utf8_lossy(statement);
    let text = text.trim_start();
    text.starts_with("SET ") || text.starts_with("RESET ") || text.starts_with("SELECT pg_catalog.set_config(")
}

/// What pg_dump writes at the end of the data section, after the rows and before the first index: a
/// sequence's value, a large object's contents (in their own transaction). No index build depends on them.
fn touches_no_table(statement: &[u8]) -> bool {
    let text = String::from_utf8_lossy(statement);
    let text = text.trim();
    [
        "SELECT pg_catalog.setval(",
        "SELECT pg_catalog.lo_open(",
        "SELECT pg_catalog.lowrite(",
        "SELECT pg_catalog.lo_close(",
    ]
    .iter()
    .any(|p| text.starts_with(p))
        || text == "BEGIN;"
        || text == "COMMIT;"
}

/// An index, or a constraint added to the table alone (`ONLY`): a constraint without `ONLY` would also be
/// added to the table's inheritance children, which may still be loading.
fn touches_only_its_table(statement: &[u8]) -> bool {
    is_index_build(statement) || String::from_utf8_lossy(statement).trim_start().starts_with("ALTER TABLE ONLY ")
}

/// Hands out each table's early statements once all its chunks of rows have loaded, as pg_restore does: its
/// constraints (`ALTER TABLE … ADD CONSTRAINT`, which locks the table against everything) together and alone,
/// then each of its `CREATE INDEX` on its own, side by side on any free connections (an index build only
/// keeps the rows from changing, so builds on one table do not wait for each other); and each foreign key
/// once both its tables' rows are in and their builds have run, alone on both. A build whose table is busy
/// with a conflicting one stays queued: no connection sits waiting on a lock while rows could load.
#[derive(Default)]
pub(super) struct IndexScheduler {
    /// Per segment: chunks still to load, and the statements that wait for them.
    waiting: Mutex<BTreeMap<usize, (usize, Statements)>>,
    queue: Mutex<Queue>,
    /// Wakes connections waiting for rows or for a table to be free when builds become ready or finish.
    pub ready_signal: tokio::sync::Notify,
    /// Statements handed out (and so run while rows still loaded, or just after).
    pub handed_out: AtomicUsize,
}

/// What hears a table's segment settle (an early read-back, `framed_restore`).
pub(super) type Announce = Arc<dyn Fn(usize) + Send + Sync>;

#[derive(Default)]
struct Queue {
    ready: VecDeque<Build>,
    /// Per segment: the builds running on it, and whether the one running holds the table alone.
    running: BTreeMap<usize, (usize, bool)>,
    /// Per segment whose rows are all in: its builds not finished yet.
    unfinished: BTreeMap<usize, usize>,
    /// Segments whose rows are all in and whose builds have all run.
    settled: BTreeSet<usize>,
    /// Foreign keys waiting for their tables to settle.
    foreign_keys: Vec<(Vec<usize>, Vec<u8>)>,
    /// Hears each segment as it settles (`IndexScheduler::announce_settled`).
    announce: Option<Announce>,
}

impl Queue {
    fn settle(&mut self, segment: usize) {
        self.settled.insert(segment);
        if let Some(announce) = &self.announce {
            announce(segment);
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.foreign_keys)
            .into_iter()
            .partition(|(segments, _)| segments.iter().all(|s| self.settled.contains(s)));
        self.foreign_keys = waiting;
        for (segments, statement) in ready {
            self.ready.push_back(Build { segments, statements: vec![statement], alone: true, foreign_key: true });
        }
    }
}

/// Statements to run together on one connection.
pub(super) struct Build {
    /// The tables' segments it locks: one, or a foreign key's two.
    pub segments: Vec<usize>,
    pub statements: Statements,
    /// A constraint: nothing else may run on its tables meanwhile.
    pub alone: bool,
    /// A foreign key, which no other build waits for.
    foreign_key: bool,
}

impl IndexScheduler {
    pub fn new(layout: &DumpLayout, early: EarlyWork) -> Self {
        let mut waiting: BTreeMap<usize, (usize, Statements)> = early
            .builds
            .into_iter()
            .map(|(segment, s)| (segment, (layout.segments[segment].chunks.len(), s)))
            .collect();
        // Every table with rows is followed, with builds or not: when its rows are in and its builds have run
        // it settles, which a foreign key on it and an early read of it wait for.
        for (segment, s) in layout.segments.iter().enumerate() {
            if matches!(s.kind, SegmentKind::Copy { .. }) && !s.chunks.is_empty() {
                waiting.entry(segment).or_insert_with(|| (s.chunks.len(), Vec::new()));
            }
        }
        let queue = Queue { foreign_keys: early.foreign_keys, ..Default::default() };
        IndexScheduler { waiting: Mutex::new(waiting), queue: Mutex::new(queue), ..Default::default() }
    }

    /// From now on, `to` hears each table's segment once its rows are all in and its early builds have run
    /// (and every one that already has), under the scheduler's lock; [`IndexScheduler::stop_announcing`]
    /// ends it.
    pub fn announce_settled(&self, to: Announce) {
        let mut queue = self.queue.lock().expect("scheduler lock");
        for segment in &queue.settled {
            to(*segment);
        }
        queue.announce = Some(to);
    }

    /// Closes what [`IndexScheduler::announce_settled`] opened: its listener hears no more.
    pub fn stop_announcing(&self) {
        self.queue.lock().expect("scheduler lock").announce = None;
    }

    /// One chunk of `segment`'s rows has loaded: when it was the last, that table's builds are ready.
    pub fn chunk_loaded(&self, segment: usize) {
        let mut waiting = self.waiting.lock().expect("scheduler lock");
        let Some((left, _)) = waiting.get_mut(&segment) else { return };
        *left = left.saturating_sub(1);
        if *left == 0 {
            let (_, statements) = waiting.remove(&segment).expect("present");
            let (indexes, constraints): (Statements, Statements) =
                statements.into_iter().partition(|s| is_index_build(s));
            let mut queue = self.queue.lock().expect("scheduler lock");
            let table_build =
                |statements, alone| Build { segments: vec![segment], statements, alone, foreign_key: false };
            let builds: Vec<Build> = (!constraints.is_empty())
                .then(|| table_build(constraints, true))
                .into_iter()
                .chain(indexes.into_iter().map(|index| table_build(vec![index], false)))
                .collect();
            let count = builds.len();
            queue.ready.extend(builds);
            match count {
                0 => queue.settle(segment),
                n => {
                    queue.unfinished.insert(segment, n);
                }
            }
            drop(queue);
            self.ready_signal.notify_waiters();
        }
    }

    /// The first ready build whose tables are free for it, marked running: the caller reports it with
    /// [`IndexScheduler::finished`].
    pub fn next_ready(&self) -> Option<Build> {
        let mut queue = self.queue.lock().expect("scheduler lock");
        let Queue { ready, running, .. } = &mut *queue;
        let position = ready.iter().position(|build| {
            build.segments.iter().all(|segment| match running.get(segment) {
                None => true,
                Some((_, held_alone)) => !build.alone && !held_alone,
            })
        })?;
        let build = ready.remove(position).expect("found");
        for segment in &build.segments {
            let entry = running.entry(*segment).or_default();
            *entry = (entry.0 + 1, build.alone);
        }
        self.handed_out.fetch_add(build.statements.len(), Ordering::Relaxed);
        Some(build)
    }

    /// A build handed out has run, or failed: its tables are free for the builds that waited for them. When
    /// it ran, foreign keys that waited for its table's builds may be ready; a failed one never lets them run
    /// (the key they reference may be what failed), so the restore's error is the build's own.
    pub fn finished(&self, build: &Build, succeeded: bool) {
        let mut queue = self.queue.lock().expect("scheduler lock");
        for segment in &build.segments {
            if let Some((count, _)) = queue.running.get_mut(segment) {
                *count -= 1;
                if *count == 0 {
                    queue.running.remove(segment);
                }
            }
        }
        if succeeded && !build.foreign_key {
            let segment = build.segments[0];
            if let Some(left) = queue.unfinished.get_mut(&segment) {
                *left -= 1;
                if *left == 0 {
                    queue.unfinished.remove(&segment);
                    queue.settle(segment);
                }
            }
        }
        drop(queue);
        self.ready_signal.notify_waiters();
    }

    /// Whether builds are ready that wait only for their table to be free, or foreign keys may still become
    /// ready when the builds running now finish: a connection with no rows left waits for them.
    pub fn builds_pending(&self) -> bool {
        let queue = self.queue.lock().expect("scheduler lock");
        !queue.ready.is_empty() || (!queue.running.is_empty() && !queue.foreign_keys.is_empty())
    }

    /// What was never handed out (the restore stopped before those tables' rows were in): it runs after
    /// the rows, ahead of the rest of the tail, where it came from: index and constraint builds first, then
    /// foreign keys (which may reference their keys).
    pub fn leftover(&self) -> Statements {
        let (ready, foreign_keys) = {
            let mut queue = self.queue.lock().expect("scheduler lock");
            (std::mem::take(&mut queue.ready), std::mem::take(&mut queue.foreign_keys))
        };
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("scheduler lock"));
        let (ready_keys, ready_builds): (Vec<Build>, Vec<Build>) = ready.into_iter().partition(|b| b.foreign_key);
        ready_builds
            .into_iter()
            .flat_map(|b| b.statements)
            .chain(waiting.into_values().flat_map(|(_, s)| s))
            .chain(ready_keys.into_iter().flat_map(|b| b.statements))
            .chain(foreign_keys.into_iter().map(|(_, s)| s))
            .collect()
    }
}

/// `CREATE [UNIQUE] INDEX`: takes a lock that other index builds on the table share.
fn is_index_build(statement: &[u8]) -> bool {
    let text = String::from_utf8_lossy(statement);
    let text = text.trim_start();
    text.starts_with("CREATE INDEX ") || text.starts_with("CREATE UNIQUE INDEX ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dump_layout::{Chunk, Segment};

    fn copy(schema: &str, name: &str, chunks: usize) -> Segment {
        Segment {
            kind: SegmentKind::Copy {
                schema: schema.into(),
                name: name.into(),
                statement: format!("COPY {schema}.{name} (a) FROM stdin;"),
                rows: 1,
            },
            chunks: vec![Chunk(10, 20); chunks],
        }
    }

    fn sql() -> Segment {
        Segment { kind: SegmentKind::Sql, chunks: vec![Chunk(10, 20)] }
    }

    fn texts(statements: &[Vec<u8>]) -> Vec<String> {
        statements.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }

    #[test]
    fn the_leading_index_builds_go_early_by_table_and_the_rest_keeps_its_order() {
        let layout = DumpLayout {
            format: 1,
            segments: vec![sql(), copy("app", "orders", 3), copy("app", "lines", 1), copy("app", "empty", 0), sql()],
        };
        let tail = [
            "SELECT pg_catalog.setval('app.orders_id_seq', 20, true);",
            "BEGIN;",
            "SELECT pg_catalog.lo_open('16385', 131072);",
            "SELECT pg_catalog.lowrite(0, '\\x00');",
            "SELECT pg_catalog.lo_close(0);",
            "COMMIT;",
            "ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);",
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT lines_pkey PRIMARY KEY (id);",
            "ALTER TABLE app.parent ADD CONSTRAINT parent_check CHECK (a > 0);",
            "CREATE INDEX orders_at ON app.orders USING btree (at);",
            "CREATE INDEX empty_a ON app.empty USING btree (a);",
            "CREATE INDEX parted_a ON ONLY app.parted USING btree (a);",
            "COMMENT ON INDEX app.orders_at IS 'by time';",
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT lines_order_fkey FOREIGN KEY (o) REFERENCES app.orders(id);",
            "CREATE INDEX lines_o ON app.lines USING btree (o);",
        ];
        let (early, later) = split_early(&layout, tail.iter().map(|s| s.as_bytes().to_vec()).collect());
        assert_eq!(early.builds.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(texts(&early.builds[&1]), vec![tail[6], tail[9]]);
        assert_eq!(texts(&early.builds[&2]), vec![tail[7]]);
        // app.lines has a build after the rows (lines_o): its foreign key waits for the rows too.
        assert!(early.foreign_keys.is_empty());
        // The data section's last statements, and builds without ONLY (children may be loading), with no rows
        // segment (a partitioned parent, a table with no chunks), comments, and everything from the first
        // foreign key on: after the rows, in order.
        let (data, rest) = tail.split_at(6);
        let expected: Vec<&str> =
            data.iter().chain([rest[2], rest[4], rest[5], rest[6], rest[7], rest[8]].iter()).copied().collect();
        assert_eq!(texts(&later), expected);
    }

    #[test]
    fn a_tables_statements_are_ready_after_its_last_chunk_and_never_twice() {
        let layout = DumpLayout { format: 1, segments: vec![sql(), copy("a", "t", 2), copy("a", "u", 1)] };
        let early = BTreeMap::from([(1, vec![b"CREATE INDEX i ON a.t (x);".to_vec()]), (2, vec![b"u".to_vec()])]);
        let scheduler = IndexScheduler::new(&layout, EarlyWork { builds: early, foreign_keys: Vec::new() });
        scheduler.chunk_loaded(1);
        assert!(scheduler.next_ready().is_none(), "one of two chunks is in");
        scheduler.chunk_loaded(1);
        let build = scheduler.next_ready().unwrap();
        assert_eq!(texts(&build.statements), vec!["CREATE INDEX i ON a.t (x);"]);
        scheduler.finished(&build, true);
        scheduler.chunk_loaded(1);
        assert!(scheduler.next_ready().is_none());
        assert_eq!(scheduler.handed_out.load(Ordering::Relaxed), 1);
        // A table whose rows never all came: its statements are left over, for after the rows.
        assert_eq!(texts(&scheduler.leftover()), vec!["u"]);
        assert!(scheduler.leftover().is_empty());
    }

    #[test]
    fn a_tables_constraints_run_alone_then_its_indexes_side_by_side() {
        let layout = DumpLayout { format: 1, segments: vec![sql(), copy("a", "t", 1), copy("a", "u", 1)] };
        let t = [
            "ALTER TABLE ONLY a.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
            "CREATE INDEX t_x ON a.t USING btree (x);",
            "ALTER TABLE ONLY a.t ADD CONSTRAINT t_y_key UNIQUE (y);",
            "CREATE UNIQUE INDEX t_z ON a.t USING btree (z);",
        ];
        let u = ["CREATE INDEX u_x ON a.u USING btree (x);"];
        let bytes = |s: &[&str]| s.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let builds = BTreeMap::from([(1, bytes(&t)), (2, bytes(&u))]);
        let scheduler = IndexScheduler::new(&layout, EarlyWork { builds, foreign_keys: Vec::new() });
        scheduler.chunk_loaded(1);
        scheduler.chunk_loaded(2);
        // t's constraints, in dump order, together: nothing else of t may run beside them, u's index may.
        let constraints = scheduler.next_ready().unwrap();
        assert!(constraints.alone);
        assert_eq!(texts(&constraints.statements), vec![t[0], t[2]]);
        let other_table = scheduler.next_ready().unwrap();
        assert_eq!(texts(&other_table.statements), u.to_vec());
        assert!(scheduler.next_ready().is_none(), "t's indexes wait for its constraints");
        assert!(scheduler.builds_pending());
        scheduler.finished(&constraints, true);
        // Then t's index builds, each on its own, side by side.
        let first = scheduler.next_ready().unwrap();
        let second = scheduler.next_ready().unwrap();
        assert_eq!((texts(&first.statements), texts(&second.statements)), (vec![t[1].into()], vec![t[3].into()]));
        assert!(!first.alone && !second.alone);
        assert!(!scheduler.builds_pending());
        assert_eq!(scheduler.handed_out.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_setting_ends_the_run_so_no_build_runs_without_it() {
        let layout = DumpLayout { format: 1, segments: vec![sql(), copy("a", "t", 1), sql()] };
        let tail = ["SET default_tablespace = fast;", "CREATE INDEX i ON a.t USING btree (x);"];
        let (early, later) = split_early(&layout, tail.iter().map(|s| s.as_bytes().to_vec()).collect());
        assert!(early.builds.is_empty() && early.foreign_keys.is_empty());
        assert_eq!(texts(&later), tail.to_vec());
    }

    #[test]
    fn the_tail_of_a_real_dump_builds_its_tables_keys_and_indexes_early() {
        // pg_dump 15's own output: sequences set, then keys, comments, indexes, partition attachments, foreign
        // keys, grants.
        let dump = include_str!("../jobs/restore/fixtures/tables.sql");
        let at = dump.find("SELECT pg_catalog.setval").expect("the fixture sets sequences");
        let mut splitter = StatementSplitter::new();
        let statements = statements_of(&mut splitter, &dump.as_bytes()[at..]).unwrap();
        let tables = ["customers", "events_2026", "items", "orders", "tickets"];
        let layout = DumpLayout { format: 1, segments: tables.iter().map(|t| copy("app", t, 1)).collect() };
        let (early, later) = split_early(&layout, statements);
        let keys: Vec<(Vec<usize>, String)> =
            early.foreign_keys.iter().map(|(at, s)| (at.clone(), String::from_utf8_lossy(s).into_owned())).collect();
        let builds: Vec<String> = texts(&early.builds.into_values().flatten().collect::<Vec<_>>());
        for name in ["customers_pkey", "orders_pkey", "tickets_pkey", "\"Orders Note\"", "events_2026_at_idx"] {
            assert!(builds.iter().any(|s| s.contains(name)), "{name} builds early: {builds:#?}");
        }
        // Both foreign keys join loaded tables whose builds all go early: they run once both tables are in.
        assert_eq!(keys.len(), 2, "{keys:#?}");
        assert!(keys[0].1.contains("items_order_id_fkey") && keys[0].0 == vec![2, 3], "items → orders: {keys:#?}");
        assert!(keys[1].1.contains("orders_customer_id_fkey") && keys[1].0 == vec![3, 0], "orders → customers");
        let later = texts(&later);
        for after in ["ON ONLY app.events", "ATTACH PARTITION", "CREATE TRIGGER", "GRANT ", "COMMENT ON INDEX"] {
            assert!(later.iter().any(|s| s.contains(after)), "{after} waits for every row: {later:#?}");
            assert!(!builds.iter().any(|s| s.contains(after)), "{after} is not built early");
        }
        assert!(!later.iter().any(|s| s.contains("FOREIGN KEY")));
    }

    #[test]
    fn foreign_keys_go_early_only_between_loaded_tables_whose_builds_all_went_early() {
        let layout = DumpLayout {
            format: 1,
            segments: vec![
                sql(),
                copy("app", "orders", 2),
                copy("app", "lines", 1),
                copy("we\"ird", "T 1", 1),
                copy("we\"ird", "P", 1),
                copy("app", "late", 1),
                sql(),
            ],
        };
        let tail = [
            "ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);",
            "ALTER TABLE ONLY \"we\"\"ird\".\"P\" ADD CONSTRAINT p_pkey PRIMARY KEY (id, \"x y\");",
            "ALTER TABLE app.late ADD CONSTRAINT late_pkey PRIMARY KEY (id);",
            "CREATE TRIGGER t BEFORE INSERT ON app.lines FOR EACH ROW EXECUTE FUNCTION app.f();",
            // 4: taken, past the trigger (a foreign key's check fires no trigger).
            "ALTER TABLE ONLY app.lines\n    ADD CONSTRAINT lines_order_fkey FOREIGN KEY (o) REFERENCES app.orders(id);",
            // 5: quoted names, several columns, an action after them; 6: one table referencing itself.
            "ALTER TABLE ONLY \"we\"\"ird\".\"T 1\" ADD CONSTRAINT \"fk, x\" FOREIGN KEY (\"a)b\", c) REFERENCES \"we\"\"ird\".\"P\"(id, \"x y\") ON DELETE CASCADE;",
            "ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_parent_fkey FOREIGN KEY (parent) REFERENCES app.orders(id);",
            // Kept: late's key builds after the rows (no ONLY), a partitioned parent has no rows, no ONLY.
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT lines_late_fkey FOREIGN KEY (l) REFERENCES app.late(id);",
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT lines_parted_fkey FOREIGN KEY (p) REFERENCES app.parted(id);",
            "ALTER TABLE app.orders ADD CONSTRAINT orders_x_fkey FOREIGN KEY (x) REFERENCES app.lines(id);",
            // Kept: after a setting.
            "SET default_tablespace = fast;",
            "ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_y_fkey FOREIGN KEY (y) REFERENCES app.lines(id);",
        ];
        let (early, later) = split_early(&layout, tail.iter().map(|s| s.as_bytes().to_vec()).collect());
        let keys: Vec<(Vec<usize>, String)> =
            early.foreign_keys.iter().map(|(at, s)| (at.clone(), String::from_utf8_lossy(s).into_owned())).collect();
        assert_eq!(
            keys,
            vec![(vec![2, 1], tail[4].to_string()), (vec![3, 4], tail[5].to_string()), (vec![1], tail[6].to_string())]
        );
        assert_eq!(texts(&later), [&tail[2..4], &tail[7..]].concat());
    }

    #[test]
    fn a_foreign_key_runs_once_both_tables_are_in_and_built_holding_both_alone() {
        let layout =
            DumpLayout { format: 1, segments: vec![sql(), copy("a", "p", 1), copy("a", "c", 2), copy("a", "x", 1)] };
        let p_key = b"ALTER TABLE ONLY a.p ADD CONSTRAINT p_pkey PRIMARY KEY (id);".to_vec();
        let p_index = b"CREATE INDEX p_v ON a.p USING btree (v);".to_vec();
        let x_index = b"CREATE INDEX x_v ON a.x USING btree (v);".to_vec();
        let fk = b"ALTER TABLE ONLY a.c ADD CONSTRAINT c_p_fkey FOREIGN KEY (p) REFERENCES a.p(id);".to_vec();
        let early = EarlyWork {
            builds: BTreeMap::from([(1, vec![p_key.clone(), p_index.clone()]), (3, vec![x_index.clone()])]),
            foreign_keys: vec![(vec![2, 1], fk.clone())],
        };
        let scheduler = IndexScheduler::new(&layout, early);
        scheduler.chunk_loaded(1);
        let key = scheduler.next_ready().unwrap();
        assert_eq!(key.statements, vec![p_key]);
        scheduler.finished(&key, true);
        let index = scheduler.next_ready().unwrap();
        assert_eq!(index.statements, vec![p_index]);
        scheduler.chunk_loaded(2);
        scheduler.chunk_loaded(2);
        assert!(scheduler.next_ready().is_none(), "p's index still builds: the key waits");
        assert!(scheduler.builds_pending(), "a connection without rows waits for the key");
        scheduler.finished(&index, true);
        let key = scheduler.next_ready().unwrap();
        assert_eq!((key.statements.clone(), key.segments.clone(), key.alone), (vec![fk], vec![2, 1], true));
        // Another table's build runs beside it; nothing else may take p or c meanwhile.
        scheduler.chunk_loaded(3);
        let other = scheduler.next_ready().unwrap();
        assert_eq!(other.statements, vec![x_index]);
        scheduler.finished(&other, true);
        scheduler.finished(&key, true);
        assert!(!scheduler.builds_pending() && scheduler.next_ready().is_none() && scheduler.leftover().is_empty());
    }

    #[test]
    fn a_failed_build_keeps_the_foreign_keys_on_its_table_from_running() {
        let layout = DumpLayout { format: 1, segments: vec![sql(), copy("a", "p", 1), copy("a", "c", 1)] };
        let p_key = b"ALTER TABLE ONLY a.p ADD CONSTRAINT p_pkey PRIMARY KEY (id);".to_vec();
        let fk = b"ALTER TABLE ONLY a.c ADD CONSTRAINT c_p_fkey FOREIGN KEY (p) REFERENCES a.p(id);".to_vec();
        let early =
            EarlyWork { builds: BTreeMap::from([(1, vec![p_key])]), foreign_keys: vec![(vec![2, 1], fk.clone())] };
        let scheduler = IndexScheduler::new(&layout, early);
        scheduler.chunk_loaded(1);
        scheduler.chunk_loaded(2);
        let key = scheduler.next_ready().unwrap();
        scheduler.finished(&key, false);
        assert!(scheduler.next_ready().is_none() && !scheduler.builds_pending());
        assert_eq!(scheduler.leftover(), vec![fk]);
    }

    #[test]
    fn foreign_keys_whose_tables_never_settled_are_left_over_after_the_builds() {
        let layout = DumpLayout { format: 1, segments: vec![sql(), copy("a", "p", 1), copy("a", "c", 1)] };
        let p_key = b"ALTER TABLE ONLY a.p ADD CONSTRAINT p_pkey PRIMARY KEY (id);".to_vec();
        let fk = b"ALTER TABLE ONLY a.c ADD CONSTRAINT c_p_fkey FOREIGN KEY (p) REFERENCES a.p(id);".to_vec();
        let early = EarlyWork {
            builds: BTreeMap::from([(1, vec![p_key.clone()])]),
            foreign_keys: vec![(vec![2, 1], fk.clone())],
        };
        let scheduler = IndexScheduler::new(&layout, early);
        scheduler.chunk_loaded(2);
        assert!(!scheduler.builds_pending(), "nothing runs, so nothing can become ready: no connection waits");
        assert_eq!(scheduler.leftover(), vec![p_key, fk]);
    }
}
