//! `backstop restore`: the command around `jobs::restore`: the destination and its password, the question
//! `--clean` asks on a terminal, the phases on stderr (a spinner on a terminal), the outcome as text or JSON,
//! and `--to-file`.
//!
//! Exit codes as everywhere: 0 restored and every check passed, 1 the restore or a check failed (or the store,
//! the catalog or the destination could not be reached), 2 refused (nothing was written).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backstop::app::{self, AwsClients};
use backstop::config::{Config, PasswordSource};
use backstop::domain::BackupId;
use backstop::jobs::restore::table_plan::{parse_new_name, TablePattern};
use backstop::jobs::restore::{Pick, RestoreRefused, RestoreRequest, TableChoice};
use backstop::metrics::MetricsSink;
use backstop::ports::ScratchEndpoint;

use crate::{connection, render, RestoreArgs};

pub async fn restore(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    args: RestoreArgs,
) -> ExitCode {
    let pick = match (&args.backup, &args.before) {
        (Some(id), _) => Pick::Named(BackupId(id.clone())),
        (None, Some(time)) => match chrono::DateTime::parse_from_rfc3339(time) {
            Ok(time) => Pick::Before(time.with_timezone(&chrono::Utc)),
            Err(e) => {
                return refused(&format!("--before {time:?} is not an RFC 3339 time ({e}); e.g. 2026-12-03T09:00:00Z"))
            }
        },
        (None, None) => Pick::NewestVerified,
    };
    let tables = match table_choice(&args) {
        Ok(t) => t,
        Err(e) => return refused(&e),
    };
    let job = app::restore_job(config, clients, metrics);
    let target = match job.target(&args.target) {
        Ok(t) => t.clone(),
        Err(e) => return refused(&e.to_string()),
    };
    // No purge deletes the backup while it is read: the target's purge is held off until the restore ends.
    let hold = job.hold_off_purge(&target.name).await;
    if let Some(note) = &hold.note {
        eprintln!("backstop: note: {note}");
    }
    let code = restore_held(&job, &target, args, pick, tables).await;
    hold.release(&job).await;
    code
}

/// The restore itself, once the purge is held off.
async fn restore_held(
    job: &backstop::jobs::restore::RestoreJob,
    target: &backstop::config::TargetConfig,
    args: RestoreArgs,
    pick: Pick,
    tables: Option<TableChoice>,
) -> ExitCode {
    if let Some(path) = &args.to_file {
        return write_sql(job, &target.name, &pick, tables.as_ref(), path).await;
    }

    let into = match connection::parse(args.into.as_deref().unwrap_or_default()) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let source = match (&args.password_file, &args.password_secret) {
        (Some(file), _) => PasswordSource::File(file.clone()),
        (None, Some(secret)) => PasswordSource::SecretId(secret.clone()),
        (None, None) => PasswordSource::Env(args.password_env.clone()),
    };
    let password = match job.passwords().resolve(&source).await {
        Ok(p) => p,
        Err(e) => {
            return refused(&format!(
                "no password for {}@{}: {e} (give it with --password-env, --password-file or --password-secret)",
                into.user, into.host
            ))
        }
    };
    // Without a database named, the restore takes the backup's own database's name (on another server).
    let database = match args.database.clone().or(into.database.clone()) {
        Some(d) => d,
        None => target.database.clone(),
    };
    if args.clean && !confirm_clean(&database, &into.host) {
        return refused("not confirmed; nothing was changed");
    }
    let server = ScratchEndpoint {
        host: into.host.clone(),
        port: into.port,
        user: into.user.clone(),
        password,
        // Questions about the destination database are asked from another one, which always exists.
        maintenance_db: if database == "postgres" { "template1".into() } else { "postgres".into() },
        sslmode: into.sslmode.clone(),
    };
    let request = RestoreRequest {
        target: target.name.clone(),
        pick,
        server,
        database,
        create_roles: !args.no_roles,
        clean: args.clean,
        allow_source: args.allow_source,
    };
    // On a terminal a spinner shows the phase and the time it has taken so far (a bar of the bytes read while
    // tables load); elsewhere, a line per phase.
    let started = std::time::Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("valid template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let progress = |phase: &str| match &spinner {
        Some(bar) => bar.set_message(phase.to_string()),
        None => eprintln!("[{:>6.1} s] {phase}", started.elapsed().as_secs_f64()),
    };
    if let Some(choice) = tables {
        let bytes = |done: u64, total: u64| {
            if let Some(bar) = &spinner {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} [{elapsed}] {msg} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec})",
                        )
                        .expect("valid template"),
                    );
                }
                bar.set_position(done);
            }
        };
        let result = job.run_tables(&request, &choice, &progress, &bytes).await;
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        return match result {
            Ok(outcome) => print_outcome(
                args.json.then(|| serde_json::to_string_pretty(&outcome).expect("the outcome serializes")),
                render::table_restore_outcome(&outcome),
                outcome.passed,
            ),
            Err(e) => failed(e),
        };
    }
    let result = job.run(&request, &progress).await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    match result {
        Ok(outcome) => print_outcome(
            args.json.then(|| serde_json::to_string_pretty(&outcome).expect("the outcome serializes")),
            render::restore_outcome(&outcome),
            outcome.passed,
        ),
        Err(e) => failed(e),
    }
}

/// The outcome as JSON (when asked for) or as text; exit 0 only when it passed.
fn print_outcome(json: Option<String>, text: String, passed: bool) -> ExitCode {
    match json {
        Some(json) => println!("{json}"),
        None => print!("{text}"),
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Exit 1 when the store, the catalog, the object or the destination failed; 2 when the restore was refused.
fn failed(e: RestoreRefused) -> ExitCode {
    let code = match e {
        RestoreRefused::ObjectDamaged(_)
        | RestoreRefused::Unreachable { .. }
        | RestoreRefused::Catalog { .. }
        | RestoreRefused::TableRestoreFailed(_)
        | RestoreRefused::WriteFailed(_) => 1,
        _ => 2,
    };
    eprintln!("backstop: {e}");
    ExitCode::from(code)
}

/// `--table` patterns and `--as`, or why they cannot be used; `None` for a whole restore.
fn table_choice(args: &RestoreArgs) -> Result<Option<TableChoice>, String> {
    if args.tables.is_empty() {
        return Ok(None);
    }
    let patterns = args
        .tables
        .iter()
        .map(|t| TablePattern::parse(t).map_err(|e| format!("--table {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let rename = args.rename.as_deref().map(parse_new_name).transpose()?;
    Ok(Some(TableChoice { patterns, rename }))
}

fn refused(why: &str) -> ExitCode {
    eprintln!("backstop: {why}");
    ExitCode::from(2)
}

/// On a terminal, `--clean` asks for the database's name before anything is dropped; a script said it already.
fn confirm_clean(database: &str, host: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!(
        "--clean drops {database} on {host} if it holds anything (ending its sessions), and restores into it \
         anew. Type its name to go on: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == database
}

/// `--to-file`: the plain SQL, proven intact first, written beside the path and renamed into place when whole
/// (a file that exists is not overwritten; `-` is standard output).
async fn write_sql(
    job: &backstop::jobs::restore::RestoreJob,
    target: &str,
    pick: &Pick,
    tables: Option<&TableChoice>,
    path: &Path,
) -> ExitCode {
    let backup = match job.choose(target, pick).await {
        Ok(b) => b,
        Err(e) => return refused(&e.to_string()),
    };
    eprintln!("writing the SQL of backup {} of {target}", backup.backup_id);
    if let Some(choice) = tables {
        return write_tables_sql(job, &backup, choice, path).await;
    }
    if path == Path::new("-") {
        return match job.write_sql(&backup, Box::new(std::io::stdout())).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("backstop: {e}");
                ExitCode::from(1)
            }
        };
    }
    let (partial, file) = match PartialFile::create(path) {
        Ok(created) => created,
        Err(why) => return refused(&why),
    };
    match job.write_sql(&backup, Box::new(std::io::BufWriter::new(file))).await {
        Ok(bytes) => match partial.keep() {
            Ok(()) => {
                eprintln!("wrote {} of SQL to {}", backstop::domain::text::human_bytes(bytes), path.display());
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("backstop: {why}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            partial.discard();
            eprintln!("backstop: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--to-file` with `--table`: the chosen tables' SQL from ranged reads, each table's rows checked against the
/// backup's fingerprint on the way; written beside the path and moved into place when whole and checked.
async fn write_tables_sql(
    job: &backstop::jobs::restore::RestoreJob,
    backup: &backstop::domain::BackupRecord,
    choice: &TableChoice,
    path: &Path,
) -> ExitCode {
    let report = |(written, read): (u64, u64), to: &str| {
        eprintln!(
            "wrote {} of SQL to {to}, reading {} of the {} object",
            backstop::domain::text::human_bytes(written),
            backstop::domain::text::human_bytes(read),
            backstop::domain::text::human_bytes(backup.dump.as_ref().map_or(0, |d| d.size)),
        )
    };
    if path == Path::new("-") {
        let mut out = std::io::stdout();
        return match job.write_tables_sql(backup, choice, &mut out).await {
            Ok(counts) => {
                report(counts, "standard output");
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        };
    }
    let (partial, file) = match PartialFile::create(path) {
        Ok(created) => created,
        Err(why) => return refused(&why),
    };
    let mut file = std::io::BufWriter::new(file);
    let result = job.write_tables_sql(backup, choice, &mut file).await;
    drop(file);
    match result {
        Ok(counts) => match partial.keep() {
            Ok(()) => {
                report(counts, &path.display().to_string());
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("backstop: {why}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            partial.discard();
            failed(e)
        }
    }
}

/// `PATH.partial` beside `PATH`: created new and readable by its owner only (the SQL holds the data), never
/// over an existing `PATH`, and moved into place only when whole.
struct PartialFile {
    partial: PathBuf,
    path: PathBuf,
}

impl PartialFile {
    fn create(path: &Path) -> Result<(Self, std::fs::File), String> {
        if path.exists() {
            return Err(format!("{} exists; remove it or choose another path", path.display()));
        }
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        Ok((PartialFile { partial, path: path.to_path_buf() }, file))
    }

    /// Moves the whole file into place (removing it when it cannot be moved).
    fn keep(self) -> Result<(), String> {
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            self.discard();
            format!("cannot move {} into place: {e}", self.partial.display())
        })
    }

    /// Removes what was written: the file is not whole.
    fn discard(&self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}
