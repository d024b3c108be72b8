//! Unit tests of the backup job on in-memory fakes: happy path, fail-closed paths, lease, idempotency, redaction.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::TimeZone;

use super::*;
use crate::adapters::memory::*;
use crate::config::PasswordSource;
use crate::domain::Manifest;
use crate::jobs::test_support::{target, test_config};
use crate::metrics::RecordingMetrics;
use crate::pipeline::codec::{decode_all, Codec};
use crate::pipeline::parts::PartSizer;

const PASSWORD: &str = "pw-Sup3r-s3cret";

const SQL: &[u8] = b"--\n-- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\
CREATE TABLE public.t (id int);\nCOPY public.t (id) FROM stdin;\n1\n2\n3\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

struct World {
    store: MemoryStore,
    catalog: MemoryCatalog,
    alerts: RecordingAlerts,
    dumper: ScriptedDumper,
    clock: FixedClock,
    metrics: Arc<RecordingMetrics>,
    job: BackupJob,
    deps: BackupDeps,
}

fn world(dump: ScriptedDump) -> World {
    world_with(dump, test_config(vec![target("orders"), target("billing")]))
}

fn world_with(dump: ScriptedDump, config: Config) -> World {
    let store = MemoryStore::default();
    let catalog = MemoryCatalog::default();
    let alerts = RecordingAlerts::default();
    let dumper = ScriptedDumper::new(dump);
    let clock = FixedClock::at(chrono::Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap());
    let metrics = Arc::new(RecordingMetrics::default());
    let env = [("ORDERS_PW".to_string(), PASSWORD.to_string())].into_iter().collect();
    let deps = BackupDeps {
        store: Arc::new(store.clone()),
        catalog: Arc::new(catalog.clone()),
        alerts: Arc::new(alerts.clone()),
        dumper: Arc::new(dumper.clone()),
        passwords: Arc::new(PasswordResolver::new(Arc::new(MemorySecrets::default()), env)),
        clock: Arc::new(clock.clone()),
        metrics: metrics.clone(),
    };
    let mut settings = StreamSettings::new(Codec::Zstd, 3);
    settings.part_sizer = PartSizer { initial: 64, parts_per_doubling: 4 };
    let job = BackupJob::new(Arc::new(config), deps.clone()).with_stream_settings(settings);
    World { store, catalog, alerts, dumper, clock, metrics, job, deps }
}

fn request(target: Option<&str>, key: Option<&str>) -> BackupRequest {
    BackupRequest {
        target: target.map(str::to_string),
        dry_run: false,
        trigger: Trigger::Schedule,
        request_id: "req-1".into(),
        idempotency_key: key.map(str::to_string),
        deadline: None,
    }
}

#[tokio::test]
async fn given_a_good_dump_when_backed_up_then_object_manifest_roles_and_record_agree() {
    let w = world(ScriptedDump::succeeding(SQL));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();

    assert_eq!(run.outcome, "succeeded");
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed);
    let record = &w.catalog.backups()[0];
    assert_eq!(record.status, BackupStatus::Completed);
    assert_eq!((record.table_count, record.row_count, record.raw_bytes), (1, 3, SQL.len() as u64));

    let dump = record.dump.as_ref().unwrap();
    let stored = w.store.object_bytes(&dump.key).unwrap();
    assert_eq!(decode_all(Codec::Zstd, &stored).unwrap(), SQL);
    assert_eq!(dump.sha256, sha256_hex(&stored));

    let manifest: Manifest =
        serde_json::from_slice(&w.store.object_bytes(&record.manifest.as_ref().unwrap().key).unwrap()).unwrap();
    assert_eq!(manifest.dump, *dump);
    assert_eq!(manifest.fingerprint.table("public", "t").unwrap().rows, 3);
    assert_eq!(manifest.server_version.as_deref(), Some("15.18"));
    assert!(w.store.object_bytes(&record.roles.as_ref().unwrap().key).is_some());
    let (dump_started, dump_finished) = (record.dump_started_at.unwrap(), record.dump_finished_at.unwrap());
    assert!(record.started_at <= dump_started && dump_started <= dump_finished);
    assert!(dump_finished <= record.finished_at.unwrap());

    assert!(w.alerts.sent().is_empty(), "no alert on success unless configured");
    assert_eq!(w.catalog.lease_holder("orders", Job::Backup), None, "lease released");
    assert_eq!(w.catalog.runs().len(), 1);
    let metrics = w.metrics.0.lock().unwrap();
    assert!(metrics[0].contains("\"BackupSuccess\":1.0"), "{}", metrics[0]);
}

#[tokio::test]
async fn given_pg_dump_fails_mid_stream_then_nothing_is_completed_and_one_alert_says_why() {
    let w = world(ScriptedDump::failing(&SQL[..60], "pg_dump: error: connection to server lost"));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();

    assert_eq!(run.outcome, "failed");
    let record = &w.catalog.backups()[0];
    assert_eq!(record.status, BackupStatus::Failed);
    assert!(record.error.as_ref().unwrap().contains("connection to server lost"));
    assert!(record.dump.is_none());
    assert!(
        w.store.keys().iter().all(|k| !k.ends_with(".sql.zst") && !k.ends_with(".manifest.json")),
        "{:?}",
        w.store.keys()
    );
    assert!(w.store.open_upload_keys().is_empty(), "upload aborted");

    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].target.as_deref(), Some("orders"));
    assert!(alerts[0].subject.contains("orders") && alerts[0].subject.contains("FAILED"));
    assert!(alerts[0].body.contains("connection to server lost"));
    assert!(w.metrics.0.lock().unwrap()[0].contains("\"BackupSuccess\":0.0"));
}

#[tokio::test]
async fn given_a_stream_cut_short_with_exit_zero_then_the_backup_still_fails_closed() {
    let w = world(ScriptedDump::succeeding(&SQL[..SQL.len() - 40]));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert!(run.targets[0].message.contains("incomplete"), "{}", run.targets[0].message);
    assert!(w.store.open_upload_keys().is_empty());
    assert_eq!(w.alerts.sent().len(), 1);
}

#[tokio::test]
async fn given_a_part_upload_failure_then_the_upload_is_aborted_and_recorded_failed() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.store.fail_part_uploads_from(1);
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert!(w.store.open_upload_keys().is_empty());
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed);
    assert!(w.alerts.sent()[0].body.contains("KMS"), "hint points at the bucket: {}", w.alerts.sent()[0].body);
}

#[tokio::test]
async fn given_the_manifest_cannot_be_written_then_the_stored_dump_is_deleted_and_the_record_failed() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.store.fail_puts_ending_with(".manifest.json");
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    let record = &w.catalog.backups()[0];
    assert_eq!(record.status, BackupStatus::Failed);
    assert!(record.dump.is_none() && record.roles.is_none(), "a failed record points at nothing");
    assert_eq!(w.store.all_versions(), vec![], "the completed dump and the roles object were deleted");
    assert!(w.alerts.sent()[0].body.contains("Nothing of this attempt was kept"), "{}", w.alerts.sent()[0].body);
}

#[tokio::test]
async fn given_the_completed_record_cannot_be_written_then_nothing_is_left_and_the_record_says_failed() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.catalog.fail_updates_to(BackupStatus::Completed);
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed, "the failure is recorded over in_progress");
    assert_eq!(w.store.all_versions(), vec![], "dump, manifest and roles were deleted");
    assert_eq!(w.alerts.sent().len(), 1);
}

#[tokio::test]
async fn given_the_completed_write_lands_but_its_answer_is_lost_then_the_backup_stands() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.catalog.lose_answers_to(BackupStatus::Completed);
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = &w.catalog.backups()[0];
    assert_eq!(record.status, BackupStatus::Completed);
    assert!(
        w.store.object_bytes(&record.dump.as_ref().unwrap().key).is_some(),
        "the dump a completed record points at is kept"
    );
    assert!(w.alerts.sent().is_empty());
}

/// The completed write failed and the record cannot be read back: it may say completed, so every object stays,
/// the run fails, and the one alert says the objects were kept and why.
#[tokio::test]
async fn given_a_completion_that_cannot_be_confirmed_then_the_objects_are_kept_and_the_alert_says_why() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.catalog.fail_updates_to(BackupStatus::Completed);
    w.catalog.faults.fail("get_backup");
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert_eq!(w.store.all_versions().len(), 3, "dump, manifest and roles kept: {:?}", w.store.all_versions());
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed, "the failure is recorded over in_progress");
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].body.contains("were kept, because the record may say completed"), "{}", alerts[0].body);
    assert!(alerts[0].body.contains("DynamoDB"), "the hint names the catalog: {}", alerts[0].body);
}

/// Cleanup that fails halfway (the upload cannot be aborted, an object cannot be deleted) is reported as
/// incomplete, naming what was left and what removes it, instead of claiming nothing was kept.
#[tokio::test]
async fn given_a_cleanup_that_fails_then_the_alert_names_what_was_left() {
    let w = world(ScriptedDump::succeeding(SQL));
    w.store.fail_part_uploads_from(2);
    w.store.faults.fail("AbortMultipartUpload");
    w.store.faults.fail("DeleteObject");
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert_eq!(w.store.open_upload_keys().len(), 1, "the upload that could not be aborted is still open");
    let left = w.store.all_versions();
    assert_eq!(left.len(), 1, "the roles object that could not be deleted: {left:?}");
    let body = &w.alerts.sent()[0].body;
    assert!(body.contains("Cleaning up this attempt was incomplete"), "{body}");
    assert!(body.contains("could not be aborted (the bucket's lifecycle rule removes it within a day)"), "{body}");
    assert!(body.contains(&format!("{} could not be deleted", left[0].0)), "{body}");
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed);
}

/// The catalog fails before anything starts (the claim, then the lease): nothing is dumped or written, the run
/// fails with one alert each time, and a claim taken before the lease failed is released for a retry.
#[tokio::test]
async fn given_the_catalog_fails_before_the_start_then_nothing_is_dumped_and_the_alert_says_so() {
    for failing in ["claim_idempotency", "acquire_lease"] {
        let w = world(ScriptedDump::succeeding(SQL));
        w.catalog.faults.fail(failing);
        let run = w.job.run(&request(Some("orders"), Some("event-1"))).await.unwrap();
        assert_eq!(run.targets[0].outcome, TargetOutcome::Failed, "{failing}");
        assert!(run.targets[0].message.contains("could not start"), "{failing}: {}", run.targets[0].message);
        assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 0, "{failing}");
        assert!(w.catalog.backups().is_empty() && w.store.all_versions().is_empty(), "{failing}");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}");
        assert!(
            alerts[0].body.contains("Nothing was dumped or written") && alerts[0].body.contains("injected failure"),
            "{}",
            alerts[0].body
        );
        w.catalog.faults.heal(failing);
        let retry = w.job.run(&request(Some("orders"), Some("event-1"))).await.unwrap();
        assert_eq!(retry.targets[0].outcome, TargetOutcome::Completed, "{failing}: a retry of the event may run");
    }
}

/// A denied or throttled AWS call gets the hint for its kind, whichever call it was.
#[tokio::test]
async fn given_a_denied_or_throttled_call_then_the_alert_says_what_to_do_about_that_kind() {
    for (kind, hint) in
        [(AwsErrorKind::Denied, "AWS denied the call"), (AwsErrorKind::Throttled, "AWS throttled the calls")]
    {
        let w = world(ScriptedDump::succeeding(SQL));
        w.catalog.faults.fail_as("acquire_lease", kind);
        w.job.run(&request(Some("orders"), None)).await.unwrap();
        let body = &w.alerts.sent()[0].body;
        assert!(body.contains(hint), "{kind:?}: {body}");
    }
}

/// An alert that cannot be published does not change the outcome: the failure is still recorded and returned.
#[tokio::test]
async fn given_the_alert_cannot_be_published_then_the_failure_still_stands_in_record_and_result() {
    let w = world(ScriptedDump::failing(b"", "pg_dump: error: connection refused"));
    w.alerts.faults.fail("Publish");
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed);
    assert!(w.alerts.sent().is_empty());
}

#[tokio::test]
async fn given_a_deadline_then_a_backup_too_slow_for_it_is_stopped_and_failed_cleanly() {
    let mut dump = ScriptedDump::succeeding(SQL);
    dump.stall = true;
    let w = world(dump);
    let mut req = request(Some("orders"), None);
    req.deadline = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(300));
    let run = w.job.run(&req).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert!(run.targets[0].message.contains("time limit"), "{}", run.targets[0].message);
    assert!(w.store.open_upload_keys().is_empty(), "upload aborted");
    assert_eq!(w.store.all_versions(), vec![], "roles object deleted");
    assert_eq!(w.catalog.backups()[0].status, BackupStatus::Failed);
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].body.contains("its next backups run on Fargate"), "{}", alerts[0].body);
}

/// The roles are dumped while pg_dump runs: when they fail, the dump is stopped there (not left to run to its
/// end), its upload aborted, and the failure names the roles.
#[tokio::test]
async fn given_the_roles_dump_fails_while_pg_dump_runs_then_the_dump_is_stopped_and_nothing_is_kept() {
    let mut dump = ScriptedDump::succeeding(SQL);
    dump.stall = true; // a dump that only ends when it is killed
    let w = world(dump);
    *w.dumper.roles_error.lock().unwrap() = Some("pg_dumpall: error: permission denied for table pg_authid".into());
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), w.job.run(&request(Some("orders"), None)))
        .await
        .expect("a failed roles dump stops the running dump")
        .unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert!(run.targets[0].message.contains("dumping the roles failed"), "{}", run.targets[0].message);
    assert!(run.targets[0].message.contains("permission denied"), "{}", run.targets[0].message);
    assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 1, "pg_dump was running meanwhile");
    assert!(w.store.open_upload_keys().is_empty(), "upload aborted");
    assert_eq!(w.store.all_versions(), vec![], "nothing kept");
    let record = &w.catalog.backups()[0];
    assert_eq!(record.status, BackupStatus::Failed);
    assert!(record.roles.is_none() && record.dump.is_none());
}

#[tokio::test]
async fn given_stderr_that_echoes_the_password_then_no_record_alert_or_message_contains_it() {
    let stderr = format!("pg_dump: error: connection to server failed: password={PASSWORD} rejected ({PASSWORD})");
    let w = world(ScriptedDump::failing(b"", &stderr));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    let everything = format!(
        "{:?}{:?}{:?}{}",
        w.catalog.backups(),
        w.alerts.sent(),
        w.catalog.runs(),
        serde_json::to_string(&run).unwrap()
    );
    assert!(!everything.contains(PASSWORD), "password leaked: {everything}");
    assert!(everything.contains("[REDACTED]"));
}

#[tokio::test]
async fn given_another_run_holds_the_lease_then_this_run_skips_quietly() {
    let w = world(ScriptedDump::succeeding(SQL));
    let now = w.clock.now();
    let other = LeaseRequest {
        target: "orders".into(),
        job: Job::Backup,
        owner: "other-run".into(),
        now,
        expires_at: now + chrono::Duration::hours(1),
    };
    assert_eq!(w.catalog.acquire_lease(&other).await.unwrap(), LeaseOutcome::Acquired);

    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.outcome, "succeeded", "losing the lease is not a failure");
    assert_eq!(run.targets[0].outcome, TargetOutcome::SkippedLeaseHeld);
    assert!(run.targets[0].message.contains("other-run"));
    assert!(w.alerts.sent().is_empty());
    assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 0);
    assert_eq!(
        w.catalog.lease_holder("orders", Job::Backup).as_deref(),
        Some("other-run"),
        "the other lease is untouched"
    );
}

#[tokio::test]
async fn given_a_lease_left_by_a_crashed_run_then_it_expires_and_the_backup_runs() {
    let w = world(ScriptedDump::succeeding(SQL));
    let now = w.clock.now();
    let crashed = LeaseRequest {
        target: "orders".into(),
        job: Job::Backup,
        owner: "crashed".into(),
        now,
        expires_at: now + chrono::Duration::hours(1),
    };
    w.catalog.acquire_lease(&crashed).await.unwrap();
    w.clock.advance(chrono::Duration::hours(2));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed);
}

#[tokio::test]
async fn given_the_same_event_twice_then_one_backup_is_made() {
    let w = world(ScriptedDump::succeeding(SQL));
    let first = w.job.run(&request(None, Some("event-1"))).await.unwrap();
    let second = w.job.run(&request(None, Some("event-1"))).await.unwrap();
    assert!(first.targets.iter().all(|t| t.outcome == TargetOutcome::Completed));
    assert!(second.targets.iter().all(|t| t.outcome == TargetOutcome::SkippedDuplicate));
    assert_eq!(second.targets[0].backup_id, first.targets[0].backup_id, "the duplicate names the backup it duplicates");
    assert_eq!(w.catalog.backups().len(), 2, "one per target");
    assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 2);

    let third = w.job.run(&request(None, Some("event-2"))).await.unwrap();
    assert!(third.targets.iter().all(|t| t.outcome == TargetOutcome::Completed), "a new event is a new backup");
}

fn claim(w: &World, owner: &str, expires_in: chrono::Duration) -> IdempotencyClaim {
    let now = w.clock.now();
    IdempotencyClaim {
        key: "event-1".into(),
        target: "orders".into(),
        owner: owner.into(),
        now,
        expires_at: now + expires_in,
    }
}

/// Deterministic, where the concurrency test on the emulator may be stopped by the lease instead: a delivery
/// whose claim another run holds stops at the claim, takes no lease, dumps nothing, and leaves the claim as it was.
#[tokio::test]
async fn given_a_delivery_still_running_then_a_duplicate_stops_at_the_claim_and_leaves_it() {
    let w = world(ScriptedDump::succeeding(SQL));
    let running = claim(&w, "first-delivery", chrono::Duration::hours(1));
    assert_eq!(w.catalog.claim_idempotency(&running).await.unwrap(), ClaimOutcome::Claimed);

    let duplicate = w.job.run(&request(Some("orders"), Some("event-1"))).await.unwrap();
    assert_eq!(duplicate.targets[0].outcome, TargetOutcome::SkippedDuplicate);
    assert!(duplicate.targets[0].message.contains("first-delivery"), "{}", duplicate.targets[0].message);
    assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 0);
    assert!(w.catalog.backups().is_empty());
    assert_eq!(w.catalog.lease_holder("orders", Job::Backup), None);
    let after = w.catalog.claim_idempotency(&claim(&w, "third", chrono::Duration::hours(1))).await.unwrap();
    assert_eq!(after, ClaimOutcome::InProgress { owner: "first-delivery".into() }, "the duplicate released nothing");
}

/// A run whose claim expired and was taken over settles nothing of the new owner's: marking it done is a
/// conflict (reported), releasing it leaves it.
#[tokio::test]
async fn given_a_claim_taken_over_then_the_old_owner_can_neither_complete_nor_release_it() {
    let w = world(ScriptedDump::succeeding(SQL));
    let expired = claim(&w, "crashed", chrono::Duration::seconds(-1));
    assert_eq!(w.catalog.claim_idempotency(&expired).await.unwrap(), ClaimOutcome::Claimed);
    let taker = claim(&w, "taker", chrono::Duration::hours(1));
    assert_eq!(
        w.catalog.claim_idempotency(&taker).await.unwrap(),
        ClaimOutcome::Claimed,
        "an expired claim is taken over"
    );

    let done = ClaimSettlement::Completed { backup_id: BackupId("b-1".into()), keep_until: w.clock.now() };
    let err = w.catalog.settle_idempotency(&expired, done).await.unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }) && err.to_string().contains("took it over"), "{err}");
    w.catalog.settle_idempotency(&expired, ClaimSettlement::Released).await.unwrap();
    let after = w.catalog.claim_idempotency(&claim(&w, "third", chrono::Duration::hours(1))).await.unwrap();
    assert_eq!(after, ClaimOutcome::InProgress { owner: "taker".into() });
}

#[tokio::test]
async fn given_a_failed_delivery_then_its_retry_may_try_again() {
    let w = world(ScriptedDump::failing(b"", "pg_dump: error: server closed the connection"));
    let first = w.job.run(&request(Some("orders"), Some("event-1"))).await.unwrap();
    assert_eq!(first.targets[0].outcome, TargetOutcome::Failed);
    *w.dumper.dump.lock().unwrap() = ScriptedDump::succeeding(SQL);
    let retry = w.job.run(&request(Some("orders"), Some("event-1"))).await.unwrap();
    assert_eq!(retry.targets[0].outcome, TargetOutcome::Completed);
}

#[tokio::test]
async fn given_an_unknown_target_then_the_error_lists_the_known_ones() {
    let w = world(ScriptedDump::succeeding(SQL));
    let err = w.job.run(&request(Some("ordres"), None)).await.unwrap_err().to_string();
    assert!(err.contains("ordres") && err.contains("orders, billing"), "{err}");
}

#[tokio::test]
async fn given_a_dry_run_then_nothing_is_written() {
    let w = world(ScriptedDump::succeeding(SQL));
    let mut req = request(Some("orders"), None);
    req.dry_run = true;
    let run = w.job.run(&req).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::DryRun);
    assert!(run.targets[0].message.contains("would back up"), "{}", run.targets[0].message);
    assert!(w.store.keys().is_empty() && w.catalog.backups().is_empty() && w.catalog.runs().is_empty());
    assert_eq!(w.dumper.dumps_started.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn given_a_missing_password_then_the_failure_names_the_variable() {
    let w = world(ScriptedDump::succeeding(SQL));
    let run = w.job.run(&request(Some("billing"), None)).await.unwrap();
    // billing shares ORDERS_PW in this world; point it elsewhere to see the message.
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed);
    let mut config = (*w.job.config).clone();
    config.targets[1].password = PasswordSource::Env("BILLING_PW".into());
    let job = BackupJob::new(Arc::new(config), w.job.deps.clone());
    let run = job.run(&request(Some("billing"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Failed);
    assert!(run.targets[0].message.contains("BILLING_PW"), "{}", run.targets[0].message);
}

#[tokio::test]
async fn the_lambda_handler_answers_with_the_run_or_an_error_type_lambda_can_report() {
    use crate::app::{self, handle_backup_event};
    use serde_json::json;

    let w = world(ScriptedDump::succeeding(SQL));
    let ok = handle_backup_event(&w.job, &json!({"target": "orders"}), "req-9", None).await.unwrap();
    assert_eq!(ok["targets"][0]["outcome"], "completed");
    assert_eq!(ok["idempotency_key"], "req-9", "a console event is keyed by Lambda's request id");

    let bad =
        handle_backup_event(&w.job, &json!({"target": "orders", "dryrun": true}), "req-10", None).await.unwrap_err();
    assert_eq!(bad.error_type, app::ErrorType::InvalidEvent);
    assert!(bad.message.contains("dryrun"), "{}", bad.message);
    let unknown = handle_backup_event(&w.job, &json!({"target": "nope"}), "req-11", None).await.unwrap_err();
    assert_eq!(unknown.error_type, app::ErrorType::InvalidEvent);

    *w.dumper.dump.lock().unwrap() = ScriptedDump::failing(b"", "pg_dump: error: boom");
    let failed = handle_backup_event(&w.job, &json!({"target": "orders"}), "req-12", None).await.unwrap_err();
    assert_eq!(failed.error_type, app::ErrorType::BackupFailed);
    assert!(failed.message.contains("boom"), "{}", failed.message);
}

/// What a run killed mid-backup leaves behind (a Lambda timeout, an out-of-memory kill, `kill -9`): its record
/// `in_progress`, its lease for another hour, its roles file, and an open upload holding a part.
async fn leave_a_killed_run(w: &World) -> BackupRecord {
    let started_at = w.clock.now();
    let id = BackupId::new(started_at);
    let record =
        BackupRecord::in_progress("orders", id.clone(), Trigger::Schedule, "killed-run", started_at, Codec::Zstd);
    w.catalog.create_backup(&record).await.unwrap();
    let keys = ObjectKeys::new("", "orders", &id, started_at, Codec::Zstd);
    w.store.put_object(&keys.roles, Bytes::from_static(b"CREATE ROLE app;"), "application/sql").await.unwrap();
    let upload = w.store.create_multipart(&keys.dump, "application/zstd").await.unwrap();
    let body = Bytes::from_static(b"the first part");
    let sha256 = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&body)).into();
    upload.upload_part(PartToUpload { number: 1, body, sha256 }).await.unwrap();
    let lease = LeaseRequest {
        target: "orders".into(),
        job: Job::Backup,
        owner: "killed-run".into(),
        now: started_at,
        expires_at: started_at + chrono::Duration::hours(1),
    };
    w.catalog.acquire_lease(&lease).await.unwrap();
    record
}

fn record_of(w: &World, id: &BackupId) -> BackupRecord {
    w.catalog.backups().into_iter().find(|b| b.backup_id == *id).expect("the record")
}

#[tokio::test]
async fn given_a_run_killed_mid_backup_then_the_next_fails_its_record_removes_what_it_wrote_and_alerts_once() {
    let w = world(ScriptedDump::succeeding(SQL));
    let killed = leave_a_killed_run(&w).await;
    let prefix = ObjectKeys::new("", "orders", &killed.backup_id, killed.started_at, Codec::Zstd).attempt_prefix;
    w.clock.advance(chrono::Duration::hours(2));

    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "the new backup is made: {:?}", run.targets[0]);
    let failed = record_of(&w, &killed.backup_id);
    assert_eq!(failed.status, BackupStatus::Failed);
    let error = failed.error.clone().unwrap();
    assert!(error.contains("killed-run") && error.contains("stopped without finishing"), "{error}");
    assert_eq!(failed.finished_at, Some(w.clock.now()));
    assert!(w.store.keys().iter().all(|k| !k.starts_with(&prefix)), "its objects are gone: {:?}", w.store.keys());
    assert!(w.store.open_upload_keys().is_empty(), "its upload is aborted: {:?}", w.store.open_upload_keys());

    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1, "one alert, for the abandoned backup: {alerts:?}");
    assert!(alerts[0].subject.contains("FAILED"), "{}", alerts[0].subject);
    let body = &alerts[0].body;
    assert!(body.contains(&killed.backup_id.to_string()) && body.contains("Run: killed-run"), "{body}");
    assert!(body.contains("1 multipart upload(s) it left open were aborted"), "{body}");
    assert!(body.contains("the 1 object version(s) it had written were deleted"), "{body}");
    assert!(body.contains("out-of-memory"), "the hint says where to look: {body}");
    let metrics = w.metrics.0.lock().unwrap().clone();
    assert!(metrics.iter().any(|m| m.contains("\"BackupSuccess\":0.0")), "{metrics:?}");

    // The next run finds nothing more to fail, and says nothing more about it.
    w.clock.advance(chrono::Duration::hours(1));
    let again = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(again.targets[0].outcome, TargetOutcome::Completed);
    assert_eq!(w.alerts.sent().len(), 1, "{:?}", w.alerts.sent());
}

#[tokio::test]
async fn given_a_run_that_still_holds_its_lease_then_its_backup_in_progress_is_left_alone() {
    let w = world(ScriptedDump::succeeding(SQL));
    let running = leave_a_killed_run(&w).await;
    w.clock.advance(chrono::Duration::minutes(30));
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::SkippedLeaseHeld);
    assert_eq!(record_of(&w, &running.backup_id).status, BackupStatus::InProgress);
    assert_eq!(w.store.open_upload_keys().len(), 1, "its upload is untouched");
    assert_eq!(w.store.all_versions().len(), 1, "its roles file is untouched");
    assert!(w.alerts.sent().is_empty());
}

#[tokio::test]
async fn given_an_abandoned_backup_whose_objects_cannot_be_removed_then_it_is_still_failed_and_the_alert_says_what_is_left(
) {
    let w = world(ScriptedDump::succeeding(SQL));
    let killed = leave_a_killed_run(&w).await;
    w.clock.advance(chrono::Duration::hours(2));
    w.store.faults.fail("ListMultipartUploads");
    w.store.faults.fail("DeleteObject");
    let run = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "the new backup needs neither call");
    assert_eq!(record_of(&w, &killed.backup_id).status, BackupStatus::Failed);
    let alerts = w.alerts.sent();
    let abandoned = alerts.iter().find(|a| a.body.contains("Run: killed-run")).expect("the abandoned backup's alert");
    assert!(abandoned.body.contains("Cleaning up that attempt was incomplete"), "{}", abandoned.body);
    assert!(abandoned.body.contains("its open uploads could not be listed"), "{}", abandoned.body);
    assert!(abandoned.body.contains("the next purge deletes what a failed backup left"), "{}", abandoned.body);
}

#[tokio::test]
async fn given_the_catalog_cannot_mark_an_abandoned_backup_then_it_stays_for_the_next_run_and_nothing_is_deleted() {
    let w = world(ScriptedDump::succeeding(SQL));
    let killed = leave_a_killed_run(&w).await;
    w.clock.advance(chrono::Duration::hours(2));
    w.catalog.fail_updates_to(BackupStatus::Failed);
    let _ = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(record_of(&w, &killed.backup_id).status, BackupStatus::InProgress);
    assert_eq!(w.store.open_upload_keys().len(), 1, "nothing removed before the record says failed");
    w.catalog.heal_updates();
    w.clock.advance(chrono::Duration::hours(1));
    let _ = w.job.run(&request(Some("orders"), None)).await.unwrap();
    assert_eq!(record_of(&w, &killed.backup_id).status, BackupStatus::Failed);
    assert!(w.store.open_upload_keys().is_empty());
}

// ---------------------------------------------------------------- server targets

/// `orders`, and the server target `prod`: every database but `*_scratch`, discovered through `postgres`.
fn server_world(databases: &[&str]) -> World {
    let mut server = target("prod");
    server.database = "postgres".into();
    server.databases = vec!["*".into()];
    server.exclude_databases = vec!["*_scratch".into()];
    let mut config = test_config(vec![target("orders")]);
    config.servers = vec![server];
    let w = world_with(ScriptedDump::succeeding(SQL), config);
    w.dumper.set_databases(databases);
    w
}

/// The job as the next invocation builds it: the configuration with the catalog's inventories.
async fn next_invocation(w: &World) -> BackupJob {
    let config = (*w.job.config).clone().with_inventories(&w.catalog.inventories().await.unwrap());
    BackupJob::new(Arc::new(config), w.deps.clone())
}

fn unit_names(units: &[PlannedUnit]) -> Vec<&str> {
    units.iter().map(|u| u.target.as_str()).collect()
}

#[tokio::test]
async fn given_a_server_target_its_databases_are_discovered_and_each_is_a_unit_after_the_configured_targets() {
    let w = server_world(&["postgres", "billing", "app", "tmp_scratch"]);
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders", "prod.app", "prod.billing", "prod.postgres"]);
    assert!(w.alerts.sent().is_empty(), "new databases need nobody: {:?}", w.alerts.sent());
    let inventory = &w.catalog.inventories().await.unwrap()[0];
    assert_eq!(inventory.present().count(), 3);
    // A unit runs in an invocation of its own, which knows the database from the inventory.
    let job = next_invocation(&w).await;
    let run = job.run(&request(Some("prod.billing"), Some("execution-1"))).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = &w.catalog.backups()[0];
    assert_eq!(record.target, "prod.billing");
    assert!(record.dump.as_ref().unwrap().key.starts_with("prod.billing/"));
    // Naming the server runs the fan-out over its databases only.
    let units = job.fan_out(Some(&["prod".to_string()])).await.unwrap();
    assert_eq!(unit_names(&units), ["prod.app", "prod.billing", "prod.postgres"]);
}

#[tokio::test]
async fn given_databases_added_and_dropped_then_the_new_are_units_and_the_dropped_alert_once_and_stay_for_purge() {
    let w = server_world(&["a", "b"]);
    w.job.fan_out(None).await.unwrap();
    w.clock.advance(chrono::Duration::days(1));
    w.dumper.set_databases(&["a", "c"]);
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders", "prod.a", "prod.c"]);
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].severity, Severity::Warning);
    assert!(alerts[0].body.contains("\"b\"") && alerts[0].body.contains("no longer backed up"), "{}", alerts[0].body);
    w.clock.advance(chrono::Duration::days(1));
    w.job.fan_out(None).await.unwrap();
    assert_eq!(w.alerts.sent().len(), 1, "a database gone already is not alerted again");
    let job = next_invocation(&w).await;
    assert_eq!(job.config.target_names(), ["orders", "prod.a", "prod.c"]);
    assert_eq!(job.config.gone.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["prod.b"]);
    assert_eq!(job.config.target("prod.b").unwrap().database, "b", "a request may still name it");
}

#[tokio::test]
async fn given_a_database_whose_name_cannot_be_a_key_then_every_run_alerts_and_the_others_are_backed_up() {
    let w = server_world(&["a", "My Database"]);
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders", "prod.a"]);
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(
        alerts[0].body.contains("\"My Database\"") && alerts[0].body.contains("NOT backed up"),
        "{}",
        alerts[0].body
    );
    w.job.fan_out(None).await.unwrap();
    assert_eq!(w.alerts.sent().len(), 2, "not backed up is said at every run");
}

#[tokio::test]
async fn given_patterns_that_select_nothing_then_the_run_says_so() {
    let w = server_world(&["x_scratch"]);
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders"]);
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].body.contains("nothing of this server is backed up"), "{}", alerts[0].body);
}

#[tokio::test]
async fn given_a_server_that_cannot_be_listed_then_it_alerts_and_its_known_databases_are_still_backed_up() {
    let w = server_world(&["a", "b"]);
    w.job.fan_out(None).await.unwrap();
    *w.dumper.databases.lock().unwrap() =
        Err(format!("psql: error: connection to server failed: password authentication failed ({PASSWORD})"));
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders", "prod.a", "prod.b"]);
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(
        alerts[0].body.contains("known from the last discovery are backed up as usual: a, b"),
        "{}",
        alerts[0].body
    );
    assert!(!alerts[0].body.contains(PASSWORD), "the password is redacted: {}", alerts[0].body);
    // A run over every target records the server's failure as a result of its own.
    let run = w.job.run(&request(None, None)).await.unwrap();
    let server = run.targets.iter().find(|t| t.target == "prod").expect("the server's result");
    assert_eq!(server.outcome, TargetOutcome::Failed);
    assert_eq!(run.targets.len(), 4, "orders, prod.a, prod.b and the server: {:?}", run.targets);
}

#[tokio::test]
async fn given_the_inventories_cannot_be_read_then_the_fan_out_is_retried_rather_than_guessed() {
    let w = server_world(&["a"]);
    w.catalog.faults.fail("inventories");
    assert!(matches!(w.job.fan_out(None).await, Err(FanOutError::Inventories(_))));
    // The plan shown by `backstop runners` discovers nothing and writes nothing.
    w.catalog.faults.heal("inventories");
    assert_eq!(unit_names(&w.job.plan(None).await.unwrap()), ["orders"]);
    assert!(w.catalog.inventories().await.unwrap().is_empty());
}

#[tokio::test]
async fn given_a_unit_the_inventory_does_not_know_then_the_error_says_discovery_will() {
    let w = server_world(&["a"]);
    let err = w.job.run(&request(Some("prod.new"), None)).await.unwrap_err();
    assert!(err.known.contains("orders") && err.known.contains("prod"), "{err}");
    assert!(err.to_string().contains("next backup run's discovery"), "{err}");
}

#[tokio::test]
async fn given_a_dry_run_then_discovery_lists_the_servers_databases_but_stores_nothing_and_alerts_nobody() {
    let w = server_world(&["a", "My Database"]);
    let mut dry = request(None, None);
    dry.dry_run = true;
    let run = w.job.run(&dry).await.unwrap();
    let names: Vec<&str> = run.targets.iter().map(|t| t.target.as_str()).collect();
    assert_eq!(names, ["orders", "prod.a"]);
    assert!(w.alerts.sent().is_empty(), "{:?}", w.alerts.sent());
    assert!(w.catalog.inventories().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn given_a_server_that_hangs_then_its_discovery_gives_up_and_the_rest_of_the_fan_out_goes_on() {
    let w = server_world(&["a"]);
    w.job.fan_out(None).await.unwrap();
    w.dumper.list_hangs.store(true, Ordering::SeqCst);
    let units = w.job.fan_out(None).await.unwrap();
    assert_eq!(unit_names(&units), ["orders", "prod.a"], "the known database is still attempted");
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].body.contains("did not answer the list within 30 s"), "{}", alerts[0].body);
}

#[tokio::test]
async fn given_the_inventory_cannot_be_stored_then_a_new_database_waits_for_the_next_run() {
    let w = server_world(&["a"]);
    w.job.fan_out(None).await.unwrap();
    w.clock.advance(chrono::Duration::days(1));
    w.dumper.set_databases(&["a", "b"]);
    w.catalog.faults.fail("put_inventory");
    // Its unit's own invocation would not find it in the stored inventory.
    assert_eq!(unit_names(&w.job.fan_out(None).await.unwrap()), ["orders", "prod.a"]);
    w.catalog.faults.heal("put_inventory");
    assert_eq!(unit_names(&w.job.fan_out(None).await.unwrap()), ["orders", "prod.a", "prod.b"]);
}
