//! Restore-drill evidence: the document every finished drill of a backup leaves beside it in the bucket
//! (`<backup's keys>.drill-<drill id>.evidence.json`, encrypted and versioned like the backup, deleted with it by
//! purge), for auditors: which backup, how old it was, how long the restore and the checks took, whether the RPO
//! and RTO budgets were met, and every check with its result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backup::{BackupId, BackupRecord, ObjectRef};
use super::drill::DrillRecord;
use super::verification::CheckResult;

pub const EVIDENCE_FORMAT: &str = "backstop-drill-evidence/1";

/// Whether `value` is within `budget`; `None` when either is unknown (no budget configured, or not measured):
/// compliance cannot be judged then, and is not claimed.
pub fn compliant(value: Option<f64>, budget: Option<f64>) -> Option<bool> {
    Some(value? <= budget?)
}

/// The key of a drill's evidence: after the backup's own keys (`attempt_prefix` ends with `<backup id>.`).
pub fn evidence_key(attempt_prefix: &str, drill_id: &str) -> String {
    format!("{attempt_prefix}drill-{drill_id}.evidence.json")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillEvidenceDocument {
    pub format: String,
    pub target: String,
    pub drill_id: String,
    pub backup_id: BackupId,
    pub drill_started_at: DateTime<Utc>,
    pub drill_finished_at: Option<DateTime<Utc>>,
    pub backup_started_at: DateTime<Utc>,
    pub backup_completed_at: Option<DateTime<Utc>>,
    /// The backup's age when the drill began (its RPO).
    pub backup_age_seconds: Option<f64>,
    pub provision_seconds: Option<f64>,
    pub restore_seconds: Option<f64>,
    pub check_seconds: Option<f64>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_budget_seconds: Option<f64>,
    pub rpo_budget_seconds: Option<f64>,
    pub rto_compliant: Option<bool>,
    pub rpo_compliant: Option<bool>,
    /// The verdict: the restore ran, every check ran, none failed.
    pub passed: bool,
    pub checks: Vec<CheckResult>,
    pub budget_warnings: Vec<String>,
    /// The stored dump that was restored: key, version, size and SHA-256.
    pub dump: Option<ObjectRef>,
    pub pg_dump_version: Option<String>,
    pub server_version: Option<String>,
}

impl DrillEvidenceDocument {
    pub fn of(
        drill: &DrillRecord,
        backup: &BackupRecord,
        rto_budget_seconds: Option<f64>,
        rpo_budget_seconds: Option<f64>,
    ) -> Self {
        let t = &drill.report.timings;
        DrillEvidenceDocument {
            format: EVIDENCE_FORMAT.to_string(),
            target: drill.target.clone(),
            drill_id: drill.drill_id.clone(),
            backup_id: drill.backup_id.clone(),
            drill_started_at: drill.started_at,
            drill_finished_at: drill.finished_at,
            backup_started_at: backup.started_at,
            backup_completed_at: backup.finished_at,
            backup_age_seconds: t.rpo_seconds,
            provision_seconds: t.provision_seconds,
            restore_seconds: t.restore_seconds,
            check_seconds: t.check_seconds,
            rto_seconds: t.rto_seconds,
            rpo_seconds: t.rpo_seconds,
            rto_budget_seconds,
            rpo_budget_seconds,
            rto_compliant: compliant(t.rto_seconds, rto_budget_seconds),
            rpo_compliant: compliant(t.rpo_seconds, rpo_budget_seconds),
            passed: drill.report.passed(),
            checks: drill.report.checks.clone(),
            budget_warnings: drill.report.budget_warnings.clone(),
            dump: backup.dump.clone(),
            pg_dump_version: backup.pg_dump_version.clone(),
            server_version: backup.server_version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compliance_is_judged_only_with_a_budget_and_a_measurement() {
        assert_eq!(compliant(Some(10.0), Some(10.0)), Some(true));
        assert_eq!(compliant(Some(10.5), Some(10.0)), Some(false));
        assert_eq!(compliant(None, Some(10.0)), None);
        assert_eq!(compliant(Some(10.0), None), None);
    }

    #[test]
    fn the_evidence_sits_after_the_backups_own_keys() {
        assert_eq!(
            evidence_key("prod/orders/2026/12/03/20261203T041500Z-ab12cd34.", "20261203T060000Z-0a1b2c"),
            "prod/orders/2026/12/03/20261203T041500Z-ab12cd34.drill-20261203T060000Z-0a1b2c.evidence.json"
        );
    }
}
