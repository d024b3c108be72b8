//! The report on in-memory catalogs: what it says of a healthy target, of an empty one, of one with only
//! failures; that it escapes what operators and databases named; that 10,000 backups render; and the month's
//! evidence an auditor asks for.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::adapters::memory::MemoryCatalog;
use crate::domain::backup::{ObjectRef, VerificationSummary};
use crate::domain::codec::Codec;
use crate::domain::health::evaluate;
use crate::domain::verification::{CheckName, CheckOutcome};
use crate::domain::{BackupStatus, Trigger};
use crate::jobs::monitor::TargetReport;
use crate::jobs::test_support::{target, test_config};
use crate::ports::{Backups, Drills};

fn at(day: i64, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap() + chrono::Duration::days(day)
}

fn backup(target: &str, started: DateTime<Utc>, status: BackupStatus) -> BackupRecord {
    let id = BackupId::new(started);
    let mut b = BackupRecord::in_progress(target, id, Trigger::Schedule, "run", started, Codec::Zstd);
    b.status = status;
    b.finished_at = Some(started + chrono::Duration::minutes(3));
    if status == BackupStatus::Failed {
        b.error = Some("pg_dump: error: <connection> refused".into());
    } else {
        b.raw_bytes = 7_000_000 + started.timestamp() as u64 % 1000;
        b.dump =
            Some(ObjectRef { key: "k".into(), version_id: Some("v".into()), size: 1_400_000, sha256: "0".repeat(64) });
    }
    b
}

fn drill(b: &mut BackupRecord, passed: bool, rto: f64, rpo: f64) -> DrillRecord {
    let started = b.started_at + chrono::Duration::hours(2);
    let mut d = DrillRecord::new(&b.target, b.backup_id.clone(), started);
    d.phase = DrillPhase::Done;
    d.finished_at = Some(started + chrono::Duration::seconds(rto as i64 + 60));
    d.report.push(CheckName::Restore, CheckOutcome::ok("restored"));
    let table = CheckName::Table { schema: "public".into(), name: "<img src=x onerror=alert(1)>".into() };
    d.report.push(
        table,
        if passed {
            CheckOutcome::ok("500 rows")
        } else {
            CheckOutcome::Mismatch { expected: "500 rows".into(), found: "499 <rows>".into() }
        },
    );
    d.report.timings.rto_seconds = Some(rto);
    d.report.timings.rpo_seconds = Some(rpo);
    b.status = if passed { BackupStatus::Verified } else { BackupStatus::VerifyFailed };
    b.verification = Some(VerificationSummary {
        drill_id: d.drill_id.clone(),
        finished_at: d.finished_at.unwrap(),
        passed,
        failed_checks: if passed { vec![] } else { vec!["table public.x".into()] },
        rto_seconds: Some(rto),
        rpo_seconds: Some(rpo),
    });
    d
}

/// The page's data for `targets`, each with its records, read back through [`gather`] from a catalog in memory.
async fn report_of(targets: Vec<(&str, Vec<BackupRecord>, Vec<DrillRecord>)>, now: DateTime<Utc>) -> ReportData {
    let catalog = MemoryCatalog::default();
    let mut config = test_config(targets.iter().map(|(name, _, _)| target(name)).collect());
    config.verify.rto_budget = Some(Duration::from_secs(600));
    config.verify.rpo_budget = Some(Duration::from_secs(26 * 3600));
    let mut health = Vec::new();
    for (name, backups, drills) in &targets {
        for b in backups {
            catalog.create_backup(b).await.unwrap();
        }
        for d in drills {
            catalog.create_drill(d).await.unwrap();
        }
        let evaluated = evaluate(name, backups, None, now, &config.monitor);
        health.push(TargetReport {
            target: name.to_string(),
            health: Some(evaluated),
            error: None,
            alerts_sent: vec![],
        });
    }
    gather(&config, &catalog, health, None, now).await.unwrap()
}

#[tokio::test]
async fn a_healthy_target_shows_its_card_charts_history_drills_retention_and_actions() {
    let mut backups: Vec<BackupRecord> = (0..5).map(|d| backup("orders", at(d, 4), BackupStatus::Completed)).collect();
    let drills = vec![drill(&mut backups[3], true, 180.0, 7200.0), drill(&mut backups[4], true, 200.0, 7300.0)];
    let data = report_of(vec![("orders", backups, drills)], at(4, 12)).await;
    let page = html::render(&data);
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    assert!(page.contains("<span class=\"badge OK\">OK</span>"), "a fresh verified backup is OK");
    assert!(page.contains("<polyline class=\"raw\"") && page.contains("<polyline class=\"rto\""));
    assert_eq!(page.matches("<details>").count(), 2, "one expandable log per drill");
    assert!(page.contains("RTO 3.3 min (met)"), "{page}");
    assert!(page.contains("Keeps 30 daily"), "the policy in force");
    assert!(
        page.contains("backstop backup --target orders")
            && page.contains("{&quot;targets&quot;: [&quot;orders&quot;]}")
    );
    // Offline: no script, no external reference of any kind.
    for forbidden in ["<script", "http://", "https://", "<link", "@import", "url("] {
        assert!(!page.contains(forbidden), "the page has {forbidden:?}");
    }
}

#[tokio::test]
async fn everything_named_by_operators_or_databases_is_escaped() {
    let name = "<script>alert('x')</script>";
    let mut backups =
        vec![backup(name, at(0, 4), BackupStatus::Failed), backup(name, at(1, 4), BackupStatus::Completed)];
    let drills = vec![drill(&mut backups[1], false, 100.0, 100.0)];
    let mut data = report_of(vec![("orders", vec![], vec![])], at(2, 0)).await;
    // The name goes straight into the section: configuration validation would refuse it as a target name, but
    // the page must not rely on that.
    data.targets[0].name = name.into();
    data.targets[0].database = "\"db\" & <co>".into();
    data.targets[0].backups = backups.into_iter().rev().collect();
    data.targets[0].drills = drills;
    let page = html::render(&data);
    assert!(
        !page.contains("<script")
            && !page.contains("<img")
            && !page.contains("<connection>")
            && !page.contains("<rows>")
    );
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{page}");
    assert!(page.contains("&quot;db&quot; &amp; &lt;co&gt;"));
    assert!(page.contains("table public.&lt;img src=x onerror=alert(1)&gt;"));
    // One shell word, quoted, then escaped for the page.
    let word = "&#39;&lt;script&gt;alert(&#39;\\&#39;&#39;x&#39;\\&#39;&#39;)&lt;/script&gt;&#39;";
    assert!(page.contains(&format!("backstop backup --target {word}")), "{page}");
}

#[tokio::test]
async fn an_empty_catalog_and_no_targets_say_so() {
    let data = report_of(vec![("orders", vec![], vec![])], at(0, 0)).await;
    let page = html::render(&data);
    assert!(page.contains("No backup on record") && page.contains("No restore drill on record"));
    assert!(page.contains("nothing recorded yet"));
    assert!(page.contains("<span class=\"badge CRITICAL\">CRITICAL</span>"), "no backup at all is critical");
    let none = ReportData { generated_at: at(0, 0), targets: vec![], rto_budget: None, rpo_budget: None };
    assert!(html::render(&none).contains("No targets are configured"));
}

#[tokio::test]
async fn a_target_with_only_failures_is_critical_and_each_failure_is_marked() {
    let backups: Vec<BackupRecord> = (0..4).map(|d| backup("orders", at(d, 4), BackupStatus::Failed)).collect();
    let data = report_of(vec![("orders", backups, vec![])], at(4, 0)).await;
    let page = html::render(&data);
    assert!(page.contains("<span class=\"badge CRITICAL\">CRITICAL</span>"));
    assert_eq!(page.matches("<path class=\"failure\"").count(), 4);
    assert_eq!(page.matches("<td class=\"st-failed\">failed</td>").count(), 4);
    assert!(page.contains("Last backup: none"));
    assert!(page.contains("pg_dump: error: &lt;connection&gt; refused"));
}

#[tokio::test]
async fn ten_thousand_backups_render_into_one_page() {
    let mut backups: Vec<BackupRecord> =
        (0..10_000).map(|i| backup("orders", at(0, 0) + chrono::Duration::hours(i), BackupStatus::Completed)).collect();
    let drills: Vec<DrillRecord> =
        (0..400).map(|i| drill(&mut backups[i * 25], i % 50 != 0, 150.0 + i as f64, 3600.0)).collect();
    let now = backups.last().unwrap().started_at + chrono::Duration::hours(1);
    let data = report_of(vec![("orders", backups, drills)], now).await;
    let began = Instant::now();
    let page = html::render(&data);
    let took = began.elapsed();
    assert_eq!(page.matches("<tr><td>").count() - page.matches("<details>").count() * 2, 10_000, "every backup's row");
    // Figures for the closing note (`cargo test -p backstop --lib report -- --nocapture`), not a timed assertion.
    eprintln!("report of 10,000 backups and 400 drills: {} bytes, rendered in {took:?}", page.len());
}

#[tokio::test]
async fn the_months_evidence_counts_drills_and_budget_compliance() {
    let mut backups: Vec<BackupRecord> = (0..40).map(|d| backup("orders", at(d, 4), BackupStatus::Completed)).collect();
    // November: three drills, one failed, one over the RTO budget (600 s); December: one.
    let drills = vec![
        drill(&mut backups[2], true, 300.0, 7200.0),
        drill(&mut backups[9], false, 300.0, 7200.0),
        drill(&mut backups[16], true, 900.0, 7200.0),
        drill(&mut backups[33], true, 300.0, 7200.0),
    ];
    let data = report_of(vec![("orders", backups, drills)], at(40, 0)).await;
    let november = month_summary(&data, Some("2026-11")).unwrap();
    let s = &november[0];
    assert_eq!((s.drills_run, s.passed, s.failed), (3, 2, 1));
    assert_eq!(s.rto, Compliance { met: 2, missed: 1, unknown: 0 });
    assert_eq!(s.rpo, Compliance { met: 3, missed: 0, unknown: 0 });
    assert!(s.drills.windows(2).all(|w| w[0].started_at <= w[1].started_at), "oldest first");
    assert_eq!(month_summary(&data, None).unwrap()[0].drills_run, 4);
    assert_eq!(month_summary(&data, Some("2026-12")).unwrap()[0].drills_run, 1);
    for bad in ["2026-13", "2026-1", "November", "2026-11-01"] {
        assert!(month_summary(&data, Some(bad)).unwrap_err().contains("YYYY-MM"), "{bad}");
    }
}
