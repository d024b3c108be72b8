//! The monitor job against moto, on a clock the test moves: a fresh backup is quiet; a late one fires one
//! critical alert; within the cooldown it does not repeat; after the cooldown it does; a new backup sends
//! one "resolved"; the alerts arrive through SNS with their attributes, and the age metrics are emitted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::adapters::memory::FixedClock;
use backstop::config::{PasswordSource, TargetConfig};
use backstop::domain::{BackupId, BackupRecord, BackupStatus, Trigger, VerificationSummary};
use backstop::jobs::monitor::{MonitorDeps, MonitorJob, MonitorRequest, TargetReport};
use backstop::metrics::{NoMetrics, RecordingMetrics};
use backstop::pipeline::codec::Codec;
use backstop::ports::{Backups, Severity};
use backstop_tests::aws::{AwsFixture, DeliveredAlert};
use chrono::{DateTime, Duration as Span, Utc};

const TARGET: &str = "ledger";

fn target() -> TargetConfig {
    TargetConfig {
        name: TARGET.into(),
        host: "db.example.invalid".into(),
        port: 5432,
        database: "ledger".into(),
        user: "backup".into(),
        password: PasswordSource::Env("UNUSED".into()),
        sslmode: None,
        sslrootcert: None,
        checks: vec![],
        pitr_source_instance: None,
        retention: Default::default(),
        runner: Default::default(),
        size_gb: None,
        databases: Vec::new(),
        exclude_databases: Vec::new(),
    }
}

/// A verified backup started at `at`.
async fn verified_backup(catalog: &DynamoCatalog, at: DateTime<Utc>) {
    let mut record = BackupRecord::in_progress(TARGET, BackupId::new(at), Trigger::Schedule, "seed", at, Codec::Zstd);
    record.status = BackupStatus::Verified;
    record.finished_at = Some(at + Span::minutes(2));
    record.raw_bytes = 10_000;
    record.verification = Some(VerificationSummary {
        drill_id: "drill".into(),
        finished_at: at + Span::minutes(30),
        passed: true,
        failed_checks: vec![],
        rto_seconds: Some(60.0),
        rpo_seconds: Some(1800.0),
    });
    catalog.create_backup(&record).await.unwrap();
}

struct Monitor {
    aws: AwsFixture,
    job: MonitorJob,
    clock: FixedClock,
    metrics: Arc<RecordingMetrics>,
}

impl Monitor {
    /// Runs the monitor `hours` after `t0` and returns every alert the run published (exactly `expected`).
    async fn at(&self, t0: DateTime<Utc>, hours: i64, expected: usize) -> (TargetReport, Vec<DeliveredAlert>) {
        *self.clock.0.lock().unwrap() = t0 + Span::hours(hours);
        let report = self.job.run(&MonitorRequest { target: None, alert: true }).await.unwrap().remove(0);
        let alerts = self.aws.alerts_until_now().await;
        assert_eq!(alerts.len(), expected, "{hours} h after the backup: {alerts:?}");
        (report, alerts)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_fires_once_holds_through_the_cooldown_repeats_and_resolves() {
    let aws = AwsFixture::new().await;
    let config = Arc::new(aws.config(vec![target()]));
    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let t0 = Utc::now() - Span::days(3);
    verified_backup(&catalog, t0).await;
    let clock = FixedClock::at(t0);
    let metrics = Arc::new(RecordingMetrics(Mutex::new(Vec::new())));
    let backup = backstop::app::backup_deps(&config, &aws.clients, Arc::new(NoMetrics));
    let deps = MonitorDeps {
        store: backup.store,
        catalog: backup.catalog,
        alerts: backup.alerts,
        clock: Arc::new(clock.clone()),
        metrics: metrics.clone(),
    };
    let m = Monitor { aws, job: MonitorJob::new(config, deps), clock, metrics };

    let (report, alerts) = m.at(t0, 1, 0).await;
    assert_eq!(report.severity(), None, "a one-hour-old verified backup is fine: {report:?}");
    assert!(alerts.is_empty(), "{alerts:?}");
    let emitted = m.metrics.0.lock().unwrap().join("\n");
    assert!(emitted.contains("\"BackupAgeHours\":1.0") && emitted.contains("\"VerifiedAgeHours\":1.0"), "{emitted}");

    let (report, alerts) = m.at(t0, 27, 1).await;
    assert_eq!(report.severity(), Some(Severity::Critical));
    assert_eq!(alerts.len(), 1, "one alert when the backup turns late: {alerts:?}");
    assert!(
        alerts[0].subject.starts_with("Backstop: ledger CRITICAL: no completed backup for 27.0 h"),
        "{}",
        alerts[0].subject
    );
    assert!(
        alerts[0].message.contains("backup_age")
            && alerts[0].message.contains("docs/operations.md#backups-are-too-old"),
        "{}",
        alerts[0].message
    );
    assert_eq!(alerts[0].attributes["severity"]["Value"], "critical");
    assert_eq!(alerts[0].attributes["job"]["Value"], "monitor");
    assert_eq!(alerts[0].attributes["target"]["Value"], TARGET);

    let (_, alerts) = m.at(t0, 28, 0).await;
    assert!(alerts.is_empty(), "no repeat within the cooldown: {alerts:?}");
    let (_, alerts) = m.at(t0, 32, 0).await;
    assert!(alerts.is_empty(), "still within the 6 h cooldown: {alerts:?}");

    let (_, alerts) = m.at(t0, 33, 1).await;
    assert_eq!(alerts.len(), 1, "repeated once the cooldown passed: {alerts:?}");
    assert!(alerts[0].subject.starts_with("Backstop: ledger still CRITICAL"), "{}", alerts[0].subject);

    verified_backup(&catalog, t0 + Span::hours(34)).await;
    let (report, alerts) = m.at(t0, 35, 1).await;
    assert_eq!(report.severity(), None, "{report:?}");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].subject, "Backstop: ledger RESOLVED: backup age");
    assert_eq!(alerts[0].attributes["severity"]["Value"], "info");

    let (_, alerts) = m.at(t0, 36, 0).await;
    assert!(alerts.is_empty(), "resolved once, then quiet: {alerts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_without_any_backup_is_critical_and_alerts() {
    let aws = AwsFixture::new().await;
    let config = Arc::new(aws.config(vec![target()]));
    let job = backstop::app::monitor_job(config, &aws.clients, Arc::new(NoMetrics));
    let reports = job.run(&MonitorRequest { target: Some(TARGET.into()), alert: true }).await.unwrap();
    assert_eq!(reports[0].severity(), Some(Severity::Critical));
    let alerts = aws.alerts(2, Duration::from_secs(10)).await;
    let subjects: Vec<&str> = alerts.iter().map(|a| a.subject.as_str()).collect();
    assert_eq!(alerts.len(), 2, "backup_age and verified_age: {subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("no completed backup on record")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("no backup verified by a restore drill")), "{subjects:?}");

    let quiet = job.run(&MonitorRequest { target: Some(TARGET.into()), alert: false }).await.unwrap();
    assert_eq!(quiet[0].severity(), Some(Severity::Critical));
    assert!(aws.alerts_until_now().await.is_empty(), "evaluating without alerting (backstop check) sends nothing");
}

/// `backstop check` and `backstop purge --dry-run` as an operator (or Nagios) runs them.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_check_speaks_monitoring_plugin_exit_codes() {
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("backstop.toml");
    std::fs::write(
        &config_file,
        format!(
            "bucket = \"{}\"\ntable = \"{}\"\n\n[[targets]]\nname = \"{TARGET}\"\nhost = \"db.example.invalid\"\ndatabase = \"ledger\"\n\
             user = \"backup\"\npassword = {{ env = \"UNUSED\" }}\n",
            aws.bucket, aws.table
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::cli_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("BACKSTOP_CONFIG", &config_file)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };

    let (code, stdout) = run(&["check"]);
    assert_eq!(code, Some(2), "no backup at all is CRITICAL: {stdout}");
    assert!(stdout.starts_with("BACKSTOP CRITICAL - ledger: no completed backup on record"), "{stdout}");

    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    verified_backup(&catalog, Utc::now() - Span::hours(2)).await;
    let (code, stdout) = run(&["check"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("BACKSTOP OK"), "{stdout}");
    let (code, json) = run(&["check", "--json"]);
    assert_eq!(code, Some(0));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed[0]["health"]["checks"].as_array().map(Vec::len), Some(6), "{json}");

    // One failed backup after the verified one: a WARNING (two in a row would be critical).
    let failed_at = Utc::now() - Span::hours(1);
    let mut failed =
        BackupRecord::in_progress(TARGET, BackupId::new(failed_at), Trigger::Schedule, "seed", failed_at, Codec::Zstd);
    failed.status = BackupStatus::Failed;
    failed.finished_at = Some(failed_at + Span::minutes(1));
    catalog.create_backup(&failed).await.unwrap();
    let (code, stdout) = run(&["check"]);
    assert_eq!(code, Some(1), "one failure is a WARNING: {stdout}");
    assert!(stdout.starts_with("BACKSTOP WARNING - ledger: "), "{stdout}");

    verified_backup(&catalog, Utc::now() - Span::hours(30)).await;
    let before = catalog.recent_backups(TARGET, 10).await.unwrap();
    let (code, stdout) = run(&["purge", "--dry-run"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    // Each backup with what a real purge would do: keep the verified ones, clean up the failed one's leftovers.
    for record in &before {
        let verb = if record.status == BackupStatus::Failed { "would clean up" } else { "keep" };
        let line = stdout.lines().find(|l| l.contains(record.backup_id.as_str())).unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.trim_start().starts_with(verb), "{} ({}): {line}", record.backup_id, record.status);
    }
    // And it did nothing: the records as they were, no alert.
    assert_eq!(catalog.recent_backups(TARGET, 10).await.unwrap(), before);
    assert!(aws.alerts_until_now().await.is_empty(), "a dry run sends nothing");
    assert_eq!(run(&["check", "--target", "nope"]).0, Some(3), "an unknown target is UNKNOWN");
}

/// A manifest the records point at that S3 does not have: the table check warns, naming the backup and the
/// error, instead of passing as "no table shrank" (which it did before).
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_manifest_warns_instead_of_passing_the_table_check() {
    let aws = AwsFixture::new().await;
    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let now = Utc::now();
    for hours_ago in [30, 6] {
        let at = now - Span::hours(hours_ago);
        let mut record =
            BackupRecord::in_progress(TARGET, BackupId::new(at), Trigger::Schedule, "seed", at, Codec::Zstd);
        record.status = BackupStatus::Completed;
        record.finished_at = Some(at + Span::minutes(2));
        record.manifest = Some(backstop::domain::ObjectRef {
            key: format!("{TARGET}/missing-{hours_ago}.manifest.json"),
            version_id: None,
            size: 100,
            sha256: "0".repeat(64),
        });
        catalog.create_backup(&record).await.unwrap();
    }
    let job = backstop::app::monitor_job(Arc::new(aws.config(vec![target()])), &aws.clients, Arc::new(NoMetrics));
    let report = job.run(&MonitorRequest { target: Some(TARGET.into()), alert: false }).await.unwrap().remove(0);
    let health = report.health.expect("evaluated");
    let tables = health.checks.iter().find(|c| c.check.as_str() == "tables_shrank").unwrap();
    assert_eq!(tables.severity, Some(Severity::Warning), "{tables:?}");
    assert!(tables.summary.contains("cannot be read") && tables.summary.contains("missing-6"), "{}", tables.summary);
}
