//! A restore drill: the persisted state of one verification, so it can resume in a later invocation.
//!
//! `provisioning` → `restoring` → `checking` → `cleaning` → `done`. Each invocation advances a drill as far as
//! its time allows; the phase is written (conditionally) before the next one starts, so a drill cut off
//! anywhere resumes at the start of the phase it was in. `cleaning` is entered from every phase, on success or
//! failure: the scratch server is always destroyed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backup::BackupId;
use super::verification::VerificationReport;
use crate::ports::ScratchHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillPhase {
    Provisioning,
    Restoring,
    Checking,
    Cleaning,
    Done,
}

impl DrillPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillPhase::Provisioning => "provisioning",
            DrillPhase::Restoring => "restoring",
            DrillPhase::Checking => "checking",
            DrillPhase::Cleaning => "cleaning",
            DrillPhase::Done => "done",
        }
    }
}

impl std::fmt::Display for DrillPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub target: String,
    pub drill_id: String,
    pub backup_id: BackupId,
    pub phase: DrillPhase,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Filled as checks run; final once the phase is `cleaning`.
    #[serde(default)]
    pub report: VerificationReport,
}

impl DrillRecord {
    pub fn new(target: &str, backup_id: BackupId, now: DateTime<Utc>) -> Self {
        DrillRecord {
            target: target.to_string(),
            drill_id: format!("{}-{:06x}", now.format("%Y%m%dT%H%M%SZ"), rand::random::<u32>() & 0xff_ffff),
            backup_id,
            phase: DrillPhase::Provisioning,
            started_at: now,
            scratch: None,
            provisioned_at: None,
            restore_started_at: None,
            restored_at: None,
            checked_at: None,
            finished_at: None,
            report: VerificationReport::default(),
        }
    }
}
