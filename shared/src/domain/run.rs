//! A run: one invocation of a job (a schedule firing, a console test event, a CLI command) and its outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backup::BackupId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Backup,
    Verify,
    Purge,
    Monitor,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Verify => "verify",
            Job::Purge => "purge",
            Job::Monitor => "monitor",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Console,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Console => "console",
            Trigger::Cli => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetOutcome {
    /// A new completed backup.
    Completed,
    /// The backup failed; it was recorded and alerted.
    Failed,
    /// Another run holds the target's lease; nothing was done and nothing is wrong.
    SkippedLeaseHeld,
    /// This event was already handled (a retried delivery); nothing was done.
    SkippedDuplicate,
    /// A dry run checked what it could and changed nothing.
    DryRun,
}

impl TargetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOutcome::Completed => "completed",
            TargetOutcome::Failed => "failed",
            TargetOutcome::SkippedLeaseHeld => "skipped_lease_held",
            TargetOutcome::SkippedDuplicate => "skipped_duplicate",
            TargetOutcome::DryRun => "dry_run",
        }
    }

    pub fn is_failure(self) -> bool {
        self == TargetOutcome::Failed
    }
}

/// One target's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    pub target: String,
    pub outcome: TargetOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<BackupId>,
    /// What happened, in a sentence (secrets redacted).
    pub message: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub job: Job,
    pub trigger: Trigger,
    /// Lambda's request id, or `cli-<pid>` outside Lambda.
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `succeeded` when no target failed, else `failed`.
    pub outcome: String,
    pub targets: Vec<TargetResult>,
}

/// A run as it starts: who it is and what started it. [`RunStart::finish`] makes its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    pub run_id: String,
    pub job: Job,
    pub trigger: Trigger,
    pub request_id: String,
    pub idempotency_key: Option<String>,
    pub started_at: DateTime<Utc>,
}

impl RunStart {
    /// The run's record: `failed` when any target failed, else `succeeded`. `took` is measured on a monotonic
    /// clock (the wall clock may step, and tests fix it).
    pub fn finish(
        self,
        finished_at: DateTime<Utc>,
        took: std::time::Duration,
        targets: Vec<TargetResult>,
    ) -> RunRecord {
        let failed = targets.iter().any(|t| t.outcome.is_failure());
        RunRecord {
            run_id: self.run_id,
            job: self.job,
            trigger: self.trigger,
            request_id: self.request_id,
            idempotency_key: self.idempotency_key,
            started_at: self.started_at,
            finished_at,
            duration_ms: took.as_millis() as u64,
            outcome: if failed { "failed" } else { "succeeded" }.into(),
            targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_run_failed_when_any_target_failed_and_skips_are_not_failures() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 4, 15, 0).unwrap();
        let start = RunStart {
            run_id: "run-1".into(),
            job: Job::Backup,
            trigger: Trigger::Schedule,
            request_id: "req".into(),
            idempotency_key: Some("event-1".into()),
            started_at: at,
        };
        let result = |outcome| TargetResult {
            target: "shop".into(),
            outcome,
            backup_id: None,
            message: String::new(),
            duration_ms: 0,
        };
        let took = std::time::Duration::from_millis(1500);
        let quiet = start.clone().finish(
            at,
            took,
            vec![result(TargetOutcome::SkippedLeaseHeld), result(TargetOutcome::Completed)],
        );
        assert_eq!((quiet.outcome.as_str(), quiet.duration_ms), ("succeeded", 1500));
        assert_eq!(quiet.idempotency_key.as_deref(), Some("event-1"));
        let failed = start.finish(at, took, vec![result(TargetOutcome::Completed), result(TargetOutcome::Failed)]);
        assert_eq!(failed.outcome, "failed");
    }
}
