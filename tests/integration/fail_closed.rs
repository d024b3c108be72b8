//! Fail closed: a pg_dump killed mid-stream, or a wrong password, leaves no completed object, no open upload,
//! a `failed` record and exactly one alert — and the password appears nowhere. A run that dies mid-stream
//! (nothing of its own cleanup runs) is failed, cleaned up and alerted by the next run.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::domain::{BackupStatus, TargetOutcome};
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{bin_dir, PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

/// A bin dir whose pg_dump records its pid and then becomes the real pg_dump, so a test can kill it.
fn pid_recording_bin_dir(dir: &std::path::Path, pid_file: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for program in ["psql", "pg_dumpall"] {
        std::os::unix::fs::symlink(bin_dir().join(program), bin.join(program)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\necho $$ > '{}'\nexec '{}' \"$@\"\n",
        pid_file.display(),
        bin_dir().join("pg_dump").display()
    );
    std::fs::write(bin.join("pg_dump"), script).unwrap();
    std::fs::set_permissions(bin.join("pg_dump"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

/// A server with database `big`: about 100 MB of SQL, long enough to be cut off in the middle of the stream.
fn big_source() -> PgCluster {
    let source = PgCluster::start();
    source.psql("postgres", "CREATE DATABASE big");
    source.psql("big", "CREATE TABLE t AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 7) AS v FROM generate_series(1, 400000) g");
    source.create_backup_role();
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_killed_mid_stream_leaves_no_completed_object_no_open_upload_and_one_alert() {
    let source = big_source();
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pg_dump.pid");
    let mut config = aws.config(vec![source.target("big", "big", BACKSTOP_PASSWORD, dir.path())]);
    config.pg_bin_dir = Some(pid_recording_bin_dir(dir.path(), &pid_file));

    let job = Arc::new(job(&aws, config));
    let progress = job.progress();
    let running = tokio::spawn({
        let job = job.clone();
        async move { job.run(&request("big", None)).await.unwrap() }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "pg_dump never started streaming");
        assert!(!running.is_finished(), "the backup finished before it could be killed");
        if progress.raw_bytes.load(Ordering::Relaxed) > 1_000_000 {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let status = Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
                assert!(status.success());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let run = running.await.unwrap();

    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed, "{}", run.targets[0].message);
    let record = only_record(&aws, &run).await;
    assert_eq!(record.status, BackupStatus::Failed);
    let error = record.error.unwrap();
    assert!(error.contains("pg_dump failed") && error.contains("SIGKILL"), "{error}");
    assert!(record.dump.is_none() && record.manifest.is_none());

    assert_eq!(aws.versions().await, Vec::<String>::new(), "no object version of the attempt is left, roles included");
    assert_eq!(aws.open_uploads().await, Vec::<String>::new(), "the multipart upload was aborted");

    let alerts = aws.alerts(1, Duration::from_secs(15)).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(alerts[0].subject.contains("big") && alerts[0].subject.contains("FAILED"), "{}", alerts[0].subject);
    assert_eq!(alerts[0].attributes["severity"]["Value"], "critical");
    assert_eq!(alerts[0].attributes["target"]["Value"], "big");
    assert_eq!(alerts[0].attributes["job"]["Value"], "backup");
}

/// A run that dies mid-stream (a Lambda timeout or out-of-memory kill, a stopped task: nothing of its own
/// cleanup runs) leaves its record in progress, its upload open and its lease. The next run, once the lease has
/// lapsed, fails that record saying why, removes what it wrote, alerts once, and makes its own backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_dies_mid_stream_is_failed_cleaned_up_and_alerted_by_the_next_run() {
    let source = big_source();
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = aws.config(vec![source.target("big", "big", BACKSTOP_PASSWORD, dir.path())]);

    let job = Arc::new(job(&aws, config.clone()));
    let progress = job.progress();
    let running = tokio::spawn({
        let job = job.clone();
        async move { job.run(&request("big", None)).await.unwrap() }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.raw_bytes.load(Ordering::Relaxed) < 1_000_000 {
        assert!(Instant::now() < deadline, "pg_dump never started streaming");
        assert!(!running.is_finished(), "the backup finished before its run could die");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The run dies where it stands: its future is dropped at its next await, and no cleanup of its own runs.
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    drop(job);
    let dead = records(&aws, "big").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].status, BackupStatus::InProgress, "what a dead run leaves");
    assert_eq!(aws.open_uploads().await.len(), 1, "its upload is still open");

    // The next run, after the dead run's lease (3 h by default) has lapsed.
    let mut deps = backstop::app::backup_deps(&config, &aws.clients, Arc::new(backstop::metrics::NoMetrics));
    let later = chrono::Utc::now() + chrono::Duration::from_std(config.lease).unwrap() + chrono::Duration::minutes(1);
    deps.clock = Arc::new(backstop::adapters::memory::FixedClock::at(later));
    let next = backstop::jobs::backup::BackupJob::new(Arc::new(config), deps);
    let run = next.run(&request("big", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);

    let all = records(&aws, "big").await;
    let failed = all.iter().find(|r| r.backup_id == dead[0].backup_id).unwrap();
    assert_eq!(failed.status, BackupStatus::Failed);
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(error.contains("stopped without finishing") && error.contains(&dead[0].run_id), "{error}");
    let dead_prefix = format!("{}.", dead[0].backup_id);
    let left: Vec<String> = aws.versions().await.into_iter().filter(|v| v.contains(&dead_prefix)).collect();
    assert_eq!(left, Vec::<String>::new(), "nothing the dead run wrote is left");
    assert_eq!(aws.open_uploads().await, Vec::<String>::new(), "its upload was aborted");

    let alerts = aws.alerts_until_now().await;
    assert_eq!(alerts.len(), 1, "one alert, for the dead run's backup: {alerts:#?}");
    assert!(alerts[0].subject.contains("FAILED"), "{}", alerts[0].subject);
    assert!(alerts[0].message.contains("multipart upload(s) it left open were aborted"), "{}", alerts[0].message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_loudly_and_the_password_appears_nowhere() {
    const WRONG: &str = "Wr0ng-but-Secret-pw";
    let source = PgCluster::start();
    source.psql("postgres", "CREATE DATABASE app");
    source.create_backup_role();
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let target = source.target("app", "app", WRONG, dir.path());
    let config_file = dir.path().join("backstop.toml");
    write_cli_config(&config_file, &aws, &target, &bin_dir(), "");

    // The real CLI, as an operator runs it: its output is checked too.
    let cli = cli_binary();
    let out = cli_command(&cli, &aws, &config_file)
        .args(["backup", "--target", "app"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a failed backup exits 1: {output}");
    assert!(output.contains("password authentication failed"), "the cause is shown: {output}");

    let records = records(&aws, "app").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, BackupStatus::Failed);
    let alerts = aws.alerts(1, Duration::from_secs(15)).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(alerts[0].message.contains("password authentication failed"), "{}", alerts[0].message);

    let everything = format!("{output}{:?}{}", records, alerts.iter().map(|a| a.raw.clone()).collect::<String>());
    for secret in [WRONG, BACKSTOP_PASSWORD] {
        assert!(!everything.contains(secret), "a password leaked: {everything}");
    }
}
