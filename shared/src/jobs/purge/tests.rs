//! Unit tests of the purge job on in-memory fakes: a backup a drill is reading survives the run that would drop
//! it, and every way a purge is stopped (another purge's lease, an unreadable catalog, a record that cannot be
//! marked) deletes nothing it should not and says so.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::adapters::memory::*;
use crate::domain::drill::DrillRecord;
use crate::domain::retention::RetentionPolicy;
use crate::domain::{BackupId, BackupRecord, BackupStatus, ObjectRef, Trigger};
use crate::jobs::test_support::{target, test_config, test_now};
use crate::metrics::RecordingMetrics;
use crate::pipeline::codec::Codec;

struct World {
    store: MemoryStore,
    catalog: MemoryCatalog,
    alerts: RecordingAlerts,
    job: PurgeJob,
}

/// One target keeping the newest backup of each of the last 2 days (at least 2), deleting up to all of the rest.
fn world() -> World {
    let mut orders = target("orders");
    orders.retention = RetentionPolicy {
        daily: 2,
        weekly: 0,
        monthly: 0,
        yearly: 0,
        min_keep: 2,
        max_delete_fraction: 1.0,
        ..Default::default()
    };
    let (store, catalog, alerts) = (MemoryStore::default(), MemoryCatalog::default(), RecordingAlerts::default());
    let deps = PurgeDeps {
        store: Arc::new(store.clone()),
        catalog: Arc::new(catalog.clone()),
        alerts: Arc::new(alerts.clone()),
        clock: Arc::new(FixedClock::at(test_now())),
        metrics: Arc::new(RecordingMetrics::default()),
    };
    World { store, catalog, alerts, job: PurgeJob::new(Arc::new(test_config(vec![orders])), deps) }
}

/// A completed backup from `days_ago` days before now, its dump stored under its own key prefix.
async fn backup(w: &World, days_ago: i64) -> BackupRecord {
    let at = test_now() - chrono::Duration::days(days_ago);
    let mut record = BackupRecord::in_progress("orders", BackupId::new(at), Trigger::Schedule, "seed", at, Codec::Zstd);
    let key = format!("{}sql.zst", attempt_prefix(&record, ""));
    let stored = w.store.put_object(&key, Bytes::from_static(b"dump"), "application/zstd").await.unwrap();
    record.dump = Some(ObjectRef { key: stored.key, version_id: stored.version_id, size: 4, sha256: "0".repeat(64) });
    record.status = BackupStatus::Completed;
    record.finished_at = Some(at + chrono::Duration::minutes(5));
    w.catalog.create_backup(&record).await.unwrap();
    record
}

fn request_for_all() -> PurgeRequest {
    PurgeRequest { target: None, force: false, dry_run: false, trigger: Trigger::Schedule, request_id: "req".into() }
}

async fn purge(w: &World) -> TargetPurge {
    w.job.run(&request_for_all()).await.unwrap().remove(0)
}

fn status_of(w: &World, record: &BackupRecord) -> BackupStatus {
    w.catalog.backups().into_iter().find(|b| b.backup_id == record.backup_id).unwrap().status
}

fn has_objects(w: &World, record: &BackupRecord) -> bool {
    w.store.object_bytes(&record.dump.as_ref().unwrap().key).is_some()
}

#[tokio::test]
async fn a_backup_a_drill_is_reading_survives_the_purge_that_drops_it() {
    let w = world();
    let (_, _, dropped, drilled) = (backup(&w, 1).await, backup(&w, 2).await, backup(&w, 3).await, backup(&w, 4).await);
    let drill = DrillRecord::new("orders", drilled.backup_id.clone(), test_now());
    w.catalog.create_drill(&drill).await.unwrap();

    let result = purge(&w).await;
    assert_eq!(status_of(&w, &dropped), BackupStatus::Purged);
    assert!(!has_objects(&w, &dropped));
    assert_eq!(status_of(&w, &drilled), BackupStatus::Completed, "{result:?}");
    assert!(has_objects(&w, &drilled));
    let step = result.steps.iter().find(|s| s.backup_id.as_ref() == Some(&drilled.backup_id)).unwrap();
    assert!(step.reasons.iter().any(|r| r.contains("being verified by a restore drill")), "{step:?}");
    assert!(w.alerts.sent().is_empty(), "a kept backup is not a problem: {:?}", w.alerts.sent());
}

#[tokio::test]
async fn another_purge_holding_the_lease_stops_this_one_quietly() {
    let w = world();
    let old = backup(&w, 5).await;
    let (_, _) = (backup(&w, 1).await, backup(&w, 2).await);
    let now = test_now();
    let lease = LeaseRequest {
        target: "orders".into(),
        job: Job::Purge,
        owner: "other-purge".into(),
        now,
        expires_at: now + chrono::Duration::hours(1),
    };
    assert_eq!(w.catalog.acquire_lease(&lease).await.unwrap(), LeaseOutcome::Acquired);

    let result = purge(&w).await;
    assert!(result.lease_held && result.skipped.as_deref().is_some_and(|s| s.contains("other-purge")), "{result:?}");
    assert_eq!(status_of(&w, &old), BackupStatus::Completed);
    assert!(has_objects(&w, &old));
    assert!(w.alerts.sent().is_empty(), "another purge at work is not alerted");
    assert_eq!(w.catalog.lease_holder("orders", Job::Purge).as_deref(), Some("other-purge"), "its lease stays");
}

/// Without the records, the drills or the lease, nothing can be decided safely: nothing is deleted, and one
/// alert says the purge did not run and why.
#[tokio::test]
async fn an_unreadable_catalog_deletes_nothing_and_alerts() {
    for failing in ["acquire_lease", "recent_backups", "recent_drills"] {
        let w = world();
        let old = backup(&w, 5).await;
        let (_, _) = (backup(&w, 1).await, backup(&w, 2).await);
        w.catalog.faults.fail(failing);
        let result = purge(&w).await;
        assert!(result.skipped.is_some() && !result.lease_held, "{failing}: {result:?}");
        assert!(result.steps.is_empty(), "{failing}: {result:?}");
        assert_eq!(status_of(&w, &old), BackupStatus::Completed, "{failing}");
        assert!(has_objects(&w, &old), "{failing}");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), 1, "{failing}: {alerts:?}");
        assert!(alerts[0].body.contains("injected failure"), "{failing}: {}", alerts[0].body);
        assert_eq!(w.catalog.lease_holder("orders", Job::Purge), None, "{failing}: the lease is released");
    }
}

/// A record that cannot be marked `purging` keeps its objects (marking comes first, so a record never claims
/// objects that are gone), and the step's error reaches an alert; the next run tries again.
#[tokio::test]
async fn a_record_that_cannot_be_marked_keeps_its_objects_and_alerts() {
    let w = world();
    let old = backup(&w, 5).await;
    let (_, _) = (backup(&w, 1).await, backup(&w, 2).await);
    w.catalog.fail_updates_to(BackupStatus::Purging);
    let result = purge(&w).await;
    let step = result.steps.iter().find(|s| s.backup_id.as_ref() == Some(&old.backup_id)).unwrap();
    assert!(step.error.as_deref().is_some_and(|e| e.contains("nothing deleted")), "{step:?}");
    assert_eq!(status_of(&w, &old), BackupStatus::Completed);
    assert!(has_objects(&w, &old));
    assert_eq!(w.alerts.sent().len(), 1);

    // The next run, with the catalog back, finishes it.
    w.catalog.heal_updates();
    purge(&w).await;
    assert_eq!(status_of(&w, &old), BackupStatus::Purged);
    assert!(!has_objects(&w, &old));
}

/// The newest backup's dump version is deleted outside Backstop. Trusting the catalog, the purge would keep that
/// record as the day's restore point and delete the oldest backup, the last of the three that restores; instead
/// the record is marked `lost`, a critical alert names what is missing, and the oldest stays.
#[tokio::test]
async fn a_restore_point_whose_dump_is_gone_is_marked_lost_and_nothing_is_deleted_in_its_place() {
    let w = world();
    let (newest, middle, oldest) = (backup(&w, 1).await, backup(&w, 2).await, backup(&w, 3).await);
    let dump = newest.dump.clone().unwrap();
    w.store
        .delete_version(&StoredVersion { key: dump.key.clone(), version_id: dump.version_id.clone() })
        .await
        .unwrap();

    let dry = w.job.run(&PurgeRequest { dry_run: true, ..request_for_all() }).await.unwrap().remove(0);
    assert_eq!(dry.lost().len(), 1, "{dry:?}");
    assert!(dry.summary().contains("would mark 1 backup(s) LOST"), "{}", dry.summary());
    assert_eq!(status_of(&w, &newest), BackupStatus::Completed, "a dry run marks nothing");
    assert!(w.alerts.sent().is_empty(), "a dry run alerts nothing");

    let result = purge(&w).await;
    let lost = w.catalog.backups().into_iter().find(|b| b.backup_id == newest.backup_id).unwrap();
    assert_eq!(lost.status, BackupStatus::Lost, "{result:?}");
    assert!(lost.error.as_deref().is_some_and(|e| e.contains(&dump.key)), "{lost:?}");
    for kept in [&middle, &oldest] {
        assert_eq!(status_of(&w, kept), BackupStatus::Completed, "{result:?}");
        assert!(has_objects(&w, kept));
    }
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(alerts[0].subject.contains("LOST") && alerts[0].body.contains(&dump.key), "{}", alerts[0].body);

    // Found once: the next run keeps the lost record (what is left may be all there is) and alerts no more.
    let again = purge(&w).await;
    assert_eq!(status_of(&w, &newest), BackupStatus::Lost);
    let step = again.steps.iter().find(|s| s.backup_id.as_ref() == Some(&newest.backup_id)).unwrap();
    assert_eq!(step.action, StepAction::Keep, "{step:?}");
    assert!(again.lost().is_empty(), "{again:?}");
    assert_eq!(w.alerts.sent().len(), 1);
}

/// A newer version over the recorded one (as a delete marker is, in S3) loses nothing yet, but drills and restores
/// refuse a version that is not current, and a noncurrent-version rule will delete it: it is no restore point (an
/// older backup is kept in its place), and a warning says so while it can be saved.
#[tokio::test]
async fn a_dump_under_a_newer_version_is_not_lost_but_at_risk() {
    let w = world();
    let (newest, _, oldest) = (backup(&w, 1).await, backup(&w, 2).await, backup(&w, 3).await);
    let key = newest.dump.clone().unwrap().key;
    w.store.put_object(&key, Bytes::from_static(b""), "application/x-delete-marker").await.unwrap();
    let result = purge(&w).await;
    assert!(result.lost().is_empty(), "{result:?}");
    assert_eq!(status_of(&w, &newest), BackupStatus::Completed);
    assert_eq!(status_of(&w, &oldest), BackupStatus::Completed, "kept in the hidden one's place: {result:?}");
    assert_eq!(result.at_risk.len(), 1, "{result:?}");
    assert!(result.at_risk[0].starts_with(newest.backup_id.as_str()) && result.at_risk[0].contains(&key));
    let alerts = w.alerts.sent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].severity, Severity::Warning);
    assert!(alerts[0].subject.contains("hidden by a delete marker"), "{}", alerts[0].subject);

    // The same on the oldest, which this run deletes anyway, is no news.
    let w = world();
    let (_, _, oldest) = (backup(&w, 1).await, backup(&w, 2).await, backup(&w, 3).await);
    let key = oldest.dump.clone().unwrap().key;
    w.store.put_object(&key, Bytes::from_static(b""), "application/x-delete-marker").await.unwrap();
    let result = purge(&w).await;
    assert!(result.at_risk.is_empty() && w.alerts.sent().is_empty(), "{result:?}");
    assert_eq!(status_of(&w, &oldest), BackupStatus::Purged);
}

/// Without a listing, whether a restore point is whole cannot be told: nothing is deleted, and an alert says so.
#[tokio::test]
async fn a_bucket_that_cannot_be_listed_deletes_nothing_and_alerts() {
    let w = world();
    let (_, _, oldest) = (backup(&w, 1).await, backup(&w, 2).await, backup(&w, 3).await);
    w.store.faults.fail("ListObjectVersions");
    let result = purge(&w).await;
    assert!(result.skipped.as_deref().is_some_and(|s| s.contains("cannot list the bucket")), "{result:?}");
    assert_eq!(status_of(&w, &oldest), BackupStatus::Completed);
    assert!(has_objects(&w, &oldest));
    assert_eq!(w.alerts.sent().len(), 1);
}

/// A restore's hold keeps the purge off quietly while it is young; one held for most of a day is more likely a
/// restore that was killed, and the purge says so (an alert) rather than skip the target silently until it lapses.
#[tokio::test]
async fn a_restores_hold_is_quiet_while_young_and_said_when_old() {
    for (taken_hours_ago, quiet) in [(1, true), (7, false)] {
        let w = world();
        let old = backup(&w, 5).await;
        let (_, _) = (backup(&w, 1).await, backup(&w, 2).await);
        let taken = test_now() - chrono::Duration::hours(taken_hours_ago);
        let hold = LeaseRequest {
            target: "orders".into(),
            job: Job::Purge,
            owner: "restore-1234".into(),
            now: taken,
            expires_at: taken + chrono::Duration::hours(24),
        };
        assert_eq!(w.catalog.acquire_lease(&hold).await.unwrap(), LeaseOutcome::Acquired);
        let result = purge(&w).await;
        assert!(result.skipped.as_deref().is_some_and(|s| s.contains("a restore reading")), "{result:?}");
        assert_eq!((result.lease_held, result.stale_restore_hold), (quiet, !quiet), "{result:?}");
        let alerts = w.alerts.sent();
        assert_eq!(alerts.len(), usize::from(!quiet), "{alerts:?}");
        assert!(alerts.iter().all(|a| a.body.contains("LEASE#purge")), "{alerts:?}");
        assert_eq!(status_of(&w, &old), BackupStatus::Completed, "held off either way");
    }
}
