//! `backstop report`: one self-contained HTML page of every target's backups, drills, health and retention
//! (see [`html`]), and the restore-drill evidence auditors ask for, summarised by month ([`month_summary`]).
//!
//! It reads the catalog only (the health checks read the two newest manifests, as `backstop check` does, through
//! the monitor's own evaluation): no database is touched and nothing is written.

pub mod html;
mod svg;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::kernel::UnknownTarget;
use super::monitor::TargetReport;
use crate::config::Config;
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::evidence::compliant;
use crate::domain::retention::{decide, DecideContext, RetentionPlan, RetentionPolicy};
use crate::domain::{BackupId, BackupRecord};
use crate::ports::{Catalog, CatalogError};

/// Where the deployed report page is kept, under the deployment's key prefix (the monitor rewrites it hourly).
pub fn page_key(key_prefix: &str) -> String {
    format!("{key_prefix}reports/index.html")
}

/// More records than any retention keeps (30 daily, 12 monthly): the whole history of a target.
const HISTORY: usize = 20_000;
const DRILL_HISTORY: usize = 2_000;

/// What the page shows of one target.
#[derive(Debug, Clone)]
pub struct TargetSection {
    pub name: String,
    pub database: String,
    pub host: String,
    pub port: u16,
    pub retention: RetentionPolicy,
    /// The monitor's evaluation, as `backstop check` makes it; `None` with `health_error` when it could not be made.
    pub health: Option<crate::domain::health::TargetHealth>,
    pub health_error: Option<String>,
    /// Newest first.
    pub backups: Vec<BackupRecord>,
    /// Newest first.
    pub drills: Vec<DrillRecord>,
    /// What the next purge would do with each backup, and why (as `backstop purge --dry-run`).
    pub plan: RetentionPlan,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub generated_at: DateTime<Utc>,
    pub targets: Vec<TargetSection>,
    pub rto_budget: Option<Duration>,
    pub rpo_budget: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    UnknownTarget(#[from] UnknownTarget),
    #[error("cannot read the catalog for {target}: {cause}")]
    Catalog { target: String, cause: CatalogError },
}

/// Reads what the page shows of every target (or the one named): its records and drills from the catalog, its
/// health from `health` (the monitor's reports, made without alerting), and the retention plan on them.
pub async fn gather(
    config: &Config,
    catalog: &dyn Catalog,
    health: Vec<TargetReport>,
    target: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ReportData, ReportError> {
    let mut targets = Vec::new();
    // The targets the monitor judges: a server nothing of which is discovered is on the page too, as critical.
    for t in crate::jobs::monitor::judged_targets(config, target)? {
        let failed = |cause| ReportError::Catalog { target: t.name.clone(), cause };
        let backups = catalog.recent_backups(&t.name, HISTORY).await.map_err(failed)?;
        let drills = catalog.recent_drills(&t.name, DRILL_HISTORY).await.map_err(failed)?;
        let being_verified =
            drills.iter().filter(|d| d.phase != DrillPhase::Done).map(|d| d.backup_id.clone()).collect();
        let plan = decide(
            &backups,
            &t.retention,
            now,
            &DecideContext { force: false, being_verified, hidden: Default::default() },
        );
        let report = health.iter().find(|r| r.target == t.name);
        targets.push(TargetSection {
            name: t.name.clone(),
            database: t.database.clone(),
            host: t.host.clone(),
            port: t.port,
            retention: t.retention.clone(),
            health: report.and_then(|r| r.health.clone()),
            health_error: report.map_or(Some("not evaluated".into()), |r| r.error.clone()),
            backups,
            drills,
            plan,
        });
    }
    Ok(ReportData {
        generated_at: now,
        targets,
        rto_budget: config.verify.rto_budget,
        rpo_budget: config.verify.rpo_budget,
    })
}

/// One finished drill as evidence: when, of what, how long, and whether the budgets were met (`None`: no budget
/// is configured, or the time was not measured, so compliance cannot be judged).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillEvidence {
    pub target: String,
    pub drill_id: String,
    pub backup_id: BackupId,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub passed: bool,
    /// Why the drill gave no verdict, when it was stopped by its own failure, not the backup's (its scratch
    /// server's, its invocation's time): neither passed nor failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_budget_seconds: Option<f64>,
    pub rpo_budget_seconds: Option<f64>,
    pub rto_compliant: Option<bool>,
    pub rpo_compliant: Option<bool>,
}

impl DrillEvidence {
    pub fn of(drill: &DrillRecord, rto_budget: Option<Duration>, rpo_budget: Option<Duration>) -> DrillEvidence {
        let timings = &drill.report.timings;
        let within = |value: Option<f64>, budget: Option<Duration>| compliant(value, budget.map(|b| b.as_secs_f64()));
        DrillEvidence {
            target: drill.target.clone(),
            drill_id: drill.drill_id.clone(),
            backup_id: drill.backup_id.clone(),
            started_at: drill.started_at,
            finished_at: drill.finished_at,
            passed: drill.report.passed(),
            inconclusive: drill.report.scratch_fault(),
            rto_seconds: timings.rto_seconds,
            rpo_seconds: timings.rpo_seconds,
            rto_budget_seconds: rto_budget.map(|b| b.as_secs_f64()),
            rpo_budget_seconds: rpo_budget.map(|b| b.as_secs_f64()),
            rto_compliant: within(timings.rto_seconds, rto_budget),
            rpo_compliant: within(timings.rpo_seconds, rpo_budget),
        }
    }
}

/// How many drills met a budget, missed it, or could not be judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compliance {
    pub met: usize,
    pub missed: usize,
    pub unknown: usize,
}

impl Compliance {
    fn count(&mut self, compliant: Option<bool>) {
        match compliant {
            Some(true) => self.met += 1,
            Some(false) => self.missed += 1,
            None => self.unknown += 1,
        }
    }
}

/// One target's drills of one month (or of all time), for an auditor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthSummary {
    pub target: String,
    /// `YYYY-MM`; `None`: every drill on record.
    pub month: Option<String>,
    pub drills_run: usize,
    pub passed: usize,
    pub failed: usize,
    /// Drills that gave no verdict (their own failure, not the backup's).
    pub inconclusive: usize,
    pub rto: Compliance,
    pub rpo: Compliance,
    pub drills: Vec<DrillEvidence>,
}

/// Per target, the finished drills that started in `month` (`YYYY-MM`, UTC; `None`: all of them), oldest first.
/// Drills still running are left out: they have no verdict yet.
pub fn month_summary(data: &ReportData, month: Option<&str>) -> Result<Vec<MonthSummary>, String> {
    if let Some(m) = month {
        let valid = chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").is_ok() && m.len() == 7;
        if !valid {
            return Err(format!("month {m:?} is not YYYY-MM (for example 2026-11)"));
        }
    }
    Ok(data
        .targets
        .iter()
        .map(|t| {
            let mut drills: Vec<DrillEvidence> = t
                .drills
                .iter()
                .filter(|d| d.phase == DrillPhase::Done)
                .filter(|d| month.is_none_or(|m| d.started_at.format("%Y-%m").to_string() == m))
                .map(|d| DrillEvidence::of(d, data.rto_budget, data.rpo_budget))
                .collect();
            drills.reverse();
            let (mut rto, mut rpo) = (Compliance::default(), Compliance::default());
            for d in &drills {
                rto.count(d.rto_compliant);
                rpo.count(d.rpo_compliant);
            }
            let passed = drills.iter().filter(|d| d.passed).count();
            let inconclusive = drills.iter().filter(|d| d.inconclusive.is_some()).count();
            MonthSummary {
                target: t.name.clone(),
                month: month.map(str::to_string),
                drills_run: drills.len(),
                passed,
                failed: drills.len() - passed - inconclusive,
                inconclusive,
                rto,
                rpo,
                drills,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
