//! The verify job: restore drills that turn "a backup exists" into "this backup restores, exactly".
//!
//! Each run sweeps expired scratch servers, then, per target and under the target's verify lease, resumes the
//! drill left unfinished or starts one on the latest restorable backup (and, if configured, one random older
//! one), and advances it phase by phase (`domain::drill`) until it is done or the invocation's time runs out.
//! The phase is persisted before each next step, so a drill cut off anywhere resumes; `cleaning` always runs.
//!
//! Targets with `pitr_source_instance` also get a point-in-time drill: RDS restores the source instance as of
//! its latest restorable time into a scratch instance, the target's own checks run there, and the report gives
//! the RPO the source's automated backups achieve (drill start less the latest restorable time).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::config::{Config, TargetConfig};
use bytes::Bytes;

use crate::domain::backup::attempt_prefix;
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::evidence::{evidence_key, DrillEvidenceDocument};
use crate::domain::runbook;
use crate::domain::verification::{CheckName, CheckOutcome, CheckResult};
use crate::domain::{BackupId, BackupRecord, BackupStatus, Job, Trigger, VerificationSummary};
use crate::metrics::{emf_line, MetricsSink, Unit};
use crate::passwords::PasswordResolver;
use crate::ports::*;

use super::kernel::subject_line;
pub mod steps;

mod phases;
use phases::Stepped;
mod texts;
use super::backup::{PlannedUnit, LAMBDA_BUDGET_SECONDS};
use super::kernel::{expiry, publish_or_warn, select_targets, HeldBy, Lease, UnknownTarget};
use crate::domain::runner::{self, Evidence, Work};

#[derive(Clone)]
pub struct VerifyDeps {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub alerts: Arc<dyn Alerts>,
    pub scratch: Arc<dyn ScratchDatabases>,
    pub restorer: Arc<dyn Restorer>,
    /// Point-in-time restores of RDS sources; `None` where scratch servers are local.
    pub point_in_time: Option<Arc<dyn PointInTimeRestores>>,
    /// Reaches a point-in-time copy, which answers to the source's own user and password.
    pub passwords: Arc<PasswordResolver>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn MetricsSink>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub target: Option<String>,
    /// Drill this backup instead of the latest.
    pub backup_id: Option<BackupId>,
    pub trigger: Trigger,
    pub request_id: String,
    /// Stop advancing (leaving drills resumable) at this instant: a Lambda's limit less a margin.
    pub deadline: Option<tokio::time::Instant>,
    /// Advance at most this many phases per drill in this invocation (`None`: as many as time allows).
    pub max_steps: Option<usize>,
    /// Only resume unfinished drills; start none (a caller looping until its drills are done).
    pub resume_only: bool,
    /// Give up on unfinished drills, saying why: each is ended and sent straight to cleaning (its scratch
    /// server destroyed), inconclusive: nothing of its backup was judged. For a caller out of patience (Step
    /// Functions' bound) or stopped by an error of its own.
    pub abandon: Option<String>,
    /// Only destroy scratch servers past their expiry (the hourly sweep); touch no drill.
    pub sweep_only: bool,
    /// Targets this run leaves alone: their drills run elsewhere (on Fargate, each in a task of its own, while
    /// the state machine's Lambda loop advances the others; [`VerifyJob::plan`] says which).
    pub exclude: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyJobError {
    #[error(transparent)]
    UnknownTarget(#[from] UnknownTarget),
    #[error("backup {backup_id} of {target} cannot be drilled: {reason}")]
    NotRestorable { target: String, backup_id: BackupId, reason: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// One drill's state at the end of an invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSummary {
    pub target: String,
    pub drill_id: String,
    pub backup_id: BackupId,
    pub phase: DrillPhase,
    /// `verified` or `verify_failed` once done; none for a drill that is done but inconclusive (stopped by its own
    /// failure, not the backup's: `VerificationReport::scratch_fault`), whose backup keeps its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<BackupStatus>,
    pub failed_checks: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyRun {
    /// Every drill finished and no target was held by another run: Step Functions stops looping.
    pub done: bool,
    pub drills: Vec<DrillSummary>,
    pub swept: Vec<String>,
    /// Targets left alone, and why (another run holds their verify lease; nothing to drill).
    pub skipped: Vec<String>,
    /// Targets whose verify lease another run (perhaps a killed one, until its lease runs out) holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lease_held: Vec<String>,
}

/// Why a target was left alone.
enum LeftAlone {
    LeaseHeld(String),
}

pub struct VerifyJob {
    config: Arc<Config>,
    deps: VerifyDeps,
}

/// Why a drill stopped advancing in this invocation.
enum Pause {
    Done,
    /// Out of time or steps, or a scratch server still being created: resume later.
    Later(String),
}

impl VerifyJob {
    pub fn new(config: Arc<Config>, deps: VerifyDeps) -> Self {
        VerifyJob { config, deps }
    }

    /// `SweepFailures` (1 or 0 a sweep): a sweep that keeps failing leaves scratch servers running, and billing,
    /// with nobody told; template.yaml's SweepFailingAlarm watches it.
    fn sweep_metric(&self, failed: bool) {
        self.deps.metrics.emit(&emf_line(
            self.deps.clock.now(),
            &[("Job", "verify")],
            &[("SweepFailures", Unit::Count, if failed { 1.0 } else { 0.0 })],
        ));
    }

    /// Where each target's next drill runs, and why: [`runner::decide`] on the restores of its recent drills
    /// (the restore is the one step a Lambda invocation cannot split). Without the Fargate runner deployed, a
    /// drill that would go there runs on Lambda, and its reasons say so.
    pub async fn plan(&self, target: Option<&str>) -> Result<Vec<PlannedUnit>, VerifyJobError> {
        let mut units = Vec::new();
        for target in select_targets(&self.config, target)? {
            let drills = self.deps.catalog.recent_drills(&target.name, 20).await?;
            let backups = self.deps.catalog.recent_backups(&target.name, 100).await?;
            let evidence = Evidence::of_drills(&drills, &backups, target.size_gb);
            let decision = runner::decide(Work::Drill, target.runner, &evidence, LAMBDA_BUDGET_SECONDS);
            let decision = if self.config.fargate { decision } else { decision.without_fargate() };
            units.push(PlannedUnit { target: target.name.clone(), runner: decision });
        }
        Ok(units)
    }

    pub async fn run(&self, request: &VerifyRequest) -> Result<VerifyRun, VerifyJobError> {
        let began = tokio::time::Instant::now();
        let mut targets = select_targets(&self.config, request.target.as_deref())?;
        targets.retain(|t| !request.exclude.contains(&t.name));
        let swept = match self.deps.scratch.sweep_expired(self.deps.clock.now()).await {
            Ok(handles) => {
                self.sweep_metric(false);
                handles.into_iter().map(|h| h.id).collect()
            }
            Err(e) => {
                warn!(error = %e, "the orphan sweep failed; expired scratch servers may still be running");
                self.sweep_metric(true);
                Vec::new()
            }
        };
        if request.sweep_only {
            return Ok(VerifyRun {
                done: true,
                drills: Vec::new(),
                swept,
                skipped: Vec::new(),
                lease_held: Vec::new(),
            });
        }
        let run_id = uuid::Uuid::new_v4().to_string();
        let (mut drills, mut skipped, mut lease_held) = (Vec::new(), Vec::new(), Vec::new());
        for target in targets {
            match self.verify_target(target, request, &run_id, began).await? {
                Ok(summaries) if summaries.is_empty() && !request.resume_only => {
                    skipped.push(format!("{}: no completed backup to drill", target.name))
                }
                Ok(summaries) => drills.extend(summaries),
                Err(LeftAlone::LeaseHeld(why)) => {
                    skipped.push(format!("{}: {why}", target.name));
                    lease_held.push(target.name.clone());
                }
            }
        }
        let done = drills.iter().all(|d| d.phase == DrillPhase::Done) && lease_held.is_empty();
        Ok(VerifyRun { done, drills, swept, skipped, lease_held })
    }

    #[instrument(skip_all, fields(target = %target.name))]
    /// `Ok(Err(why))`: the target was left alone on purpose.
    async fn verify_target(
        &self,
        target: &TargetConfig,
        request: &VerifyRequest,
        run_id: &str,
        began: tokio::time::Instant,
    ) -> Result<Result<Vec<DrillSummary>, LeftAlone>, VerifyJobError> {
        let leases: Arc<dyn Leases> = self.deps.catalog.clone();
        let length = self.config.verify.lease;
        let mut lease =
            match Lease::take(leases, &target.name, Job::Verify, run_id, self.deps.clock.now(), length).await? {
                Ok(lease) => lease,
                Err(HeldBy { owner, expires_at }) => {
                    info!(owner = %owner, "another verify run is advancing this target's drills");
                    return Ok(Err(LeftAlone::LeaseHeld(format!(
                        "another verify run ({owner}) holds this target's lease until {expires_at}"
                    ))));
                }
            };
        // The lease is short and renewed while this run works, so a run that is killed (a Lambda timeout, a
        // SIGKILL) keeps other runs off the target's drills for at most one lease, not for hours.
        lease.keep_renewed(self.deps.clock.clone(), length);
        let result = match self.drills_of(target, request).await {
            Ok(mut drills) => {
                let mut summaries = Vec::new();
                for drill in drills.iter_mut() {
                    summaries.push(self.advance(target, drill, request, began).await);
                }
                Ok(summaries)
            }
            Err(e) => Err(e),
        };
        lease.release().await;
        result.map(Ok)
    }

    /// The drills to advance: unfinished ones first (resumed), else new ones on the chosen backups.
    async fn drills_of(
        &self,
        target: &TargetConfig,
        request: &VerifyRequest,
    ) -> Result<Vec<DrillRecord>, VerifyJobError> {
        let unfinished = self.deps.catalog.unfinished_drills(&target.name, 20).await?;
        let wanted_backup_is_running = |id: &BackupId| unfinished.iter().any(|d| &d.backup_id == id);
        let mut chosen = Vec::new();
        let mut new_drills = Vec::new();
        if let Some(id) = &request.backup_id {
            let backup =
                self.deps.catalog.get_backup(&target.name, id).await?.ok_or_else(|| VerifyJobError::NotRestorable {
                    target: target.name.clone(),
                    backup_id: id.clone(),
                    reason: "no such backup".into(),
                })?;
            if !restorable(&backup) {
                return Err(VerifyJobError::NotRestorable {
                    target: target.name.clone(),
                    backup_id: id.clone(),
                    reason: format!("its status is {}", backup.status),
                });
            }
            if !wanted_backup_is_running(id) {
                chosen.push(backup.backup_id);
            }
        } else if unfinished.is_empty() && !request.resume_only {
            let backups: Vec<BackupRecord> =
                self.deps.catalog.recent_backups(&target.name, 100).await?.into_iter().filter(restorable).collect();
            if let Some(latest) = backups.first() {
                chosen.push(latest.backup_id.clone());
            }
            if self.config.verify.older_backup && backups.len() > 1 {
                let older = &backups[1 + rand::random_range(0..backups.len() - 1)];
                chosen.push(older.backup_id.clone());
            }
            if let Some(source) = &target.pitr_source_instance {
                new_drills.push(DrillRecord::point_in_time(&target.name, source, self.deps.clock.now()));
            }
        }
        let mut drills = unfinished;
        new_drills.extend(
            chosen.into_iter().map(|backup_id| DrillRecord::new(&target.name, backup_id, self.deps.clock.now())),
        );
        for drill in new_drills {
            self.deps.catalog.create_drill(&drill).await?;
            info!(drill_id = %drill.drill_id, backup_id = %drill.backup_id, "drill started");
            drills.push(drill);
        }
        Ok(drills)
    }

    /// Advances one drill phase by phase, persisting each, until done or paused.
    #[instrument(skip_all, fields(drill_id = %drill.drill_id))]
    async fn advance(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
        request: &VerifyRequest,
        began: tokio::time::Instant,
    ) -> DrillSummary {
        if let Some(why) = &request.abandon {
            self.abandon(drill, why).await;
        }
        let mut steps = 0;
        // What a step hands the next in this same run: the backup's first reads, made while the scratch server
        // was, to the restore; the tables the restore read back as it went, to the check (a drill resumed by
        // another run reads them again).
        let mut handover = phases::Handover::default();
        let pause = loop {
            if drill.phase == DrillPhase::Done {
                break Pause::Done;
            }
            if request.max_steps.is_some_and(|max| steps >= max) {
                break Pause::Later(format!("paused after {steps} step(s), in phase {}", drill.phase));
            }
            // Cleaning always runs: past the deadline it is the one phase still worth the time left.
            if drill.phase != DrillPhase::Cleaning && request.deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
            {
                break Pause::Later(format!("out of time in phase {}; the next invocation resumes it", drill.phase));
            }
            if let Some(why) = leftover_time(drill.phase, began, request.deadline, handover.read_early.is_some()) {
                break Pause::Later(why);
            }
            let expected = drill.phase;
            let stepped = match self.step(target, drill, request.deadline, &mut handover).await {
                Ok(stepped) => stepped,
                Err(e) => {
                    // A step that cannot even run (the catalog, the store) leaves the drill where it was.
                    break Pause::Later(e.to_string());
                }
            };
            steps += 1;
            if let Err(e) = self.deps.catalog.update_drill(drill, expected).await {
                break Pause::Later(format!("could not save the drill's progress: {e}"));
            }
            if let Stepped::Waiting(status) = stepped {
                break Pause::Later(status);
            }
        };
        let inconclusive = matches!(pause, Pause::Done).then(|| drill.report.scratch_fault()).flatten();
        let message = match (&pause, &inconclusive) {
            (Pause::Done, Some(fault)) => format!(
                "inconclusive: {fault}; the backup keeps its status ({} checks, {} failed)",
                drill.report.checks.len(),
                drill.report.failures().len()
            ),
            (Pause::Done, None) => format!(
                "{} ({} checks, {} failed)",
                if drill.report.passed() { "verified" } else { "verify_failed" },
                drill.report.checks.len(),
                drill.report.failures().len()
            ),
            (Pause::Later(why), _) => why.clone(),
        };
        DrillSummary {
            target: drill.target.clone(),
            drill_id: drill.drill_id.clone(),
            backup_id: drill.backup_id.clone(),
            phase: drill.phase,
            outcome: (drill.phase == DrillPhase::Done && inconclusive.is_none()).then(|| {
                if drill.report.passed() {
                    BackupStatus::Verified
                } else {
                    BackupStatus::VerifyFailed
                }
            }),
            failed_checks: drill.report.failures().iter().map(|c| c.name.label()).collect(),
            message,
        }
    }
}

/// The share of an invocation a restore or a check must have before it to start: neither can pause halfway, so
/// one begun with what another drill left of the invocation would be cut off and end inconclusive, week after
/// week for the targets configured last. It waits for the next invocation instead, which starts fresh.
const FRESH_SHARE: f64 = 0.75;
/// The share a check needs right after its restore, in the same invocation: the tables the restore already read
/// back would be lost to a wait, and what is left to read is the rest.
const CHECK_AFTER_RESTORE_SHARE: f64 = 0.25;

/// Why a drill in `phase` waits for a fresh invocation, when this one has too little of its time left.
/// `restored_here`: the restore ran in this invocation and handed its read-back on to the check.
fn leftover_time(
    phase: DrillPhase,
    began: tokio::time::Instant,
    deadline: Option<tokio::time::Instant>,
    restored_here: bool,
) -> Option<String> {
    let share = match phase {
        DrillPhase::Restoring => FRESH_SHARE,
        DrillPhase::Checking if restored_here => CHECK_AFTER_RESTORE_SHARE,
        DrillPhase::Checking => FRESH_SHARE,
        _ => return None,
    };
    let deadline = deadline?;
    let whole = deadline.saturating_duration_since(began);
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    (left.as_secs_f64() < share * whole.as_secs_f64()).then(|| {
        format!(
            "waiting in phase {phase} for an invocation of its own: {} s were left of this one's {} s",
            left.as_secs(),
            whole.as_secs()
        )
    })
}

/// A backup a drill can restore: it completed, whatever earlier drills said.
fn restorable(b: &BackupRecord) -> bool {
    matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
}

#[cfg(test)]
mod tests;
