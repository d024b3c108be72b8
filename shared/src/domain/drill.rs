//! A restore drill: the persisted state of one verification, so it can resume in a later invocation.
//!
//! `provisioning` → `restoring` → `checking` → `cleaning` → `done`. Each invocation advances a drill as far as
//! its time allows; the phase is written (conditionally) before the next one starts, so a drill cut off
//! anywhere resumes at the start of the phase it was in. `cleaning` is entered from every phase, on success or
//! failure: the scratch server is always destroyed.
//!
//! A point-in-time drill (`point_in_time` set) restores an RDS source instance as of its latest restorable time
//! instead of a dump: RDS does the restore while provisioning, so it goes `provisioning` → `checking` and runs
//! only the target's own checks (there is no fingerprint to compare a live database with).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backup::BackupId;
use super::verification::VerificationReport;

/// A scratch server that exists (or is being created): enough to find it again from another invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScratchHandle {
    /// `rds` or `local`.
    pub kind: String,
    /// RDS instance identifier, or the local cluster's directory.
    pub id: String,
}

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
    /// Set for a point-in-time drill of an RDS source; `backup_id` then names the source (`pitr:<instance>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTimeDrill>,
}

/// What a point-in-time drill restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInTimeDrill {
    /// The RDS instance restored from (never touched: RDS copies its backups into a new instance).
    pub source_instance: String,
    /// The source's latest restorable time when the drill asked for the copy: the state the copy holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_time: Option<DateTime<Utc>>,
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
            point_in_time: None,
        }
    }

    /// A drill that restores the RDS instance `source_instance` to its latest restorable time.
    pub fn point_in_time(target: &str, source_instance: &str, now: DateTime<Utc>) -> Self {
        let mut drill = DrillRecord::new(target, BackupId(format!("pitr:{source_instance}")), now);
        drill.point_in_time =
            Some(PointInTimeDrill { source_instance: source_instance.to_string(), restore_time: None });
        drill
    }
}
