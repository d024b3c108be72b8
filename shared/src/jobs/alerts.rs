//! Alert messages, written for the person paged at 3 a.m.: what happened, to which target, when, the figures,
//! and what to do next (with the runbook section to open).

use crate::config::TargetConfig;
use crate::domain::{BackupId, BackupRecord, Job, Trigger};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns_limits() {
        let long = "x".repeat(300) + "\nsecond line";
        let s = subject_line(&long);
        assert!(s.chars().count() < 100 && !s.contains('\n'));
    }
}
