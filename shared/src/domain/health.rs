//! A target's health, as the monitor sees it, and the alert state machine that pages about it.
//!
//! [`evaluate`] is a pure function of the target's recent backup records, the row counts of its two newest
//! completed backups, the time and the thresholds. Its checks:
//!
//! - `backup_age`: hours since the newest completed backup started (its snapshot); critical after
//!   `backup_critical_after_hours` (26), warning after `backup_warning_after_hours` if set. No completed
//!   backup at all is critical, never "OK because nothing is known".
//! - `verified_age`: hours since the newest backup that passed a restore drill started; critical after
//!   `verified_critical_after_hours` (8 days). Never verified is critical.
//! - `last_verification`: the newest drill verdict on any backup; a failure is critical and names the checks.
//! - `consecutive_failures`: failed backups since the newest completed one; 1 is a warning, from
//!   `failures_critical_after` (2) on critical.
//! - `dump_shrank`: the newest completed dump's SQL size is less than `shrink_fraction` (0.5) of the median of
//!   the completed ones before it (warning: a dropped table or a wrong database looks like this).
//! - `tables_shrank`: a table of the previous completed backup has less than `table_shrink_fraction` of its
//!   rows in the newest (or is gone) (warning).
//!
//! Purged backups are no longer restore points and count for nothing here.
//!
//! [`next_alert`] turns a check's result and its stored [`AlertState`] into at most one alert: it fires once
//! when the check goes bad, again only after `cooldown_hours` while it stays bad (or at once when it
//! worsens from warning to critical), and a "resolved" message when it clears. Improving from critical to
//! warning updates the state without paging.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::backup::{BackupRecord, BackupStatus};
use crate::ports::Severity;

/// When the monitor calls a target's backups too old or odd. In the configuration file as `[monitor]`, or
/// as JSON in `BACKSTOP_MONITOR`; every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorThresholds {
    pub backup_critical_after_hours: f64,
    /// Off by default: a daily backup is 24 h old just before the next one, so only lateness should page.
    pub backup_warning_after_hours: Option<f64>,
    pub verified_critical_after_hours: f64,
    pub failures_critical_after: u32,
    pub shrink_fraction: f64,
    pub table_shrink_fraction: f64,
    /// A check that stays bad pages again after this long.
    pub cooldown_hours: f64,
}

impl Default for MonitorThresholds {
    fn default() -> Self {
        MonitorThresholds {
            backup_critical_after_hours: 26.0,
            backup_warning_after_hours: None,
            verified_critical_after_hours: 8.0 * 24.0,
            failures_critical_after: 2,
            shrink_fraction: 0.5,
            table_shrink_fraction: 0.5,
            cooldown_hours: 6.0,
        }
    }
}

impl MonitorThresholds {
    pub fn cooldown(&self) -> Duration {
        hours(self.cooldown_hours)
    }
}

fn hours(h: f64) -> Duration {
    Duration::milliseconds((h * 3_600_000.0) as i64)
}

/// Rows per table (`schema.table`) of the newest and the previous completed backup, from their manifests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableComparison {
    pub latest: BTreeMap<String, u64>,
    pub previous: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    BackupAge,
    VerifiedAge,
    LastVerification,
    ConsecutiveFailures,
    DumpShrank,
    TablesShrank,
}

impl HealthCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheck::BackupAge => "backup_age",
            HealthCheck::VerifiedAge => "verified_age",
            HealthCheck::LastVerification => "last_verification",
            HealthCheck::ConsecutiveFailures => "consecutive_failures",
            HealthCheck::DumpShrank => "dump_shrank",
            HealthCheck::TablesShrank => "tables_shrank",
        }
    }

    /// Where `docs/operations.md` says what to do about it.
    pub fn runbook(self) -> &'static str {
        match self {
            HealthCheck::BackupAge | HealthCheck::ConsecutiveFailures => "docs/operations.md#backups-are-too-old-or-failing",
            HealthCheck::VerifiedAge | HealthCheck::LastVerification => "docs/operations.md#verification-is-too-old-or-failed",
            HealthCheck::DumpShrank | HealthCheck::TablesShrank => "docs/operations.md#a-dump-or-a-table-shrank",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: HealthCheck,
    /// `None`: OK.
    pub severity: Option<Severity>,
    /// One line with the figures.
    pub summary: String,
    /// Since when the condition holds, where that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub checks: Vec<CheckResult>,
    pub backup_age_hours: Option<f64>,
    pub verified_age_hours: Option<f64>,
}

impl TargetHealth {
    /// The worst severity of any check; `None` when all are OK.
    pub fn overall(&self) -> Option<Severity> {
        self.checks.iter().filter_map(|c| c.severity).max_by_key(|s| severity_rank(*s))
    }
}

fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn age_hours(from: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now - from).num_seconds() as f64 / 3600.0
}

fn is_restore_point(b: &BackupRecord) -> bool {
    matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
}

pub fn evaluate(target: &str, backups: &[BackupRecord], tables: Option<&TableComparison>, now: DateTime<Utc>, t: &MonitorThresholds) -> TargetHealth {
    let mut sorted: Vec<&BackupRecord> = backups.iter().filter(|b| b.target == target).collect();
    sorted.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.backup_id.cmp(&a.backup_id)));
    let completed: Vec<&BackupRecord> = sorted.iter().copied().filter(|b| is_restore_point(b)).collect();
    let newest = completed.first().copied();
    let verified = sorted.iter().copied().find(|b| b.status == BackupStatus::Verified);
    let backup_age_hours = newest.map(|b| age_hours(b.started_at, now));
    let verified_age_hours = verified.map(|b| age_hours(b.started_at, now));

    let mut checks = Vec::new();
    checks.push(match newest {
        None => CheckResult { check: HealthCheck::BackupAge, severity: Some(Severity::Critical), summary: "no completed backup on record".into(), since: None },
        Some(b) => {
            let age = age_hours(b.started_at, now);
            let severity = if age > t.backup_critical_after_hours {
                Some(Severity::Critical)
            } else if t.backup_warning_after_hours.is_some_and(|w| age > w) {
                Some(Severity::Warning)
            } else {
                None
            };
            let limit = if severity == Some(Severity::Warning) { t.backup_warning_after_hours.unwrap_or_default() } else { t.backup_critical_after_hours };
            let summary = match severity {
                None => format!("newest completed backup {} is {age:.1} h old", b.backup_id),
                Some(_) => format!("no completed backup for {age:.1} h (limit {limit:.0} h); newest is {}", b.backup_id),
            };
            CheckResult { check: HealthCheck::BackupAge, severity, summary, since: severity.map(|_| b.started_at + hours(limit)) }
        }
    });
    checks.push(match verified {
        None => CheckResult { check: HealthCheck::VerifiedAge, severity: Some(Severity::Critical), summary: "no backup has passed a restore drill yet".into(), since: None },
        Some(b) => {
            let age = age_hours(b.started_at, now);
            if age > t.verified_critical_after_hours {
                CheckResult {
                    check: HealthCheck::VerifiedAge,
                    severity: Some(Severity::Critical),
                    summary: format!("newest verified backup {} is {age:.0} h old (limit {:.0} h)", b.backup_id, t.verified_critical_after_hours),
                    since: Some(b.started_at + hours(t.verified_critical_after_hours)),
                }
            } else {
                CheckResult { check: HealthCheck::VerifiedAge, severity: None, summary: format!("newest verified backup {} is {age:.1} h old", b.backup_id), since: None }
            }
        }
    });
    let last_drilled = sorted.iter().copied().filter_map(|b| b.verification.as_ref().map(|v| (b, v))).max_by_key(|(_, v)| v.finished_at);
    checks.push(match last_drilled {
        Some((b, v)) if !v.passed => CheckResult {
            check: HealthCheck::LastVerification,
            severity: Some(Severity::Critical),
            summary: format!("the latest restore drill (backup {}) failed: {}", b.backup_id, v.failed_checks.join(", ")),
            since: Some(v.finished_at),
        },
        Some((b, v)) => CheckResult { check: HealthCheck::LastVerification, severity: None, summary: format!("the latest restore drill (backup {}) passed at {}", b.backup_id, v.finished_at.to_rfc3339()), since: None },
        None => CheckResult { check: HealthCheck::LastVerification, severity: None, summary: "no restore drill has finished yet (see verified_age)".into(), since: None },
    });
    let failures: Vec<&BackupRecord> = sorted.iter().copied().take_while(|b| !is_restore_point(b)).filter(|b| b.status == BackupStatus::Failed).collect();
    checks.push(match failures.len() as u32 {
        0 => CheckResult { check: HealthCheck::ConsecutiveFailures, severity: None, summary: "the latest backup attempt did not fail".into(), since: None },
        n => CheckResult {
            check: HealthCheck::ConsecutiveFailures,
            severity: Some(if n >= t.failures_critical_after { Severity::Critical } else { Severity::Warning }),
            summary: format!("{n} backup attempt(s) failed in a row; latest: {}", failures[0].error.as_deref().unwrap_or("no reason recorded").lines().next().unwrap_or("")),
            since: failures.last().map(|b| b.started_at),
        },
    });
    checks.push(dump_shrank(&completed, t));
    checks.push(tables_shrank(tables, t));
    TargetHealth { target: target.to_string(), checks, backup_age_hours, verified_age_hours }
}

fn dump_shrank(completed: &[&BackupRecord], t: &MonitorThresholds) -> CheckResult {
    let ok = |summary: String| CheckResult { check: HealthCheck::DumpShrank, severity: None, summary, since: None };
    let Some((newest, before)) = completed.split_first() else { return ok("no completed backup to compare".into()) };
    let mut sizes: Vec<u64> = before.iter().take(7).map(|b| b.raw_bytes).collect();
    if sizes.is_empty() {
        return ok("one completed backup: nothing to compare with yet".into());
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    if (newest.raw_bytes as f64) < median as f64 * t.shrink_fraction {
        CheckResult {
            check: HealthCheck::DumpShrank,
            severity: Some(Severity::Warning),
            summary: format!("backup {} dumped {} bytes of SQL, under {:.0}% of the recent median {median}", newest.backup_id, newest.raw_bytes, t.shrink_fraction * 100.0),
            since: Some(newest.started_at),
        }
    } else {
        ok(format!("backup {} dumped {} bytes of SQL (recent median {median})", newest.backup_id, newest.raw_bytes))
    }
}

fn tables_shrank(tables: Option<&TableComparison>, t: &MonitorThresholds) -> CheckResult {
    let Some(tables) = tables else {
        return CheckResult { check: HealthCheck::TablesShrank, severity: None, summary: "fewer than two completed backups with manifests to compare".into(), since: None };
    };
    let shrunk: Vec<String> = tables
        .previous
        .iter()
        .filter(|(_, before)| **before > 0)
        .filter_map(|(name, before)| {
            let now = tables.latest.get(name).copied();
            match now {
                None => Some(format!("{name} is gone (had {before} rows)")),
                Some(n) if (n as f64) < *before as f64 * t.table_shrink_fraction => Some(format!("{name} {before} → {n} rows")),
                Some(_) => None,
            }
        })
        .collect();
    if shrunk.is_empty() {
        CheckResult { check: HealthCheck::TablesShrank, severity: None, summary: format!("{} table(s), none lost more than half its rows", tables.latest.len()), since: None }
    } else {
        CheckResult { check: HealthCheck::TablesShrank, severity: Some(Severity::Warning), summary: format!("since the previous backup: {}", shrunk.join(", ")), since: None }
    }
}

// ---------------------------------------------------------------- alert state

/// What the monitor last said about one check of one target; stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub target: String,
    pub check: HealthCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing: Option<Firing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub severity: Severity,
    /// When this check went bad (first seen by the monitor).
    pub since: DateTime<Utc>,
    /// When its last alert was published.
    pub last_sent: DateTime<Utc>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    Fired,
    /// Warning became critical.
    Escalated,
    /// Still bad after the cooldown.
    Repeated,
    Resolved { was: Severity, since: DateTime<Utc> },
}

/// The check's next state and the alert (if any) to publish before saving it.
pub fn next_alert(target: &str, previous: Option<&AlertState>, result: &CheckResult, now: DateTime<Utc>, cooldown: Duration) -> (AlertState, Option<AlertEvent>) {
    let firing = previous.and_then(|p| p.firing.clone());
    let state = |firing: Option<Firing>| AlertState { target: target.to_string(), check: result.check, firing };
    let bad = result.severity.filter(|s| *s != Severity::Info);
    match (firing, bad) {
        (None, None) => (state(None), None),
        (None, Some(severity)) => (
            state(Some(Firing { severity, since: result.since.unwrap_or(now).min(now), last_sent: now, summary: result.summary.clone() })),
            Some(AlertEvent::Fired),
        ),
        (Some(f), None) => (state(None), Some(AlertEvent::Resolved { was: f.severity, since: f.since })),
        (Some(f), Some(severity)) => {
            let escalated = severity_rank(severity) > severity_rank(f.severity);
            let due = now - f.last_sent >= cooldown;
            let event = if escalated {
                Some(AlertEvent::Escalated)
            } else if due {
                Some(AlertEvent::Repeated)
            } else {
                None
            };
            let last_sent = if event.is_some() { now } else { f.last_sent };
            (state(Some(Firing { severity, since: f.since, last_sent, summary: result.summary.clone() })), event)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BackupId, Trigger, VerificationSummary};
    use crate::pipeline::codec::Codec;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn backup(hours_ago: i64, status: BackupStatus, raw_bytes: u64) -> BackupRecord {
        let at = now() - Duration::hours(hours_ago);
        let mut b = BackupRecord::in_progress("orders", BackupId(format!("{}-{hours_ago:08x}", at.format("%Y%m%dT%H%M%SZ"))), Trigger::Schedule, "r", at, Codec::Zstd);
        b.status = status;
        b.raw_bytes = raw_bytes;
        if status == BackupStatus::Failed {
            b.error = Some("pg_dump failed: connection refused\nmore".into());
        }
        b
    }

    fn verified(hours_ago: i64, passed: bool) -> BackupRecord {
        let mut b = backup(hours_ago, if passed { BackupStatus::Verified } else { BackupStatus::VerifyFailed }, 1000);
        b.verification = Some(VerificationSummary {
            drill_id: "d".into(),
            finished_at: b.started_at + Duration::hours(1),
            passed,
            failed_checks: if passed { vec![] } else { vec!["table public.orders".into()] },
            rto_seconds: None,
            rpo_seconds: None,
        });
        b
    }

    fn severity_of(h: &TargetHealth, check: HealthCheck) -> Option<Severity> {
        h.checks.iter().find(|c| c.check == check).unwrap().severity
    }

    fn eval(backups: &[BackupRecord]) -> TargetHealth {
        evaluate("orders", backups, None, now(), &MonitorThresholds::default())
    }

    #[test]
    fn backup_age_is_measured_against_the_threshold() {
        let cases = [(25, None), (26, None), (27, Some(Severity::Critical))];
        for (hours_ago, expected) in cases {
            let h = eval(&[backup(hours_ago, BackupStatus::Completed, 1000), verified(30, true)]);
            assert_eq!(severity_of(&h, HealthCheck::BackupAge), expected, "{hours_ago} h");
        }
        let warn = MonitorThresholds { backup_warning_after_hours: Some(20.0), ..Default::default() };
        let h = evaluate("orders", &[backup(21, BackupStatus::Completed, 1)], None, now(), &warn);
        assert_eq!(severity_of(&h, HealthCheck::BackupAge), Some(Severity::Warning));
    }

    #[test]
    fn nothing_on_record_is_critical_not_ok() {
        let h = eval(&[]);
        assert_eq!(severity_of(&h, HealthCheck::BackupAge), Some(Severity::Critical));
        assert_eq!(severity_of(&h, HealthCheck::VerifiedAge), Some(Severity::Critical));
        assert_eq!(h.overall(), Some(Severity::Critical));
        let only_failed = eval(&[backup(1, BackupStatus::Failed, 0), backup(2, BackupStatus::InProgress, 0), backup(3, BackupStatus::Purged, 10)]);
        assert_eq!(severity_of(&only_failed, HealthCheck::BackupAge), Some(Severity::Critical), "failed, running and purged backups are no restore points");
    }

    #[test]
    fn failures_count_back_to_the_newest_completed_backup() {
        let one = eval(&[backup(1, BackupStatus::Failed, 0), backup(2, BackupStatus::Completed, 10), backup(3, BackupStatus::Failed, 0)]);
        assert_eq!(severity_of(&one, HealthCheck::ConsecutiveFailures), Some(Severity::Warning));
        let two = eval(&[backup(1, BackupStatus::Failed, 0), backup(2, BackupStatus::InProgress, 0), backup(3, BackupStatus::Failed, 0), backup(4, BackupStatus::Completed, 10)]);
        assert_eq!(severity_of(&two, HealthCheck::ConsecutiveFailures), Some(Severity::Critical));
        assert!(two.checks.iter().any(|c| c.summary.contains("2 backup attempt(s)") && c.summary.contains("connection refused")));
        let none = eval(&[backup(1, BackupStatus::Completed, 10), backup(2, BackupStatus::Failed, 0)]);
        assert_eq!(severity_of(&none, HealthCheck::ConsecutiveFailures), None);
    }

    #[test]
    fn verification_age_and_outcome() {
        let old = eval(&[backup(1, BackupStatus::Completed, 10), verified(200, true)]);
        assert_eq!(severity_of(&old, HealthCheck::VerifiedAge), Some(Severity::Critical));
        assert_eq!(severity_of(&old, HealthCheck::LastVerification), None);
        let failed = eval(&[verified(1, false), verified(30, true)]);
        assert_eq!(severity_of(&failed, HealthCheck::LastVerification), Some(Severity::Critical));
        assert_eq!(severity_of(&failed, HealthCheck::VerifiedAge), None, "an older backup passed recently enough");
        assert!(failed.checks.iter().any(|c| c.summary.contains("table public.orders")));
    }

    #[test]
    fn a_dump_under_half_the_recent_median_is_flagged() {
        let history = |newest: u64| vec![backup(1, BackupStatus::Completed, newest), backup(25, BackupStatus::Completed, 1000), backup(49, BackupStatus::Completed, 900), backup(73, BackupStatus::Completed, 5000)];
        assert_eq!(severity_of(&eval(&history(499)), HealthCheck::DumpShrank), Some(Severity::Warning));
        assert_eq!(severity_of(&eval(&history(500)), HealthCheck::DumpShrank), None);
        assert_eq!(severity_of(&eval(&history(10_000)), HealthCheck::DumpShrank), None);
    }

    #[test]
    fn tables_that_lost_half_their_rows_or_vanished_are_flagged() {
        let map = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        let cases = [
            (map(&[("a", 100), ("b", 10)]), map(&[("a", 50), ("b", 10)]), None),
            (map(&[("a", 100)]), map(&[("a", 49)]), Some(Severity::Warning)),
            (map(&[("a", 100), ("gone", 5)]), map(&[("a", 100)]), Some(Severity::Warning)),
            (map(&[("a", 100)]), map(&[("a", 100), ("new", 1)]), None),
            (map(&[("empty", 0)]), map(&[]), None),
        ];
        for (previous, latest, expected) in cases {
            let tables = TableComparison { latest: latest.clone(), previous: previous.clone() };
            let h = evaluate("orders", &[], Some(&tables), now(), &MonitorThresholds::default());
            assert_eq!(severity_of(&h, HealthCheck::TablesShrank), expected, "{previous:?} → {latest:?}");
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_record_order() {
        let mut backups = vec![backup(1, BackupStatus::Failed, 0), backup(5, BackupStatus::Completed, 300), verified(30, true), backup(50, BackupStatus::Completed, 1000)];
        let first = eval(&backups);
        backups.reverse();
        assert_eq!(eval(&backups), first);
        backups.swap(0, 2);
        assert_eq!(eval(&backups), first);
    }

    #[test]
    fn alerts_fire_once_repeat_after_the_cooldown_escalate_and_resolve() {
        let cooldown = Duration::hours(6);
        let result = |severity: Option<Severity>| CheckResult { check: HealthCheck::BackupAge, severity, summary: "s".into(), since: None };
        let mut state = AlertState { target: "orders".into(), check: HealthCheck::BackupAge, firing: None };
        let mut events = Vec::new();
        let timeline = [
            (0, None),
            (1, Some(Severity::Warning)),
            (2, Some(Severity::Warning)),
            (6, Some(Severity::Warning)),
            (7, Some(Severity::Warning)),
            (8, Some(Severity::Critical)),
            (9, Some(Severity::Warning)),
            (10, Some(Severity::Critical)),
            (11, None),
            (12, None),
        ];
        for (hour, severity) in timeline {
            let (next, event) = next_alert("orders", Some(&state), &result(severity), now() + Duration::hours(hour), cooldown);
            events.push((hour, event));
            state = next;
        }
        let fired: Vec<(i64, AlertEvent)> = events.into_iter().filter_map(|(h, e)| e.map(|e| (h, e))).collect();
        assert_eq!(
            fired,
            vec![
                (1, AlertEvent::Fired),
                (7, AlertEvent::Repeated),
                (8, AlertEvent::Escalated),
                // 9: critical → warning pages nobody; 10: back to critical is a change worth a page.
                (10, AlertEvent::Escalated),
                (11, AlertEvent::Resolved { was: Severity::Critical, since: now() + Duration::hours(1) }),
            ]
        );
        assert_eq!(state.firing, None);
    }
}
