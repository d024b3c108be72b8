//! Restore drills on local scratch clusters: a good backup verifies with every table in its report; each kind
//! of damage ends `verify_failed` naming the right check, with an alert; a drill cut off between phases
//! resumes and leaves no scratch cluster behind; a scratch server killed or out of disk mid-restore makes the
//! drill inconclusive, never the backup failed; hostile identifiers verify cleanly.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::app;
use backstop::config::{Config, ScratchSettings, UserCheck};
use backstop::domain::drill::DrillPhase;
use backstop::domain::verification::{CheckName, CheckOutcome};
use backstop::domain::{BackupRecord, BackupStatus, TargetOutcome, Trigger};
use backstop::jobs::verify::{VerifyRequest, VerifyRun};
use backstop::metrics::NoMetrics;
use backstop::pipeline::codec::{decode_all, Codec};
use backstop::ports::{Backups, Drills};
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

struct Drill {
    aws: AwsFixture,
    config: Config,
    scratch_dir: tempfile::TempDir,
    _source: PgCluster,
    _dir: tempfile::TempDir,
}

/// A small source database with one easily edited table, backed up once; scratch clusters in a temp dir.
async fn backed_up(seed: impl FnOnce(&PgCluster) -> &'static str) -> (Drill, BackupRecord) {
    let source = PgCluster::start();
    let db = seed(&source);
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch_dir = tempfile::tempdir().unwrap();
    let mut target = source.target("app", db, BACKSTOP_PASSWORD, dir.path());
    target.checks = vec![UserCheck { name: "has rows".into(), sql: "SELECT count(*) > 0 FROM pg_class".into() }];
    let mut config = aws.config(vec![target]);
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch_dir.path().to_path_buf()) };
    let run = job(&aws, config.clone()).run(&request("app", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = only_record(&aws, &run).await;
    (Drill { aws, config, scratch_dir, _source: source, _dir: dir }, record)
}

fn small_db(source: &PgCluster) -> &'static str {
    source.psql("postgres", "CREATE DATABASE app");
    source.psql("app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g; CREATE TABLE empty (x int);");
    source.create_backup_role();
    "app"
}

/// The run's first drill verified; otherwise its failed checks and message say why not.
fn assert_verified(run: &VerifyRun) {
    let drill = &run.drills[0];
    assert_eq!(drill.outcome, Some(BackupStatus::Verified), "{:?}: {}", drill.failed_checks, drill.message);
}

fn verify_request(backup: Option<&BackupRecord>, max_steps: Option<usize>) -> VerifyRequest {
    VerifyRequest {
        target: Some("app".into()),
        backup_id: backup.map(|b| b.backup_id.clone()),
        trigger: Trigger::Cli,
        request_id: "integration-test".into(),
        deadline: None,
        max_steps,
        resume_only: false,
        abandon: None,
        sweep_only: false,
        exclude: Vec::new(),
    }
}

async fn verify(d: &Drill, request: &VerifyRequest) -> VerifyRun {
    app::verify_job(Arc::new(d.config.clone()), &d.aws.clients, Arc::new(NoMetrics)).run(request).await.unwrap()
}

fn catalog(aws: &AwsFixture) -> DynamoCatalog {
    DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone())
}

/// The drills' scratch clusters (not the template they are copied from, which stays for the next drill).
fn scratch_clusters(d: &Drill) -> Vec<String> {
    std::fs::read_dir(d.scratch_dir.path())
        .map(|e| {
            e.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("template-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `bytes` as a new version of the dump's key (encrypted unless told otherwise).
async fn put_version(aws: &AwsFixture, key: &str, bytes: Vec<u8>, encrypted: bool) -> String {
    let mut put = aws.clients.s3.put_object().bucket(&aws.bucket).key(key).body(ByteStream::from(bytes));
    if encrypted {
        put = put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(&aws.kms_key_arn);
    }
    put.send().await.unwrap().version_id.unwrap()
}

/// Stores `sql` as a new, consistently framed version of the backup's dump (as the backup would have framed
/// it), with a new manifest version that describes it but keeps the original fingerprint, and repoints the
/// record at both: storage and catalog agree with each other, only the data differs from what was dumped.
async fn reframe(aws: &AwsFixture, record: &BackupRecord, sql: String) {
    use backstop::ports::ObjectStore;
    let scratch = backstop::adapters::memory::MemoryStore::default();
    let upload = scratch.create_multipart("reframed", "application/zstd").await.unwrap();
    let settings = backstop::pipeline::stream::StreamSettings::new(Codec::Zstd, 1);
    let streamed = backstop::pipeline::stream::stream_to_upload(
        Box::new(std::io::Cursor::new(sql.into_bytes())),
        upload.clone(),
        settings,
        Arc::default(),
    )
    .await
    .unwrap();
    upload.complete(streamed.parts.clone()).await.unwrap();
    let bytes = scratch.object_bytes("reframed").unwrap();
    let dump_key = record.dump.as_ref().unwrap().key.clone();
    let dump_version = put_version(aws, &dump_key, bytes.to_vec(), true).await;

    let manifest_ref = record.manifest.clone().unwrap();
    let mut manifest: backstop::domain::Manifest =
        serde_json::from_slice(&aws.object(&manifest_ref.key).await).unwrap();
    manifest.dump.version_id = Some(dump_version.clone());
    manifest.dump.sha256 = streamed.sha256.clone();
    manifest.dump.size = streamed.stored_bytes;
    manifest.layout = Some(streamed.layout);
    manifest.raw_bytes = streamed.summary.raw_bytes;
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let manifest_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&manifest_bytes))
    };
    let manifest_size = manifest_bytes.len() as u64;
    let manifest_version = put_version(aws, &manifest_ref.key, manifest_bytes, true).await;

    let mut changed = record.clone();
    changed.dump = Some(manifest.dump.clone());
    changed.manifest = Some(backstop::domain::ObjectRef {
        key: manifest_ref.key,
        version_id: Some(manifest_version),
        size: manifest_size,
        sha256: manifest_sha,
    });
    catalog(aws).update_backup(&changed, record.status).await.unwrap();
}

/// Points the record at another version of its dump (storage corruption of "its" version, as a drill sees it).
async fn repoint(aws: &AwsFixture, record: &BackupRecord, version: String, sha_and_size: Option<(String, u64)>) {
    let mut changed = record.clone();
    let dump = changed.dump.as_mut().unwrap();
    dump.version_id = Some(version);
    if let Some((sha, size)) = sha_and_size {
        dump.sha256 = sha;
        dump.size = size;
    }
    catalog(aws).update_backup(&changed, record.status).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_backup_verifies_and_the_report_lists_every_table() {
    let (d, record) = backed_up(|s| {
        s.seed_sample("shop");
        "shop"
    })
    .await;
    let run = verify(&d, &verify_request(None, None)).await;
    assert!(run.done);
    assert_eq!(run.drills.len(), 1);
    let drill = &run.drills[0];
    assert_eq!(drill.outcome, Some(BackupStatus::Verified), "{:?}: {}", drill.failed_checks, drill.message);
    assert_eq!(drill.backup_id, record.backup_id, "the latest backup is the one drilled");

    let stored = catalog(&d.aws).recent_drills("app", 5).await.unwrap().remove(0);
    let tables: Vec<String> = stored
        .report
        .checks
        .iter()
        .filter_map(|c| match &c.name {
            backstop::domain::verification::CheckName::Table { schema, name } => Some(format!("{schema}.{name}")),
            _ => None,
        })
        .collect();
    let manifest = manifest(&d.aws, &record).await;
    assert_eq!(tables.len(), manifest.fingerprint.tables.len(), "every table is in the report: {tables:?}");
    assert_eq!(tables.len(), 9);
    for label in [
        "object_version",
        "object_encryption",
        "object_checksum",
        "roles",
        "restore",
        "table_set",
        "schema_digest",
        "sequences",
        "large_objects",
        "user check has rows",
    ] {
        assert!(stored.report.checks.iter().any(|c| c.name.label() == label), "{label} is in the report");
    }
    let detail = |label: &str| {
        stored.report.checks.iter().find(|c| c.name.label() == label).map(|c| format!("{:?}", c.outcome)).unwrap()
    };
    assert!(
        detail("restore").contains("in parallel"),
        "a framed backup restores over several connections: {}",
        detail("restore")
    );
    assert!(
        detail("restore").contains("builds started as their tables' rows came in"),
        "each table's keys and indexes build once its rows are in, not after the last row: {}",
        detail("restore")
    );
    assert!(detail("table sales.order_items").contains("digest equal"), "{}", detail("table sales.order_items"));
    // Read back as the restore went where it could (how many depends on timing), the rest after it.
    assert!(detail("table_set").contains("read back as the restore went"), "{}", detail("table_set"));
    let t = &stored.report.timings;
    assert!(t.rto_seconds.unwrap() > 0.0 && t.rpo_seconds.unwrap() >= 0.0 && t.restore_seconds.is_some());

    let after = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(after.status, BackupStatus::Verified);
    assert!(after.verification.unwrap().passed);
    assert!(scratch_clusters(&d).is_empty(), "the scratch cluster was destroyed: {:?}", scratch_clusters(&d));
    assert!(d.aws.alerts_until_now().await.is_empty(), "a passing drill does not page");

    // Row counts only: the same verdict, with the tables counted rather than read back.
    let mut counting = d.config.clone();
    counting.verify.rows = backstop::domain::verification::RowCheck::Counts;
    let run = app::verify_job(Arc::new(counting), &d.aws.clients, Arc::new(NoMetrics))
        .run(&verify_request(Some(&record), None))
        .await
        .unwrap();
    assert_eq!(run.drills[0].outcome, Some(BackupStatus::Verified), "{:?}", run.drills[0].failed_checks);
    let stored = catalog(&d.aws).recent_drills("app", 5).await.unwrap().remove(0);
    let items = stored.report.checks.iter().find(|c| c.name.label() == "table sales.order_items").unwrap();
    assert!(format!("{:?}", items.outcome).contains("counted"), "{items:?}");
}

/// A database of more tables than one transaction on the scratch server could lock (each with a TOAST table
/// and a key: three locks while it is made, four in a schema dump) and than a report lists one by one: the
/// drill restores and checks every table, and its stored report lists the largest and sums up the rest, so
/// the record stays well inside DynamoDB's 400 KB per item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_thousands_of_tables_verifies_and_its_report_stays_small() {
    const TABLES: usize = 1_500;
    let (d, record) = backed_up(|s| {
        s.psql("postgres", "CREATE DATABASE app");
        // One statement at a time (psql -f): the source is made the way such schemas grow, not in one transaction.
        let script = tempfile::NamedTempFile::new().unwrap();
        let sql: String = (1..=TABLES)
            .map(|i| {
                let table = format!("\"number {i:05}: a table named at length, as generated ones are\"");
                format!(
                    "CREATE TABLE {table} (id int PRIMARY KEY, note text);\n\
                     INSERT INTO {table} SELECT g, repeat('x', {i} % 7) FROM generate_series(1, {i} % 5) g;\n"
                )
            })
            .collect();
        std::fs::write(script.path(), sql).unwrap();
        s.psql_file("app", script.path());
        s.create_backup_role();
        "app"
    })
    .await;
    assert_eq!(record.table_count, TABLES as u64);
    let run = verify(&d, &verify_request(None, None)).await;
    assert_verified(&run);

    let stored = catalog(&d.aws).recent_drills("app", 5).await.unwrap().remove(0);
    let listed = stored.report.checks.iter().filter(|c| c.name.label().starts_with("table ")).count();
    assert_eq!(listed, backstop::domain::verification::TABLES_LISTED);
    let others = stored.report.checks.iter().find(|c| c.name.label() == "other_tables").expect("the rest summed up");
    assert!(format!("{:?}", others.outcome).contains("1000 more tables"), "{others:?}");
    let size = serde_json::to_vec(&stored.report).unwrap().len();
    assert!(size < 150_000, "the stored report is {size} bytes");
    assert!(scratch_clusters(&d).is_empty(), "the scratch cluster was destroyed");
}

/// Tables are read back while the restore still runs only when nothing left in it could write to them. Here
/// a `CHECK` constraint's function writes a row into another table for each row loaded, so restoring runs it
/// again and the copy holds twice the source's log rows: the drill must fail that table, whenever it was
/// ready. (`a_middle`, big, keeps the items from loading before the log has: the log's own load empties it
/// first.) Without such code, a good backup's report says how many tables were read as the restore went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_restore_can_still_write_is_read_back_after_it() {
    let (d, _) = backed_up(|s| {
        s.psql("postgres", "CREATE DATABASE app");
        s.psql(
            "app",
            "CREATE TABLE a_log (v integer); \
             CREATE FUNCTION log_it(v integer) RETURNS boolean LANGUAGE plpgsql \
               AS $$BEGIN INSERT INTO public.a_log VALUES (v); RETURN true; END$$; \
             CREATE TABLE b_items (v integer CHECK (public.log_it(v))); \
             INSERT INTO b_items SELECT generate_series(1, 5000); \
             CREATE TABLE a_middle (v integer); INSERT INTO a_middle SELECT generate_series(1, 300000);",
        );
        s.create_backup_role();
        "app"
    })
    .await;
    let run = verify(&d, &verify_request(None, None)).await;
    let drill = &run.drills[0];
    assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{:?}: {}", drill.failed_checks, drill.message);
    assert_eq!(drill.failed_checks, vec!["table public.a_log".to_string()], "{}", drill.message);
    let stored = catalog(&d.aws).recent_drills("app", 1).await.unwrap().remove(0);
    let log = stored.report.checks.iter().find(|c| c.name.label() == "table public.a_log").unwrap();
    assert!(format!("{:?}", log.outcome).contains("10000"), "the copy has the log's rows twice: {log:?}");
    let table_set = stored.report.checks.iter().find(|c| c.name.label() == "table_set").unwrap();
    assert!(!format!("{:?}", table_set.outcome).contains("as the restore went"), "{table_set:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_damage_fails_the_drill_naming_the_check_and_alerting() {
    let (d, record) = backed_up(small_db).await;
    let dump = record.dump.clone().unwrap();
    let original = d.aws.object(&dump.key).await;

    // (what was done, the check that must fail)
    let mut cases: Vec<(&str, &str)> = Vec::new();

    // Storage returns fewer bytes than were written.
    let version = put_version(&d.aws, &dump.key, original[..original.len() / 2].to_vec(), true).await;
    repoint(&d.aws, &record, version, None).await;
    cases.push(("truncated object", "object_checksum"));
    let truncated = verify(&d, &verify_request(Some(&record), None)).await;

    // One flipped byte.
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let version = put_version(&d.aws, &dump.key, flipped, true).await;
    let current = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    repoint(&d.aws, &current, version, None).await;
    cases.push(("one flipped byte", "object_checksum"));
    let flipped = verify(&d, &verify_request(Some(&record), None)).await;

    // Stored without the expected encryption.
    let version = put_version(&d.aws, &dump.key, original.clone(), false).await;
    let current = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    repoint(&d.aws, &current, version, None).await;
    cases.push(("unencrypted object", "object_encryption"));
    let unencrypted = verify(&d, &verify_request(Some(&record), None)).await;

    // A fingerprint that disagrees with the data: one row changed, the object, its layout, the manifest's
    // checksum and the record all consistent with the changed dump (only the fingerprint is the original's).
    let sql = String::from_utf8(decode_all(Codec::Zstd, &original).unwrap()).unwrap();
    assert!(sql.contains("7\titem 7\n"));
    let current = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    reframe(&d.aws, &current, sql.replacen("7\titem 7\n", "7\titem seven\n", 1)).await;
    cases.push(("one row changed", "table public.items"));
    let row_changed = verify(&d, &verify_request(Some(&record), None)).await;

    // Overwritten by a new version after the backup (the record still names its own version).
    let current = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    let mut restored = current.clone();
    *restored.dump.as_mut().unwrap() = dump.clone();
    restored.manifest = record.manifest.clone();
    catalog(&d.aws).update_backup(&restored, current.status).await.unwrap();
    put_version(&d.aws, &dump.key, b"not a dump".to_vec(), true).await;
    cases.push(("overwritten by a new version", "object_version"));
    let overwritten = verify(&d, &verify_request(Some(&record), None)).await;

    for ((what, check), run) in cases.iter().zip([truncated, flipped, unencrypted, row_changed, overwritten]) {
        let drill = &run.drills[0];
        assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{what}: {}", drill.message);
        assert!(
            drill.failed_checks.iter().any(|c| c == check),
            "{what}: {check} should fail, failed: {:?}",
            drill.failed_checks
        );
    }
    let after = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(after.status, BackupStatus::VerifyFailed);

    let alerts = d.aws.alerts(cases.len(), Duration::from_secs(20)).await;
    assert_eq!(alerts.len(), cases.len(), "one alert per failed drill: {alerts:#?}");
    for ((what, check), alert) in cases.iter().zip(&alerts) {
        assert!(alert.subject.contains("FAILED"), "{what}: {}", alert.subject);
        assert!(alert.message.contains(check), "{what}: the alert names {check}: {}", alert.message);
        assert_eq!(alert.attributes["job"]["Value"], "verify");
    }
    assert!(scratch_clusters(&d).is_empty(), "every scratch cluster was destroyed: {:?}", scratch_clusters(&d));
}

/// A passing drill over its RTO budget warns (once, instead of the success notice); within budget, with success
/// notices on, it says so; either way its EMF metrics give the outcome and the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_over_budget_warns_one_within_budget_notifies_and_both_emit_metrics() {
    let (mut d, _record) = backed_up(small_db).await;
    d.config.notify_success = true;
    let metrics = Arc::new(backstop::metrics::RecordingMetrics::default());
    let drill = async |d: &Drill| {
        let job = app::verify_job(Arc::new(d.config.clone()), &d.aws.clients, metrics.clone());
        let run = job.run(&verify_request(None, None)).await.unwrap();
        assert!(run.done && run.drills[0].outcome == Some(BackupStatus::Verified), "{run:?}");
        d.aws.alerts(1, Duration::from_secs(10)).await
    };

    d.config.verify.rto_budget = Some(Duration::from_millis(1));
    let over = drill(&d).await;
    assert_eq!(over.len(), 1, "{over:?}");
    assert!(
        over[0].subject.contains("over budget") && over[0].message.contains("exceeds the budget of 0 s"),
        "{over:?}"
    );

    d.config.verify.rto_budget = Some(Duration::from_secs(3600));
    let within = drill(&d).await;
    assert_eq!(within.len(), 1, "{within:?}");
    assert!(within[0].subject.contains("verified by a restore drill"), "{within:?}");

    let lines = metrics.0.lock().unwrap().clone();
    let sweeps: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("SweepFailures").is_some())
        .collect();
    assert_eq!(sweeps.len(), 2, "each run reports its sweep: {lines:?}");
    assert!(sweeps.iter().all(|v| v["SweepFailures"] == 0.0 && v["Job"] == "verify"), "{sweeps:?}");
    let verdicts: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("VerifySuccess").is_some())
        .collect();
    assert_eq!(verdicts.len(), 2, "{lines:?}");
    for v in &verdicts {
        assert_eq!(v["Target"], "app");
        assert_eq!(v["VerifySuccess"], 1.0);
        assert!(
            v["VerifyRtoSeconds"].as_f64().unwrap() > 0.0 && v["VerifyRestoreSeconds"].as_f64().unwrap() > 0.0,
            "{v}"
        );
        let declared = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert!(declared.iter().any(|m| m["Name"] == "VerifyRtoSeconds" && m["Unit"] == "Seconds"), "{v}");
    }
}

/// The CLI killed with SIGKILL while its drill restores (as a Lambda past its timeout, or `kill -9`): the next
/// run waits out the dead run's lease, resumes the same drill from its recorded phase, passes it, and leaves
/// no scratch cluster, running or on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_killed_mid_restore_resumes_after_its_lease_and_cleans_up() {
    let (d, record) = backed_up(|s| {
        s.psql("postgres", "CREATE DATABASE app");
        // Enough rows that the restore lasts long enough to be caught in the act (about a second or more).
        s.psql("app", "CREATE TABLE big (id bigint PRIMARY KEY, payload text); INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g;");
        s.create_backup_role();
        "app"
    })
    .await;
    let target = &d.config.targets[0];
    let config_file = d.scratch_dir.path().with_extension("toml");
    let scratch = format!(
        "scratch = \"local\"\nscratch_dir = \"{}\"\nverify_lease_seconds = 20\n",
        d.scratch_dir.path().display()
    );
    write_cli_config(&config_file, &d.aws, target, &backstop_tests::pg::bin_dir(), &scratch);
    let cli = || {
        let mut command = cli_command(&cli_binary(), &d.aws, &config_file);
        command
            .args(["verify", "--target", "app"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };

    let mut first = cli().spawn().unwrap();
    let started = std::time::Instant::now();
    let killed_in = loop {
        let drills = catalog(&d.aws).recent_drills("app", 5).await.unwrap();
        if let Some(drill) = drills.first().filter(|drill| drill.phase != DrillPhase::Provisioning) {
            first.kill().unwrap();
            first.wait().unwrap();
            break drill.phase;
        }
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before it could be killed mid-drill");
        assert!(started.elapsed() < Duration::from_secs(60), "the drill never left provisioning");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(killed_in, DrillPhase::Restoring, "killed while restoring");
    let left = catalog(&d.aws).recent_drills("app", 5).await.unwrap();
    assert_eq!(
        (left.len(), left[0].phase),
        (1, DrillPhase::Restoring),
        "the dead run's drill is left mid-restore: {left:?}"
    );
    assert_eq!(scratch_clusters(&d).len(), 1, "and its scratch cluster with it");

    let out = cli().output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "the second run resumes and passes: {output}");
    let drills = catalog(&d.aws).recent_drills("app", 5).await.unwrap();
    assert_eq!(drills.len(), 1, "the same drill, resumed, not a second one: {drills:?}");
    assert_eq!(drills[0].phase, DrillPhase::Done);
    assert!(drills[0].report.passed(), "{:?}", drills[0].report);
    assert_eq!(
        catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap().status,
        BackupStatus::Verified
    );
    assert_eq!(scratch_clusters(&d), Vec::<String>::new(), "no scratch cluster is left on disk");
    let scratch_path = d.scratch_dir.path().to_string_lossy().into_owned();
    let running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&scratch_path) && !c.contains("template-"))
        .collect();
    assert_eq!(running, Vec::<String>::new(), "no scratch server is left running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_cut_off_between_phases_resumes_and_leaves_nothing_behind() {
    let (d, record) = backed_up(small_db).await;

    // First invocation: provisioning only, then the process "dies" (the job is dropped).
    let first = verify(&d, &verify_request(None, Some(1))).await;
    assert!(!first.done);
    assert_eq!(first.drills[0].phase, DrillPhase::Restoring);
    assert_eq!(scratch_clusters(&d).len(), 1, "the scratch cluster outlives the invocation");

    // Second: one more phase (restoring), cut off again.
    let second = verify(&d, &verify_request(None, Some(1))).await;
    assert_eq!(second.drills[0].drill_id, first.drills[0].drill_id, "the same drill resumed");
    assert_eq!(second.drills[0].phase, DrillPhase::Checking);

    // Third: runs to the end.
    let third = verify(&d, &verify_request(None, None)).await;
    assert!(third.done);
    assert_eq!(third.drills[0].drill_id, first.drills[0].drill_id);
    assert_eq!(third.drills[0].outcome, Some(BackupStatus::Verified), "{:?}", third.drills[0].failed_checks);
    assert_eq!(
        catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap().status,
        BackupStatus::Verified
    );
    assert!(scratch_clusters(&d).is_empty(), "{:?}", scratch_clusters(&d));
}

/// A drill whose client programs are older than the backup's server fails before restoring, saying which
/// client layer to deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_older_than_the_backups_server_fails_the_drill_naming_the_layer() {
    let (mut d, record) = backed_up(small_db).await;
    let real = backstop_tests::pg::bin_dir();
    let old = d.scratch_dir.path().join("old-client-bin");
    std::fs::create_dir(&old).unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "pg_dump" {
            std::os::unix::fs::symlink(real.join(&name), old.join(&name)).unwrap();
        }
    }
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 14.9'; exit 0; fi\nexec '{}' \"$@\"\n",
        real.join("pg_dump").display()
    );
    std::fs::write(old.join("pg_dump"), script).unwrap();
    std::fs::set_permissions(old.join("pg_dump"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d.config.pg_bin_dir = Some(old.clone());

    let run = verify(&d, &verify_request(None, None)).await;
    assert_eq!(run.drills[0].outcome, Some(BackupStatus::VerifyFailed), "{run:?}");
    assert_eq!(run.drills[0].failed_checks, ["restore"]);
    let alerts = d.aws.alerts(1, Duration::from_secs(10)).await;
    assert_eq!(alerts.len(), 1);
    let major = record.server_version.as_deref().unwrap().split('.').next().unwrap().to_string();
    assert!(
        alerts[0].message.contains("client programs are version 14")
            && alerts[0].message.contains(&format!("PostgreSQL {major} client layer")),
        "{}",
        alerts[0].message
    );
    let clusters: Vec<String> = scratch_clusters(&d).into_iter().filter(|c| c != "old-client-bin").collect();
    assert!(clusters.is_empty(), "{clusters:?}");
}

/// What Step Functions sends when its bound is reached: unfinished drills end inconclusive, their servers go, they
/// alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_drill_is_inconclusive_cleaned_up_and_alerted() {
    let (d, record) = backed_up(small_db).await;
    let first = verify(&d, &verify_request(None, Some(1))).await;
    assert_eq!(first.drills[0].phase, DrillPhase::Restoring);
    assert_eq!(scratch_clusters(&d).len(), 1);

    let mut give_up = verify_request(None, None);
    give_up.resume_only = true;
    give_up.abandon = Some("the state machine's time bound was reached".into());
    let last = verify(&d, &give_up).await;
    assert!(last.done, "{last:?}");
    assert_eq!(last.drills[0].drill_id, first.drills[0].drill_id);
    // Given up, not judged: the backup keeps its status, and the warning says why.
    assert_eq!(last.drills[0].outcome, None, "{last:?}");
    assert_eq!(last.drills[0].failed_checks, ["restore"]);
    assert!(scratch_clusters(&d).is_empty(), "{:?}", scratch_clusters(&d));
    assert_eq!(
        catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap().status,
        BackupStatus::Completed
    );
    let alerts = d.aws.alerts(1, Duration::from_secs(10)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].subject.contains("inconclusive"), "{}", alerts[0].subject);
    assert!(
        alerts[0].message.contains("abandoned in phase restoring: the state machine's time bound"),
        "{}",
        alerts[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_scratch_cluster_is_swept_by_the_next_run() {
    let (d, record) = backed_up(small_db).await;
    let mut config = d.config.clone();
    config.verify.scratch_lifetime = Duration::from_secs(0);
    let d = Drill { config, ..d };
    let first = verify(&d, &verify_request(None, Some(1))).await;
    assert_eq!(first.drills[0].phase, DrillPhase::Restoring);
    assert_eq!(scratch_clusters(&d).len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The next run sweeps it first; the resumed drill then finds its server gone and ends cleanly, with no verdict:
    // a drill that outlived its server's lifetime says nothing of the backup.
    let next = verify(&d, &verify_request(None, None)).await;
    assert_eq!(next.swept.len(), 1, "{next:?}");
    assert!(scratch_clusters(&d).is_empty());
    assert_eq!(next.drills[0].outcome, None, "{next:?}");
    assert!(next.drills[0].message.contains("the scratch server failed or went away"), "{}", next.drills[0].message);
    assert_eq!(
        catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap().status,
        BackupStatus::Completed
    );
}

/// On a scratch server (`wal_level=minimal`), a table of several chunks loads in the one transaction that empties
/// it, every chunk on the connection that took the first, so the server writes next to no WAL for its rows: its
/// later chunks read ahead in memory, or, with no memory left for them, spilled to a file on local disk. With no
/// room for them anywhere, the same table loads side by side and writes WAL for every row. Every way, every row
/// is in, and the index after the rows is built on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_several_chunks_loads_without_wal_in_one_transaction_when_its_chunks_fit_ahead() {
    use backstop::ports::ScratchDatabases;

    // The dump: the table, its rows in three chunks, an index. Its heap is well over `wal_skip_threshold` (2 MB),
    // under which a new relation is written to the WAL whole at commit.
    let rows_per_chunk = 60_000;
    let rows = |chunk: usize| -> String {
        (chunk * rows_per_chunk..(chunk + 1) * rows_per_chunk).map(|i| format!("{i}\trow {i:08}\n")).collect()
    };
    let (store, layout) = framed_dump(vec![
        HandMade::Sql("CREATE TABLE public.t (a integer, b text);\n".into()),
        HandMade::Rows("public", "t", "(a, b)", (0..3).map(rows).collect()),
        HandMade::Sql("CREATE INDEX t_a ON public.t USING btree (a);\n".into()),
    ])
    .await;
    let row_bytes: u64 = layout.segments[1].chunks.iter().map(|c| c.raw()).sum();
    let (_base, scratch, handle, server) = scratch_server("chunks").await;
    let admin = backstop::adapters::pg_wire::connect(&server, "postgres").await.unwrap();
    let wal_lsn = || async {
        admin.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).await.unwrap().get::<_, String>(0)
    };

    let mut wal_written = Vec::new();
    for (database, restorer) in every_way() {
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
        let before = wal_lsn().await;
        let dump = hand_made_dump(&layout);
        let report = restorer.restore(Arc::new(store.clone()), &server, database, dump).await.unwrap();
        assert_eq!(report.restore_error, None, "{database}");
        assert_eq!(report.rows_loaded.get(&("public".into(), "t".into())), Some(&(3 * rows_per_chunk as u64)));
        let written: i64 = admin
            .query_one(&format!("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{before}')::bigint"), &[])
            .await
            .unwrap()
            .get(0);
        wal_written.push(written as u64);
        let copy = backstop::adapters::pg_wire::connect(&server, database).await.unwrap();
        let found = copy
            .query_one("SELECT count(*), count(DISTINCT a), min(a), max(a), count(*) FILTER (WHERE b = 'row ' || lpad(a::text, 8, '0')) FROM public.t", &[])
            .await
            .unwrap();
        let n = 3 * rows_per_chunk as i64;
        assert_eq!(
            (
                found.get::<_, i64>(0),
                found.get::<_, i64>(1),
                found.get::<_, i32>(2),
                found.get::<_, i32>(3),
                found.get::<_, i64>(4)
            ),
            (n, n, 0, n as i32 - 1, n),
            "{database}: every row, once"
        );
        let indexed: bool = copy
            .query_one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_a'::regclass", &[])
            .await
            .unwrap()
            .get(0);
        assert!(indexed, "{database}: the index after the rows is built");
    }
    scratch.destroy(&handle).await.unwrap();

    let (alone, spilled, side_by_side) = (wal_written[0], wal_written[1], wal_written[2]);
    assert!(
        alone < row_bytes / 10,
        "loaded in the transaction that emptied it, the table's rows write no WAL: {alone} bytes for {row_bytes} of rows"
    );
    // Spill files are never made on memory-backed storage: a machine whose temp directory is a tmpfs loads the
    // table side by side that way (and says so).
    let in_memory =
        backstop::adapters::local_scratch::Filesystem::of(&std::env::temp_dir()).is_some_and(|fs| fs.memory_backed);
    if in_memory {
        eprintln!("the temp directory is a tmpfs: no spill file, the spilled way loads side by side");
        assert!(spilled > row_bytes, "no spill file on a tmpfs: {spilled} bytes of WAL for {row_bytes} of rows");
    } else {
        assert!(
            spilled < row_bytes / 10,
            "its later chunks spilled to disk, the table still loads in one transaction: {spilled} bytes of WAL for \
             {row_bytes} of rows"
        );
    }
    assert!(
        side_by_side > row_bytes,
        "loaded side by side, every row is in the WAL: {side_by_side} bytes for {row_bytes} of rows"
    );
}

/// A row the server refuses in the middle of a table of many chunks (the third of six, a table of six more after
/// it, two connections) stops the restore with the server's own error, whether the table loads in one
/// transaction (its later chunks in memory or spilled to disk) or side by side. Side by side the chunks are more than the stream may queue for the connections:
/// it must not wait for room that connections gone will never make (it did, before the hand-out channel was
/// closed by a failing connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_mid_table_stops_the_restore_with_the_servers_error_whichever_way_it_loads() {
    use backstop::ports::ScratchDatabases;

    let chunk = |table: &str, n: usize| -> String {
        (n * 2_000..(n + 1) * 2_000)
            .map(|i| if table == "t" && i == 4_321 { "not a number\n".to_string() } else { format!("{i}\n") })
            .collect()
    };
    let (store, layout) = framed_dump(vec![
        HandMade::Sql("CREATE TABLE public.t (a integer);\nCREATE TABLE public.u (a integer);\n".into()),
        HandMade::Rows("public", "t", "(a)", (0..6).map(|n| chunk("t", n)).collect()),
        HandMade::Sql("\n".into()),
        HandMade::Rows("public", "u", "(a)", (0..6).map(|n| chunk("u", n)).collect()),
        HandMade::Sql("CREATE INDEX u_a ON public.u USING btree (a);\n".into()),
    ])
    .await;
    let (_base, scratch, handle, server) = scratch_server("refused").await;
    let admin = backstop::adapters::pg_wire::connect(&server, "postgres").await.unwrap();
    let mut outcomes = Vec::new();
    for (database, restorer) in every_way() {
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
        let dump = hand_made_dump(&layout);
        let restoring = restorer.restore(Arc::new(store.clone()), &server, database, dump);
        let outcome = tokio::time::timeout(Duration::from_secs(60), restoring).await;
        outcomes.push((database, outcome.map(|r| r.map(|r| (r.restore_error, r.object_size)))));
    }
    scratch.destroy(&handle).await.unwrap();
    let whole = store.object_bytes(HAND_MADE_KEY).unwrap().len() as u64;
    for (database, outcome) in outcomes {
        let Ok(Ok((Some(error), size))) = outcome else {
            panic!("{database}: not a restore that stopped: {outcome:?}")
        };
        assert!(error.contains("invalid input syntax for type integer"), "{database}: {error}");
        assert_eq!(size, whole, "{database}: the object was still read whole for its checksum");
    }
}

/// The key [`framed_dump`] stores its object under.
const HAND_MADE_KEY: &str = "dump.sql.zst";

/// The restore of the object [`framed_dump`] stored, with `layout`.
fn hand_made_dump(layout: &backstop::domain::dump_layout::DumpLayout) -> backstop::ports::FramedDump<'_> {
    backstop::ports::FramedDump {
        key: HAND_MADE_KEY,
        version_id: None,
        codec: Codec::Zstd,
        layout,
        read_early: None,
        server_ready: None,
        opened: None,
    }
}

/// A database name and a restorer for each way a table of several chunks may load: in one transaction with its
/// later chunks read ahead in memory (the defaults) or spilled to disk (no memory for them), and side by side
/// (no room for them anywhere).
fn every_way() -> [(&'static str, backstop::adapters::framed_restore::FramedRestorer); 3] {
    use backstop::adapters::framed_restore::{FramedRestorer, SPILL_AHEAD};
    [
        ("one_transaction", FramedRestorer::new(2)),
        ("spilled_to_disk", FramedRestorer { jobs: 2, one_transaction_ahead: 0, spill_ahead: SPILL_AHEAD }),
        ("side_by_side", FramedRestorer { jobs: 2, one_transaction_ahead: 0, spill_ahead: 0 }),
    ]
}

/// A piece of a dump made by hand: SQL, or a table's rows in chunks (schema, name, column list; the `COPY` line
/// goes before the first chunk, pg_dump's `\.` after the last).
enum HandMade {
    Sql(String),
    Rows(&'static str, &'static str, &'static str, Vec<String>),
}

/// A framed dump made by hand (each chunk one zstd frame, as the backup writes them) in an in-memory store, and
/// its layout.
async fn framed_dump(
    pieces: Vec<HandMade>,
) -> (backstop::adapters::memory::MemoryStore, backstop::domain::dump_layout::DumpLayout) {
    use backstop::domain::dump_layout::{Chunk, DumpLayout, Segment, SegmentKind};
    use backstop::ports::ObjectStore;

    let mut compressor = backstop::pipeline::codec::FrameCompressor::new(Codec::Zstd, 1).unwrap();
    let mut object = Vec::new();
    let mut frame = |text: &str| {
        let mut stored = Vec::new();
        compressor.compress(text.as_bytes(), &mut stored).unwrap();
        object.extend_from_slice(&stored);
        Chunk(stored.len() as u64, text.len() as u64)
    };
    let mut segments = Vec::new();
    for piece in pieces {
        segments.push(match piece {
            HandMade::Sql(sql) => Segment { kind: SegmentKind::Sql, chunks: vec![frame(&sql)] },
            HandMade::Rows(schema, name, columns, chunks) => {
                let statement = format!("COPY {schema}.{name} {columns} FROM stdin;");
                let last = chunks.len() - 1;
                let rows = chunks.iter().map(|c| c.lines().count() as u64).sum();
                let chunks = chunks
                    .iter()
                    .enumerate()
                    .map(|(i, rows)| {
                        let head = if i == 0 { format!("{statement}\n") } else { String::new() };
                        frame(&format!("{head}{rows}{}", if i == last { "\\.\n" } else { "" }))
                    })
                    .collect();
                let kind = SegmentKind::Copy { schema: schema.into(), name: name.into(), statement, rows };
                Segment { kind, chunks }
            }
        });
    }
    let store = backstop::adapters::memory::MemoryStore::default();
    store.put_object(HAND_MADE_KEY, bytes::Bytes::from(object), "application/zstd").await.unwrap();
    (store, DumpLayout { format: 1, segments })
}

/// A local scratch cluster (the drills' settings: `wal_level=minimal`, no fsync), ready, in a directory of its own
/// that goes with the first value (its template with it).
async fn scratch_server(
    name: &str,
) -> (
    tempfile::TempDir,
    backstop::adapters::local_scratch::LocalScratch,
    backstop::ports::ScratchHandle,
    backstop::ports::ScratchEndpoint,
) {
    use backstop::adapters::local_scratch::LocalScratch;
    use backstop::ports::{ScratchDatabases, ScratchSpec, ScratchState};

    let base = tempfile::tempdir().unwrap();
    let scratch = LocalScratch::new(Some(base.path().to_path_buf()), Some(backstop_tests::pg::bin_dir()));
    let spec = ScratchSpec {
        drill_id: format!("{name}-{:08x}", rand::random::<u32>()),
        engine_major: 15,
        storage_gib: 1,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let handle = scratch.create(&spec).await.unwrap();
    let Ok(ScratchState::Ready(server)) = scratch.poll(&handle).await else {
        panic!("the scratch server is not ready")
    };
    (base, scratch, handle, server)
}

/// Without a configured directory, a cluster for a small restore is made in memory-backed storage (when the
/// machine has a tmpfs at /dev/shm with room, and the directory there is this user's own), answers, is found
/// again by a resumed drill's second request, and is swept from there once expired; its template stays on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_scratch_cluster_that_fits_in_memory_is_made_there_found_again_and_swept() {
    use backstop::adapters::local_scratch::{LocalScratch, MemoryRoom};
    use backstop::ports::{ScratchDatabases, ScratchSpec, ScratchState};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    let memory = Path::new("/dev/shm/backstop-scratch");
    // SAFETY: geteuid has no preconditions.
    let ours = std::fs::symlink_metadata(memory)
        .map_or(true, |m| m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o022 == 0);
    let in_memory = ours && MemoryRoom::of(Path::new("/dev/shm"), memory).is_some_and(|room| room.fits(1));
    // Say which place this machine tested: a CI machine without a tmpfs with room tests the disk one.
    eprintln!("expecting the cluster {}", if in_memory { "in memory" } else { "on disk" });
    let expected_base = if in_memory { memory.to_path_buf() } else { std::env::temp_dir().join("backstop-scratch") };

    let scratch = LocalScratch::new(None, Some(backstop_tests::pg::bin_dir()));
    let drill_id = format!("placement-{:08x}", rand::random::<u32>());
    let spec = ScratchSpec {
        drill_id: drill_id.clone(),
        engine_major: 15,
        storage_gib: 1,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let handle = scratch.create(&spec).await.unwrap();
    let answers = match scratch.poll(&handle).await {
        Ok(ScratchState::Ready(endpoint)) => backstop::adapters::pg_wire::connect(&endpoint, "postgres").await.is_ok(),
        _ => false,
    };
    let found_again = scratch.create(&spec).await;
    // Its lifetime over (as the clock would have it in an hour): the sweep takes it from where it is.
    let expired = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    std::fs::write(Path::new(&handle.id).join("expires_at"), expired).unwrap();
    let swept = scratch.sweep_expired(chrono::Utc::now()).await.unwrap();
    let left_behind = Path::new(&handle.id).exists();
    if left_behind {
        let _ = scratch.destroy(&handle).await;
    }

    assert_eq!(PathBuf::from(&handle.id), expected_base.join(&drill_id));
    assert!(answers, "the scratch cluster did not answer");
    assert_eq!(found_again.unwrap(), handle, "a second request finds the same cluster");
    assert!(swept.contains(&handle), "{swept:?}");
    assert!(!left_behind, "the sweep left {} behind", handle.id);
}

/// A scratch server that dies in the middle of the restore (killed, as the OOM killer or a full disk would stop
/// it) says nothing of the backup: the drill is inconclusive, the backup keeps its status (`completed`, still a
/// restore point), a warning says it was the scratch server's failure, the cluster is removed, and the next drill
/// of the same backup verifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_server_that_dies_mid_restore_makes_the_drill_inconclusive_not_the_backup_failed() {
    let (d, record) = backed_up(million_rows).await;
    let killer = kill_the_scratch_server_while_it_copies(d.scratch_dir.path().to_path_buf());
    let first = verify(&d, &verify_request(None, None)).await;
    assert!(killer.join().unwrap(), "the scratch server was killed while it loaded rows");
    let drill = &first.drills[0];
    assert_eq!(drill.phase, DrillPhase::Done);
    assert_eq!(drill.outcome, None, "no verdict on the backup: {drill:?}");
    assert!(drill.message.starts_with("inconclusive: "), "{}", drill.message);
    assert!(drill.message.contains("scratch server"), "{}", drill.message);
    let after = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(after.status, BackupStatus::Completed, "the backup keeps its status");
    assert!(after.verification.is_none(), "{:?}", after.verification);
    assert!(scratch_clusters(&d).is_empty(), "{:?}", scratch_clusters(&d));
    let alerts = d.aws.alerts(1, Duration::from_secs(10)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let subject = &alerts[0].subject;
    assert!(subject.contains("inconclusive: ") && subject.contains("scratch server"), "{subject}");
    assert!(
        alerts[0].message.contains("not the backup's") && alerts[0].message.contains("keeps the status it had"),
        "{}",
        alerts[0].message
    );

    let second = verify(&d, &verify_request(None, None)).await;
    assert_eq!(second.drills[0].backup_id, record.backup_id, "still the newest backup, the next drill takes it");
    assert_verified(&second);
    let after = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(after.status, BackupStatus::Verified);
}

/// The scratch clusters' disk fills while the restore loads rows (a 120 MB file system: room for the template
/// and the drill's copy of it, not for the table): the drill is inconclusive, the backup stays `completed`, the
/// cluster is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_disk_that_fills_during_the_restore_makes_the_drill_inconclusive() {
    let (d, record) = backed_up(million_rows).await;
    let _small_disk = SmallDisk::mount(d.scratch_dir.path(), "120m");
    let run = verify(&d, &verify_request(None, None)).await;
    let drill = &run.drills[0];
    assert_eq!((drill.phase, drill.outcome), (DrillPhase::Done, None), "{drill:?}");
    assert!(drill.message.starts_with("inconclusive: the scratch server ran out of disk"), "{}", drill.message);
    let after = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(after.status, BackupStatus::Completed);
    assert!(scratch_clusters(&d).is_empty(), "{:?}", scratch_clusters(&d));
}

/// A network that drops the dump's download twice in the middle (a proxy before the emulator cuts the first two
/// responses that pass 4 MB): the drill reads on from where each stopped, of the same version, and verifies the
/// backup, every byte still proven by the object's SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_twice_mid_body_reads_on_and_drills_verified() {
    let (d, record) = backed_up(million_rows).await;
    assert!(record.dump.as_ref().unwrap().size > 8 << 20, "the dump is large enough to cut twice");
    let proxy = backstop_tests::cutting_proxy::CuttingProxy::start(&d.aws.endpoint, 4 << 20, 2).await;
    let through_proxy = d.aws.sdk.to_builder().endpoint_url(&proxy.url).build();
    let clients = app::AwsClients::from_sdk_config(&through_proxy, true);
    let run = app::verify_job(Arc::new(d.config.clone()), &clients, Arc::new(NoMetrics))
        .run(&verify_request(None, None))
        .await
        .unwrap();
    assert_verified(&run);
    assert_eq!(proxy.cuts_made(), 2, "the download was cut twice");
    let checksum =
        latest_drill_report(&d.aws, "app").await.checks.into_iter().find(|c| c.name == CheckName::ObjectChecksum);
    assert!(matches!(checksum.map(|c| c.outcome), Some(CheckOutcome::Ok { .. })), "every byte proven");
}

/// S3 going away in the middle of the drill's download (the body cut, every later connection dropped) is not the
/// backup's failure: the drill reads on as long as it may, then ends inconclusive, the backup `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_gone_mid_download_makes_the_drill_inconclusive() {
    let (d, record) = backed_up(million_rows).await;
    let proxy = backstop_tests::cutting_proxy::CuttingProxy::start_then_gone(&d.aws.endpoint, 4 << 20, 1).await;
    let through_proxy = d.aws.sdk.to_builder().endpoint_url(&proxy.url).build();
    let mut clients = app::AwsClients::from_sdk_config(&d.aws.sdk, true);
    // Only S3 goes away: the catalog and the alerts still answer.
    clients.s3 = app::AwsClients::from_sdk_config(&through_proxy, true).s3;
    let run = app::verify_job(Arc::new(d.config.clone()), &clients, Arc::new(NoMetrics))
        .run(&verify_request(None, None))
        .await
        .unwrap();
    let drill = &run.drills[0];
    assert_eq!((drill.phase, drill.outcome), (DrillPhase::Done, None), "{drill:?}");
    assert!(drill.message.contains("the object store (S3) did not answer"), "{}", drill.message);
    assert_eq!(proxy.cuts_made(), 1);
    let backup = catalog(&d.aws).get_backup("app", &record.backup_id).await.unwrap().unwrap();
    assert_eq!(backup.status, BackupStatus::Completed, "the backup keeps its status");
}

/// A database whose restore takes long enough to be interrupted: a million rows, about 90 MB restored.
fn million_rows(source: &PgCluster) -> &'static str {
    source.psql("postgres", "CREATE DATABASE app");
    source.psql(
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000000) g;",
    );
    source.create_backup_role();
    "app"
}

/// A tmpfs of `size` mounted over a directory (tests run as root), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0777"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "this test mounts a small tmpfs, which takes root: {mounted}");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Kills (SIGKILL) the postmaster of the first drill cluster under `scratch` once one of its backends is running
/// a `COPY` (the restore loading rows); `true` if it did within a minute.
fn kill_the_scratch_server_while_it_copies(scratch: std::path::PathBuf) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let clusters = std::fs::read_dir(&scratch).into_iter().flatten().filter_map(Result::ok);
            for cluster in clusters.filter(|c| !c.file_name().to_string_lossy().starts_with("template-")) {
                let pid_file = std::fs::read_to_string(cluster.path().join("data/postmaster.pid")).unwrap_or_default();
                let Some(postmaster) = pid_file.lines().next().map(str::trim).filter(|p| !p.is_empty()) else {
                    continue;
                };
                let children = std::process::Command::new("ps").args(["-o", "args=", "--ppid", postmaster]).output();
                if children.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(" COPY")) {
                    return std::process::Command::new("kill")
                        .args(["-KILL", postmaster])
                        .status()
                        .is_ok_and(|s| s.success());
                }
            }
        }
        false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_verify_cleanly() {
    let (d, _) = backed_up(|s| {
        s.seed_hostile("weird");
        "weird"
    })
    .await;
    let run = verify(&d, &verify_request(None, None)).await;
    assert_verified(&run);
}
