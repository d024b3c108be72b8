//! Unit tests of the drill's phase machine on in-memory fakes (scratch servers, a restorer that answers as a
//! faithful restore would, the store and catalog the backup job wrote to): a drill cut off after every step
//! resumes to the same verdict; a phase that fails fails the drill, cleans up and alerts once; a scratch
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
    let mut orders = target("orders");
    orders.pitr_source_instance = pitr_source.map(str::to_string);
    let config = Arc::new(test_config(vec![orders]));
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
    assert_eq!(run.targets[0].outcome, crate::domain::TargetOutcome::Completed, "{}", run.targets[0].message);
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
    World { catalog, alerts, scratch, restorer, pitr, job }
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

#[tokio::test]
async fn a_phase_that_fails_fails_the_drill_cleans_up_and_alerts_once() {
    for failing in ["create", "poll", "restore_framed", "read_back", "restore_roles"] {
        let w = world().await;
        if ["create", "poll"].contains(&failing) {
            w.scratch.faults.fail(failing);
        } else {
            w.restorer.faults.fail(failing);
        }
        let (_, drill) = until_done(&w, None).await;
        assert_eq!(drill.outcome, Some(BackupStatus::VerifyFailed), "{failing}: {drill:?}");
        assert_eq!(backup_status(&w), BackupStatus::VerifyFailed, "{failing}");
        assert!(w.scratch.live().is_empty(), "{failing}: nothing left running");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        assert!(alerts[0].body.contains("injected failure"), "{failing}: {}", alerts[0].body);
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
