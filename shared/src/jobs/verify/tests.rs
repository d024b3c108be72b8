//! Unit tests of the drill's phase machine on in-memory fakes (scratch servers, a restorer that answers as a
//! faithful restore would, the store and catalog the backup job wrote to): a drill cut off after every step
//! resumes to the same verdict; a phase that fails fails the drill, cleans up and alerts once, unless the
//! scratch server stopped it (then it is inconclusive and the backup keeps its status); a scratch
//! server that cannot be destroyed keeps the drill open until it can. The same for point-in-time drills, on
//! RDS copies in memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::adapters::memory::*;
use crate::jobs::backup::{BackupDeps, BackupJob, BackupRequest};
use crate::jobs::test_support::{target, test_config, test_now};
use crate::metrics::RecordingMetrics;
use crate::passwords::PasswordResolver;

const SQL: &[u8] = b"--\n-- Dumped from database version 15.18\n-- Dumped by pg_dump version 15.18\n\
CREATE TABLE public.t (id int);\nCOPY public.t (id) FROM stdin;\n1\n2\n3\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

struct World {
    store: MemoryStore,
    catalog: MemoryCatalog,
    alerts: RecordingAlerts,
    scratch: MemoryScratch,
    restorer: ScriptedRestorer,
    pitr: MemoryPointInTime,
    job: VerifyJob,
}

/// One target with one completed backup (made by the backup job on the same fakes), and the verify job.
async fn world() -> World {
    world_with(None).await
}

/// As [`world`]; with `pitr_source`, the target also gets point-in-time drills of that RDS instance.
async fn world_with(pitr_source: Option<&str>) -> World {
    world_configured(pitr_source, |_| {}).await
}

/// As [`world_with`], the configuration changed by `configure` first (every target gets a backup).
async fn world_configured(pitr_source: Option<&str>, configure: impl FnOnce(&mut Config)) -> World {
    let mut orders = target("orders");
    orders.pitr_source_instance = pitr_source.map(str::to_string);
    let mut config = test_config(vec![orders]);
    configure(&mut config);
    let config = Arc::new(config);
    let pitr = MemoryPointInTime::default();
    *pitr.restorable_at.lock().unwrap() = Some(test_now() - chrono::Duration::minutes(5));
    let (store, catalog, alerts) = (MemoryStore::default(), MemoryCatalog::default(), RecordingAlerts::default());
    let (scratch, restorer) = (MemoryScratch::default(), ScriptedRestorer::default());
    let clock = FixedClock::at(test_now());
    let env = [("ORDERS_PW".to_string(), "pw".to_string())].into_iter().collect();
    let passwords = Arc::new(PasswordResolver::new(Arc::new(MemorySecrets::default()), env));
    let backup = BackupJob::new(
        config.clone(),
        BackupDeps {
            store: Arc::new(store.clone()),
            catalog: Arc::new(catalog.clone()),
            alerts: Arc::new(alerts.clone()),
            dumper: Arc::new(ScriptedDumper::new(ScriptedDump::succeeding(SQL))),
            passwords: passwords.clone(),
            clock: Arc::new(clock.clone()),
            metrics: Arc::new(RecordingMetrics::default()),
        },
    );
    let request = BackupRequest {
        target: None,
        dry_run: false,
        trigger: Trigger::Schedule,
        request_id: "backup".into(),
        idempotency_key: None,
        deadline: None,
    };
    let run = backup.run(&request).await.unwrap();
    for t in &run.targets {
        assert_eq!(t.outcome, crate::domain::TargetOutcome::Completed, "{}", t.message);
    }
    let job = VerifyJob::new(
        config,
        VerifyDeps {
            store: Arc::new(store.clone()),
            catalog: Arc::new(catalog.clone()),
            alerts: Arc::new(alerts.clone()),
            scratch: Arc::new(scratch.clone()),
            restorer: Arc::new(restorer.clone()),
            point_in_time: pitr_source.map(|_| Arc::new(pitr.clone()) as Arc<dyn PointInTimeRestores>),
            passwords,
            clock: Arc::new(clock),
            metrics: Arc::new(RecordingMetrics::default()),
        },
    );
    World { store, catalog, alerts, scratch, restorer, pitr, job }
}

fn request(max_steps: Option<usize>, resume_only: bool) -> VerifyRequest {
    VerifyRequest {
        target: None,
        backup_id: None,
        trigger: Trigger::Schedule,
        request_id: "verify".into(),
        deadline: None,
        max_steps,
        resume_only,
        abandon: None,
        sweep_only: false,
        exclude: Vec::new(),
    }
}

/// Runs (resuming) until the drill is done; the phase it was left in after each run.
async fn until_done(w: &World, max_steps: Option<usize>) -> (Vec<DrillPhase>, DrillSummary) {
    let mut run = w.job.run(&request(max_steps, false)).await.unwrap();
    let mut phases = Vec::new();
    for _ in 0..30 {
        let drill = run.drills.pop().expect("one drill");
        phases.push(drill.phase);
        if run.done {
            return (phases, drill);
        }
        run = w.job.run(&request(max_steps, true)).await.unwrap();
    }
    panic!("the drill did not finish: {phases:?}");
}

fn backup_status(w: &World) -> BackupStatus {
    w.catalog.backups()[0].status
}

#[tokio::test]
async fn a_drill_cut_off_after_every_step_resumes_through_each_phase_to_the_verdict() {
    let w = world().await;
    w.scratch.creating_polls.store(2, Ordering::SeqCst);
    let (phases, drill) = until_done(&w, Some(1)).await;
    assert_eq!(
        phases,
        [
            DrillPhase::Provisioning,
            DrillPhase::Provisioning,
            DrillPhase::Restoring,
            DrillPhase::Checking,
            DrillPhase::Cleaning,
            DrillPhase::Done
        ],
        "two polls while the server is created, then one phase per run"
    );
    assert_eq!(drill.outcome, Some(BackupStatus::Verified), "{drill:?}");
    assert_eq!(backup_status(&w), BackupStatus::Verified);
    assert!(w.scratch.live().is_empty() && w.scratch.destroyed().len() == 1, "the scratch server is gone");
    assert!(w.alerts.sent().is_empty(), "a passing drill is quiet: {:?}", w.alerts.sent());

    // Uninterrupted, the same verdict.
    let w = world().await;
    let (_, drill) = until_done(&w, None).await;
    assert_eq!(drill.outcome, Some(BackupStatus::Verified));
}

/// The restore's first reads of the backup (the dump's version, the manifest, the roles, the dump opened) are
/// made while a server that is ready when made is, and handed to the restore in the same run; a drill resumed
/// by another run makes them again, as its restore starts; and nothing is read ahead for a server that takes
/// minutes to make (RDS's), which the drill waits for across runs.
#[tokio::test]
async fn the_backups_first_reads_go_on_while_the_scratch_server_is_made_and_the_restore_takes_them() {
    for (case, made_slowly, max_steps, reads) in
        [("one run", false, None, 1), ("a run per step", false, Some(1), 2), ("a server made slowly", true, None, 1)]
    {
        let w = world().await;
        if made_slowly {
            w.scratch.made_slowly.store(true, Ordering::SeqCst);
            w.scratch.creating_polls.store(2, Ordering::SeqCst);
        }
        let (_, drill) = until_done(&w, max_steps).await;
        assert_eq!(drill.outcome, Some(BackupStatus::Verified), "{case}: {drill:?}");
        let backup = &w.catalog.backups()[0];
        let (dump, roles) = (backup.dump.as_ref().unwrap(), backup.roles.as_ref().unwrap());
        assert_eq!(w.store.reads("HeadObject", &dump.key), reads, "{case}: the dump's current version");
        assert_eq!(w.store.reads("GetObject", &roles.key), reads, "{case}: the roles script");
    }
}

#[tokio::test]
async fn a_phase_that_fails_fails_the_drill_cleans_up_and_alerts_once() {
    for failing in ["restore_framed", "read_back", "restore_roles"] {
        let w = world().await;
        w.restorer.faults.fail(failing);
        let (_, drill) = until_done(&w, None).await;
        assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{failing}: {drill:?}");
        assert_eq!(backup_status(&w), BackupStatus::VerifyFailed, "{failing}");
        assert!(w.scratch.live().is_empty(), "{failing}: nothing left running");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        assert!(alerts[0].body.contains("injected failure"), "{failing}: {}", alerts[0].body);
    }
}

/// A restore or read-back stopped by the scratch server (its disk full, its connection lost) gives no verdict:
/// the backup keeps its status, one warning says why, the server is gone, and no evidence is written.
#[tokio::test]
async fn a_drill_stopped_by_its_scratch_server_is_inconclusive_and_the_backup_keeps_its_status() {
    for (failing, message, why) in [
        // As the adapters word and mark them (`pg_wire::describe`).
        (
            "restore_framed",
            "ERROR: could not extend file \"base/1/2\": No space left on device (SQLSTATE 53100) [server fault: the server ran out of disk]",
            "ran out of disk during the restore check",
        ),
        (
            "read_back",
            "connection closed [server fault: the connection to the server was lost]",
            "connection to the scratch server was lost",
        ),
    ] {
        let w = world().await;
        w.restorer.faults.fail_saying(failing, message);
        let (_, drill) = until_done(&w, None).await;
        assert_eq!((drill.phase, drill.outcome), (DrillPhase::Done, None), "{failing}: {drill:?}");
        assert!(drill.message.starts_with("inconclusive: ") && drill.message.contains(why), "{}", drill.message);
        assert_eq!(backup_status(&w), BackupStatus::Completed, "{failing}");
        assert!(w.catalog.backups()[0].verification.is_none(), "{failing}");
        assert!(w.scratch.live().is_empty(), "{failing}: nothing left running");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        assert_eq!(alerts[0].severity, crate::domain::Severity::Warning);
        assert!(alerts[0].subject.contains("inconclusive"), "{}", alerts[0].subject);
        assert!(alerts[0].body.contains(message), "{failing}: {}", alerts[0].body);
        let evidence = w.store.keys().into_iter().filter(|k| k.ends_with(".evidence.json")).count();
        assert_eq!(evidence, 0, "{failing}: no verdict, no evidence");
    }

    // A failure without such a mark is judged as always, whatever its words.
    let w = world().await;
    w.restorer.faults.fail_saying("read_back", "ERROR: duplicate key; Key (m)=(connection closed) already exists");
    let (_, drill) = until_done(&w, None).await;
    assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{drill:?}");
}

/// S3 not answering the drill's reads, or throttling them, after every retry says nothing of the backup: the
/// drill is inconclusive. S3 refusing them, or not finding the object, is the backup's failure as before.
#[tokio::test]
async fn a_store_that_does_not_answer_makes_the_drill_inconclusive_a_refusal_does_not() {
    use crate::ports::AwsErrorKind;
    for (operation, kind) in [
        ("HeadObject", AwsErrorKind::Unavailable),
        ("GetObject", AwsErrorKind::Throttled),
        ("GetObject", AwsErrorKind::Unavailable),
    ] {
        let w = world().await;
        w.store.faults.fail_as(operation, kind);
        let (_, drill) = until_done(&w, None).await;
        assert_eq!((drill.phase, drill.outcome), (DrillPhase::Done, None), "{operation} {kind:?}: {drill:?}");
        assert!(drill.message.contains("the object store (S3) did not answer"), "{}", drill.message);
        assert_eq!(backup_status(&w), BackupStatus::Completed, "{operation} {kind:?}");
        assert!(w.scratch.live().is_empty(), "{operation} {kind:?}: nothing left running");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].severity, crate::domain::Severity::Warning);
        assert!(alerts[0].body.contains("network path to S3"), "{}", alerts[0].body);
    }
    for kind in [AwsErrorKind::Denied, AwsErrorKind::NotFound, AwsErrorKind::Other] {
        let w = world().await;
        w.store.faults.fail_as("GetObject", kind);
        let (_, drill) = until_done(&w, None).await;
        assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{kind:?}: {drill:?}");
    }
}

/// A scratch server that could not be created, or failed before it was ready, has restored nothing: the drill is
/// inconclusive, the backup keeps its status, and the warning says where to look.
#[tokio::test]
async fn a_scratch_server_that_cannot_be_provisioned_makes_the_drill_inconclusive() {
    for failing in ["create", "poll"] {
        let w = world().await;
        w.scratch.faults.fail(failing);
        let (_, drill) = until_done(&w, None).await;
        assert_eq!((drill.phase, drill.outcome), (DrillPhase::Done, None), "{failing}: {drill:?}");
        assert!(drill.message.contains("could not be provisioned"), "{failing}: {}", drill.message);
        assert_eq!(backup_status(&w), BackupStatus::Completed, "{failing}");
        assert!(w.catalog.backups()[0].verification.is_none(), "{failing}");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        assert_eq!(alerts[0].severity, crate::domain::Severity::Warning);
        assert!(alerts[0].body.contains("rds:CreateDBInstance"), "{failing}: {}", alerts[0].body);
        assert!(alerts[0].body.contains("injected failure"), "{failing}: {}", alerts[0].body);
        assert!(w.scratch.live().is_empty(), "{failing}: nothing left running");
    }
}

#[tokio::test]
async fn a_scratch_server_that_cannot_be_destroyed_keeps_the_drill_open_until_it_can() {
    let w = world().await;
    w.scratch.faults.fail("destroy");
    let first = w.job.run(&request(None, false)).await.unwrap();
    assert!(!first.done, "{first:?}");
    assert_eq!(first.drills[0].phase, DrillPhase::Cleaning, "{first:?}");
    assert_eq!(w.scratch.live().len(), 1);
    w.scratch.faults.heal("destroy");
    let (_, drill) = until_done(&w, None).await;
    assert_eq!(drill.outcome, Some(BackupStatus::Verified));
    assert!(w.scratch.live().is_empty());
}

/// Runs (resuming) until every drill is done; the point-in-time drill's record then.
async fn until_all_done(w: &World) -> DrillRecord {
    let mut run = w.job.run(&request(None, false)).await.unwrap();
    for _ in 0..30 {
        if run.done {
            let drills = w.catalog.drills();
            return drills.into_iter().find(|d| d.point_in_time.is_some()).expect("a point-in-time drill");
        }
        run = w.job.run(&request(None, true)).await.unwrap();
    }
    panic!("the drills did not finish: {run:?}");
}

fn pitr_alerts(w: &World) -> Vec<Alert> {
    w.alerts.sent().into_iter().filter(|a| a.body.contains("orders-prod")).collect()
}

#[tokio::test]
async fn a_point_in_time_drill_restores_the_newest_point_checks_the_copy_and_deletes_it() {
    let w = world_with(Some("orders-prod")).await;
    w.pitr.creating_polls.store(2, Ordering::SeqCst);
    let drill = until_all_done(&w).await;
    assert_eq!(drill.phase, DrillPhase::Done);
    assert!(drill.report.passed(), "{:?}", drill.report.checks);
    let restored_to = test_now() - chrono::Duration::minutes(5);
    assert_eq!(drill.point_in_time.as_ref().and_then(|p| p.restore_time), Some(restored_to));
    assert_eq!(drill.report.timings.rpo_seconds, Some(300.0), "RPO: the restored point's age at the drill's start");
    assert!(w.pitr.live().is_empty(), "the copy is deleted: {:?}", w.pitr.live());
    assert_eq!(w.pitr.destroyed(), vec![drill.drill_id.clone()]);
    assert!(pitr_alerts(&w).is_empty(), "a passing drill is quiet: {:?}", pitr_alerts(&w));
}

#[tokio::test]
async fn a_point_in_time_drill_that_fails_anywhere_deletes_its_copy_and_alerts_once() {
    for failing in ["no restorable time", "latest_restorable_time", "restore", "poll", "check"] {
        let w = world_with(Some("orders-prod")).await;
        match failing {
            "no restorable time" => *w.pitr.restorable_at.lock().unwrap() = None,
            "check" => w.restorer.faults.fail("check"),
            operation => w.pitr.faults.fail(operation),
        }
        let drill = until_all_done(&w).await;
        assert!(!drill.report.passed(), "{failing}: {:?}", drill.report.checks);
        assert!(w.pitr.live().is_empty(), "{failing}: no copy left: {:?}", w.pitr.live());
        let alerts = pitr_alerts(&w);
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        let expected = if failing == "no restorable time" { "no restorable time" } else { "injected failure" };
        assert!(alerts[0].body.contains(expected), "{failing}: {}", alerts[0].body);
    }
}

#[tokio::test]
async fn a_point_in_time_copy_that_cannot_be_deleted_keeps_the_drill_open_until_it_can() {
    let w = world_with(Some("orders-prod")).await;
    w.pitr.faults.fail("destroy");
    let first = w.job.run(&request(None, false)).await.unwrap();
    assert!(!first.done, "{first:?}");
    assert_eq!(w.pitr.live().len(), 1);
    w.pitr.faults.heal("destroy");
    let drill = until_all_done(&w).await;
    assert!(drill.report.passed(), "{:?}", drill.report.checks);
    assert!(w.pitr.live().is_empty());
}

// ---------------------------------------------------------------- the state machine's plan

/// `orders` drills on Lambda; `archive` (runner "fargate") in a Fargate task.
async fn fargate_world() -> World {
    world_configured(None, |config| {
        let mut archive = target("archive");
        archive.runner = crate::domain::runner::RunnerSetting::Fargate;
        config.targets.push(archive);
        config.fargate = true;
    })
    .await
}

async fn handle(w: &World, event: serde_json::Value) -> serde_json::Value {
    crate::app::handle_verify_event(&w.job, &event, "req", None).await.unwrap()
}

#[tokio::test]
async fn the_plan_sends_each_drill_to_its_runner_and_the_lambda_loop_leaves_the_fargate_ones_alone() {
    let w = fargate_world().await;
    let plan = handle(&w, serde_json::json!({ "action": "plan", "input": { "trigger": "schedule" } })).await;
    assert_eq!(plan["fargate"][0]["target"], "archive");
    assert_eq!(
        plan["fargate"][0]["command"],
        serde_json::json!(["verify", "--target", "archive", "--trigger", "schedule", "--emf"])
    );
    assert!(plan["fargate"][0]["runner_reasons"][0].as_str().unwrap().contains("fargate"), "{plan}");
    assert_eq!(plan["start"], serde_json::json!({ "trigger": "schedule", "exclude": ["archive"] }));
    // The loop as the state machine runs it: each payload the plan gave goes back to the function as it is.
    let started = handle(&w, plan["start"].clone()).await;
    let drilled: Vec<&str> =
        started["drills"].as_array().unwrap().iter().map(|d| d["target"].as_str().unwrap()).collect();
    assert_eq!(drilled, ["orders"], "{started}");
    let mut answer = started;
    while answer["done"] != true {
        answer = handle(&w, plan["resume"].clone()).await;
    }
    assert!(w.catalog.drills().iter().all(|d| d.target == "orders"), "archive's drill is the task's to run");
    // A Fargate drill that dies leaves its drill to the function's abandon, for that target alone.
    let left = DrillRecord::new(
        "archive",
        w.catalog.backups().iter().find(|b| b.target == "archive").unwrap().backup_id.clone(),
        test_now(),
    );
    w.catalog.create_drill(&left).await.unwrap();
    let abandon = serde_json::json!({ "target": "archive", "resume_only": true, "abandon": "the task stopped" });
    let abandoned = handle(&w, abandon).await;
    assert_eq!(abandoned["done"], true, "{abandoned}");
    let archive = w.catalog.drills().into_iter().find(|d| d.target == "archive").unwrap();
    assert_eq!(archive.phase, DrillPhase::Done);
    assert!(w.alerts.sent().iter().any(|a| a.target.as_deref() == Some("archive")), "the abandoned drill alerts");
}

#[tokio::test]
async fn without_the_fargate_runner_every_drill_is_planned_on_lambda_and_a_named_backup_reaches_the_task() {
    let w = fargate_world().await;
    let archive = w.catalog.backups().into_iter().find(|b| b.target == "archive").unwrap().backup_id;
    let input = serde_json::json!({ "target": "archive", "backup_id": archive.as_str() });
    let plan = handle(&w, serde_json::json!({ "action": "plan", "input": input })).await;
    let command = plan["fargate"][0]["command"].as_array().unwrap();
    assert!(command.windows(2).any(|pair| pair[0] == "--backup" && pair[1] == archive.as_str()), "{plan}");
    assert_eq!(plan["fargate"][0]["command"][4], "console", "a start by hand is a console run");

    let w = world_configured(None, |config| {
        config.targets[0].runner = crate::domain::runner::RunnerSetting::Fargate;
    })
    .await;
    let plan = handle(&w, serde_json::json!({ "action": "plan", "input": {} })).await;
    assert_eq!(plan["fargate"], serde_json::json!([]));
    assert_eq!(plan["start"]["exclude"], serde_json::json!([]));
}

#[tokio::test]
async fn a_plan_with_loop_fields_or_an_unknown_action_is_refused() {
    let w = world().await;
    for event in [
        serde_json::json!({ "action": "plan", "resume_only": true }),
        serde_json::json!({ "action": "drill" }),
        serde_json::json!({ "exclude": ["no spaces"] }),
        serde_json::json!({ "action": "plan", "input": { "target": "nope" } }),
    ] {
        let err = crate::app::handle_verify_event(&w.job, &event, "req", None).await.unwrap_err();
        assert_eq!(err.error_type, crate::app::ErrorType::InvalidEvent, "{event}: {}", err.message);
    }
}

#[tokio::test]
async fn every_finished_drill_leaves_its_evidence_beside_the_backup_matching_its_record() {
    let w = world_configured(None, |config| {
        config.verify.rto_budget = Some(std::time::Duration::from_secs(3600));
    })
    .await;
    let (_, summary) = until_done(&w, None).await;
    let drill = w.catalog.drills().into_iter().find(|d| d.drill_id == summary.drill_id).unwrap();
    let backup = &w.catalog.backups()[0];
    let key = w.store.keys().into_iter().find(|k| k.ends_with(".evidence.json")).expect("an evidence document");
    assert!(key.starts_with(&crate::domain::backup::attempt_prefix(backup, "")), "beside the backup: {key}");
    let evidence: crate::domain::evidence::DrillEvidenceDocument =
        serde_json::from_slice(&w.store.object_bytes(&key).unwrap()).unwrap();
    assert_eq!((evidence.drill_id.as_str(), &evidence.backup_id), (drill.drill_id.as_str(), &drill.backup_id));
    assert_eq!(evidence.checks, drill.report.checks);
    assert_eq!(
        (evidence.rto_seconds, evidence.rpo_seconds),
        (drill.report.timings.rto_seconds, drill.report.timings.rpo_seconds)
    );
    assert!(
        evidence.passed && evidence.rto_compliant == Some(true) && evidence.rpo_compliant.is_none(),
        "{evidence:?}"
    );
    assert_eq!(evidence.dump, backup.dump);
    assert_eq!(evidence.server_version, backup.server_version);
}

#[tokio::test]
async fn evidence_that_cannot_be_written_is_said_and_the_verdict_stands() {
    let w = world().await;
    w.store.fail_puts_ending_with(".evidence.json");
    let (_, summary) = until_done(&w, None).await;
    assert_eq!(summary.outcome, Some(BackupStatus::Verified));
    let drill = w.catalog.drills().into_iter().find(|d| d.drill_id == summary.drill_id).unwrap();
    assert!(drill.report.budget_warnings.iter().any(|w| w.contains("evidence document")), "{:?}", drill.report);
}

/// A restore or a check starts only with most of an invocation ahead of it; with less (another drill used the
/// rest) it waits for the next invocation instead of being cut off at the limit.
#[tokio::test(start_paused = true)]
async fn a_restore_waits_for_a_fresh_invocation_rather_than_start_on_what_is_left() {
    use std::time::Duration;
    use tokio::time::{advance, Instant};
    let began = Instant::now();
    let deadline = Some(began + Duration::from_secs(800));
    assert_eq!(super::leftover_time(DrillPhase::Restoring, began, deadline, false), None, "a fresh invocation");
    advance(Duration::from_secs(150)).await;
    assert_eq!(super::leftover_time(DrillPhase::Checking, began, deadline, false), None, "650 of 800 s left");
    advance(Duration::from_secs(150)).await;
    let why = super::leftover_time(DrillPhase::Restoring, began, deadline, false).expect("500 of 800 s is too little");
    assert!(why.contains("500 s were left of this one's 800 s"), "{why}");
    assert!(super::leftover_time(DrillPhase::Checking, began, deadline, false).is_some());
    // A check right after its restore, which handed on what it read, goes on with a quarter left.
    assert_eq!(super::leftover_time(DrillPhase::Checking, began, deadline, true), None);
    advance(Duration::from_secs(320)).await;
    assert!(super::leftover_time(DrillPhase::Checking, began, deadline, true).is_some(), "180 of 800 s");
    for quick in [DrillPhase::Provisioning, DrillPhase::Cleaning] {
        assert_eq!(super::leftover_time(quick, began, deadline, false), None, "{quick:?} can pause at any step");
    }
    assert_eq!(super::leftover_time(DrillPhase::Restoring, began, None, false), None, "no limit, no wait");
}
