//! The restorer: `psql` loads the roles (and, for backups made before framed dumps, the whole dump) into a
//! scratch server, and `pg_dump` reads the restored database back through the same fingerprint parser the
//! backup used. Framed dumps load and read back over several connections (`framed_restore`, `read_back`).
//!
//! Connections go through [`Connection`], as for the dumper: libpq variables and a 0600 passfile, nothing
//! secret on a command line.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use super::framed_restore::{quoted as ident, FramedRestorer};
use super::postgres::{read_tail, tail, Connection, PgDumper};
use crate::domain::dump_parser::{DumpParser, FINGERPRINT_V2};
use crate::domain::fingerprint::Fingerprint;
use crate::domain::fingerprint::{DumpSummary, FingerprintBuilder};
use crate::domain::manifest::{alter_database_set, for_a_copy, is_utf8, DatabaseLocale, DumpSession};
use crate::domain::redact::redact;
use crate::domain::sql::quote_literal as literal;
use crate::domain::verification::RowCheck;
use crate::domain::Manifest;
use crate::ports::{
    FramedDump, FramedRestoreReport, ObjectStore, PhysicalCheckReport, ReadBackUnderway, RestoreError, Restorer,
    ScratchEndpoint, TableLoad, TableLoadReport,
};

const READ_BUFFER: usize = 1024 * 1024;

/// Run before a whole dump: no event trigger fires during the restore. pg_dump makes event triggers before it
/// refreshes materialized views, so in its order each refresh fires them: a trigger that logs DDL writes a row the
/// source never had, and one whose function names a table without its schema fails the refresh under pg_dump's
/// empty search path (the framed restore moves them last instead: `sql::statement::event_triggers_last`). Ordinary
/// triggers and foreign keys are made after the data, so the replica role changes nothing else a dump does. Only a
/// superuser (`rds_superuser` on RDS) may set it; a role that may not restores as before.
const NO_EVENT_TRIGGERS: &[u8] = b"DO $backstop$ BEGIN SET session_replication_role = replica; \
EXCEPTION WHEN insufficient_privilege THEN NULL; END $backstop$;\n";

pub struct PsqlRestorer {
    programs: PgDumper,
    /// Connections a framed restore and its read-back use side by side.
    jobs: usize,
}

impl PsqlRestorer {
    pub fn new(bin_dir: Option<PathBuf>, jobs: usize) -> Self {
        PsqlRestorer { programs: PgDumper::new(bin_dir), jobs: jobs.max(1) }
    }

    fn command(
        &self,
        program: &str,
        server: &ScratchEndpoint,
        database: &str,
    ) -> Result<(Command, tempfile::NamedTempFile), RestoreError> {
        let connection = Connection {
            host: &server.host,
            port: server.port,
            user: &server.user,
            database,
            sslmode: &server.sslmode,
            sslrootcert: None,
        };
        Ok(connection.command(&self.programs.program(program), &server.password)?)
    }

    /// Runs psql with `args` and `stdin`, returning (success, stdout, stderr).
    async fn psql(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        args: &[&str],
        stdin: Vec<u8>,
    ) -> Result<(bool, String, String), RestoreError> {
        let (mut cmd, _passfile) = self.command("psql", server, database)?;
        cmd.args(["-X", "-w", "-q"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|cause| RestoreError::Spawn { program: "psql".into(), cause })?;
        let mut input = child.stdin.take().expect("stdin is piped");
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let result = input.write_all(&stdin).await;
            drop(input);
            result
        });
        let output = child.wait_with_output().await?;
        writer.await.map_err(|e| std::io::Error::other(e.to_string()))??;
        let stderr = redact(&String::from_utf8_lossy(&output.stderr), &[&server.password]);
        Ok((output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr))
    }

    /// Runs `statements` in order, each as its own `-c` (its own transaction), stopping at the first error.
    async fn psql_ok(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        statements: &[&str],
    ) -> Result<String, RestoreError> {
        let mut args = vec!["-A", "-t", "-v", "ON_ERROR_STOP=1"];
        for statement in statements {
            args.extend(["-c", statement]);
        }
        let (ok, stdout, stderr) = self.psql(server, database, &args, Vec::new()).await?;
        if ok {
            Ok(stdout)
        } else {
            Err(program_failed("psql", "error".into(), stderr.trim()))
        }
    }
}

impl PsqlRestorer {
    /// `pg_dump` of `database` (with `extra` arguments) through the fingerprint parser of `scheme`.
    async fn dump_summary(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        scheme: &str,
        session: Option<&DumpSession>,
        extra: &[&str],
    ) -> Result<DumpSummary, RestoreError> {
        let v2 = scheme == FINGERPRINT_V2;
        let (mut cmd, _passfile) = self.command("pg_dump", server, database)?;
        if let Some(session) = session {
            // pg_dump fixes DateStyle, IntervalStyle and float digits itself, but prints timestamptz values, bytea
            // constants and string literals by its session's time zone, bytea output and standard strings, which
            // the source's pg_dump took from the source database's settings: a partition bound, a default or a
            // comment would otherwise read differently.
            cmd.env("PGOPTIONS", session_options(session));
            // And in the source dump's encoding, whatever `client_encoding` the copy's database settings name, when
            // the source's pg_dump was told it too.
            if session.encoding_pinned {
                cmd.arg(format!("--encoding={}", session.client_encoding));
            }
            // From a hot standby pg_dump writes no rows of unlogged tables and no values of unlogged sequences;
            // the copy holds them (empty), so its dump leaves them out the same way.
            if session.source_in_recovery {
                cmd.arg("--no-unlogged-table-data");
            }
        }
        cmd.args(["--format=plain", "--no-password"]).args(extra).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|cause| RestoreError::Spawn { program: "pg_dump".into(), cause })?;
        let stderr = tokio::spawn(read_tail(child.stderr.take().expect("stderr is piped")));
        let stdout = child.stdout.take().expect("stdout is piped").into_owned_fd()?;
        let summary = tokio::task::spawn_blocking(move || -> Result<DumpSummary, String> {
            let mut stdout = std::fs::File::from(stdout);
            // The scheme the backup's fingerprint was made with: v2 for new backups, v1 for older ones.
            let (mut v1_builder, mut v2_parser) = (FingerprintBuilder::new(), DumpParser::new());
            let mut buffer = vec![0u8; READ_BUFFER];
            loop {
                match stdout.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) if v2 => v2_parser.feed(&buffer[..n]).map_err(|e| e.to_string())?,
                    Ok(n) => v1_builder.feed(&buffer[..n]).map_err(|e| e.to_string())?,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if v2 {
                v2_parser.finish().map_err(|e| e.to_string())
            } else {
                v1_builder.finish().map_err(|e| e.to_string())
            }
        })
        .await
        .map_err(|e| std::io::Error::other(format!("the fingerprint thread panicked: {e}")))?;
        let status = child.wait().await?;
        let stderr_tail = redact(&tail(&stderr.await.unwrap_or_default()), &[&server.password]);
        match (status.success(), summary) {
            (true, Ok(summary)) => Ok(summary),
            (true, Err(parse)) => {
                Err(RestoreError::Failed { program: "pg_dump".into(), status: status.to_string(), stderr_tail: parse })
            }
            (false, _) => Err(program_failed("pg_dump", status.to_string(), &stderr_tail)),
        }
    }
}

/// `CREATE DATABASE` for a dump: in its encoding and, when the manifest records it, with the source database's
/// locale (provider, collation, character classes); then the same without the locale, for a server that lacks
/// it. Without a recorded locale, a UTF-8 dump's database takes the server's defaults, and any other encoding's
/// the C locale, which every encoding accepts.
fn create_database(database: &str, session: Option<&DumpSession>) -> (Option<String>, String) {
    let encoding = session.map_or("UTF8", |s| s.client_encoding.as_str());
    let fallback = if is_utf8(encoding) {
        format!("CREATE DATABASE {}", ident(database))
    } else {
        format!(
            "CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            ident(database),
            literal(encoding)
        )
    };
    let with_locale = session.and_then(|s| s.database_locale.as_ref()).map(|locale| {
        let provider = match (locale.provider.as_str(), &locale.locale) {
            ("icu", Some(icu)) => format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(icu)),
            ("builtin", Some(builtin)) => format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", literal(builtin)),
            _ => String::new(),
        };
        format!(
            "CREATE DATABASE {} ENCODING {} LC_COLLATE {} LC_CTYPE {}{provider} TEMPLATE template0",
            ident(database),
            literal(encoding),
            literal(&locale.collate),
            literal(&locale.ctype)
        )
    });
    (with_locale, fallback)
}

/// How a database locale reads in a note: `icu de-DE` or `libc en_US.UTF-8`.
fn describe_locale(locale: &DatabaseLocale) -> String {
    format!("{} {}", locale.provider, locale.locale.as_deref().unwrap_or(&locale.collate))
}

/// The source's printing settings as libpq `options` (`PGOPTIONS`), each value's spaces and backslashes escaped.
fn session_options(session: &DumpSession) -> String {
    let escape = |value: &str| value.replace('\\', "\\\\").replace(' ', "\\ ");
    let mut options = format!(
        "-c TimeZone={} -c bytea_output={} -c standard_conforming_strings={}",
        escape(&session.time_zone),
        escape(&session.bytea_output),
        escape(&session.standard_conforming_strings),
    );
    // Only when the source's was on: a manifest from before it was recorded says off, and the copy then keeps
    // what its database settings (the source's, applied) say.
    if session.quote_all_identifiers {
        options.push_str(" -c quote_all_identifiers=on");
    }
    options
}

/// A client program's failure, with its stderr; marked as the server's failure when a line of it says so
/// (`domain::scratch_fault::client_fault`).
fn program_failed(program: &str, status: String, stderr: &str) -> RestoreError {
    use crate::domain::scratch_fault::{client_fault, mark_if};
    RestoreError::Failed {
        program: program.into(),
        status,
        stderr_tail: mark_if(stderr.to_string(), client_fault(stderr)),
    }
}

#[async_trait]
impl Restorer for PsqlRestorer {
    async fn client_major(&self) -> Result<u32, RestoreError> {
        self.programs.client_major_version().await.map(|(major, _)| major).map_err(|e| RestoreError::Failed {
            program: "pg_dump --version".into(),
            status: "unusable".into(),
            stderr_tail: e.to_string(),
        })
    }

    async fn restore_roles(&self, server: &ScratchEndpoint, sql: &[u8]) -> Result<Vec<String>, RestoreError> {
        // No ON_ERROR_STOP: roles the server already has ("already exists") or forbids are reported, not fatal.
        let (ok, _, stderr) = self.psql(server, &server.maintenance_db, &[], sql.to_vec()).await?;
        if !ok {
            // Without ON_ERROR_STOP psql fails only when it cannot run at all (connection, file).
            return Err(program_failed("psql", "error".into(), stderr.trim()));
        }
        Ok(stderr.lines().filter(|l| l.contains("ERROR")).map(str::to_string).collect())
    }

    async fn apply_database_settings(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        settings: &[String],
    ) -> Result<Vec<String>, RestoreError> {
        if settings.is_empty() {
            return Ok(Vec::new());
        }
        let client = super::pg_wire::connect(server, &server.maintenance_db).await?;
        let mut refused = Vec::new();
        for setting in settings {
            if !for_a_copy(setting) {
                refused.push(format!("{setting} (left out: it governs connections, not how the data reads)"));
                continue;
            }
            let Some(statement) = alter_database_set(&ident(database), setting) else {
                refused.push(format!("{setting} (not a setting's name)"));
                continue;
            };
            if let Err(e) = client.batch_execute(&statement).await {
                refused.push(format!("{setting} ({})", super::pg_wire::describe(&e)));
            }
        }
        Ok(refused)
    }

    async fn apply_database_properties(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        properties: &crate::domain::database_properties::DatabaseProperties,
    ) -> Result<Vec<String>, RestoreError> {
        let client = super::pg_wire::connect(server, &server.maintenance_db).await?;
        let mut refused = Vec::new();
        for (what, statement) in properties.statements(&ident(database)) {
            if let Err(e) = client.batch_execute(&statement).await {
                refused.push(format!("{what} ({})", super::pg_wire::describe(&e)));
            }
        }
        Ok(refused)
    }

    async fn create_tablespaces(
        &self,
        server: &ScratchEndpoint,
        names: &[String],
    ) -> Result<Vec<String>, RestoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let client = super::pg_wire::connect(server, &server.maintenance_db).await?;
        let failed = |what: String| RestoreError::Failed {
            program: "tablespaces".into(),
            status: "error".into(),
            stderr_tail: what,
        };
        let existing: Vec<String> = client
            .query("SELECT spcname::text FROM pg_catalog.pg_tablespace", &[])
            .await
            .map_err(|e| failed(super::pg_wire::describe(&e)))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let missing: Vec<String> = names.iter().filter(|n| !existing.contains(n)).cloned().collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        // An in-place tablespace lives under the data directory's pg_tblspc: no directory to make beforehand, and
        // gone with the server. A developer setting, for a superuser; CREATE TABLESPACE runs outside a transaction.
        client.batch_execute("SET allow_in_place_tablespaces = on").await.map_err(|e| {
            failed(format!(
                "the dump puts objects in tablespace(s) {} that the server lacks, and it cannot make them in place: {}",
                missing.join(", "),
                super::pg_wire::describe(&e)
            ))
        })?;
        for name in &missing {
            client.batch_execute(&format!("CREATE TABLESPACE {} LOCATION ''", ident(name))).await.map_err(|e| {
                failed(format!("cannot make tablespace {name}, which the dump uses: {}", super::pg_wire::describe(&e)))
            })?;
        }
        Ok(missing)
    }

    async fn recreate_database(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        session: Option<&DumpSession>,
    ) -> Result<Option<String>, RestoreError> {
        // Both statements in one psql (each `-c` its own transaction, as DROP DATABASE needs): one process and
        // one login fewer than a psql apiece.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database));
        let (with_locale, fallback) = create_database(database, session);
        let Some(with_locale) = with_locale else {
            self.psql_ok(server, &server.maintenance_db, &[&drop, &fallback]).await?;
            return Ok(None);
        };
        match self.psql_ok(server, &server.maintenance_db, &[&drop, &with_locale]).await {
            Ok(_) => Ok(None),
            Err(refused) => {
                // Dropped again: a failed drop, not the locale, may be what stopped the first psql.
                self.psql_ok(server, &server.maintenance_db, &[&drop, &fallback]).await?;
                let locale = session.and_then(|s| s.database_locale.as_ref()).map(describe_locale).unwrap_or_default();
                Ok(Some(format!(
                    "the source database's locale ({locale}) could not be had on this server ({}), so the database \
                     took the server's default: text may sort differently, and a check constraint or partition \
                     bound over text may refuse rows the source holds",
                    refused.to_string().lines().next().unwrap_or_default()
                )))
            }
        }
    }

    async fn restore_sql(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        sql: Box<dyn Read + Send>,
    ) -> Result<(), RestoreError> {
        let (mut cmd, _passfile) = self.command("psql", server, database)?;
        cmd.args(["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-o", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|cause| RestoreError::Spawn { program: "psql".into(), cause })?;
        let stderr = tokio::spawn(read_tail(child.stderr.take().expect("stderr is piped")));
        let stdin = child.stdin.take().expect("stdin is piped").into_owned_fd()?;
        let mut sql = std::io::Cursor::new(NO_EVENT_TRIGGERS).chain(sql);
        // Copy on a blocking thread: decompression and hashing happen inside `sql`'s reads.
        let copied = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut stdin = std::fs::File::from(stdin);
            let mut buffer = vec![0u8; READ_BUFFER];
            let mut total = 0;
            loop {
                let n = match sql.read(&mut buffer) {
                    Ok(0) => return Ok(total),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                stdin.write_all(&buffer[..n])?;
                total += n as u64;
            }
        })
        .await
        .map_err(|e| std::io::Error::other(format!("the restore copy thread panicked: {e}")))?;
        let status = child.wait().await?;
        let stderr_tail = redact(&tail(&stderr.await.unwrap_or_default()), &[&server.password]);
        if !status.success() {
            return Err(program_failed("psql", status.to_string(), &stderr_tail));
        }
        // psql stopped reading (it failed) or the source failed: either way the restore is not whole.
        copied?;
        Ok(())
    }

    async fn fingerprint(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        scheme: &str,
        session: Option<&DumpSession>,
    ) -> Result<DumpSummary, RestoreError> {
        self.dump_summary(server, database, scheme, session, &[]).await
    }

    async fn restore_framed(
        &self,
        store: Arc<dyn ObjectStore>,
        server: &ScratchEndpoint,
        database: &str,
        dump: FramedDump<'_>,
    ) -> Result<FramedRestoreReport, RestoreError> {
        FramedRestorer::new(self.jobs).restore(store, server, database, dump).await
    }

    async fn restore_tables(
        &self,
        store: Arc<dyn ObjectStore>,
        server: &ScratchEndpoint,
        database: &str,
        load: TableLoad<'_>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<TableLoadReport, RestoreError> {
        super::table_restore::restore_tables(store, server, database, load, progress).await
    }

    async fn read_back(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        manifest: &Manifest,
        rows: RowCheck,
        early: Option<Arc<dyn ReadBackUnderway>>,
    ) -> Result<Fingerprint, RestoreError> {
        let (Some(layout), Some(session)) = (&manifest.layout, &manifest.session) else {
            return Err(RestoreError::Failed {
                program: "read back".into(),
                status: "error".into(),
                stderr_tail: "the manifest has no layout to read back by".into(),
            });
        };
        // Only a read-back this restorer started (`framed_restore`) can be taken over.
        let early = early.as_deref().and_then(|e| e.as_any().downcast_ref::<super::read_back::ReadBack>());
        let tables = super::read_back::read_back(
            server,
            database,
            layout,
            &manifest.fingerprint,
            session,
            rows,
            self.jobs,
            early,
        );
        let schema = self.dump_summary(server, database, FINGERPRINT_V2, Some(session), &["--schema-only"]);
        let (tables, schema) = tokio::join!(tables, schema);
        let mut restored = tables?;
        restored.schema_digest = schema?.fingerprint.schema_digest;
        Ok(restored)
    }

    async fn server_version(&self, server: &ScratchEndpoint) -> Result<String, RestoreError> {
        let client = super::pg_wire::connect(server, &server.maintenance_db).await?;
        let row = client.query_one("SHOW server_version", &[]).await.map_err(|e| RestoreError::Failed {
            program: "connect".into(),
            status: "error".into(),
            stderr_tail: super::pg_wire::describe(&e),
        })?;
        Ok(row.get(0))
    }

    async fn physical_check(
        &self,
        server: &ScratchEndpoint,
        database: &str,
    ) -> Result<PhysicalCheckReport, RestoreError> {
        super::physical_check::physical_check(server, database, self.jobs).await
    }

    async fn check(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        sql: &str,
        timeout: Duration,
    ) -> Result<bool, RestoreError> {
        // Read-only and time-boxed: a user check must not change what it checks, nor hang the drill.
        let script = format!(
            "SET default_transaction_read_only = on;\nSET statement_timeout = {};\n{}\n",
            timeout.as_millis(),
            sql.trim().trim_end_matches(';')
        );
        let (ok, stdout, stderr) =
            self.psql(server, database, &["-A", "-t", "-v", "ON_ERROR_STOP=1"], script.into_bytes()).await?;
        if !ok {
            return Err(program_failed("psql", "error".into(), stderr.trim()));
        }
        Ok(stdout.trim() == "t")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_restored_into_takes_the_dumps_encoding_and_the_sources_locale() {
        assert_eq!(create_database("backstop_restored", None), (None, "CREATE DATABASE \"backstop_restored\"".into()));
        let mut session = DumpSession { client_encoding: "SQL_ASCII".into(), ..DumpSession::default() };
        assert_eq!(
            create_database("backstop_restored", Some(&session)),
            (
                None,
                "CREATE DATABASE \"backstop_restored\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
                    .into()
            )
        );
        session.client_encoding = "UTF8".into();
        session.database_locale = Some(DatabaseLocale::from_catalog("i", "C.UTF-8", "C.UTF-8", "de-DE"));
        let (with_locale, fallback) = create_database("backstop_restored", Some(&session));
        assert_eq!(
            with_locale.as_deref(),
            Some(
                "CREATE DATABASE \"backstop_restored\" ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' \
                 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' TEMPLATE template0"
            )
        );
        assert_eq!(fallback, "CREATE DATABASE \"backstop_restored\"");
        session.database_locale = Some(DatabaseLocale::from_catalog("c", "en_US.UTF-8", "en_US.UTF-8", ""));
        assert_eq!(
            create_database("backstop_restored", Some(&session)).0.as_deref(),
            Some("CREATE DATABASE \"backstop_restored\" ENCODING 'UTF8' LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' TEMPLATE template0")
        );
    }

    #[test]
    fn the_comparison_dump_takes_the_sources_printing_settings_with_spaces_escaped() {
        let session = DumpSession {
            time_zone: "<+0545> -5:45".into(),
            bytea_output: "escape".into(),
            client_encoding: "LATIN1".into(),
            standard_conforming_strings: "off".into(),
            quote_all_identifiers: true,
            ..DumpSession::default()
        };
        assert_eq!(
            session_options(&session),
            "-c TimeZone=<+0545>\\ -5:45 -c bytea_output=escape -c standard_conforming_strings=off \
             -c quote_all_identifiers=on"
        );
    }
}
