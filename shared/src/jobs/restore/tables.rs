//! `backstop restore --table`: some tables of a backup, read by ranged GETs of only the stored bytes that
//! hold them (the dump's SQL and their rows, by the manifest's layout), restored into a database in use, in
//! one transaction that commits only when each table reads back with the backup's rows and digest.
//!
//! The whole object's SHA-256 cannot be checked without reading it all; what stands in for it here is the
//! object's version and encryption, every frame decompressing whole, and each table's own fingerprint.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::destination::{self, DatabaseState};
use super::table_plan::{display, plan, statements, DumpPart, Relation, Step, TablePattern, TablePlan};
use super::{current_head, RestoreJob, RestoreRefused, RestoreRequest};
use crate::domain::dump_layout::{ChunkRange, DumpLayout, SegmentKind};
use crate::domain::dump_parser::SequenceValue;
use crate::domain::row_digest::RowDigest;
use crate::domain::sql::quote_literal as literal;
use crate::domain::{BackupId, BackupRecord, BackupStatus, Manifest, ObjectRef};
use crate::jobs::manifests::fetch_manifest;
use crate::jobs::verify::steps::{encryption_check, parallel_layout};
use crate::pipeline::codec::{decode_all, Codec};
use crate::ports::{LoadStep, TableLoad, TableToCheck};

/// SQL chunks closer than this are read in one GET, the bytes between them thrown away: fewer requests for a
/// dump of many small tables.
const MERGE_GAP: u64 = 256 * 1024;
/// The most one merged GET holds.
const MERGE_MAX: u64 = 16 * 1024 * 1024;

/// Which tables, and their new name.
#[derive(Debug, Clone)]
pub struct TableChoice {
    pub patterns: Vec<TablePattern>,
    /// `--as`: the one chosen table's new `schema.name`.
    pub rename: Option<Relation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredTable {
    /// `schema.name` in the backup.
    pub source: String,
    /// `schema.name` as restored.
    pub restored: String,
    pub rows: u64,
    pub expected_rows: u64,
    /// The rows read back fold to the backup's digest.
    pub digest_matches: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredSequence {
    /// As restored, quoted as SQL needs it.
    pub name: String,
    /// It has the backup's value and `is_called`.
    pub value_matches: bool,
}

/// What a table restore did.
#[derive(Debug, Clone, Serialize)]
pub struct TableRestoreOutcome {
    pub target: String,
    pub backup_id: BackupId,
    pub backup_status: BackupStatus,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub tables: Vec<RestoredTable>,
    /// Each sequence the tables own.
    pub sequences: Vec<RestoredSequence>,
    /// Statements of the tables left out because they name relations not restored.
    pub left_out: Vec<String>,
    /// Relations outside the restore that the restored definitions use.
    pub uses: Vec<String>,
    pub created_schemas: Vec<String>,
    /// Stored bytes read (the dump's SQL and the tables' rows) against the object's size.
    pub stored_bytes_read: u64,
    pub object_size: u64,
    pub seconds: f64,
    pub notes: Vec<String>,
    /// Committed: every table and sequence read back as the backup holds it.
    pub passed: bool,
}

/// The dump's SQL and which tables' rows sit where, read by ranged GETs of the SQL chunks only.
struct DumpOutline {
    parts: Vec<DumpPart>,
    stored_bytes_read: u64,
}

impl RestoreJob {
    /// Restores the tables `choice` names from the backup `request` picks.
    pub async fn run_tables(
        &self,
        request: &RestoreRequest,
        choice: &TableChoice,
        progress: &(dyn Fn(&str) + Sync),
        bytes: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<TableRestoreOutcome, RestoreRefused> {
        let started = Instant::now();
        let target = self.target(&request.target)?;
        let backup = self.choose(&target.name, &request.pick).await?;
        let server = &request.server;
        let unreachable =
            |cause: String| RestoreRefused::Unreachable { host: server.host.clone(), port: server.port, cause };
        let (manifest, _) = fetch_manifest(self.deps.store.as_ref(), &backup)
            .await
            .map_err(|e| RestoreRefused::ObjectDamaged(e.to_string()))?;
        let mut notes = Vec::new();
        if destination::is_source(target, &manifest, server, &request.database).await {
            // Beside the live tables (--as) nothing there is touched: the new names must be free.
            if !request.allow_source && choice.rename.is_none() {
                return Err(RestoreRefused::SourceDatabase {
                    host: server.host.clone(),
                    port: server.port,
                    database: request.database.clone(),
                    backup: backup.backup_id.clone(),
                });
            }
            notes.push(format!("{} is the backup's own database; nothing in it is replaced", request.database));
        }
        let (dump, layout) = self.ranged_object(&backup, &manifest).await?;
        progress(&format!("reading the SQL of backup {} (ranged reads)", backup.backup_id));
        let outline = self.outline(&dump, backup.codec, layout).await.map_err(RestoreRefused::ObjectDamaged)?;
        let plan = plan(&outline.parts, &choice.patterns, choice.rename.as_ref()).map_err(RestoreRefused::Tables)?;

        let restorer = self.deps.restorer.as_ref();
        let timeout = self.config.verify.check_timeout;
        let mut created = String::new();
        match destination::database_state(restorer, server, &request.database).await.map_err(unreachable)? {
            DatabaseState::Missing => {
                restorer
                    .recreate_database(server, &request.database, manifest.session.as_ref())
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                created = format!(" (database {} was created for it, and is left empty)", request.database);
                notes.push(format!("database {} did not exist and was created", request.database));
            }
            DatabaseState::Empty | DatabaseState::Holds(_) => {}
        }
        let mut taken = Vec::new();
        let mut create_schemas = Vec::new();
        for table in &plan.tables {
            let relation = display(&table.restored);
            let free = format!("SELECT pg_catalog.to_regclass({}) IS NULL", literal(&relation));
            if !restorer
                .check(server, &request.database, &free, timeout)
                .await
                .map_err(|e| unreachable(e.to_string()))?
            {
                taken.push(relation);
            }
            let schema = &table.restored.0;
            let exists =
                format!("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})", literal(schema));
            if !create_schemas.contains(schema)
                && !restorer
                    .check(server, &request.database, &exists, timeout)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?
            {
                create_schemas.push(schema.clone());
            }
        }
        if !taken.is_empty() {
            return Err(RestoreRefused::TablesExist {
                host: server.host.clone(),
                port: server.port,
                database: request.database.clone(),
                tables: taken.join(", "),
            });
        }

        let load = table_load(&dump, backup.codec, layout, &plan, &manifest, create_schemas.clone())
            .map_err(RestoreRefused::ObjectDamaged)?;
        let checks = load.tables.clone();
        let expected_sequences = load.sequences.clone();
        progress(&format!(
            "restoring {} into {} on {}:{} (one transaction)",
            plan.tables.iter().map(|t| display(&t.restored)).collect::<Vec<_>>().join(", "),
            request.database,
            server.host,
            server.port
        ));
        let report = restorer
            .restore_tables(self.deps.store.clone(), server, &request.database, load, bytes)
            .await
            .map_err(|e| RestoreRefused::TableRestoreFailed(format!("{e}{created}")))?;
        let tables = checks
            .iter()
            .map(|check| {
                let source = plan.tables.iter().find(|t| t.restored == check.restored).map(|t| &t.source);
                let found =
                    report.found.iter().find(|f| (&f.schema, &f.name) == (&check.restored.0, &check.restored.1));
                RestoredTable {
                    source: display(source.unwrap_or(&check.restored)),
                    restored: display(&check.restored),
                    rows: found.map_or(0, |f| f.rows),
                    expected_rows: check.expected_rows,
                    digest_matches: found.is_some_and(|f| f.digest == check.expected_digest),
                }
            })
            .collect();
        let sequences = expected_sequences
            .iter()
            .map(|s| {
                let found = report.sequences.iter().find(|(n, _)| *n == s.name).and_then(|(_, v)| *v);
                RestoredSequence { name: s.name.clone(), value_matches: found == Some((s.value, s.is_called)) }
            })
            .collect();
        if !report.committed {
            notes.push("the tables did not read back as the backup holds them: the transaction was rolled back, and nothing was restored".into());
        }
        Ok(TableRestoreOutcome {
            target: target.name.clone(),
            backup_id: backup.backup_id.clone(),
            backup_status: backup.status,
            host: server.host.clone(),
            port: server.port,
            database: request.database.clone(),
            tables,
            sequences,
            left_out: plan.left_out,
            uses: plan.uses,
            created_schemas: if report.committed { create_schemas } else { Vec::new() },
            stored_bytes_read: outline.stored_bytes_read + report.stored_bytes_read,
            object_size: dump.size,
            seconds: started.elapsed().as_secs_f64(),
            notes,
            passed: report.committed,
        })
    }

    /// `--to-file` with `--table`: the chosen tables' SQL and rows, from ranged reads, each table's rows
    /// folded on the way and compared with the backup's fingerprint (a mismatch is an error). Returns the
    /// bytes written and the stored bytes read.
    pub async fn write_tables_sql(
        &self,
        backup: &BackupRecord,
        choice: &TableChoice,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(u64, u64), RestoreRefused> {
        let (manifest, _) = fetch_manifest(self.deps.store.as_ref(), backup)
            .await
            .map_err(|e| RestoreRefused::ObjectDamaged(e.to_string()))?;
        let (dump, layout) = self.ranged_object(backup, &manifest).await?;
        let outline = self.outline(&dump, backup.codec, layout).await.map_err(RestoreRefused::ObjectDamaged)?;
        let plan = plan(&outline.parts, &choice.patterns, choice.rename.as_ref()).map_err(RestoreRefused::Tables)?;
        let ranges = layout.chunk_ranges();
        let damaged = RestoreRefused::ObjectDamaged;
        let io = |e: std::io::Error| RestoreRefused::WriteFailed(e.to_string());
        let (mut written, mut read) = (0u64, outline.stored_bytes_read);
        let mut emit = |text: &[u8], out: &mut (dyn std::io::Write + Send)| -> Result<(), RestoreRefused> {
            out.write_all(text).map_err(io)?;
            written += text.len() as u64;
            Ok(())
        };
        emit(b"-- Tables restored by backstop restore --table from backup ", out)?;
        emit(format!("{} of {}\n\n", backup.backup_id, backup.target).as_bytes(), out)?;
        for step in &plan.steps {
            match step {
                Step::Sql(statement) => emit(format!("{statement}\n\n").as_bytes(), out)?,
                Step::Rows { segment, table, statement, restored_statement } => {
                    let expected = manifest
                        .fingerprint
                        .table(&table.0, &table.1)
                        .ok_or_else(|| damaged(format!("the backup's fingerprint has no table {}", display(table))))?;
                    let mut fold = RowDigest::default();
                    let chunks: Vec<&ChunkRange> = ranges.iter().filter(|r| r.segment == *segment).collect();
                    for (i, chunk) in chunks.iter().enumerate() {
                        let stored =
                            self.read_range(&dump, chunk.stored_offset, chunk.stored_len).await.map_err(damaged)?;
                        read += chunk.stored_len;
                        let sql = decode_all(backup.codec, &stored)
                            .map_err(|e| damaged(format!("a chunk of {} does not decompress: {e}", display(table))))?;
                        let mut rows: &[u8] = &sql;
                        if i == 0 {
                            let head = format!("{statement}\n");
                            rows = rows.strip_prefix(head.as_bytes()).ok_or_else(|| {
                                damaged(format!(
                                    "the rows of {} do not start with their COPY statement",
                                    display(table)
                                ))
                            })?;
                            emit(format!("{restored_statement}\n").as_bytes(), out)?;
                        }
                        let body = if i + 1 == chunks.len() {
                            rows.strip_suffix(b"\\.\n").ok_or_else(|| {
                                damaged(format!("the rows of {} do not end with `\\.`", display(table)))
                            })?
                        } else {
                            rows
                        };
                        fold.feed(body);
                        emit(rows, out)?;
                    }
                    let (count, digest) = fold.finish().map_err(damaged)?;
                    if count != expected.rows || digest != expected.digest {
                        return Err(damaged(format!(
                            "the rows of {} are not the backup's: {count} rows read, {} recorded, digest {}",
                            display(table),
                            expected.rows,
                            if digest == expected.digest { "equal" } else { "different" }
                        )));
                    }
                    emit(b"\n", out)?;
                }
            }
        }
        out.flush().map_err(io)?;
        Ok((written, read))
    }

    /// The dump's object and layout, when the object is the backup's version, encrypted as configured, and
    /// laid out for ranged reads.
    async fn ranged_object<'m>(
        &self,
        backup: &BackupRecord,
        manifest: &'m Manifest,
    ) -> Result<(ObjectRef, &'m DumpLayout), RestoreRefused> {
        let dump = backup.dump.clone().ok_or_else(|| RestoreRefused::NoBackup("the backup names no dump".into()))?;
        let layout = parallel_layout(manifest, &dump).map_err(|why| {
            RestoreRefused::Tables(format!(
                "backup {} cannot be read table by table ({why}); restore it whole into a scratch database and copy \
                 the table from there, or write its SQL with --to-file",
                backup.backup_id
            ))
        })?;
        let head = current_head(self.deps.store.as_ref(), &dump).await.map_err(RestoreRefused::ObjectDamaged)?;
        if head.size != dump.size || manifest.dump.sha256 != dump.sha256 {
            return Err(RestoreRefused::ObjectDamaged(format!(
                "{} holds {} bytes, the backup recorded {} (or the manifest's SHA-256 is not the record's)",
                dump.key, head.size, dump.size
            )));
        }
        if let crate::domain::verification::CheckOutcome::Mismatch { expected, found } =
            encryption_check(&head, self.config.kms_key_id.as_deref())
        {
            return Err(RestoreRefused::ObjectDamaged(format!("the dump is encrypted with {found}, not {expected}")));
        }
        Ok((dump, layout))
    }

    async fn read_range(&self, dump: &ObjectRef, start: u64, len: u64) -> Result<Vec<u8>, String> {
        self.deps.store.read_range(&dump.key, dump.version_id.as_deref(), start, len).await
    }

    /// Reads every SQL chunk (neighbours in one GET) and names the tables' rows between them.
    async fn outline(&self, dump: &ObjectRef, codec: Codec, layout: &DumpLayout) -> Result<DumpOutline, String> {
        let sql_chunks: Vec<ChunkRange> = layout
            .chunk_ranges()
            .into_iter()
            .filter(|r| matches!(layout.segments[r.segment].kind, SegmentKind::Sql))
            .collect();
        let mut reads: Vec<(u64, u64, Vec<ChunkRange>)> = Vec::new();
        for chunk in sql_chunks {
            let end = chunk.stored_offset + chunk.stored_len;
            match reads.last_mut() {
                Some((start, last_end, chunks))
                    if chunk.stored_offset - *last_end <= MERGE_GAP && end - *start <= MERGE_MAX =>
                {
                    *last_end = end;
                    chunks.push(chunk);
                }
                _ => reads.push((chunk.stored_offset, end, vec![chunk])),
            }
        }
        let mut sql: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut stored_bytes_read = 0;
        for (start, end, chunks) in reads {
            let bytes = self.read_range(dump, start, end - start).await?;
            stored_bytes_read += end - start;
            for chunk in chunks {
                let at = (chunk.stored_offset - start) as usize;
                let text = decode_all(codec, &bytes[at..at + chunk.stored_len as usize])
                    .map_err(|e| format!("a chunk of the dump's SQL does not decompress: {e}"))?;
                sql.entry(chunk.segment).or_default().extend_from_slice(&text);
            }
        }
        let mut parts = Vec::new();
        for (i, segment) in layout.segments.iter().enumerate() {
            parts.push(match &segment.kind {
                SegmentKind::Sql => DumpPart::Sql(
                    statements(sql.get(&i).map_or(&[][..], Vec::as_slice))
                        .map_err(|e| format!("segment {i} of the dump: {e}"))?,
                ),
                SegmentKind::Copy { schema, name, statement, .. } => {
                    DumpPart::Rows { segment: i, table: (schema.clone(), name.clone()), statement: statement.clone() }
                }
            });
        }
        Ok(DumpOutline { parts, stored_bytes_read })
    }
}

/// What the restorer runs for a plan: its steps with the stored ranges of each table's rows, and what each
/// table and sequence must read back as.
fn table_load<'d>(
    dump: &'d ObjectRef,
    codec: Codec,
    layout: &DumpLayout,
    plan: &TablePlan,
    manifest: &Manifest,
    create_schemas: Vec<String>,
) -> Result<TableLoad<'d>, String> {
    let ranges = layout.chunk_ranges();
    let mut steps = Vec::new();
    let mut tables = Vec::new();
    for step in &plan.steps {
        steps.push(match step {
            Step::Sql(s) => LoadStep::Sql(s.clone()),
            Step::Rows { segment, table, statement, restored_statement } => {
                let expected = manifest
                    .fingerprint
                    .table(&table.0, &table.1)
                    .ok_or_else(|| format!("the backup's fingerprint has no table {}", display(table)))?;
                let restored = plan
                    .tables
                    .iter()
                    .find(|t| &t.source == table)
                    .map_or_else(|| table.clone(), |t| t.restored.clone());
                tables.push(TableToCheck {
                    restored,
                    copy_statement: restored_statement.clone(),
                    expected_rows: expected.rows,
                    expected_digest: expected.digest.clone(),
                });
                LoadStep::Rows {
                    ranges: ranges
                        .iter()
                        .filter(|r| r.segment == *segment)
                        .map(|r| (r.stored_offset, r.stored_len))
                        .collect(),
                    statement: statement.clone(),
                    restored_statement: restored_statement.clone(),
                }
            }
        });
    }
    let sequences = plan
        .sequences
        .iter()
        .filter_map(|(name, restored)| {
            let value = manifest.fingerprint.sequences.iter().find(|s| &s.name == name)?;
            Some(SequenceValue { name: restored.clone(), value: value.value, is_called: value.is_called })
        })
        .collect();
    Ok(TableLoad {
        key: &dump.key,
        version_id: dump.version_id.as_deref(),
        codec,
        create_schemas,
        steps,
        tables,
        sequences,
        session: manifest.session.clone().unwrap_or_default(),
    })
}
