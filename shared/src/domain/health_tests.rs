//! Unit tests of the monitor's judgement: thresholds, each check at its boundaries, and the alert state machine.

use chrono::TimeZone;

use super::*;
use crate::domain::backup::{BackupId, VerificationSummary};
use crate::domain::run::Trigger;
use crate::pipeline::codec::Codec;

use BackupStatus::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn mins(m: i64) -> Duration {
    Duration::minutes(m)
}

/// A record of `orders` that started `ago` before `now()`.
fn rec(ago: Duration, status: BackupStatus) -> BackupRecord {
    let started_at = now() - ago;
    let mut r = BackupRecord::in_progress(
        "orders",
        BackupId(format!("{}-{:08x}", started_at.format("%Y%m%dT%H%M%SZ"), ago.num_seconds())),
        Trigger::Schedule,
        "run",
        started_at,
        Codec::Zstd,
    );
    r.status = status;
    r.raw_bytes = 1_000_000;
    if status != InProgress {
        r.finished_at = Some(started_at + mins(5));
    }
    r
}

fn with_bytes(mut r: BackupRecord, bytes: u64) -> BackupRecord {
    r.raw_bytes = bytes;
    r
}

fn with_verification(mut r: BackupRecord, passed: bool, failed_checks: &[&str]) -> BackupRecord {
    r.verification = Some(VerificationSummary {
        drill_id: format!("drill-{}", r.backup_id),
        finished_at: r.started_at + Duration::hours(3),
        passed,
        failed_checks: failed_checks.iter().map(|s| s.to_string()).collect(),
        rto_seconds: Some(60.0),
        rpo_seconds: Some(10_800.0),
    });
    r
}

fn failed(ago: Duration, why: &str) -> BackupRecord {
    let mut r = rec(ago, Failed);
    r.error = Some(why.to_string());
    r
}

fn run(backups: &[BackupRecord]) -> TargetHealth {
    evaluate("orders", backups, None, now(), &MonitorThresholds::default())
}

fn result(health: &TargetHealth, check: HealthCheck) -> &CheckResult {
    health.check(check).expect("every check is reported")
}

// ---------------------------------------------------------------- thresholds

#[test]
fn defaults_are_documented_values() {
    let t = MonitorThresholds::default();
    assert_eq!(t.backup_critical_after(), Duration::hours(26));
    assert_eq!(t.backup_warning_after(), None);
    assert_eq!(t.verified_critical_after(), Duration::days(8));
    assert_eq!(t.verified_warning_after(), None);
    assert_eq!(t.failures_critical_after, 2);
    assert_eq!((t.shrink_fraction, t.table_shrink_fraction), (0.5, 0.5));
    assert_eq!(t.table_shrink_min_rows, 100);
    assert!(t.table_shrink_ignore.is_empty());
    assert_eq!(t.cooldown(), Duration::hours(6));
    assert_eq!(t.validate(), Ok(()));
}

#[test]
fn toml_keys_are_hours_and_missing_keys_take_defaults() {
    let t: MonitorThresholds = toml::from_str(
        "backup_warning_after_hours = 25\nbackup_critical_after_hours = 30\ncooldown_hours = 0\n\
         table_shrink_ignore = [\"public.job_queue\", \"scratch.*\"]\n",
    )
    .unwrap();
    assert_eq!(t.backup_warning_after(), Some(Duration::hours(25)));
    assert_eq!(t.backup_critical_after(), Duration::hours(30));
    assert_eq!(t.cooldown(), Duration::zero());
    assert_eq!(t.verified_critical_after_hours, 192, "a missing key keeps its default");
    assert!(t.ignores_table("public.job_queue") && t.ignores_table("scratch.anything"));
    assert!(!t.ignores_table("public.job_queue_archive") && !t.ignores_table("public.orders"));
    assert_eq!(toml::from_str::<MonitorThresholds>("").unwrap(), MonitorThresholds::default());
}

#[test]
fn unknown_keys_and_wrong_units_are_refused() {
    let err = toml::from_str::<MonitorThresholds>("backup_critical_after = 26").unwrap_err().to_string();
    assert!(err.contains("unknown field"), "{err}");
    assert!(toml::from_str::<MonitorThresholds>("backup_critical_after_hours = 1.5").is_err(), "whole hours only");
}

#[test]
fn thresholds_that_cannot_work_are_refused_by_name() {
    type Change = fn(&mut MonitorThresholds);
    let cases: [(&str, Change); 9] = [
        ("backup_critical_after_hours", |t| t.backup_critical_after_hours = 0),
        ("backup_warning_after_hours", |t| t.backup_warning_after_hours = Some(0)),
        ("backup_warning_after_hours", |t| t.backup_warning_after_hours = Some(26)),
        ("verified_warning_after_hours", |t| t.verified_warning_after_hours = Some(200)),
        ("verified_critical_after_hours", |t| t.verified_critical_after_hours = u64::MAX),
        ("failures_critical_after", |t| t.failures_critical_after = 0),
        ("shrink_fraction", |t| t.shrink_fraction = 0.0),
        ("table_shrink_fraction", |t| t.table_shrink_fraction = 1.0),
        ("shrink_fraction", |t| t.shrink_fraction = f64::NAN),
    ];
    for (field, change) in cases {
        let mut t = MonitorThresholds::default();
        change(&mut t);
        let err = t.validate().expect_err(field);
        assert_eq!(err.field, field);
        assert!(err.to_string().contains(field), "{err}");
    }
    let mut ok = MonitorThresholds { backup_warning_after_hours: Some(25), ..Default::default() };
    ok.cooldown_hours = 0;
    assert_eq!(ok.validate(), Ok(()));
}

// ---------------------------------------------------------------- backup age

#[test]
fn backup_age_at_and_past_each_boundary() {
    let warned = MonitorThresholds { backup_warning_after_hours: Some(25), ..Default::default() };
    let plain = MonitorThresholds::default();
    let h = Duration::hours;
    let s = Duration::seconds;
    // (thresholds, age of the newest completed backup, expected severity)
    let cases = [
        (&plain, h(1), None),
        (&plain, h(26), None),
        (&plain, h(26) + s(1), Some(Severity::Critical)),
        (&warned, h(25), None),
        (&warned, h(25) + s(1), Some(Severity::Warning)),
        (&warned, h(26), Some(Severity::Warning)),
        (&warned, h(26) + s(1), Some(Severity::Critical)),
    ];
    for (t, age, expected) in cases {
        let health = evaluate("orders", &[rec(age, Completed)], None, now(), t);
        let r = result(&health, HealthCheck::BackupAge);
        assert_eq!(r.severity, expected, "age {age}: {}", r.summary);
        assert_eq!(health.backup_age_hours, Some(age.num_seconds() as f64 / 3600.0));
        let passed = match expected {
            Some(Severity::Critical) => Some(now() - age + h(26)),
            Some(_) => Some(now() - age + h(25)),
            None => None,
        };
        assert_eq!(r.since, passed, "since is when the threshold was passed");
    }
}

#[test]
fn backup_age_summary_gives_the_figures() {
    let health = run(&[rec(Duration::hours(30), Verified)]);
    let r = result(&health, HealthCheck::BackupAge);
    assert!(
        r.summary.starts_with("no completed backup for 30.0 h (critical after 26 h; newest: 20261121T060000Z-"),
        "{}",
        r.summary
    );
}

#[test]
fn no_backup_at_all_is_critical_not_ok() {
    let health = run(&[]);
    let r = result(&health, HealthCheck::BackupAge);
    assert_eq!(r.severity, Some(Severity::Critical));
    assert_eq!(r.summary, "no completed backup on record (no backup records at all)");
    assert_eq!(result(&health, HealthCheck::VerifiedAge).severity, Some(Severity::Critical));
    for quiet in [
        HealthCheck::LastVerification,
        HealthCheck::ConsecutiveFailures,
        HealthCheck::DumpShrank,
        HealthCheck::TablesShrank,
    ] {
        assert!(result(&health, quiet).is_ok(), "{quiet}: nothing to say, nothing to page twice for");
    }
    assert_eq!((health.backup_age_hours, health.verified_age_hours), (None, None));
    assert_eq!(health.overall(), Some(Severity::Critical));
    assert_eq!(health.checks.iter().map(|c| c.check).collect::<Vec<_>>(), HealthCheck::ALL.to_vec());
}

#[test]
fn only_failed_backups_is_critical_age_and_critical_failures() {
    let health =
        run(&[failed(mins(60), "pg_dump failed\nsecond line"), failed(mins(25 * 60), "x"), failed(mins(49 * 60), "y")]);
    let age = result(&health, HealthCheck::BackupAge);
    assert_eq!(age.severity, Some(Severity::Critical));
    assert_eq!(age.summary, "no completed backup on record (3 newest records read: 3 failed)");
    let failures = result(&health, HealthCheck::ConsecutiveFailures);
    assert_eq!(failures.severity, Some(Severity::Critical));
    assert!(
        failures.summary.starts_with("3 consecutive backups failed, none completed before them"),
        "{}",
        failures.summary
    );
    assert!(
        failures.summary.contains("them in the records read: pg_dump failed (latest: 2026"),
        "first line of the newest reason: {}",
        failures.summary
    );
    assert_eq!(failures.since, Some(now() - mins(49 * 60)), "since the oldest failure of the run");
}

#[test]
fn which_statuses_count_as_a_completed_backup() {
    let h = Duration::hours;
    // The newest record of each status, 1 h old, over a completed backup 30 h old.
    let cases = [
        (Completed, 1.0),
        (Verified, 1.0),
        (VerifyFailed, 30.0),
        (Purging, 30.0),
        (Purged, 30.0),
        (InProgress, 30.0),
        (Failed, 30.0),
    ];
    for (status, age_hours) in cases {
        let health = run(&[rec(h(1), status), rec(h(30), Completed)]);
        assert_eq!(health.backup_age_hours, Some(age_hours), "{status}");
    }
}

#[test]
fn an_in_progress_newest_backup_changes_nothing() {
    let health =
        run(&[rec(mins(10), InProgress), rec(Duration::hours(24), Completed), rec(Duration::hours(48), Completed)]);
    assert_eq!(health.backup_age_hours, Some(24.0));
    assert!(result(&health, HealthCheck::BackupAge).is_ok());
    assert!(result(&health, HealthCheck::ConsecutiveFailures).is_ok());
}

// ---------------------------------------------------------------- consecutive failures

#[test]
fn failures_are_counted_back_to_the_newest_completed_backup() {
    let h = Duration::hours;
    // Statuses newest first, 24 h apart; the expected count and severity with the default thresholds.
    let cases: [(&[BackupStatus], usize, Option<Severity>); 7] = [
        (&[Completed, Failed, Failed], 0, None),
        (&[Failed, Completed, Failed, Failed, Failed], 1, Some(Severity::Warning)),
        (&[Failed, Failed, Completed, Failed, Failed, Failed], 2, Some(Severity::Critical)),
        (&[Failed, InProgress, Failed, Verified, Failed], 2, Some(Severity::Critical)),
        (&[InProgress, Failed, Completed], 1, Some(Severity::Warning)),
        (&[Failed, VerifyFailed, Failed], 1, Some(Severity::Warning)),
        (&[Failed, Purged, Failed], 1, Some(Severity::Warning)),
    ];
    for (statuses, count, severity) in cases {
        let backups: Vec<BackupRecord> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| if *s == Failed { failed(h(24 * i as i64), "boom") } else { rec(h(24 * i as i64), *s) })
            .collect();
        let r = result(&run(&backups), HealthCheck::ConsecutiveFailures).clone();
        assert_eq!(r.severity, severity, "{statuses:?}: {}", r.summary);
        if count > 0 {
            assert!(r.summary.starts_with(&format!("{count} consecutive backup")), "{statuses:?}: {}", r.summary);
        }
    }
}

#[test]
fn failures_critical_after_one_makes_the_first_failure_critical() {
    let t = MonitorThresholds { failures_critical_after: 1, ..Default::default() };
    let health = evaluate("orders", &[failed(mins(60), "boom"), rec(Duration::hours(25), Completed)], None, now(), &t);
    assert_eq!(result(&health, HealthCheck::ConsecutiveFailures).severity, Some(Severity::Critical));
}

// ---------------------------------------------------------------- verification

#[test]
fn verified_age_at_the_boundary_and_never_verified() {
    let d = Duration::days;
    let cases = [(d(8), None), (d(8) + Duration::seconds(1), Some(Severity::Critical))];
    for (age, expected) in cases {
        let health = run(&[rec(mins(60), Completed), with_verification(rec(age, Verified), true, &[])]);
        let r = result(&health, HealthCheck::VerifiedAge);
        assert_eq!(r.severity, expected, "{}", r.summary);
        assert_eq!(health.verified_age_hours, Some(age.num_seconds() as f64 / 3600.0));
    }
    let never = run(&[rec(mins(60), Completed), with_verification(rec(d(1), VerifyFailed), false, &["restore"])]);
    let r = result(&never, HealthCheck::VerifiedAge);
    assert_eq!(r.severity, Some(Severity::Critical));
    assert_eq!(r.summary, "no backup verified by a restore drill on record");
    assert_eq!(never.verified_age_hours, None);

    let old = run(&[with_verification(rec(d(9) + Duration::hours(12), Verified), true, &[])]);
    assert!(result(&old, HealthCheck::VerifiedAge)
        .summary
        .starts_with("no verified backup for 9.5 days (critical after 8 days; newest: 2026"));
}

#[test]
fn the_newest_drilled_backup_decides_the_last_verification() {
    let h = Duration::hours;
    let failed_drill = || {
        with_verification(
            rec(h(24), VerifyFailed),
            false,
            &["object_checksum", "table public.orders", "table public.items", "schema_digest"],
        )
    };
    let passed_drill = |ago| with_verification(rec(ago, Verified), true, &[]);

    let health = run(&[rec(h(1), Completed), failed_drill(), passed_drill(h(48))]);
    let r = result(&health, HealthCheck::LastVerification);
    assert_eq!(r.severity, Some(Severity::Critical));
    assert!(
        r.summary.starts_with(
            "restore drill failed: object_checksum, table public.orders, table public.items and 1 more (backup 2026"
        ),
        "names the failed checks: {}",
        r.summary
    );
    assert_eq!(r.since, Some(now() - h(24) + h(3)), "since the drill finished");

    let newer_passed = run(&[passed_drill(h(1)), failed_drill()]);
    assert!(result(&newer_passed, HealthCheck::LastVerification).is_ok());

    let mut purged = failed_drill();
    purged.status = Purged;
    let gone = run(&[rec(h(1), Completed), purged, passed_drill(h(48))]);
    assert!(result(&gone, HealthCheck::LastVerification).is_ok(), "a purged backup's verdict no longer matters");

    let none = run(&[rec(h(1), Completed)]);
    assert_eq!(result(&none, HealthCheck::LastVerification).summary, "no restore drill on record");
}

// ---------------------------------------------------------------- dump size

#[test]
fn the_dump_is_compared_with_the_median_of_the_backups_before_it() {
    let day = |n: i64| Duration::hours(24 * n);
    // Before the newest: 7 backups whose median is 1000 (one outlier does not move it), then an 8th left out.
    let history = [1000, 900, 1100, 100_000, 1000, 950, 1050, 1];
    let cases = [(499, Some(Severity::Warning)), (500, None), (2_000_000, None)];
    for (latest, expected) in cases {
        let mut backups = vec![with_bytes(rec(day(0), Completed), latest)];
        backups.extend(history.iter().enumerate().map(|(i, b)| with_bytes(rec(day(i as i64 + 1), Verified), *b)));
        let r = result(&run(&backups), HealthCheck::DumpShrank).clone();
        assert_eq!(r.severity, expected, "latest {latest}: {}", r.summary);
        assert!(
            r.summary
                .contains(" against a median of 1000 B (20261122T120000Z-00000000; 7 completed backups before it)"),
            "{}",
            r.summary
        );
        if expected.is_some() {
            assert!(r.summary.starts_with("dump shrank by 50%:"), "{}", r.summary);
            assert_eq!(r.since, Some(now()));
        }
    }
}

#[test]
fn dump_size_comparison_skips_failures_unknown_sizes_and_even_counts_average() {
    let h = |n: i64| Duration::hours(n);
    let backups = [
        with_bytes(rec(h(0), Completed), 240),
        with_bytes(failed(h(1), "boom"), 1),
        with_bytes(rec(h(2), Completed), 0),
        with_bytes(rec(h(3), Purged), 1000),
        with_bytes(rec(h(4), VerifyFailed), 2000),
    ];
    let r = result(&run(&backups), HealthCheck::DumpShrank).clone();
    assert_eq!(r.severity, Some(Severity::Warning), "240 against a median of 1500: {}", r.summary);
    assert!(r.summary.contains("240 B against a median of 1.5 KiB ("), "{}", r.summary);
    assert!(r.summary.ends_with("; 2 completed backups before it)"), "{}", r.summary);

    let first = run(&[with_bytes(rec(h(0), Completed), 10)]);
    assert!(result(&first, HealthCheck::DumpShrank).summary.contains("no earlier completed backup"));
}

// ---------------------------------------------------------------- table row counts

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(n, r)| (n.to_string(), *r)).collect()
}

#[test]
fn tables_that_lost_more_than_the_fraction_are_flagged() {
    let tables = TableComparison {
        previous: counts(&[
            ("public.orders", 10_000),
            ("public.items", 10_000),
            ("public.audit", 5_000),
            ("public.tiny", 50),
            ("public.job_queue", 90_000),
            ("public.empty", 0),
        ]),
        latest: counts(&[
            ("public.orders", 4_000),
            ("public.items", 5_000),
            ("public.tiny", 0),
            ("public.job_queue", 10),
            ("public.new_table", 7),
        ]),
    };
    let t = MonitorThresholds { table_shrink_ignore: vec!["public.job_*".into()], ..Default::default() };
    let health = evaluate("orders", &[rec(mins(60), Completed)], Some(&RowCounts::Compared(tables)), now(), &t);
    let r = result(&health, HealthCheck::TablesShrank);
    assert_eq!(r.severity, Some(Severity::Warning));
    assert_eq!(
        r.summary,
        "2 tables lost more than 50% of their rows: public.orders 10000 → 4000 rows, \
         public.audit gone (had 5000 rows)",
        "items lost exactly half (not more); tiny is under the floor; job_queue is ignored; a new table is fine"
    );
}

#[test]
fn unchanged_or_missing_row_counts_are_ok() {
    let same = TableComparison {
        previous: counts(&[("public.orders", 10_000)]),
        latest: counts(&[("public.orders", 10_000)]),
    };
    let health = evaluate("orders", &[], Some(&RowCounts::Compared(same)), now(), &MonitorThresholds::default());
    let r = result(&health, HealthCheck::TablesShrank);
    assert_eq!(r.summary, "no table lost more than 50% of its rows (1 table of at least 100 rows compared)");
    assert!(r.is_ok());
    assert!(result(&run(&[]), HealthCheck::TablesShrank).is_ok());
}

#[test]
fn many_shrunk_tables_list_the_biggest_losses_first() {
    let names: Vec<String> = (0..6).map(|i| format!("public.t{i}")).collect();
    let previous: BTreeMap<String, u64> =
        names.iter().enumerate().map(|(i, n)| (n.clone(), 1000 * (i as u64 + 1))).collect();
    let tables = TableComparison { previous, latest: BTreeMap::new() };
    let r = evaluate("orders", &[], Some(&RowCounts::Compared(tables)), now(), &MonitorThresholds::default()).checks[5]
        .clone();
    assert!(
        r.summary.ends_with(
            "public.t5 gone (had 6000 rows), public.t4 gone (had 5000 rows), public.t3 gone (had 4000 rows) and 3 more"
        ),
        "{}",
        r.summary
    );
}

#[test]
fn an_unreadable_manifest_is_a_warning_not_a_pass() {
    let unreadable = RowCounts::Unreadable { backup_id: "20261122T020000Z-ab12".into(), error: "NoSuchKey".into() };
    let r = evaluate("orders", &[], Some(&unreadable), now(), &MonitorThresholds::default()).checks[5].clone();
    assert_eq!(r.severity, Some(Severity::Warning), "{r:?}");
    assert!(r.summary.contains("20261122T020000Z-ab12") && r.summary.contains("NoSuchKey"), "{}", r.summary);
}

// ---------------------------------------------------------------- the whole target

#[test]
fn the_order_of_the_records_does_not_matter() {
    let h = Duration::hours;
    let backups = vec![
        failed(h(1), "boom"),
        with_bytes(rec(h(25), Completed), 400),
        with_verification(rec(h(49), Verified), true, &[]),
        with_verification(rec(h(73), VerifyFailed), false, &["restore"]),
        rec(h(97), Purged),
        rec(h(2), InProgress),
    ];
    let expected = run(&backups);
    let mut shuffled = backups.clone();
    for _ in 0..shuffled.len() {
        shuffled.rotate_left(1);
        assert_eq!(run(&shuffled), expected);
        let mut reversed = shuffled.clone();
        reversed.reverse();
        assert_eq!(run(&reversed), expected);
    }
    assert_eq!(expected.overall(), Some(Severity::Warning), "one failure, a shrunk dump; ages fine");
}

#[test]
fn records_of_other_targets_are_ignored() {
    let mut other = rec(mins(30), Verified);
    other.target = "billing".into();
    let health = run(&[other]);
    assert_eq!(
        result(&health, HealthCheck::BackupAge).summary,
        "no completed backup on record (no backup records at all)"
    );
}

#[test]
fn a_healthy_target_is_ok_everywhere() {
    let h = Duration::hours;
    let health =
        run(&[rec(h(2), Completed), with_verification(rec(h(26), Verified), true, &[]), rec(h(50), Completed)]);
    assert_eq!(health.overall(), None, "{:#?}", health.checks);
    assert!(health.checks.iter().all(|c| c.since.is_none()));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["checks"][0]["check"], "backup_age");
    assert_eq!(json["checks"][0]["severity"], serde_json::Value::Null);
}

// ---------------------------------------------------------------- alert state machine

fn check_result(severity: Option<Severity>, since: Option<DateTime<Utc>>) -> CheckResult {
    CheckResult { check: HealthCheck::BackupAge, severity, summary: format!("{severity:?}"), since }
}

#[test]
fn an_alert_fires_once_repeats_after_the_cooldown_escalates_and_resolves_once() {
    let cooldown = Duration::hours(6);
    let t0 = now();
    let began = t0 - mins(30);
    let ok = check_result(None, None);
    let warn = check_result(Some(Severity::Warning), Some(began));
    let crit = check_result(Some(Severity::Critical), Some(began));
    // (minutes after t0, result, expected event)
    let steps: Vec<(i64, &CheckResult, Option<AlertEvent>)> = vec![
        (0, &ok, None),
        (60, &ok, None),
        (120, &warn, Some(AlertEvent::Fired { since: began })),
        (180, &warn, None),
        (120 + 359, &warn, None),
        (120 + 360, &warn, Some(AlertEvent::Repeated { since: began })),
        (120 + 400, &crit, Some(AlertEvent::Escalated { from: Severity::Warning, since: began })),
        (120 + 460, &crit, None),
        (120 + 500, &warn, None),
        (120 + 400 + 359, &warn, None),
        (120 + 400 + 360, &warn, Some(AlertEvent::Repeated { since: began })),
        (1000, &crit, Some(AlertEvent::Escalated { from: Severity::Warning, since: began })),
        (1060, &ok, Some(AlertEvent::Resolved { was: Severity::Critical, since: began })),
        (1120, &ok, None),
        (1180, &crit, Some(AlertEvent::Fired { since: began })),
    ];
    let mut state: Option<AlertState> = None;
    for (minute, result, expected) in steps {
        let at = t0 + mins(minute);
        let (next, event) = next_alert("orders", state.as_ref(), result, at, cooldown);
        assert_eq!(event, expected, "at minute {minute}");
        assert_eq!((next.target.as_str(), next.check), ("orders", HealthCheck::BackupAge));
        match (&next.firing, result.severity) {
            (None, None) => {}
            (Some(f), Some(s)) => {
                assert_eq!(f.severity, s, "the state follows the severity, de-escalation included (minute {minute})");
                assert_eq!(f.summary, result.summary);
                if event.is_some() {
                    assert_eq!(f.last_sent, at);
                }
            }
            other => panic!("minute {minute}: state {other:?}"),
        }
        state = Some(next);
    }
}

#[test]
fn since_comes_from_the_check_else_the_first_sighting() {
    let cooldown = Duration::hours(6);
    let (state, event) = next_alert("orders", None, &check_result(Some(Severity::Critical), None), now(), cooldown);
    assert_eq!(event, Some(AlertEvent::Fired { since: now() }));
    assert_eq!(state.firing.unwrap().since, now());
    let future = now() + Duration::hours(1);
    let (_, event) = next_alert("orders", None, &check_result(Some(Severity::Warning), Some(future)), now(), cooldown);
    assert_eq!(event, Some(AlertEvent::Fired { since: now() }), "never later than now");
}

#[test]
fn a_zero_cooldown_repeats_every_run_and_info_never_fires() {
    let warn = check_result(Some(Severity::Warning), None);
    let (first, _) = next_alert("orders", None, &warn, now(), Duration::zero());
    let (_, event) = next_alert("orders", Some(&first), &warn, now(), Duration::zero());
    assert_eq!(event, Some(AlertEvent::Repeated { since: now() }));

    let info = check_result(Some(Severity::Info), None);
    let (state, event) = next_alert("orders", None, &info, now(), Duration::zero());
    assert_eq!((state.firing, event), (None, None));
    let (_, event) = next_alert("orders", Some(&first), &info, now(), Duration::zero());
    assert_eq!(event, Some(AlertEvent::Resolved { was: Severity::Warning, since: now() }));
}

#[test]
fn alert_state_round_trips_through_json() {
    let (state, event) =
        next_alert("orders", None, &check_result(Some(Severity::Critical), Some(now())), now(), Duration::hours(6));
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.contains("\"check\":\"backup_age\"") && json.contains("\"severity\":\"critical\""), "{json}");
    assert_eq!(serde_json::from_str::<AlertState>(&json).unwrap(), state);
    let ok: AlertState = serde_json::from_str(r#"{"target":"orders","check":"tables_shrank"}"#).unwrap();
    assert_eq!(ok.firing, None);
    let event_json = serde_json::to_value(event.unwrap()).unwrap();
    assert_eq!(event_json["event"], "fired");
}

// ---------------------------------------------------------------- a wrong clock

#[test]
fn a_record_dated_in_the_future_vouches_for_nothing_and_hides_no_failure() {
    let ahead = |h: i64| rec(-Duration::hours(h), Completed);
    let health = run(&[
        ahead(48),
        failed(Duration::hours(30), "boom"),
        failed(Duration::hours(54), "boom"),
        rec(Duration::hours(78), Completed),
    ]);
    let age = result(&health, HealthCheck::BackupAge);
    assert_eq!(age.severity, Some(Severity::Critical), "{age:?}");
    assert!(
        age.summary.contains("1 record(s) dated in the future left out") && age.summary.contains("a clock is wrong")
    );
    assert_eq!(result(&health, HealthCheck::ConsecutiveFailures).severity, Some(Severity::Critical));
    assert!(health.backup_age_hours.is_some_and(|h| h > 70.0), "{:?}", health.backup_age_hours);

    // Otherwise healthy, the future record still warns; a few minutes ahead is a clock's usual skew.
    let health = run(&[ahead(3), with_verification(rec(Duration::hours(2), Verified), true, &[])]);
    assert_eq!(result(&health, HealthCheck::BackupAge).severity, Some(Severity::Warning));
    let health = run(&[rec(-mins(2), Completed), with_verification(rec(Duration::hours(2), Verified), true, &[])]);
    assert_eq!(result(&health, HealthCheck::BackupAge).severity, None);
}
