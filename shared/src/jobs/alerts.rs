//! Alert messages, written for the person paged at 3 a.m.: what happened, to which target, when, the figures,
//! and what to do next (with the runbook section to open).

use crate::config::TargetConfig;
use crate::domain::{BackupId, BackupRecord, Job, Trigger};
use crate::domain::health::{AlertEvent, CheckResult, HealthCheck};
use crate::ports::{Alert, Severity};

use super::backup::human_bytes;

/// SNS wants subjects shorter than 100 characters, without control characters.
pub fn subject_line(text: &str) -> String {
    const MAX: usize = 99;
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= MAX {
        clean
    } else {
        format!("{}…", clean.chars().take(MAX - 1).collect::<String>())
    }
}

pub fn backup_failed_alert(
    target: &TargetConfig,
    backup_id: Option<&BackupId>,
    trigger: Trigger,
    run_id: &str,
    reason: &str,
    hint: &str,
    aftermath: &str,
) -> Alert {
    let first_line = reason.lines().next().unwrap_or(reason);
    let body = format!(
        "Backstop could not back up target \"{name}\" (database \"{db}\" on {host}:{port}).\n\n\
         What failed: {reason}\n\n\
         What to look at: {hint}\n\n\
         {aftermath} The previous completed backup is still the latest one.\n\n\
         Backup id: {id}\nRun: {run_id} (trigger: {trigger})\n\
         Runbook: docs/operations.md#a-backup-failed",
        name = target.name,
        db = target.database,
        host = target.host,
        port = target.port,
        id = backup_id.map_or("(none: it never started)".to_string(), |b| b.to_string()),
        trigger = trigger.as_str(),
    );
    Alert {
        subject: subject_line(&format!("Backstop: backup of {} FAILED: {first_line}", target.name)),
        body,
        severity: Severity::Critical,
        job: Job::Backup,
        target: Some(target.name.clone()),
    }
}

pub fn backup_succeeded_alert(target: &TargetConfig, record: &BackupRecord, bucket: &str) -> Alert {
    let dump = record.dump.as_ref();
    let body = format!(
        "Backstop backed up target \"{name}\" (database \"{db}\" on {host}:{port}).\n\n\
         Backup id: {id}\nTables: {tables}, rows: {rows}\nSQL: {raw}, stored: {stored}\nDuration: {secs:.1} s\n\
         Object: s3://{bucket}/{key}\n\nNot restored yet: only a restore drill proves a backup restores.",
        name = target.name,
        db = target.database,
        host = target.host,
        port = target.port,
        id = record.backup_id,
        tables = record.table_count,
        rows = record.row_count,
        raw = human_bytes(record.raw_bytes),
        stored = human_bytes(dump.map_or(0, |d| d.size)),
        secs = record.duration_seconds().unwrap_or(0.0),
        key = dump.map_or("", |d| d.key.as_str()),
    );
    Alert {
        subject: subject_line(&format!("Backstop: backup of {} completed", target.name)),
        body,
        severity: Severity::Info,
        job: Job::Backup,
        target: Some(target.name.clone()),
    }
}

/// A monitor check that went bad, got worse, stayed bad past the cooldown, or cleared.
pub fn monitor_alert(result: &CheckResult, event: &AlertEvent, target: &str) -> Alert {
    let check = result.check.as_str();
    let (severity, state) = match event {
        AlertEvent::Resolved { .. } => (Severity::Info, "RESOLVED".to_string()),
        _ => {
            let severity = result.severity.unwrap_or(Severity::Warning);
            (severity, severity.as_str().to_uppercase())
        }
    };
    let what = match event {
        AlertEvent::Fired => "went bad",
        AlertEvent::Escalated => "got worse (now critical)",
        AlertEvent::Repeated => "is still bad (repeated after the cooldown)",
        AlertEvent::Resolved { .. } => "is fine again",
    };
    let since = match event {
        AlertEvent::Resolved { was, since } => format!("It had been {} since {}.", was.as_str(), since.to_rfc3339()),
        _ => result.since.map_or(String::new(), |s| format!("Since: {}.", s.to_rfc3339())),
    };
    let advice = match (event, result.check) {
        (AlertEvent::Resolved { .. }, _) => "Nothing to do; check the backups later if this flaps.",
        (_, HealthCheck::BackupAge) | (_, HealthCheck::ConsecutiveFailures) => {
            "Find out why backups stopped or fail: `backstop status --target TARGET` and the backup function's logs; then run `backstop backup --target TARGET` and watch it complete."
        }
        (_, HealthCheck::VerifiedAge) | (_, HealthCheck::LastVerification) => {
            "A backup nobody restored is a hope: read the last drill (`backstop status --backup ID`), fix what failed, and run `backstop verify --target TARGET`."
        }
        (_, HealthCheck::DumpShrank) | (_, HealthCheck::TablesShrank) => {
            "Check on the source whether the data really went (a dropped table, a TRUNCATE, the wrong database); if it did not, the dump is wrong. Keep the older backups: do not purge by hand until you know."
        }
    };
    Alert {
        subject: subject_line(&format!("Backstop: {target} {state}: {check}: {}", result.summary)),
        body: format!(
            "Backstop's monitor: check `{check}` of target \"{target}\" {what}.\n\n\
             Now: {summary}\n{since}\n\n\
             What to do: {advice}\n\
             Runbook: {runbook}",
            summary = result.summary,
            advice = advice.replace("TARGET", target),
            runbook = result.check.runbook(),
        ),
        severity,
        job: Job::Monitor,
        target: Some(target.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns_limits() {
        let long = "x".repeat(300) + "\nsecond line";
        let s = subject_line(&long);
        assert!(s.chars().count() < 100 && !s.contains('\n'));
    }

    #[test]
    fn monitor_alerts_name_the_target_the_figures_and_the_runbook() {
        let result = CheckResult {
            check: HealthCheck::BackupAge,
            severity: Some(Severity::Critical),
            summary: "no completed backup for 30.0 h (limit 26 h); newest is 20261121T020000Z-00000001".into(),
            since: None,
        };
        let fired = monitor_alert(&result, &AlertEvent::Fired, "orders");
        assert!(fired.subject.starts_with("Backstop: orders CRITICAL: backup_age") && fired.subject.chars().count() < 100, "{}", fired.subject);
        assert!(fired.body.contains("\"orders\"") && fired.body.contains("30.0 h") && fired.body.contains("#backups-are-too-old-or-failing"));
        assert!(fired.body.contains("backstop backup --target orders"));
        assert_eq!(fired.severity, Severity::Critical);
        let ok = CheckResult { severity: None, summary: "newest completed backup is 1.0 h old".into(), ..result };
        let since = chrono::Utc::now();
        let resolved = monitor_alert(&ok, &AlertEvent::Resolved { was: Severity::Critical, since }, "orders");
        assert!(resolved.subject.contains("RESOLVED"), "{}", resolved.subject);
        assert_eq!(resolved.severity, Severity::Info);
        assert!(resolved.body.contains("critical since"));
    }
}
