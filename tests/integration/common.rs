//! Helpers shared by the integration tests: building the real job, reading back what it stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use backstop::app;
use backstop::config::{Config, PasswordSource, TargetConfig};
use backstop::domain::fingerprint::DumpSummary;
use backstop::domain::{BackupRecord, Manifest, RunRecord, Trigger};
use backstop::jobs::backup::{BackupJob, BackupRequest};
use backstop::metrics::NoMetrics;
use backstop::ports::{Backups, Drills};
use backstop_tests::aws::AwsFixture;

/// Writes a configuration file for the `backstop` program at `path`: the fixture's bucket, table, topic and key,
/// `pg_bin_dir`, the top-level settings in `extra` (TOML lines), and `target` (its password in a file).
pub fn write_cli_config(path: &Path, aws: &AwsFixture, target: &TargetConfig, pg_bin_dir: &Path, extra: &str) {
    let PasswordSource::File(password_file) = &target.password else {
        panic!("the CLI's test targets keep their password in a file: {:?}", target.password)
    };
    let text = format!(
        "bucket = \"{}\"\ntable = \"{}\"\ntopic_arn = \"{}\"\nkms_key_id = \"{}\"\npg_bin_dir = \"{}\"\n{extra}\n\
         [[targets]]\nname = \"{}\"\nhost = \"{}\"\nport = {}\ndatabase = \"{}\"\nuser = \"{}\"\n\
         sslmode = \"disable\"\npassword = {{ file = \"{}\" }}\n",
        aws.bucket,
        aws.table,
        aws.topic_arn,
        aws.kms_key_arn,
        pg_bin_dir.display(),
        target.name,
        target.host,
        target.port,
        target.database,
        target.user,
        password_file.display(),
    );
    std::fs::write(path, text).unwrap();
}

/// `program` (the `backstop` CLI, or the image's) as an operator runs it: nothing inherited but `PATH`, AWS at
/// the fixture's emulator, the configuration in `config`.
pub fn cli_command(program: &Path, aws: &AwsFixture, config: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("BACKSTOP_CONFIG", config);
    command
}

/// The production wiring (S3, DynamoDB, SNS, pg_dump) pointed at the test's resources.
pub fn job(aws: &AwsFixture, config: Config) -> BackupJob {
    app::backup_job(Arc::new(config), &aws.clients, Arc::new(NoMetrics))
}

pub fn request(target: &str, idempotency_key: Option<&str>) -> BackupRequest {
    BackupRequest {
        target: Some(target.into()),
        dry_run: false,
        trigger: Trigger::Cli,
        request_id: "integration-test".into(),
        idempotency_key: idempotency_key.map(str::to_string),
        deadline: None,
    }
}

pub async fn records(aws: &AwsFixture, target: &str) -> Vec<BackupRecord> {
    let catalog = backstop::adapters::dynamodb::DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    catalog.recent_backups(target, 100).await.unwrap()
}

pub async fn only_record(aws: &AwsFixture, run: &RunRecord) -> BackupRecord {
    let target = &run.targets[0].target;
    let all = records(aws, target).await;
    assert_eq!(all.len(), 1, "expected one backup record for {target}: {all:#?}");
    all.into_iter().next().unwrap()
}

pub async fn manifest(aws: &AwsFixture, record: &BackupRecord) -> Manifest {
    serde_json::from_slice(&aws.object(&record.manifest.as_ref().expect("a manifest").key).await).unwrap()
}

/// A dump's fingerprint as new backups make it (scheme v2).
pub fn fingerprint(sql: &[u8]) -> DumpSummary {
    backstop::domain::dump_parser::fingerprint_of(sql).unwrap()
}

/// `target/debug/backstop`, built by the README's test command before the tests run.
pub fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("backstop");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p backstop-cli), as the README's test command does",
        path.display()
    );
    path
}

/// A drill of `target`'s latest backup, run to its end in this process.
pub async fn drill(aws: &AwsFixture, config: &Config, target: &str) -> backstop::jobs::verify::DrillSummary {
    let request = backstop::jobs::verify::VerifyRequest {
        target: Some(target.into()),
        backup_id: None,
        trigger: Trigger::Cli,
        request_id: "integration-test".into(),
        deadline: None,
        max_steps: None,
        resume_only: false,
        abandon: None,
        sweep_only: false,
        exclude: Vec::new(),
    };
    let run = app::verify_job(Arc::new(config.clone()), &aws.clients, Arc::new(NoMetrics)).run(&request).await.unwrap();
    assert!(run.done, "the drill of {target} ran to its end: {run:?}");
    run.drills.into_iter().find(|d| d.target == target).unwrap_or_else(|| panic!("no drill of {target}"))
}

/// The report of `target`'s latest drill, as `backstop status --backup` shows it.
pub async fn latest_drill_report(aws: &AwsFixture, target: &str) -> backstop::domain::verification::VerificationReport {
    let catalog = backstop::adapters::dynamodb::DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    catalog.recent_drills(target, 1).await.unwrap().remove(0).report
}

/// A dump's text without pg_dump's random `\restrict` / `\unrestrict` lines: two dumps of equal databases
/// are then byte-identical.
pub fn comparable(dump: &[u8]) -> String {
    String::from_utf8_lossy(dump)
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect()
}

/// A data-only dump's per-table sections in name order: pg_dump orders the tables of a foreign-key cycle by
/// their catalog OIDs, which a restore need not reproduce.
fn in_name_order(data_only: String) -> String {
    let mut sections: Vec<&str> = data_only.split("\n--\n-- Data for Name: ").collect();
    sections[1..].sort_unstable();
    sections.join("\n--\n-- Data for Name: ")
}

/// Asserts that two databases' schema-only and data-only dumps are identical (the data-only dumps' tables taken
/// in name order), showing the first difference.
pub fn assert_same_dumps(cluster: &backstop_tests::pg::PgCluster, source: &str, restored: &str, context: &str) {
    for part in ["--schema-only", "--data-only"] {
        let dump = |db: &str| {
            let text = comparable(&cluster.dump_with(db, &[part]));
            if part == "--data-only" {
                in_name_order(text)
            } else {
                text
            }
        };
        let (a, b) = (dump(source), dump(restored));
        if a != b {
            let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
            let at = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(la.len().min(lb.len()));
            panic!(
                "{context}: {part} dumps of {source} and {restored} differ at line {}:\n  source:   {:?}\n  restored: {:?}",
                at + 1,
                la.get(at),
                lb.get(at)
            );
        }
    }
}
