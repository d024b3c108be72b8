//! Restores some tables of a framed dump (`backstop restore --table`) into a database that is in use: one
//! connection, one transaction. The statements the table plan chose run in dump order; each table's rows
//! come from ranged reads of its own chunks only, decompressed on a blocking thread and sent with `COPY`.
//! Before the transaction commits, every restored table is read back and folded as the backup folded it
//! (rows and digest), and every sequence's value is read: any difference, or any error, rolls the whole
//! restore back, so the destination has either every table proven or none of them.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use super::framed_restore::{decode_rows, excerpt, quoted};
use super::pg_wire::{connect, describe};
use super::read_back::{digest_rows, session_settings};
use crate::ports::{LoadStep, ObjectStore, RestoreError, ScratchEndpoint, TableLoad, TableLoadReport};

fn failed(what: impl Into<String>) -> RestoreError {
    RestoreError::Failed { program: "table restore".into(), status: "error".into(), stderr_tail: what.into() }
}

pub async fn restore_tables(
    store: Arc<dyn ObjectStore>,
    server: &ScratchEndpoint,
    database: &str,
    load: TableLoad<'_>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<TableLoadReport, RestoreError> {
    let client = connect(server, database).await?;
    client.batch_execute("BEGIN").await.map_err(|e| failed(describe(&e)))?;
    match load_and_check(&client, store.as_ref(), &load, progress).await {
        Ok(mut report) => {
            let sound = report_is_sound(&load, &report);
            let end = if sound { "COMMIT" } else { "ROLLBACK" };
            client.batch_execute(end).await.map_err(|e| failed(format!("{} ({end})", describe(&e))))?;
            report.committed = sound;
            Ok(report)
        }
        Err(e) => {
            // The connection may be gone with the error; its transaction then ends with it.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Every table has the backup's rows and digest, and every sequence its value.
fn report_is_sound(load: &TableLoad<'_>, report: &TableLoadReport) -> bool {
    let tables = load.tables.iter().all(|t| {
        report.found.iter().any(|f| {
            (&f.schema, &f.name) == (&t.restored.0, &t.restored.1)
                && f.rows == t.expected_rows
                && f.digest == t.expected_digest
        })
    });
    let sequences = load.sequences.iter().all(|s| {
        report.sequences.iter().any(|(name, found)| *name == s.name && *found == Some((s.value, s.is_called)))
    });
    tables && sequences
}

async fn load_and_check(
    client: &Client,
    store: &dyn ObjectStore,
    load: &TableLoad<'_>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<TableLoadReport, RestoreError> {
    let mut report = TableLoadReport::default();
    for schema in &load.create_schemas {
        client
            .batch_execute(&format!("CREATE SCHEMA {}", quoted(schema)))
            .await
            .map_err(|e| failed(format!("{} creating schema {schema}", describe(&e))))?;
    }
    let total: u64 = load
        .steps
        .iter()
        .map(|s| match s {
            LoadStep::Rows { ranges, .. } => ranges.iter().map(|r| r.1).sum(),
            LoadStep::Sql(_) => 0,
        })
        .sum();
    progress(0, total);
    for step in &load.steps {
        match step {
            LoadStep::Sql(statement) => client
                .batch_execute(statement)
                .await
                .map_err(|e| failed(format!("{} in: {}", describe(&e), excerpt(statement.as_bytes()))))?,
            LoadStep::Rows { ranges, statement, restored_statement } => {
                load_rows(client, store, load, ranges, statement, restored_statement, &mut report, total, progress)
                    .await?
            }
        }
    }
    client
        .batch_execute(&session_settings(&load.session))
        .await
        .map_err(|e| failed(format!("cannot set the dump's session settings: {}", describe(&e))))?;
    for table in &load.tables {
        let (schema, name) = &table.restored;
        report.found.push(digest_rows(client, schema, name, &table.copy_statement).await?);
    }
    for sequence in &load.sequences {
        let sql = format!("SELECT last_value, is_called FROM {}", sequence.name);
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| failed(format!("{} reading sequence {}", describe(&e), sequence.name)))?;
        report.sequences.push((sequence.name.clone(), Some((row.get::<_, i64>(0), row.get(1)))));
    }
    Ok(report)
}

/// One table's rows, chunk by chunk, through one `COPY`.
#[allow(clippy::too_many_arguments)]
async fn load_rows(
    client: &Client,
    store: &dyn ObjectStore,
    load: &TableLoad<'_>,
    ranges: &[(u64, u64)],
    statement: &str,
    restored_statement: &str,
    report: &mut TableLoadReport,
    total: u64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), RestoreError> {
    let head = restored_statement
        .trim_end()
        .strip_suffix("FROM stdin;")
        .ok_or_else(|| failed(format!("not a COPY statement: {restored_statement}")))?;
    let sink = client
        .copy_in::<_, Bytes>(&format!("{head}FROM STDIN"))
        .await
        .map_err(|e| failed(format!("{} in: {}", describe(&e), excerpt(restored_statement.as_bytes()))))?;
    futures_util::pin_mut!(sink);
    for (i, &(offset, len)) in ranges.iter().enumerate() {
        let stored = store.read_range(load.key, load.version_id, offset, len).await.map_err(failed)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let header = (i == 0).then(|| statement.to_string());
        let last = i + 1 == ranges.len();
        let codec = load.codec;
        let decoding =
            tokio::task::spawn_blocking(move || decode_rows(codec, std::io::Cursor::new(stored), header, last, tx));
        let mut send_error = None;
        while let Some(piece) = rx.recv().await {
            if let Err(e) = sink.send(piece).await {
                send_error = Some(e);
                break;
            }
        }
        drop(rx);
        decoding
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(format!("the rows cannot be read from the dump: {e}")))?;
        if let Some(e) = send_error {
            return Err(failed(format!("{} (loading {})", describe(&e), excerpt(restored_statement.as_bytes()))));
        }
        report.stored_bytes_read += len;
        progress(report.stored_bytes_read, total);
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| failed(format!("{} (loading {})", describe(&e), excerpt(restored_statement.as_bytes()))))?;
    Ok(())
}
