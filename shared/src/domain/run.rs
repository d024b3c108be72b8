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
