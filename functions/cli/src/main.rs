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

use backstop::app::{self, AwsClients};
use backstop::config::{process_env, Config};
use backstop::domain::Trigger;
use backstop::jobs::backup::{human_bytes, BackupRequest};
use backstop::jobs::status;
use backstop::metrics::{MetricsSink, NoMetrics, StderrEmf};
use backstop::pipeline::stream::Progress;
use clap::{Parser, Subcommand};

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
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Recent backups of each target.
    Status {
        #[arg(long)]
        target: Option<String>,
        /// Backups to show per target.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    backstop::telemetry::init("warn");
    let cli = Cli::parse();
    let config = match Config::load(&process_env(), cli.config.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("backstop: configuration error: {e}\n(see docs/configuration.md)");
            return ExitCode::from(2);
        }
    };
    let clients = AwsClients::from_env().await;
    let metrics: Arc<dyn MetricsSink> = if cli.emf { Arc::new(StderrEmf) } else { Arc::new(NoMetrics) };
    match cli.command {
        Command::Backup { target, dry_run, idempotency_key, json } => {
            backup(config, &clients, metrics, target, dry_run, idempotency_key, json).await
        }
        Command::Status { target, limit, json } => show_status(&config, &clients, target, limit, json).await,
    }
}

async fn backup(
    config: Arc<Config>,
    clients: &AwsClients,
    metrics: Arc<dyn MetricsSink>,
    target: Option<String>,
    dry_run: bool,
    idempotency_key: Option<String>,
    json: bool,
) -> ExitCode {
    let job = app::backup_job(config, clients, metrics);
    let request = BackupRequest {
        target,
        dry_run,
        trigger: Trigger::Cli,
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

async fn show_status(config: &Config, clients: &AwsClients, target: Option<String>, limit: usize, json: bool) -> ExitCode {
    if let Some(name) = &target {
        if config.target(name).is_none() {
            eprintln!("backstop: unknown target {name:?}; configured targets: {}", config.target_names().join(", "));
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
            print!("{}", status::render_table(&statuses));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backstop: cannot read the catalog: {e}");
            ExitCode::from(1)
        }
    }
}
