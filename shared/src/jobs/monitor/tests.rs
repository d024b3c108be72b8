//! Unit tests of the monitor job on in-memory fakes: what it does when it cannot read what it judges (the
//! catalog, a manifest, its own alert states) and when an alert cannot be published.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::adapters::memory::*;
use crate::domain::{BackupId, BackupRecord, BackupStatus, ObjectRef, Trigger};
use crate::jobs::test_support::{target, test_config, test_now};
use crate::metrics::RecordingMetrics;
use crate::pipeline::codec::Codec;

struct World {
    store: MemoryStore,
    catalog: MemoryCatalog,
    alerts: RecordingAlerts,
    job: MonitorJob,
}

fn world() -> World {
    let (store, catalog, alerts) = (MemoryStore::default(), MemoryCatalog::default(), RecordingAlerts::default());
    let deps = MonitorDeps {
        store: Arc::new(store.clone()),
        catalog: Arc::new(catalog.clone()),
        alerts: Arc::new(alerts.clone()),
        clock: Arc::new(FixedClock::at(test_now())),
        metrics: Arc::new(RecordingMetrics::default()),
    };
    World { store, catalog, alerts, job: MonitorJob::new(Arc::new(test_config(vec![target("orders")])), deps) }
}

/// A verified backup `hours_ago` hours before now whose manifest is at `manifest_key` (stored or not).
async fn backup(w: &World, hours_ago: i64, manifest_key: &str) -> BackupRecord {
    let at = test_now() - chrono::Duration::hours(hours_ago);
    let mut record = BackupRecord::in_progress("orders", BackupId::new(at), Trigger::Schedule, "seed", at, Codec::Zstd);
    record.status = BackupStatus::Completed;
    record.finished_at = Some(at + chrono::Duration::minutes(5));
    record.raw_bytes = 1000;
    record.manifest = Some(ObjectRef { key: manifest_key.into(), version_id: None, size: 10, sha256: "0".repeat(64) });
    w.catalog.create_backup(&record).await.unwrap();
    record
}

async fn run(w: &World) -> TargetReport {
    w.job.run(&MonitorRequest { target: None, alert: true }).await.unwrap().remove(0)
}

#[tokio::test]
async fn an_unreadable_catalog_is_an_error_not_a_healthy_target() {
    let w = world();
    w.catalog.faults.fail("recent_backups");
    let report = run(&w).await;
    assert!(report.error.as_deref().is_some_and(|e| e.contains("cannot read the backup records")), "{report:?}");
    assert_eq!(report.severity(), Some(Severity::Critical));
    assert_eq!(plugin_code(&report), 3, "UNKNOWN to a monitoring plugin");
    let handled = crate::app::handle_monitor_event(&w.job, &serde_json::json!({})).await.unwrap_err();
    assert_eq!(handled.error_type, crate::app::ErrorType::MonitorFailed);
}

#[tokio::test]
async fn an_unreadable_manifest_warns_and_alerts_once() {
    let w = world();
    backup(&w, 30, "orders/a.manifest.json").await;
    backup(&w, 6, "orders/b.manifest.json").await;
    w.store.put_object("orders/a.manifest.json", Bytes::from_static(b"{}"), "application/json").await.unwrap();
    let report = run(&w).await;
    let tables = report.health.as_ref().unwrap().checks.iter().find(|c| c.check.as_str() == "tables_shrank").unwrap();
    assert_eq!(tables.severity, Some(Severity::Warning), "{tables:?}");
    assert!(tables.summary.contains("cannot be read"), "{}", tables.summary);
    assert_eq!(
        w.alerts.sent().iter().filter(|a| a.body.contains("cannot be read")).count(),
        1,
        "{:?}",
        w.alerts.sent()
    );
}

/// Without its alert states every bad check alerts as new, every run: a repeated page rather than a silent one.
#[tokio::test]
async fn unreadable_alert_states_alert_again_rather_than_stay_silent() {
    let w = world();
    w.catalog.faults.fail("alert_states");
    let first = run(&w).await.alerts_sent.len();
    let second = run(&w).await.alerts_sent.len();
    assert!(first > 0 && second == first, "{first} then {second}");
}

/// An alert that could not be published is not recorded as sent: the next run sends it.
#[tokio::test]
async fn an_alert_that_could_not_be_published_is_sent_by_the_next_run() {
    let w = world();
    w.alerts.faults.fail("Publish");
    assert!(run(&w).await.alerts_sent.is_empty());
    w.alerts.faults.heal("Publish");
    let retried = run(&w).await.alerts_sent;
    assert!(!retried.is_empty(), "the critical checks alert now");
    assert!(run(&w).await.alerts_sent.is_empty(), "and then hold (cooldown), as usual");
}

/// Hourly backups between weekly drills: the verified backup is far past the newest 30 records, and the monitor
/// still finds it (no false "never verified"), as it finds a failed drill's backup (no false "resolved").
#[tokio::test]
async fn the_last_verdict_is_found_past_the_newest_thirty_records() {
    for passed in [true, false] {
        let w = world();
        let mut judged = backup(&w, 60, "judged.manifest.json").await;
        judged.status = if passed { BackupStatus::Verified } else { BackupStatus::VerifyFailed };
        judged.verification = Some(crate::domain::backup::VerificationSummary {
            drill_id: "d1".into(),
            finished_at: test_now() - chrono::Duration::hours(59),
            passed,
            failed_checks: if passed { vec![] } else { vec!["table_set".into()] },
            rto_seconds: Some(60.0),
            rpo_seconds: None,
        });
        w.catalog.update_backup(&judged, BackupStatus::Completed).await.unwrap();
        for hours_ago in 1..=50 {
            backup(&w, hours_ago, "missing.manifest.json").await;
        }
        let health = run(&w).await.health.unwrap();
        let verified = health.check(crate::domain::health::HealthCheck::VerifiedAge).unwrap();
        let last = health.check(crate::domain::health::HealthCheck::LastVerification).unwrap();
        if passed {
            assert_eq!(verified.severity, None, "{verified:?}");
            assert!(health.verified_age_hours.is_some_and(|h| (59.0..61.0).contains(&h)), "{health:?}");
        } else {
            assert_eq!(last.severity, Some(Severity::Critical), "{last:?}");
        }
    }

    // A failed drill 40 records back and a verified backup 30 records before it: both found.
    let w = world();
    for (hours_ago, status, passed) in [(100, BackupStatus::Verified, true), (70, BackupStatus::VerifyFailed, false)] {
        let mut judged = backup(&w, hours_ago, "judged.manifest.json").await;
        judged.status = status;
        judged.verification = Some(crate::domain::backup::VerificationSummary {
            drill_id: format!("d{hours_ago}"),
            finished_at: test_now() - chrono::Duration::hours(hours_ago - 1),
            passed,
            failed_checks: if passed { vec![] } else { vec!["table_set".into()] },
            rto_seconds: Some(60.0),
            rpo_seconds: None,
        });
        w.catalog.update_backup(&judged, BackupStatus::Completed).await.unwrap();
    }
    for hours_ago in (1..=99).filter(|h| *h != 70) {
        backup(&w, hours_ago, "missing.manifest.json").await;
    }
    let health = run(&w).await.health.unwrap();
    assert!(health.verified_age_hours.is_some_and(|h| (99.0..101.0).contains(&h)), "{health:?}");
    let last = health.check(crate::domain::health::HealthCheck::LastVerification).unwrap();
    assert_eq!(last.severity, Some(Severity::Critical), "{last:?}");
}

/// A server target whose databases are not known yet (no discovery has stored any) is judged itself, critical,
/// not left out of a report that would then call every target fine.
#[tokio::test]
async fn a_server_target_with_no_database_discovered_is_critical_not_absent() {
    let w = world();
    let mut config = test_config(vec![target("orders")]);
    let mut fleet = target("fleet");
    fleet.databases = vec!["*".into()];
    config.servers = vec![fleet];
    let job = MonitorJob::new(Arc::new(config), w.job.deps.clone());
    let reports = job.run(&MonitorRequest { target: None, alert: true }).await.unwrap();
    let fleet = reports.iter().find(|r| r.target == "fleet").expect("the server target is in the report");
    assert_eq!(fleet.severity(), Some(Severity::Critical), "{fleet:?}");
    let age = fleet.health.as_ref().unwrap().check(crate::domain::health::HealthCheck::BackupAge).unwrap();
    assert!(age.summary.contains("no database of server target fleet is known"), "{}", age.summary);
    assert!(w.alerts.sent().iter().any(|a| a.subject.contains("fleet")), "{:?}", w.alerts.sent());
    let asked = job.run(&MonitorRequest { target: Some("fleet".into()), alert: false }).await.unwrap();
    assert_eq!(asked.len(), 1, "asking for the server target judges it too");
    // The report page shows it too, critical, as `backstop check` does.
    let page = crate::jobs::report::gather(&job.config, &w.catalog, reports, None, test_now()).await.unwrap();
    let section = page.targets.iter().find(|t| t.name == "fleet").expect("the server target is on the page");
    assert_eq!(section.health.as_ref().and_then(|h| h.overall()), Some(Severity::Critical));
}

/// One target that could not be read (UNKNOWN, 3) does not hide another that is CRITICAL (2) in the exit code.
#[test]
fn the_worst_state_of_a_run_is_critical_over_warning_over_unknown_over_ok() {
    use super::worst_plugin_code;
    assert_eq!(worst_plugin_code([0, 3, 2]), 2);
    assert_eq!(worst_plugin_code([3, 1, 0]), 1);
    assert_eq!(worst_plugin_code([0, 3]), 3);
    assert_eq!(worst_plugin_code([0, 0]), 0);
    assert_eq!(worst_plugin_code([]), 0);
}

/// A record dated in the future (a wrong clock) is not the newest backup of the row-count comparison: the two
/// real newest are compared (here, the newest real one's manifest is the one read first, and cannot be read).
#[tokio::test]
async fn a_future_dated_record_is_left_out_of_the_row_count_comparison() {
    let w = world();
    backup(&w, 30, "old.manifest.json").await;
    let newest = backup(&w, 6, "new.manifest.json").await;
    let future = backup(&w, -48, "future.manifest.json").await;
    let health = run(&w).await.health.unwrap();
    let tables = health.checks.iter().find(|c| c.check.as_str() == "tables_shrank").unwrap();
    assert!(tables.summary.contains(newest.backup_id.as_str()), "{}", tables.summary);
    assert!(!tables.summary.contains(future.backup_id.as_str()), "{}", tables.summary);
}

/// A database gone from its server is no longer judged: an alert still firing for it is resolved, saying why,
/// instead of staying open forever.
#[tokio::test]
async fn an_alert_of_a_target_no_longer_judged_is_resolved() {
    let w = world();
    let mut config = test_config(vec![target("orders")]);
    config.gone = vec![target("fleet.old_db")];
    let job = MonitorJob::new(Arc::new(config), w.job.deps.clone());
    let firing = crate::domain::health::AlertState {
        target: "fleet.old_db".into(),
        check: crate::domain::health::HealthCheck::BackupAge,
        firing: Some(crate::domain::health::Firing {
            severity: Severity::Critical,
            since: test_now() - chrono::Duration::days(2),
            last_sent: test_now() - chrono::Duration::hours(1),
            summary: "no completed backup on record".into(),
        }),
    };
    w.catalog.put_alert_state(&firing).await.unwrap();
    job.run(&MonitorRequest { target: None, alert: true }).await.unwrap();
    let resolved: Vec<_> = w.alerts.sent().into_iter().filter(|a| a.subject.contains("fleet.old_db")).collect();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(resolved[0].subject.contains("RESOLVED") && resolved[0].body.contains("no longer judged"), "{resolved:?}");
    let states = w.catalog.alert_states("fleet.old_db").await.unwrap();
    assert!(states.iter().all(|s| s.firing.is_none()), "{states:?}");
    job.run(&MonitorRequest { target: None, alert: true }).await.unwrap();
    assert_eq!(w.alerts.sent().iter().filter(|a| a.subject.contains("fleet.old_db")).count(), 1, "resolved once");
}
