//! The backup job's alerts, written for the person paged at 3 a.m.: what failed, on which target and database,
//! where to look, and what the failure left behind; or, when asked for, what a completed backup holds.

use crate::config::TargetConfig;
use crate::domain::runbook;
use crate::domain::text::human_bytes;
use crate::domain::{BackupId, BackupRecord, Job, Trigger};
use crate::jobs::kernel::subject_line;
use crate::ports::{Alert, Severity};

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
         Backup id: {id}\nRun: {run_id} (trigger: {trigger})",
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
        runbook: Some(runbook::BACKUP_FAILED),
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
        runbook: None,
    }
}

/// pg_dump succeeded but warned: the backup is complete as pg_dump sees it, and may still lack what it names
/// (subscriptions, for a role that is not a superuser). The drill compares the copy with the dump, so it cannot
/// tell: only this says so.
pub fn backup_warned_alert(target: &TargetConfig, record: &BackupRecord) -> Alert {
    let lines: Vec<String> = record.warnings.iter().take(10).map(|w| format!("- {w}")).collect();
    let first = record.warnings.first().map_or("", |w| w.trim_start_matches("pg_dump: warning:").trim());
    Alert {
        subject: subject_line(&format!("Backstop: backup of {} completed with a warning: {first}", target.name)),
        body: format!(
            "The backup {id} of target \"{name}\" (database \"{db}\" on {host}:{port}) completed, but pg_dump warned:\n\
             {lines}\n\n\
             The backup is stored and counts as a restore point, but it may lack what the warning names, and a \
             restore drill cannot see that (it compares the copy with the dump).\n\n\
             What to do: read the warning. `subscriptions not dumped because current user is not a superuser`: \
             back up as a superuser, or (on RDS, where no role is one) record the \
             subscriptions elsewhere (`SELECT subname, subconninfo, subpublications FROM pg_subscription`) to \
             recreate them after a restore. Other warnings: see the PostgreSQL documentation of pg_dump.",
            id = record.backup_id,
            name = target.name,
            db = target.database,
            host = target.host,
            port = target.port,
            lines = lines.join("\n"),
        ),
        severity: Severity::Warning,
        job: Job::Backup,
        target: Some(target.name.clone()),
        runbook: Some(runbook::BACKUP_WARNED),
    }
}
