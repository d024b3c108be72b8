//! The monitor's judgement, as pure functions: how healthy a target's backups are (`evaluate`, from its records
//! and row counts, against `MonitorThresholds`), and whether a check's result should page someone
//! (`next_alert`, a small state machine per target and check that fires once per change, repeats after a
//! cooldown and says once when it clears). The monitor job reads the catalog and manifests, calls these, stores
//! the `AlertState`s and publishes the alerts; nothing here does I/O or reads a clock.
//!
//! Ages are measured from a backup's `started_at`: a dump holds the database as it was when pg_dump took its
//! snapshot, so that age is what a restore would lose (the same RPO the verify job reports).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::backup::{BackupRecord, BackupStatus};
use super::severity::Severity;
use super::text::{list_text, percent_text};

/// How many completed backups before the newest one make the baseline its size is compared with (a week of
/// daily backups: one unusual day moves a median of seven very little).
pub const SHRINK_BASELINE_BACKUPS: usize = 7;

/// Longest threshold accepted, in hours (about 114 years): keeps every duration far inside chrono's range.
const MAX_HOURS: u64 = 1_000_000;

// ---------------------------------------------------------------- thresholds

/// The monitor's thresholds: the configuration's `[monitor]` table. Every key is optional; durations are
/// whole hours, fractions are between 0 and 1 (exclusive).
///
/// ```toml
/// [monitor]
/// backup_critical_after_hours = 26     # newest completed backup older than this: critical
/// backup_warning_after_hours = 25      # optional; no warning step by default
/// verified_critical_after_hours = 192  # 8 days: newest drilled-and-passed backup older than this: critical
/// failures_critical_after = 2          # this many failed backups in a row: critical (fewer, at least 1: warning)
/// shrink_fraction = 0.5                # newest dump smaller than the recent median by more than this: warning
/// table_shrink_fraction = 0.5          # a table lost more than this share of its rows since the previous backup
/// table_shrink_min_rows = 100          # tables with fewer rows in the previous backup are not judged
/// table_shrink_ignore = ["public.job_queue", "scratch.*"]
/// cooldown_hours = 6                   # a still-firing alert is sent again after this long
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorThresholds {
    /// Warning when the newest completed backup is older than this many hours. `None` (the default): no
    /// warning step. The first failed backup already warns (`failures_critical_after`), so the age check only
    /// adds news when no backup ran at all, and one threshold says that; a warning an hour before the
    /// critical one would mostly fire on a backup that merely ran late.
    pub backup_warning_after_hours: Option<u64>,
    /// Critical when the newest completed backup is older than this many hours, or there is none. 26 by
    /// default: a daily schedule, plus two hours for a slow or retried backup.
    pub backup_critical_after_hours: u64,
    /// Warning when the newest verified backup is older than this many hours. `None` (the default): none.
    pub verified_warning_after_hours: Option<u64>,
    /// Critical when the newest backup a restore drill passed is older than this many hours, or there is none.
    /// 192 (8 days) by default: weekly drills, plus a day.
    pub verified_critical_after_hours: u64,
    /// This many consecutive failed backups (counted back to the newest completed one) are critical; fewer, but
    /// at least one, are a warning. 2 by default. 1 makes every failure critical.
    pub failures_critical_after: u32,
    /// Warning when the newest dump's SQL size (`raw_bytes`) is smaller than the median of the
    /// `SHRINK_BASELINE_BACKUPS` completed backups before it by more than this fraction. 0.5 by default.
    pub shrink_fraction: f64,
    /// Warning when a table has fewer rows in the newest completed backup than in the previous one by more than
    /// this fraction (a table missing from the newest lost all its rows). 0.5 by default.
    pub table_shrink_fraction: f64,
    /// Tables with fewer rows than this in the previous backup are not judged: a table going from 3 rows to 1
    /// is not news. 100 by default.
    pub table_shrink_min_rows: u64,
    /// Tables whose row counts go up and down by design (queues, sessions), as qualified names
    /// (`public.job_queue`); an entry ending in `*` matches every name that starts with what precedes it
    /// (`scratch.*`). Empty by default.
    pub table_shrink_ignore: Vec<String>,
    /// How long a still-firing alert waits before it is sent again, in hours. 6 by default. 0 repeats it on
    /// every monitor run.
    pub cooldown_hours: u64,
}

impl Default for MonitorThresholds {
    fn default() -> Self {
        MonitorThresholds {
            backup_warning_after_hours: None,
            backup_critical_after_hours: 26,
            verified_warning_after_hours: None,
            verified_critical_after_hours: 8 * 24,
            failures_critical_after: 2,
            shrink_fraction: 0.5,
            table_shrink_fraction: 0.5,
            table_shrink_min_rows: 100,
            table_shrink_ignore: Vec::new(),
            cooldown_hours: 6,
        }
    }
}

/// A threshold that cannot work, named as in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("monitor threshold {field} = {value} is not valid: {reason}")]
pub struct InvalidThreshold {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn hours_duration(hours: u64) -> Duration {
    Duration::hours(hours.min(MAX_HOURS) as i64)
}

impl MonitorThresholds {
    pub fn backup_warning_after(&self) -> Option<Duration> {
        self.backup_warning_after_hours.map(hours_duration)
    }

    pub fn backup_critical_after(&self) -> Duration {
        hours_duration(self.backup_critical_after_hours)
    }

    pub fn verified_warning_after(&self) -> Option<Duration> {
        self.verified_warning_after_hours.map(hours_duration)
    }

    pub fn verified_critical_after(&self) -> Duration {
        hours_duration(self.verified_critical_after_hours)
    }

    pub fn cooldown(&self) -> Duration {
        hours_duration(self.cooldown_hours)
    }

    /// Whether `table` is listed in `table_shrink_ignore`.
    pub fn ignores_table(&self, table: &str) -> bool {
        self.table_shrink_ignore.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => table.starts_with(prefix),
            None => table == pattern,
        })
    }

    /// Refuses thresholds that could never fire, or would always fire.
    pub fn validate(&self) -> Result<(), InvalidThreshold> {
        let invalid = |field, value: String, reason| Err(InvalidThreshold { field, value, reason });
        let hours = [
            ("backup_warning_after_hours", self.backup_warning_after_hours),
            ("backup_critical_after_hours", Some(self.backup_critical_after_hours)),
            ("verified_warning_after_hours", self.verified_warning_after_hours),
            ("verified_critical_after_hours", Some(self.verified_critical_after_hours)),
        ];
        for (field, value) in hours {
            match value {
                Some(0) => return invalid(field, "0".into(), "must be at least 1 (hour)"),
                Some(h) if h > MAX_HOURS => return invalid(field, h.to_string(), "must be at most 1000000 (hours)"),
                _ => {}
            }
        }
        if self.cooldown_hours > MAX_HOURS {
            return invalid("cooldown_hours", self.cooldown_hours.to_string(), "must be at most 1000000 (hours)");
        }
        let steps = [
            ("backup_warning_after_hours", self.backup_warning_after_hours, self.backup_critical_after_hours),
            ("verified_warning_after_hours", self.verified_warning_after_hours, self.verified_critical_after_hours),
        ];
        for (field, warning, critical) in steps {
            if let Some(w) = warning.filter(|w| *w >= critical) {
                return invalid(
                    field,
                    w.to_string(),
                    "must be less than the matching critical threshold, or the warning never fires",
                );
            }
        }
        if self.failures_critical_after == 0 {
            return invalid("failures_critical_after", "0".into(), "must be at least 1 (failed backup)");
        }
        for (field, value) in
            [("shrink_fraction", self.shrink_fraction), ("table_shrink_fraction", self.table_shrink_fraction)]
        {
            if !(value > 0.0 && value < 1.0) {
                return invalid(
                    field,
                    value.to_string(),
                    "must be more than 0 and less than 1 (0.5: lost more than half)",
                );
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- results

/// What the monitor checks, per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// Age of the newest completed (or verified) backup.
    BackupAge,
    /// Age of the newest backup a restore drill passed.
    VerifiedAge,
    /// The verdict of the newest drilled backup.
    LastVerification,
    /// Failed backups since the newest completed one.
    ConsecutiveFailures,
    /// The newest dump against the median size of the ones before it.
    DumpShrank,
    /// Per-table row counts of the two newest completed backups.
    TablesShrank,
}

impl HealthCheck {
    pub const ALL: [HealthCheck; 6] = [
        HealthCheck::BackupAge,
        HealthCheck::VerifiedAge,
        HealthCheck::LastVerification,
        HealthCheck::ConsecutiveFailures,
        HealthCheck::DumpShrank,
        HealthCheck::TablesShrank,
    ];

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

    /// For people: `backup age`, `tables shrank`.
    pub fn label(self) -> &'static str {
        match self {
            HealthCheck::BackupAge => "backup age",
            HealthCheck::VerifiedAge => "verified backup age",
            HealthCheck::LastVerification => "last restore drill",
            HealthCheck::ConsecutiveFailures => "consecutive failed backups",
            HealthCheck::DumpShrank => "dump size",
            HealthCheck::TablesShrank => "table row counts",
        }
    }
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Row counts of the newest completed backup and of the one before it, by qualified table name
/// (`public.orders`), as their manifests record them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableComparison {
    pub latest: BTreeMap<String, u64>,
    pub previous: BTreeMap<String, u64>,
}

/// What the monitor learned of the row counts of a target's two newest completed backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCounts {
    Compared(TableComparison),
    /// A manifest that should be there could not be read or parsed: itself a problem (the runbook restores from
    /// it), and one that must not pass for "no table shrank".
    Unreadable {
        backup_id: String,
        error: String,
    },
}

/// One check's verdict on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: HealthCheck,
    /// `None`: OK. The monitor produces `Warning` and `Critical` only.
    pub severity: Option<Severity>,
    /// One line with the figures, for an alert's subject and a status listing.
    pub summary: String,
    /// When the condition began, as far as the records tell (`None` when OK, or when they do not tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

impl CheckResult {
    pub fn ok(check: HealthCheck, summary: String) -> Self {
        CheckResult { check, severity: None, summary, since: None }
    }

    pub fn is_ok(&self) -> bool {
        firing_severity(self).is_none()
    }
}

/// Every check's verdict on one target, with the ages the job also reports as metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub target: String,
    /// In `HealthCheck::ALL` order.
    pub checks: Vec<CheckResult>,
    /// Hours since the newest completed backup started; `None` when there is none.
    pub backup_age_hours: Option<f64>,
    /// Hours since the newest verified backup started; `None` when there is none.
    pub verified_age_hours: Option<f64>,
}

impl TargetHealth {
    /// The worst severity of any check; `None` when all are OK.
    pub fn overall(&self) -> Option<Severity> {
        self.checks.iter().filter_map(|c| c.severity).max_by_key(|s| rank(*s))
    }

    pub fn check(&self, check: HealthCheck) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == check)
    }
}

/// Orders severities by urgency (`Severity`'s declaration order is the reverse, so no derived `Ord`).
pub fn rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

// ---------------------------------------------------------------- evaluation

/// A restore point: a backup that finished and has not been proven bad or deleted. `verify_failed` is out (a
/// drill says it may not restore; `LastVerification` reports that), and so are `purging` / `purged` (their
/// objects are, or are being, deleted) and `lost` (its objects are gone).
fn is_restore_point(status: BackupStatus) -> bool {
    matches!(status, BackupStatus::Completed | BackupStatus::Verified)
}

/// pg_dump finished and the backup was recorded completed, whatever happened to it after: its `raw_bytes` are a
/// measurement of the database, and it ends a run of failures.
fn was_dumped(status: BackupStatus) -> bool {
    match status {
        BackupStatus::Completed
        | BackupStatus::Verified
        | BackupStatus::VerifyFailed
        | BackupStatus::Purging
        | BackupStatus::Purged
        | BackupStatus::Lost => true,
        BackupStatus::InProgress | BackupStatus::Failed => false,
    }
}

/// How far ahead of the monitor's clock a record may be dated before it is taken for a wrong clock.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A record dated no further ahead of `now` than clocks usually disagree: one dated later says a clock is wrong,
/// not that a backup is fresh, and is left out of whatever judges the target by its newest records.
pub fn dated_believably(record: &BackupRecord, now: DateTime<Utc>) -> bool {
    record.started_at <= now + CLOCK_SKEW
}

/// Judges one target. `backups` are its newest records in any order (records of other targets are ignored);
/// `tables` compares the row counts of its two newest completed backups (`None`: fewer than two have manifests). The result has one `CheckResult` per `HealthCheck`, in `HealthCheck::ALL` order.
pub fn evaluate(
    target: &str,
    backups: &[BackupRecord],
    tables: Option<&RowCounts>,
    now: DateTime<Utc>,
    thresholds: &MonitorThresholds,
) -> TargetHealth {
    // A record dated ahead of now (past the clocks' usual skew) says a clock is wrong, not that a backup is fresh:
    // it is left out, so it can neither vouch for the target nor hide the failures after it.
    let (ahead, mut newest_first): (Vec<&BackupRecord>, Vec<&BackupRecord>) =
        backups.iter().filter(|b| b.target == target).partition(|b| !dated_believably(b, now));
    newest_first.sort_by(|a, b| (b.started_at, &b.backup_id).cmp(&(a.started_at, &a.backup_id)));

    let newest_good = newest_first.iter().copied().find(|b| is_restore_point(b.status));
    let newest_verified = newest_first.iter().copied().find(|b| b.status == BackupStatus::Verified);
    let age = |b: &BackupRecord| (now - b.started_at).max(Duration::zero());

    let mut backup_age = backup_age(&newest_first, newest_good, now, thresholds);
    if let Some(first) = ahead.iter().min_by_key(|b| b.started_at) {
        backup_age.summary.push_str(&format!(
            "; {} record(s) dated in the future left out ({} starts {} from now): a clock is wrong",
            ahead.len(),
            first.backup_id,
            age_text(first.started_at - now)
        ));
        backup_age.severity.get_or_insert(Severity::Warning);
    }
    let checks = vec![
        backup_age,
        verified_age(newest_verified, now, thresholds),
        last_verification(&newest_first),
        consecutive_failures(&newest_first, thresholds),
        dump_shrank(&newest_first, thresholds),
        tables_shrank(tables, thresholds),
    ];
    TargetHealth {
        target: target.to_string(),
        checks,
        backup_age_hours: newest_good.map(|b| hours(age(b))),
        verified_age_hours: newest_verified.map(|b| hours(age(b))),
    }
}

/// The severity an age earns, with the threshold it passed. An age equal to a threshold has not passed it.
fn age_severity(age: Duration, warning: Option<Duration>, critical: Duration) -> Option<(Severity, Duration)> {
    if age > critical {
        Some((Severity::Critical, critical))
    } else {
        warning.filter(|w| age > *w).map(|w| (Severity::Warning, w))
    }
}

fn thresholds_text(warning: Option<Duration>, critical: Duration) -> String {
    match warning {
        Some(w) => format!("warning after {}, critical after {}", threshold_text(w), threshold_text(critical)),
        None => format!("critical after {}", threshold_text(critical)),
    }
}

fn backup_age(
    newest_first: &[&BackupRecord],
    newest_good: Option<&BackupRecord>,
    now: DateTime<Utc>,
    t: &MonitorThresholds,
) -> CheckResult {
    let check = HealthCheck::BackupAge;
    let (warning, critical) = (t.backup_warning_after(), t.backup_critical_after());
    let Some(good) = newest_good else {
        let seen = if newest_first.is_empty() {
            "no backup records at all".to_string()
        } else {
            format!("{} newest records read: {}", newest_first.len(), status_counts(newest_first))
        };
        return CheckResult {
            check,
            severity: Some(Severity::Critical),
            summary: format!("no completed backup on record ({seen})"),
            since: None,
        };
    };
    let age = (now - good.started_at).max(Duration::zero());
    let limits = thresholds_text(warning, critical);
    match age_severity(age, warning, critical) {
        Some((severity, passed)) => CheckResult {
            check,
            severity: Some(severity),
            summary: format!("no completed backup for {} ({limits}; newest: {})", age_text(age), good.backup_id),
            since: Some(good.started_at + passed),
        },
        None => CheckResult::ok(
            check,
            format!("newest completed backup is {} old ({}; {limits})", age_text(age), good.backup_id),
        ),
    }
}

fn verified_age(newest_verified: Option<&BackupRecord>, now: DateTime<Utc>, t: &MonitorThresholds) -> CheckResult {
    let check = HealthCheck::VerifiedAge;
    let (warning, critical) = (t.verified_warning_after(), t.verified_critical_after());
    let Some(verified) = newest_verified else {
        return CheckResult {
            check,
            severity: Some(Severity::Critical),
            summary: "no backup verified by a restore drill on record".into(),
            since: None,
        };
    };
    let age = (now - verified.started_at).max(Duration::zero());
    let limits = thresholds_text(warning, critical);
    match age_severity(age, warning, critical) {
        Some((severity, passed)) => CheckResult {
            check,
            severity: Some(severity),
            summary: format!("no verified backup for {} ({limits}; newest: {})", age_text(age), verified.backup_id),
            since: Some(verified.started_at + passed),
        },
        None => CheckResult::ok(
            check,
            format!("newest verified backup is {} old ({}; {limits})", age_text(age), verified.backup_id),
        ),
    }
}

/// The newest backup (by start) that a drill has judged and that still exists.
fn last_verification(newest_first: &[&BackupRecord]) -> CheckResult {
    let check = HealthCheck::LastVerification;
    let drilled = newest_first.iter().find_map(|b| match (&b.verification, b.status) {
        (_, BackupStatus::Purging | BackupStatus::Purged) => None,
        (Some(v), _) => Some((*b, v)),
        (None, _) => None,
    });
    let Some((backup, v)) = drilled else {
        return CheckResult::ok(check, "no restore drill on record".into());
    };
    if v.passed {
        return CheckResult::ok(
            check,
            format!("drill {} of backup {} passed on {}", v.drill_id, backup.backup_id, time_text(v.finished_at)),
        );
    }
    let failed = if v.failed_checks.is_empty() {
        "no failed check recorded".to_string()
    } else {
        list_text(&v.failed_checks, 3)
    };
    CheckResult {
        check,
        severity: Some(Severity::Critical),
        summary: format!("restore drill failed: {failed} (backup {})", backup.backup_id),
        since: Some(v.finished_at),
    }
}

/// Failed backups newer than the newest one that was dumped. Records still `in_progress` are neither: a run
/// that died leaves one for good, and `BackupAge` is what notices that no backup arrives.
fn consecutive_failures(newest_first: &[&BackupRecord], t: &MonitorThresholds) -> CheckResult {
    let check = HealthCheck::ConsecutiveFailures;
    let mut failed: Vec<&BackupRecord> = Vec::new();
    let mut reached_completed = false;
    for b in newest_first {
        if was_dumped(b.status) {
            reached_completed = true;
            break;
        }
        if b.status == BackupStatus::Failed {
            failed.push(b);
        }
    }
    let Some(latest) = failed.first() else {
        return CheckResult::ok(check, "no failed backup since the newest completed one".into());
    };
    let count = failed.len();
    let severity = if count >= t.failures_critical_after as usize { Severity::Critical } else { Severity::Warning };
    let counted = if reached_completed {
        format!("{count} consecutive backup{} failed", if count == 1 { "" } else { "s" })
    } else {
        format!(
            "{count} consecutive backup{} failed, none completed before them in the records read",
            if count == 1 { "" } else { "s" }
        )
    };
    let reason = latest.error.as_deref().map(first_line).unwrap_or("no reason recorded");
    CheckResult {
        check,
        severity: Some(severity),
        summary: format!("{counted}: {reason} (latest: {})", latest.backup_id),
        since: failed.last().map(|b| b.started_at),
    }
}

fn dump_shrank(newest_first: &[&BackupRecord], t: &MonitorThresholds) -> CheckResult {
    let check = HealthCheck::DumpShrank;
    let mut dumped = newest_first.iter().copied().filter(|b| was_dumped(b.status));
    let Some(latest) = dumped.next() else {
        return CheckResult::ok(check, "no completed backup to measure".into());
    };
    if latest.raw_bytes == 0 {
        return CheckResult::ok(check, format!("backup {} has no recorded size", latest.backup_id));
    }
    // Records without a size (written before sizes were recorded) are not measurements.
    let mut sizes: Vec<u64> =
        dumped.filter(|b| b.raw_bytes > 0).take(SHRINK_BASELINE_BACKUPS).map(|b| b.raw_bytes).collect();
    let Some(median) = median(&mut sizes) else {
        return CheckResult::ok(
            check,
            format!(
                "newest dump is {}; no earlier completed backup to compare with",
                bytes_text(latest.raw_bytes as f64)
            ),
        );
    };
    let latest_bytes = latest.raw_bytes as f64;
    let shrink = 1.0 - latest_bytes / median;
    let figures = format!(
        "{} against a median of {} ({}; {} completed backups before it)",
        bytes_text(latest_bytes),
        bytes_text(median),
        latest.backup_id,
        sizes.len()
    );
    if latest_bytes < median * (1.0 - t.shrink_fraction) {
        CheckResult {
            check,
            severity: Some(Severity::Warning),
            summary: format!("dump shrank by {}: {figures}", percent_text(shrink)),
            since: Some(latest.started_at),
        }
    } else {
        CheckResult::ok(check, format!("dump size as usual: {figures}"))
    }
}

fn tables_shrank(tables: Option<&RowCounts>, t: &MonitorThresholds) -> CheckResult {
    let check = HealthCheck::TablesShrank;
    let tables = match tables {
        None => {
            return CheckResult::ok(
                check,
                "no row counts to compare (fewer than two completed backups with manifests)".into(),
            )
        }
        Some(RowCounts::Unreadable { backup_id, error }) => {
            return CheckResult {
                check,
                severity: Some(Severity::Warning),
                summary: format!(
                    "row counts not compared: the manifest of backup {backup_id} cannot be read ({error})"
                ),
                since: None,
            }
        }
        Some(RowCounts::Compared(tables)) => tables,
    };
    let judged =
        |(name, rows): &(&String, &u64)| **rows > 0 && **rows >= t.table_shrink_min_rows && !t.ignores_table(name);
    // (name, rows before, rows now; None = gone)
    let mut shrunk: Vec<(&str, u64, Option<u64>)> = tables
        .previous
        .iter()
        .filter(judged)
        .filter_map(|(name, rows)| {
            let now = tables.latest.get(name).copied();
            ((now.unwrap_or(0) as f64) < *rows as f64 * (1.0 - t.table_shrink_fraction)).then_some((
                name.as_str(),
                *rows,
                now,
            ))
        })
        .collect();
    let judged = tables.previous.iter().filter(judged).count();
    if shrunk.is_empty() {
        return CheckResult::ok(
            check,
            format!(
                "no table lost more than {} of its rows ({judged} table{} of at least {} rows compared)",
                percent_text(t.table_shrink_fraction),
                if judged == 1 { "" } else { "s" },
                t.table_shrink_min_rows
            ),
        );
    }
    // Biggest losses first: those are the ones to look at.
    shrunk.sort_by(|a, b| (b.1 - b.2.unwrap_or(0)).cmp(&(a.1 - a.2.unwrap_or(0))).then(a.0.cmp(b.0)));
    let items: Vec<String> = shrunk
        .iter()
        .map(|(name, before, now)| match now {
            Some(n) => format!("{name} {before} → {n} rows"),
            None => format!("{name} gone (had {before} rows)"),
        })
        .collect();
    let count = shrunk.len();
    CheckResult {
        check,
        severity: Some(Severity::Warning),
        summary: format!(
            "{count} table{} lost more than {} of {} rows: {}",
            if count == 1 { "" } else { "s" },
            percent_text(t.table_shrink_fraction),
            if count == 1 { "its" } else { "their" },
            list_text(&items, 3)
        ),
        since: None,
    }
}

fn median(values: &mut [u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[mid] as f64 } else { (values[mid - 1] as f64 + values[mid] as f64) / 2.0 })
}

// ---------------------------------------------------------------- alert state

/// An alert being raised for one (target, check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub severity: Severity,
    /// When the condition began (the check's `since`, else when it was first seen); kept while it fires.
    pub since: DateTime<Utc>,
    /// When an alert for it was last published.
    pub last_sent: DateTime<Utc>,
    /// The latest summary seen.
    pub summary: String,
}

/// What the monitor remembers of one (target, check) between runs; stored in the catalog as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub target: String,
    pub check: HealthCheck,
    /// `None`: OK, nothing raised.
    #[serde(default)]
    pub firing: Option<Firing>,
}

/// What to publish after a check, if anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AlertEvent {
    /// It was OK and now is not.
    Fired { since: DateTime<Utc> },
    /// It got worse (warning → critical).
    Escalated { from: Severity, since: DateTime<Utc> },
    /// Still firing at the same severity, and the cooldown has passed since the last alert.
    Repeated { since: DateTime<Utc> },
    /// It was firing (at `was`, since `since`) and is OK now.
    Resolved { was: Severity, since: DateTime<Utc> },
}

impl AlertEvent {
    /// When the condition began.
    pub fn since(&self) -> DateTime<Utc> {
        match self {
            AlertEvent::Fired { since }
            | AlertEvent::Escalated { since, .. }
            | AlertEvent::Repeated { since }
            | AlertEvent::Resolved { since, .. } => *since,
        }
    }
}

/// `Warning` and `Critical` fire; `Info` (which the monitor never produces) counts as OK.
fn firing_severity(result: &CheckResult) -> Option<Severity> {
    result.severity.filter(|s| *s != Severity::Info)
}

/// The next state of one (target, check) and the alert to publish, if any. Rules:
/// - OK → OK: nothing.
/// - OK → warning/critical: `Fired`.
/// - warning → critical: `Escalated` (pages at once, whatever the cooldown).
/// - critical → warning: no alert; the state records the lower severity (a later return to critical
///   escalates again). Easing off is not worth waking anyone for, and the resolution is still announced.
/// - same severity: `Repeated` once `cooldown` has passed since the last alert (at exactly `cooldown`, too);
///   before that, nothing.
/// - warning/critical → OK: one `Resolved`.
///
/// `since` is kept from the first firing through escalations; `last_sent` moves only when an event is returned,
/// so the caller must store the new state only after publishing (or accept that a lost alert is not retried).
pub fn next_alert(
    target: &str,
    previous: Option<&AlertState>,
    result: &CheckResult,
    now: DateTime<Utc>,
    cooldown: Duration,
) -> (AlertState, Option<AlertEvent>) {
    let was = previous.and_then(|p| p.firing.as_ref());
    let state = |firing| AlertState { target: target.to_string(), check: result.check, firing };
    match (was, firing_severity(result)) {
        (None, None) => (state(None), None),
        (None, Some(severity)) => {
            let since = result.since.map_or(now, |s| s.min(now));
            let firing = Firing { severity, since, last_sent: now, summary: result.summary.clone() };
            (state(Some(firing)), Some(AlertEvent::Fired { since }))
        }
        (Some(f), None) => (state(None), Some(AlertEvent::Resolved { was: f.severity, since: f.since })),
        (Some(f), Some(severity)) => {
            let mut firing =
                Firing { severity, since: f.since, last_sent: f.last_sent, summary: result.summary.clone() };
            let event = if rank(severity) > rank(f.severity) {
                firing.last_sent = now;
                Some(AlertEvent::Escalated { from: f.severity, since: f.since })
            } else if rank(severity) < rank(f.severity) {
                None
            } else if now - f.last_sent >= cooldown {
                firing.last_sent = now;
                Some(AlertEvent::Repeated { since: f.since })
            } else {
                None
            };
            (state(Some(firing)), event)
        }
    }
}

// ---------------------------------------------------------------- text

fn hours(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 3_600_000.0
}

/// `30.2 h` below two days, `9.1 days` from there.
fn age_text(age: Duration) -> String {
    let h = hours(age);
    if h < 48.0 {
        format!("{h:.1} h")
    } else {
        format!("{:.1} days", h / 24.0)
    }
}

/// A configured threshold: `26 h`, `8 days`.
fn threshold_text(d: Duration) -> String {
    let h = d.num_hours();
    if h >= 48 && h % 24 == 0 {
        format!("{} days", h / 24)
    } else {
        format!("{h} h")
    }
}

fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn bytes_text(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut value, mut unit) = (n, 0);
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The first line of a failure reason, cut to 160 characters.
fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(160) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// `1 in_progress, 3 failed`: how many records have each status.
fn status_counts(records: &[&BackupRecord]) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in records {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
