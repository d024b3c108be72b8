//! The physical check of a restored copy with PostgreSQL's `amcheck`: every table's heap (and its TOAST) with
//! `verify_heapam` (PostgreSQL 14 and later), and every B-tree index with `bt_index_check(heapallindexed)`,
//! which also proves each heap tuple has its index entry. A logical comparison (rows, digests) reads what a
//! query returns; this reads the pages themselves, so it finds corruption no query has touched yet.
//!
//! Runs after the read-back (the extension it creates would otherwise show in the schema digest), over
//! several connections, one relation at a time per connection. The system catalogs and TOAST indexes are left
//! out: the first are the scratch server's own, and `verify_heapam` reads TOAST through its index already. Every problem amcheck reports is kept, with
//! its relation; an error running the check itself is an error of the check, not corruption.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::pg_wire::{connect, describe};
use crate::ports::{PhysicalCheckReport, RestoreError, ScratchEndpoint};

fn failed(what: impl Into<String>) -> RestoreError {
    RestoreError::Failed { program: "amcheck".into(), status: "error".into(), stderr_tail: what.into() }
}

/// A relation's `schema.name`, as the bytes the database holds: a SQL_ASCII database's names may hold bytes
/// that are not UTF-8, which the connection could not take as text. Read with [`name_of`].
const QUALIFIED_NAME: &str = "convert_to(format('%I.%I', n.nspname, c.relname), pg_catalog.getdatabaseencoding())";

fn name_of(row: &tokio_postgres::Row) -> String {
    crate::domain::sql::statement::text_of(row.get::<_, &[u8]>(1)).into_owned()
}

/// A connection for the check, free of what the copy's own settings (the source's `ALTER DATABASE … SET`) might
/// impose on it: a statement timeout shorter than a large index's check, read-only transactions.
async fn connect_pinned(server: &ScratchEndpoint, database: &str) -> Result<tokio_postgres::Client, RestoreError> {
    let client = connect(server, database).await?;
    client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0; SET default_transaction_read_only = off")
        .await
        .map_err(|e| failed(describe(&e)))?;
    Ok(client)
}

/// Problems kept per check (a badly damaged copy can report one per page).
const PROBLEMS_KEPT: usize = 50;

enum Relation {
    Heap { oid: u32, name: String },
    BTree { oid: u32, name: String },
}

pub async fn physical_check(
    server: &ScratchEndpoint,
    database: &str,
    jobs: usize,
) -> Result<PhysicalCheckReport, RestoreError> {
    let main = connect_pinned(server, database).await?;
    // The check's one DDL statement is not the copy's business: in `replica` mode the copy's own event triggers
    // (a freeze on DDL, a log of it) do not fire. Setting it takes a superuser (on RDS, rds_superuser); without
    // it the extension is created as before.
    let _ = main.batch_execute("SET session_replication_role = replica").await;
    main.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck; RESET session_replication_role")
        .await
        .map_err(|e| failed(format!("cannot create the amcheck extension on the scratch server: {}", describe(&e))))?;
    let version: i32 = main
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| failed(describe(&e)))?
        .get(0);
    let mut work = VecDeque::new();
    if version >= 140000 {
        // Tables and materialized views; their TOAST is checked with them.
        let heaps = main
            .query(
                &format!(
                    "SELECT c.oid, {QUALIFIED_NAME} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     ORDER BY c.relpages DESC"
                ),
                &[],
            )
            .await
            .map_err(|e| failed(describe(&e)))?;
        work.extend(heaps.iter().map(|r| Relation::Heap { oid: r.get(0), name: name_of(r) }));
    }
    let indexes = main
        .query(
            &format!(
                "SELECT c.oid, {QUALIFIED_NAME} FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam \
                 WHERE am.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't' \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY c.relpages DESC"
            ),
            &[],
        )
        .await
        .map_err(|e| failed(describe(&e)))?;
    work.extend(indexes.iter().map(|r| Relation::BTree { oid: r.get(0), name: name_of(r) }));
    drop(main);

    let report = Arc::new(Mutex::new(PhysicalCheckReport { heap_checked: version >= 140000, ..Default::default() }));
    let queue = Arc::new(Mutex::new(work));
    let workers = (0..jobs.max(1)).map(|_| {
        let (queue, report) = (queue.clone(), report.clone());
        async move {
            let client = connect_pinned(server, database).await?;
            loop {
                let Some(relation) = queue.lock().expect("amcheck queue lock").pop_front() else {
                    return Ok::<(), RestoreError>(());
                };
                let problems = match &relation {
                    Relation::Heap { oid, name } => {
                        let rows = client
                            .query(
                                "SELECT coalesce(blkno::text, '-'), coalesce(offnum::text, '-'), msg \
                                 FROM verify_heapam($1::oid::regclass, on_error_stop => false, check_toast => true)",
                                &[oid],
                            )
                            .await
                            .map_err(|e| failed(format!("{} (verify_heapam on {name})", describe(&e))))?;
                        report.lock().expect("amcheck report lock").tables += 1;
                        rows.iter()
                            .map(|r| {
                                format!(
                                    "{name} block {} offset {}: {}",
                                    r.get::<_, String>(0),
                                    r.get::<_, String>(1),
                                    r.get::<_, String>(2)
                                )
                            })
                            .collect::<Vec<_>>()
                    }
                    Relation::BTree { oid, name } => {
                        report.lock().expect("amcheck report lock").indexes += 1;
                        match client.execute("SELECT bt_index_check($1::oid::regclass, true)", &[oid]).await {
                            Ok(_) => Vec::new(),
                            // amcheck reports corruption as an error with SQLSTATE XX002 (index corrupted).
                            Err(e) if e.code().is_some_and(|c| c.code() == "XX002" || c.code() == "XX001") => {
                                vec![format!("{name}: {}", describe(&e))]
                            }
                            Err(e) => return Err(failed(format!("{} (bt_index_check on {name})", describe(&e)))),
                        }
                    }
                };
                let mut report = report.lock().expect("amcheck report lock");
                report.problem_count += problems.len() as u64;
                let room = PROBLEMS_KEPT.saturating_sub(report.problems.len());
                report.problems.extend(problems.into_iter().take(room));
            }
        }
    });
    futures_util::future::try_join_all(workers).await?;
    let report = report.lock().expect("amcheck report lock").clone();
    Ok(report)
}
