//! The PostgreSQL version matrix, against Debian's PostgreSQL 15 and PostgreSQL 17 (built from Debian's
//! packages by `infra/pg-server/fetch.sh`): a 15 server dumped by pg_dump 15 and by pg_dump 17; a 15 backup
//! drilled on a 17 scratch server (an upgrade drill, reported as such); a 17 server backed up and drilled
//! natively, and refused by pg_dump 15 with a clear error.

use std::path::PathBuf;

use backstop::config::{Config, ScratchSettings};
use backstop::domain::verification::{CheckName, CheckOutcome, VerificationReport};
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{bin_dir, pg17_bin_dir, PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

struct Versioned {
    aws: AwsFixture,
    source: PgCluster,
    _dir: tempfile::TempDir,
    _scratch: tempfile::TempDir,
    config: Config,
}

/// The sample database (roles, schemas, indexes, foreign keys, a view, sequences) on a server from
/// `server_bin`, and a config whose client programs (and local scratch clusters) come from `client_bin`.
async fn sample_on(server_bin: PathBuf, client_bin: PathBuf) -> Versioned {
    let source = PgCluster::start_with(server_bin);
    source.seed_sample("shop");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut config = aws.config(vec![source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path())]);
    config.pg_bin_dir = Some(client_bin);
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch.path().to_path_buf()) };
    Versioned { aws, source, _dir: dir, _scratch: scratch, config }
}

async fn backed_up(v: &Versioned) -> backstop::domain::BackupRecord {
    let run = job(&v.aws, v.config.clone()).run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    only_record(&v.aws, &run).await
}

fn outcome(report: &VerificationReport, name: &CheckName) -> CheckOutcome {
    report
        .checks
        .iter()
        .find(|c| &c.name == name)
        .map(|c| c.outcome.clone())
        .unwrap_or_else(|| panic!("{name:?} is in the report"))
}

async fn drilled(v: &Versioned, config: &Config) -> VerificationReport {
    let summary = drill(&v.aws, config, "shop").await;
    let report = latest_drill_report(&v.aws, "shop").await;
    assert_eq!(
        summary.outcome,
        Some(BackupStatus::Verified),
        "{:?}: {}\n{:#?}",
        summary.failed_checks,
        summary.message,
        report.checks
    );
    report
}

fn detail(outcome: &CheckOutcome) -> String {
    match outcome {
        CheckOutcome::Ok { detail } | CheckOutcome::Warning { detail } => detail.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_15_server_dumped_by_pg_dump_17_verifies_on_17_as_an_upgrade_drill() {
    let v = sample_on(bin_dir(), pg17_bin_dir()).await;
    let record = backed_up(&v).await;
    assert!(record.server_version.as_deref().unwrap().starts_with("15."), "{:?}", record.server_version);
    let manifest = manifest(&v.aws, &record).await;
    assert!(manifest.pg_dump_version.as_deref().unwrap().starts_with("17."), "{:?}", manifest.pg_dump_version);
    let report = drilled(&v, &v.config).await;
    let restore = detail(&outcome(&report, &CheckName::Restore));
    assert!(
        restore.contains("in parallel") && restore.contains("an upgrade drill: dumped from PostgreSQL 15."),
        "{restore}"
    );
    assert!(!outcome(&report, &CheckName::SchemaDigest).is_failure());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_15_backup_drilled_on_a_17_scratch_server_is_reported_as_an_upgrade_drill() {
    let v = sample_on(bin_dir(), bin_dir()).await;
    let record = backed_up(&v).await;
    assert!(manifest(&v.aws, &record).await.pg_dump_version.as_deref().unwrap().starts_with("15."));
    let mut on_17 = v.config.clone();
    on_17.pg_bin_dir = Some(pg17_bin_dir());
    let report = drilled(&v, &on_17).await;
    let restore = detail(&outcome(&report, &CheckName::Restore));
    assert!(
        restore.contains("an upgrade drill: dumped from PostgreSQL 15.")
            && restore.contains("restored on PostgreSQL 17."),
        "{restore}"
    );
    // pg_dump 17 prints a 17 server's schema in its own words: the digest may differ and then says why.
    match outcome(&report, &CheckName::SchemaDigest) {
        CheckOutcome::Ok { .. } => {}
        CheckOutcome::Warning { detail } => assert!(
            detail.contains("pg_dump 15 from PostgreSQL 15, the copy's by pg_dump 17 from PostgreSQL 17"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
    for table in report.checks.iter().filter(|c| matches!(c.name, CheckName::Table { .. })) {
        assert!(detail(&table.outcome).contains("digest equal"), "{table:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17_server_verifies_with_17_and_pg_dump_15_refuses_it_clearly() {
    let v = sample_on(pg17_bin_dir(), pg17_bin_dir()).await;
    let record = backed_up(&v).await;
    assert!(record.server_version.as_deref().unwrap().starts_with("17."), "{:?}", record.server_version);
    let report = drilled(&v, &v.config).await;
    assert_eq!(detail(&outcome(&report, &CheckName::SchemaDigest)), "equal");
    assert!(!detail(&outcome(&report, &CheckName::Restore)).contains("upgrade"));

    let mut with_15 = v.config.clone();
    with_15.pg_bin_dir = Some(bin_dir());
    let run = job(&v.aws, with_15).run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    let message = &run.targets[0].message;
    assert!(message.contains("15") && message.contains("17"), "the error names both versions: {message}");
    let stored: Vec<_> = records(&v.aws, "shop")
        .await
        .into_iter()
        .filter(|r| r.dump.is_some() && r.backup_id != record.backup_id)
        .collect();
    assert!(stored.is_empty(), "nothing was stored for the refused backup: {stored:?}");
    drop(v.source);
}
