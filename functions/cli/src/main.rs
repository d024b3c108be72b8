//! `backstop`: Backstop's jobs from a terminal, a cron job or a container, with the same code as the Lambdas.
//!
//! Exit codes: 0 all went well (skips included), 1 a job ran and something failed, 2 the command or the
//! configuration is wrong.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::adapters::ssm::SsmParameters;
use backstop::app::{self, AwsClients};
use backstop::config::{process_env, Config};
use backstop::domain::drill::DrillPhase;
use backstop::domain::text::human_bytes;
use backstop::domain::{BackupId, BackupStatus, Trigger};
use backstop::jobs::backup::{BackupRequest, FanOutError};
use backstop::jobs::kernel::select_targets;
use backstop::jobs::monitor::{self, MonitorRequest};
use backstop::jobs::purge::PurgeRequest;
use backstop::jobs::report;
use backstop::jobs::status;
use backstop::jobs::verify::{VerifyJobError, VerifyRequest};
use backstop::metrics::{MetricsSink, NoMetrics, StderrEmf};
use backstop::pipeline::stream::Progress;
use clap::{Parser, Subcommand};

mod connection;
mod render;
mod restore;

use restore::restore;

#[derive(Parser)]
#[command(name = "backstop", version, about = "PostgreSQL backups that are proven restorable")]
struct Cli {
    /// Configuration file (TOML); BACKSTOP_* variables override what it says.
    #[arg(long, global = true, env = "BACKSTOP_CONFIG")]
    config: Option<PathBuf>,
    /// Print CloudWatch embedded-metric-format lines (on stderr), for runs in a container.
    #[arg(long, global = true)]
    emf: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Back up every target, or the one named.
    Backup {
        #[arg(long)]
        target: Option<String>,
        /// Check configuration, password and connectivity; dump and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Runs sharing this key make at most one backup per target (for wrappers that retry).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// What started the run, as its records say: `cli`, or `schedule`/`console` when the backup state
        /// machine runs this command as its Fargate task.
        #[arg(long, default_value = "cli", value_parser = ["cli", "schedule", "console"])]
        trigger: String,
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Restore drills: restore backups into scratch servers and check them against their fingerprints.
    Verify {
        #[arg(long)]
        target: Option<String>,
        /// Drill this backup (default: the latest of each target). Needs --target.
        #[arg(long, requires = "target")]
        backup: Option<String>,
        /// What started the run, as its drill records say: `cli`, or `schedule`/`console` when the verify state
        /// machine runs this command as a Fargate task.
        #[arg(long, default_value = "cli", value_parser = ["cli", "schedule", "console"])]
        trigger: String,
        /// Print the drills as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete the backups each target's retention policy no longer keeps (with safety rails).
    Purge {
        #[arg(long)]
        target: Option<String>,
        /// Print what would be deleted and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete even when more than the policy's max_delete_fraction of a target's backups would go.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Monitoring-plugin check of every target: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check {
        #[arg(long)]
        target: Option<String>,
        /// Also alert on changes of state and keep the alert state, as the monitor function does (for cron).
        #[arg(long)]
        alert: bool,
        /// Print the evaluation as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One self-contained HTML page of every target's health, backups, drills and retention (opens offline);
    /// with --json, the restore-drill evidence per target (of one month with --month).
    Report {
        #[arg(long)]
        target: Option<String>,
        /// Where to write the page (default backstop-report.html).
        #[arg(long, conflicts_with = "json")]
        out: Option<std::path::PathBuf>,
        /// Print the drills' evidence and compliance as JSON on stdout instead of writing the page.
        #[arg(long)]
        json: bool,
        /// With --json: only drills that started in this month (YYYY-MM, UTC).
        #[arg(long, requires = "json")]
        month: Option<String>,
        /// Print a link to the deployed page (the monitor rewrites it hourly) that works for an hour, instead.
        #[arg(long, conflicts_with_all = ["json", "target"])]
        url: bool,
    },
    /// Where the backup state machine would run each target's next backup (Lambda or Fargate), and why.
    Runners {
        #[arg(long)]
        target: Option<String>,
        /// Print the decisions as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a server you name: the newest verified one (or --backup, or --before), proven
    /// intact before any row is written, restored in parallel as a drill does, then checked against the backup.
    Restore(RestoreArgs),
    /// Recent backups of each target, or one backup's record and latest drill report.
    Status {
        #[arg(long)]
        target: Option<String>,
        /// Show this backup's record and the report of its latest restore drill.
        #[arg(long)]
        backup: Option<String>,
        /// Backups to show per target.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The target whose backup to restore (a server target's database as SERVER.DATABASE).
    #[arg(long)]
    target: String,
    /// This backup (default: the newest verified one).
    #[arg(long, conflicts_with = "before")]
    backup: Option<String>,
    /// The newest backup that started before this time (RFC 3339, e.g. 2026-12-03T09:00:00Z).
    #[arg(long)]
    before: Option<String>,
    /// Where to restore: postgresql://USER@HOST[:PORT][/DATABASE][?sslmode=MODE], without a password.
    #[arg(long, required_unless_present = "to_file", value_name = "CONNECTION")]
    into: Option<String>,
    /// The database to restore into (default: the one --into names, else the backup's own database's name).
    #[arg(long)]
    database: Option<String>,
    /// The environment variable holding the destination's password.
    #[arg(long, value_name = "VARIABLE", default_value = "PGPASSWORD")]
    password_env: String,
    /// A file holding the destination's password (readable by its owner only).
    #[arg(long, conflicts_with = "password_secret")]
    password_file: Option<PathBuf>,
    /// A Secrets Manager secret whose JSON has a `password` key.
    #[arg(long)]
    password_secret: Option<String>,
    /// Do not run the backup's roles script: every role it names must exist already.
    #[arg(long)]
    no_roles: bool,
    /// Drop and recreate the database when it holds something (asks first on a terminal).
    #[arg(long)]
    clean: bool,
    /// Allow restoring into the very database the backup was taken from.
    #[arg(long)]
    allow_source: bool,
    /// Restore only the tables this names (SCHEMA.TABLE; * and ? match; repeatable), read from their own bytes
    /// of the stored object, with what they own; in one transaction, checked before it commits.
    #[arg(long = "table", value_name = "SCHEMA.TABLE", conflicts_with_all = ["clean", "no_roles"])]
    tables: Vec<String>,
    /// Restore the one table --table names under this name, beside the live one (SCHEMA.NEW_NAME).
    #[arg(long = "as", value_name = "SCHEMA.NEW_NAME", requires = "tables")]
    rename: Option<String>,
    /// Write the backup's plain SQL to this file ('-': standard output) instead of restoring it.
    #[arg(long, conflicts_with_all = ["into", "database", "no_roles", "clean", "allow_source", "json"], value_name = "PATH")]
    to_file: Option<PathBuf>,
    /// Print what was done as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    backstop::memory::return_large_blocks_when_freed();
    backstop::telemetry::init("warn");
    let cli = Cli::parse();
    let clients = AwsClients::from_env().await;
    // With BACKSTOP_TARGETS_PARAMETER the targets are those the deployed functions read from SSM.
    let parameters = SsmParameters::new(clients.ssm.clone());
    let config = match app::load_config(&process_env(), cli.config.as_deref(), &parameters).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("backstop: configuration error: {e}\n(see docs/configuration.md)");
            return ExitCode::from(2);
        }
    };
    // Server targets stand for the databases their last discovery found (a backup run discovers again).
    let config = match app::with_discovered_on(config, &clients).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("backstop: cannot read the server targets' inventories from the catalog: {e}");
            return ExitCode::from(1);
        }
    };
    let metrics: Arc<dyn MetricsSink> = if cli.emf { Arc::new(StderrEmf) } else { Arc::new(NoMetrics) };
    match cli.command {
        Command::Backup { target, dry_run, idempotency_key, trigger, json } => {
            let trigger = parse_trigger(&trigger);
            backup(config, &clients, metrics, BackupArgs { target, dry_run, idempotency_key, trigger, json }).await
        }
        Command::Verify { target, backup, trigger, json } => {
            verify(config, &clients, metrics, VerifyArgs { target, backup, trigger: parse_trigger(&trigger), json })
                .await
        }
        Command::Purge { target, dry_run, force, json } => {
            purge(config, &clients, metrics, target, dry_run, force, json).await
        }
        Command::Check { target, alert, json } => check(config, &clients, metrics, target, alert, json).await,
        Command::Runners { target, json } => show_runners(config, &clients, target, json).await,
        Command::Report { url: true, .. } => report_url(&config, &clients).await,
        Command::Report { target, out, json, month, url: false } => {
            let out = out.unwrap_or_else(|| "backstop-report.html".into());
            report(config, &clients, ReportArgs { target, out, json, month }).await
        }
        Command::Restore(args) => restore(config, &clients, metrics, args).await,
        Command::Status { target, backup: Some(backup), json, .. } => {
            show_backup(&config, &clients, target, &backup, json).await
        }
        Command::Status { target, limit, json, .. } => show_status(&config, &clients, target, limit, json).await,
    }
}

/// `--trigger`, which clap has limited to these three.
fn parse_trigger(trigger: &str) -> Trigger {
    match trigger {
        "schedule" => Trigger::Schedule,
        "console" => Trigger::Console,
        _ => Trigger::Cli,
    }
}

struct BackupArgs {
    target: Option<String>,
    dry_run: bool,
    idempotency_key: Option<String>,
    trigger: Trigger,
    json: bool,
}

async fn backup(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    args: BackupArgs,
) -> ExitCode {
    let BackupArgs { target, dry_run, idempotency_key, trigger, json } = args;
    let job = app::backup_job(config, clients, metrics);
    let request = BackupRequest {
        target,
        dry_run,
        trigger,
        request_id: format!("cli-{}", std::process::id()),
        idempotency_key,
        deadline: None,
    };
    let ticker = (std::io::stderr().is_terminal() && !dry_run).then(|| tokio::spawn(show_progress(job.progress())));
    let result = job.run(&request).await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    let run = match result {
        Ok(run) => run,
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&run).expect("run records serialize"));
    } else {
        for t in &run.targets {
            println!("{:<20} {:<19} {}", t.target, t.outcome.as_str(), t.message);
        }
    }
    if run.targets.iter().any(|t| t.outcome.is_failure()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn purge(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    target: Option<String>,
    dry_run: bool,
    force: bool,
    json: bool,
) -> ExitCode {
    let job = app::purge_job(config, clients, metrics);
    let request = PurgeRequest {
        target,
        force,
        dry_run,
        trigger: Trigger::Cli,
        request_id: format!("cli-{}", std::process::id()),
    };
    let results = match job.run(&request).await {
        Ok(results) => results,
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&results).expect("purge results serialize"));
    } else {
        print!("{}", render::purge_plan(&results));
    }
    if results.iter().any(|r| r.failed()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Nagios / monitoring-plugin conventions: one status line first, details after, and the exit code.
async fn check(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    target: Option<String>,
    alert: bool,
    json: bool,
) -> ExitCode {
    let whole = target.is_none();
    let job = app::monitor_job(config, clients, metrics);
    let reports = match job.run(&MonitorRequest { target, alert }).await {
        Ok(reports) => reports,
        Err(e) => {
            // With --json, standard output stays JSON for the script reading it.
            if json {
                println!("{}", serde_json::json!({ "state": "UNKNOWN", "error": e.to_string() }));
            } else {
                println!("BACKSTOP UNKNOWN - {e}");
            }
            return ExitCode::from(3);
        }
    };
    // As the monitor function does: a run that alerts (cron's) also rewrites the deployed report page.
    if alert && whole {
        if let Err(e) = job.refresh_report(reports.clone()).await {
            eprintln!("backstop: could not refresh the report page: {e}");
        }
    }
    let code = monitor::worst_plugin_code(reports.iter().map(monitor::plugin_code));
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("monitor reports serialize"));
    } else {
        print!("{}", render::monitor_plugin_text(&reports));
        for subject in reports.iter().flat_map(|r| &r.alerts_sent) {
            println!("alert sent: {subject}");
        }
    }
    ExitCode::from(code)
}

/// A one-line progress display on stderr: SQL dumped, rate, stored bytes, elapsed.
async fn show_progress(progress: Arc<Progress>) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    let started = Instant::now();
    loop {
        let raw = progress.raw_bytes.load(Ordering::Relaxed);
        let stored = progress.stored_bytes.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "dumped {} ({}/s), stored {}, {:.0}s",
            human_bytes(raw),
            human_bytes((raw as f64 / elapsed) as u64),
            human_bytes(stored),
            elapsed
        ));
        bar.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct VerifyArgs {
    target: Option<String>,
    backup: Option<String>,
    trigger: Trigger,
    json: bool,
}

/// Runs the verify job until every drill is done, waiting while scratch servers are being created.
async fn verify(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    args: VerifyArgs,
) -> ExitCode {
    let VerifyArgs { target, backup, trigger, json } = args;
    let job = app::verify_job(config, clients, metrics);
    let mut request = VerifyRequest {
        target,
        backup_id: backup.map(BackupId),
        trigger,
        request_id: format!("cli-{}", std::process::id()),
        deadline: None,
        max_steps: None,
        resume_only: false,
        abandon: None,
        sweep_only: false,
        exclude: Vec::new(),
    };
    // An RDS instance takes minutes to create; a drill that makes no progress for an hour is given up on.
    const PASSES: usize = 360;
    let mut finished = Vec::new();
    for pass in 0.. {
        // With --json, what finished before a stop is still printed, as JSON, for the script reading it.
        let finished_so_far = |finished: &Vec<_>| {
            if json {
                println!("{}", serde_json::to_string_pretty(finished).expect("drills serialize"));
            }
        };
        if pass == PASSES {
            eprintln!(
                "backstop: drills still unfinished after {PASSES} passes; they resume on the next `backstop verify`"
            );
            finished_so_far(&finished);
            return ExitCode::from(1);
        }
        let run = match job.run(&request).await {
            Ok(run) => run,
            Err(e @ VerifyJobError::Catalog(_)) => {
                eprintln!("backstop: {e}");
                finished_so_far(&finished);
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("backstop: {e}");
                finished_so_far(&finished);
                return ExitCode::from(2);
            }
        };
        for swept in &run.swept {
            eprintln!("swept an expired scratch server: {swept}");
        }
        for skipped in &run.skipped {
            eprintln!("{skipped}");
        }
        let (done, waiting): (Vec<_>, Vec<_>) = run.drills.into_iter().partition(|d| d.phase == DrillPhase::Done);
        finished.extend(done);
        if waiting.is_empty() && run.lease_held.is_empty() {
            break;
        }
        for d in &waiting {
            eprintln!("{}: drill {} {}", d.target, d.drill_id, d.message);
        }
        if !waiting.is_empty() {
            // Later passes only resume: a drill that finished is not started again, nor a requested backup twice.
            request.backup_id = None;
            request.resume_only = true;
        }
        if !run.lease_held.is_empty() {
            // Another run (perhaps one that was killed: its lease runs out within minutes) has these targets.
            eprintln!("waiting for the verify lease of {}", run.lease_held.join(", "));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&finished).expect("drills serialize"));
    } else if finished.is_empty() {
        println!("no drill ran (see the reasons above)");
    }
    if !json {
        for d in &finished {
            let failed = if d.failed_checks.is_empty() {
                String::new()
            } else {
                format!(" — failed: {}", d.failed_checks.join(", "))
            };
            println!(
                "{:<20} {:<14} backup {} drill {}: {}{failed}",
                d.target,
                d.outcome.map_or("-".into(), |o| o.to_string()),
                d.backup_id,
                d.drill_id,
                d.message
            );
        }
    }
    if finished.iter().any(|d| d.outcome != Some(BackupStatus::Verified)) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One backup: its record, and the report of the latest drill that restored it.
async fn show_backup(
    config: &Config,
    clients: &AwsClients,
    target: Option<String>,
    backup: &str,
    json: bool,
) -> ExitCode {
    let deps = app::backup_deps(config, clients, Arc::new(NoMetrics));
    let id = BackupId(backup.to_string());
    let targets: Vec<String> = match target {
        Some(t) => vec![t],
        None => config.target_names().into_iter().map(str::to_string).collect(),
    };
    for t in targets {
        let record = match deps.catalog.get_backup(&t, &id).await {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("backstop: cannot read the catalog: {e}");
                return ExitCode::from(1);
            }
        };
        // The newest drill of this backup: among the newest drills, reading further back (a monthly backup's drill
        // may be hundreds of drills old) until one is found or there are no more.
        let mut limit = 50;
        let drill = loop {
            let drills = match deps.catalog.recent_drills(&t, limit).await {
                Ok(drills) => drills,
                Err(e) => {
                    eprintln!("backstop: cannot read the drills of {t}: {e}");
                    return ExitCode::from(1);
                }
            };
            let exhausted = drills.len() < limit || limit >= 100_000;
            match drills.into_iter().find(|d| d.backup_id == id) {
                Some(drill) => break Some(drill),
                None if exhausted || record.verification.is_none() => break None,
                None => limit = (limit * 10).min(100_000),
            }
        };
        if json {
            let value = serde_json::json!({ "backup": record, "latest_drill": drill });
            println!("{}", serde_json::to_string_pretty(&value).expect("records serialize"));
        } else {
            print!("{}", render::backup_in_full(&record, drill.as_ref()));
        }
        return ExitCode::SUCCESS;
    }
    eprintln!("backstop: no backup {backup} in the catalog");
    ExitCode::from(1)
}

/// A presigned GET of the deployed page, valid for an hour: nothing in the bucket is public, and whoever holds the
/// link can read the page (only) until it expires. Checks the page is there first.
async fn report_url(config: &Config, clients: &AwsClients) -> ExitCode {
    let key = report::page_key(&config.key_prefix);
    if let Err(e) = clients.s3.head_object().bucket(&config.bucket).key(&key).send().await {
        let e = backstop::adapters::aws_failure(&e);
        eprintln!(
            "backstop: s3://{}/{key} cannot be read ({e}): the monitor function writes it at each run; run it once \
             (its console test event {{}}) or wait for the hour",
            config.bucket
        );
        return ExitCode::from(1);
    }
    let expiry = match aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600)) {
        Ok(expiry) => expiry,
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::from(1);
        }
    };
    match clients.s3.get_object().bucket(&config.bucket).key(&key).presigned(expiry).await {
        Ok(request) => {
            println!("{}", request.uri());
            eprintln!("(valid for one hour; anyone with the link can read the page until then)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "backstop: cannot sign a link to s3://{}/{key}: {}",
                config.bucket,
                backstop::adapters::aws_failure(&e)
            );
            ExitCode::from(1)
        }
    }
}

struct ReportArgs {
    target: Option<String>,
    out: std::path::PathBuf,
    json: bool,
    month: Option<String>,
}

/// `backstop report`: reads the catalog (and, for the health checks, the two newest manifests), writes nothing
/// but the page.
async fn report(config: Arc<Config>, clients: &AwsClients, args: ReportArgs) -> ExitCode {
    let ReportArgs { target, out, json, month } = args;
    let monitor = app::monitor_job(config.clone(), clients, Arc::new(NoMetrics));
    let health = match monitor.run(&MonitorRequest { target: target.clone(), alert: false }).await {
        Ok(health) => health,
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::from(2);
        }
    };
    let deps = app::backup_deps(&config, clients, Arc::new(NoMetrics));
    let now = deps.clock.now();
    let data = match report::gather(&config, deps.catalog.as_ref(), health, target.as_deref(), now).await {
        Ok(data) => data,
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        return match report::month_summary(&data, month.as_deref()) {
            Ok(summary) => {
                let value = serde_json::json!({ "generated_at": now, "month": month, "targets": summary });
                println!("{}", serde_json::to_string_pretty(&value).expect("summaries serialize"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("backstop: {e}");
                ExitCode::from(2)
            }
        };
    }
    let page = report::html::render(&data);
    if let Err(e) = std::fs::write(&out, &page) {
        eprintln!("backstop: cannot write the report to {}: {e}", out.display());
        return ExitCode::from(1);
    }
    println!("{} ({}, {} target(s))", out.display(), human_bytes(page.len() as u64), data.targets.len());
    ExitCode::SUCCESS
}

async fn show_runners(config: Arc<Config>, clients: &AwsClients, target: Option<String>, json: bool) -> ExitCode {
    let job = app::backup_job(config, clients, Arc::new(NoMetrics));
    let named = target.map(|t| vec![t]);
    // The plan as the last discovery left it: showing it writes nothing and alerts nobody.
    match job.plan(named.as_deref()).await {
        Ok(units) if json => {
            println!("{}", serde_json::to_string_pretty(&units).expect("decisions serialize"));
            ExitCode::SUCCESS
        }
        Ok(units) => {
            print!("{}", render::runner_plan(&units));
            ExitCode::SUCCESS
        }
        Err(e @ FanOutError::UnknownTarget(_)) => {
            eprintln!("backstop: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("backstop: {e}");
            ExitCode::from(1)
        }
    }
}

async fn show_status(
    config: &Config,
    clients: &AwsClients,
    target: Option<String>,
    limit: usize,
    json: bool,
) -> ExitCode {
    if let Some(name) = &target {
        if let Err(e) = select_targets(config, Some(name)) {
            eprintln!("backstop: {e}");
            return ExitCode::from(2);
        }
    }
    let deps = app::backup_deps(config, clients, Arc::new(NoMetrics));
    match status::recent_backups(config, deps.catalog.as_ref(), target.as_deref(), limit).await {
        Ok(statuses) if json => {
            println!("{}", serde_json::to_string_pretty(&statuses).expect("records serialize"));
            ExitCode::SUCCESS
        }
        Ok(statuses) => {
            print!("{}", render::status_table(&statuses));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backstop: cannot read the catalog: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backup state machine runs this program as its Fargate task, with a command it builds from the unit
    /// (`States.Array` of literals and paths): that command must be one this CLI accepts, meaning what the
    /// machine means by it.
    #[test]
    fn the_fargate_tasks_command_is_a_backup_of_the_units_target_with_its_trigger_and_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let machine = &template["Resources"]["BackupStateMachine"]["Properties"]["Definition"];
        let task = &machine["States"]["BackUpEachTarget"]["ItemProcessor"]["States"]["BackUpOnFargate"];
        let command = task["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"].as_str().unwrap();
        let arguments = command.strip_prefix("States.Array(").and_then(|c| c.strip_suffix(')')).unwrap();
        let unit = serde_json::json!({ "target": "archive", "trigger": "schedule", "idempotency_key": "tick-9" });
        let argv: Vec<String> = std::iter::once("backstop".to_string())
            .chain(arguments.split(", ").map(|a| match a.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
                Some(literal) => literal.to_string(),
                None => unit[a.strip_prefix("$.").unwrap()].as_str().unwrap().to_string(),
            }))
            .collect();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(cli.emf, "metrics reach CloudWatch from the task's log");
        match cli.command {
            Command::Backup { target, dry_run, idempotency_key, trigger, json } => {
                assert_eq!(target.as_deref(), Some("archive"));
                assert_eq!((trigger.as_str(), idempotency_key.as_deref()), ("schedule", Some("tick-9")));
                assert!(!dry_run && !json);
            }
            _ => panic!("{argv:?} is not a backup"),
        }
    }

    /// The verify state machine runs this program as a Fargate drill with the command the verify function's
    /// plan gives each unit (`app::handle_verify_event`, action `plan`), passed through as it is: the task's
    /// override must take it from the unit, and the CLI must accept it.
    #[test]
    fn the_fargate_drills_command_comes_from_the_plan_and_is_a_verify_of_the_units_target() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let machine = &template["Resources"]["VerifyStateMachine"]["Properties"]["Definition"];
        let fargate = &machine["States"]["Drills"]["Branches"][1];
        let task = &fargate["States"]["DrillEachOnFargate"]["ItemProcessor"]["States"]["DrillOnFargate"];
        let command = &task["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"];
        assert_eq!(command.as_str(), Some("$.command"), "the unit's command, as the plan made it");
        for (argv, backup) in [
            (vec!["verify", "--target", "fleet.orders", "--trigger", "schedule", "--emf"], None),
            (
                vec![
                    "verify",
                    "--target",
                    "archive",
                    "--trigger",
                    "console",
                    "--backup",
                    "20261203T010000Z-ab",
                    "--emf",
                ],
                Some("20261203T010000Z-ab"),
            ),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("backstop").chain(argv.iter().copied()))
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert!(cli.emf);
            match cli.command {
                Command::Verify { target, backup: b, trigger, json } => {
                    assert_eq!((target.as_deref(), b.as_deref()), (Some(argv[2]), backup));
                    assert_eq!(trigger, argv[4]);
                    assert!(!json);
                }
                _ => panic!("{argv:?} is not a verify"),
            }
        }
    }
}
