//! Reads a restored copy back to compare it with the backup's fingerprint (scheme v2), over several
//! connections: which tables it has, each table's rows (counted, or read with `COPY … TO STDOUT` and digested
//! exactly as the backup digested its rows), its sequences and its large objects. The schema digest comes
//! from `pg_dump --schema-only` (`psql_restorer`), which v2 makes equal to a full dump's.
//!
//! Rows are read under the settings pg_dump used when it dumped them (its own, plus the source's time zone,
//! `bytea_output` and encoding, from the manifest), so equal data reads as equal text.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use super::framed_restore::quoted;
use super::pg_wire::{connect, describe};
use crate::domain::dump_layout::{DumpLayout, SegmentKind};
use crate::domain::dump_parser::SequenceValue;
use crate::domain::fingerprint::{Fingerprint, TableFingerprint};
use crate::domain::manifest::DumpSession;
use crate::domain::row_digest::RowDigest;
use crate::domain::sql::quote_literal as literal;
use crate::domain::verification::RowCheck;
use crate::ports::{RestoreError, ScratchEndpoint};

fn failed(what: impl Into<String>) -> RestoreError {
    RestoreError::Failed { program: "read back".into(), status: "error".into(), stderr_tail: what.into() }
}

/// The restored copy's tables, sequences and large objects. Its `schema_digest` is left empty (the caller
/// fills it from a schema-only dump); with [`RowCheck::Counts`] the table digests are empty.
pub async fn read_back(
    server: &ScratchEndpoint,
    database: &str,
    layout: &DumpLayout,
    expected: &Fingerprint,
    session: &DumpSession,
    rows: RowCheck,
    jobs: usize,
) -> Result<Fingerprint, RestoreError> {
    let main = connect(server, database).await?;
    let present = user_tables(&main).await?;
    // What to read: each table the copy has, with the dump's own column list (generated columns are not in it).
    let mut tables: Vec<(String, String, String, u64)> = layout
        .segments
        .iter()
        .filter_map(|s| match &s.kind {
            SegmentKind::Copy { schema, name, statement, .. } if present.contains(&(schema.clone(), name.clone())) => {
                Some((schema.clone(), name.clone(), statement.clone(), s.chunks.iter().map(|c| c.raw()).sum()))
            }
            _ => None,
        })
        .collect();
    tables.sort_by_key(|t| std::cmp::Reverse(t.3));
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let results = Arc::new(Mutex::new(Vec::new()));
    let settings = session_settings(session);
    let workers = (0..jobs.max(1)).map(|_| {
        let (queue, results, settings) = (queue.clone(), results.clone(), settings.clone());
        async move {
            let client = connect(server, database).await?;
            client
                .batch_execute(&settings)
                .await
                .map_err(|e| failed(format!("cannot set the dump's session settings: {}", describe(&e))))?;
            loop {
                let Some((schema, name, statement, _)) = queue.lock().expect("read-back queue lock").pop_front() else {
                    return Ok::<(), RestoreError>(());
                };
                let table = match rows {
                    RowCheck::Counts => count_rows(&client, &schema, &name).await?,
                    RowCheck::Digests => digest_rows(&client, &schema, &name, &statement).await?,
                };
                results.lock().expect("read-back results lock").push(table);
            }
        }
    });
    futures_util::future::try_join_all(workers).await?;
    let mut found: Vec<TableFingerprint> = std::mem::take(&mut *results.lock().expect("read-back results lock"));
    // Tables the copy has and the backup does not: listed with no rows, so the table-set check names them.
    let known: BTreeSet<(String, String)> =
        expected.tables.iter().map(|t| (t.schema.clone(), t.name.clone())).collect();
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

/// pg_dump's own session settings for a dump, and those it inherits from the source.
pub(crate) fn session_settings(session: &DumpSession) -> String {
    format!(
        "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SELECT pg_catalog.set_config('search_path', '', false); \
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

async fn count_rows(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
) -> Result<TableFingerprint, RestoreError> {
    let sql = format!("SELECT count(*) FROM ONLY {}.{}", quoted(schema), quoted(name));
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
    let copy = format!("{head}TO STDOUT");
    let stream =
        client.copy_out(&copy).await.map_err(|e| failed(format!("{} reading {schema}.{name}", describe(&e))))?;
    futures_util::pin_mut!(stream);
    let mut fold = RowDigest::default();
    while let Some(piece) = stream.next().await {
        fold.feed(&piece.map_err(|e| failed(format!("{} reading {schema}.{name}", describe(&e))))?);
    }
    let (rows, digest) = fold.finish().map_err(|e| failed(format!("{e} ({schema}.{name})")))?;
    Ok(TableFingerprint { schema: schema.into(), name: name.into(), rows, digest })
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
