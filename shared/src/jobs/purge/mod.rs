//! The purge job: applies each target's retention policy (`domain::retention`) with its safety rails.
//!
//! Per target, under the target's purge lease: read every backup record and the unfinished drills, let the
//! pure decision say keep or delete (with reasons) for each backup, then carry it out through [`PurgeEffects`]:
//!
//! - a backup the policy no longer keeps: record `purging` (conditional on its current status), delete every
//!   version of every object under its key prefix (dump, manifest, roles: real deletes, not delete markers),
//!   record `purged`. A crash anywhere leaves the record `purging`, and the next run finishes it (`Finish`);
//! - a failed backup's leftovers (objects its failed run could not delete): deleted, the record stays
//!   `failed` (the failure is history the monitor reads);
//! - multipart uploads under the target's prefix older than a day: aborted (a running backup's upload is
//!   younger: a backup never runs that long).
//!
//! Before it decides, it checks that the bucket still holds every restore point's objects ([`lost`]): one that
//! does not is marked `lost` and alerted, so that retention never deletes an older backup in place of a record
//! whose objects are gone; one whose objects are hidden by a delete marker is warned of while it can be saved.
//!
//! A dry run is the same code with [`PlanOnly`] effects: every step is decided and reported, nothing changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::config::{Config, TargetConfig};
use crate::domain::backup::attempt_prefix;
use crate::domain::drill::DrillPhase;
use crate::domain::retention::{decide, Action, DecideContext};
use crate::domain::{
    BackupId, BackupRecord, BackupStatus, Job, RunRecord, RunStart, TargetOutcome, TargetResult, Trigger,
};
use crate::metrics::{emf_line, MetricsSink, Unit};
use crate::ports::*;

mod alerts;
mod lost;
use super::kernel::{lease_request, publish_or_warn, record_run_or_warn, select_targets, UnknownTarget};
use alerts::{
    backups_at_risk_alert, backups_lost_alert, purge_failed_alert, purge_not_run_alert, purge_refused_alert,
    restore_hold_alert,
};

/// An upload older than this cannot belong to a running backup (Lambda stops at 15 minutes; the CLI's
/// longest backups take hours, not a day).
const ABANDONED_UPLOAD_AGE: chrono::Duration = chrono::Duration::hours(24);

/// Every backup of a target is read; more than this is a runaway, refused rather than half-read.
const MAX_RECORDS: usize = 100_000;

pub type PurgeDeps = super::kernel::JobDeps;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRequest {
    pub target: Option<String>,
    /// Delete past the `max_delete_fraction` rail (after checking the policy).
    pub force: bool,
    /// Decide and report; change nothing.
    pub dry_run: bool,
    pub trigger: Trigger,
    pub request_id: String,
}

/// What purge did (or, in a dry run, would do) to one backup or upload: retention's [`Action`] for backups, and
/// aborting a multipart upload nobody finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Keep,
    Delete,
    CleanUp,
    Finish,
    Skip,
    AbortUpload,
}

impl StepAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::Keep => "keep",
            StepAction::Delete => "delete",
            StepAction::CleanUp => "clean_up",
            StepAction::Finish => "finish",
            StepAction::Skip => "skip",
            StepAction::AbortUpload => "abort_upload",
        }
    }
}

impl From<Action> for StepAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Keep => StepAction::Keep,
            Action::Delete => StepAction::Delete,
            Action::CleanUp => StepAction::CleanUp,
            Action::Finish => StepAction::Finish,
            Action::Skip => StepAction::Skip,
        }
    }
}

/// Compares with the name the JSON report uses (`step.action == "delete"`).
impl PartialEq<&str> for StepAction {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// Why carrying out one step failed; the step records it and the next run retries.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("could not mark the record purging (nothing deleted): {0}")]
    MarkPurging(CatalogError),
    #[error("cannot list the objects under {prefix}: {cause}")]
    List { prefix: String, cause: StoreError },
    #[error("deleting {key} failed: {cause}")]
    Delete { key: String, cause: StoreError },
    #[error("objects deleted, but the record could not be marked purged (the next run finishes it): {0}")]
    MarkPurged(CatalogError),
}

/// Why nothing could be decided for a target (nothing was done).
#[derive(Debug, thiserror::Error)]
pub enum NotDecided {
    #[error("cannot read the backup records: {0}")]
    Records(CatalogError),
    #[error("the target has {MAX_RECORDS} or more backup records; purge refuses to decide on a partial list")]
    TooManyRecords,
    #[error("cannot read the drills: {0}")]
    Drills(CatalogError),
    #[error("cannot list the bucket to check that the backups' objects are there: {0}")]
    Store(StoreError),
}

/// What happened to one backup (or upload), for the report and the CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurgeStep {
    pub backup_id: Option<BackupId>,
    pub status: Option<BackupStatus>,
    pub started_at: Option<DateTime<Utc>>,
    pub action: StepAction,
    pub reasons: Vec<String>,
    /// Object versions deleted (or, in a dry run, that would be).
    pub versions: usize,
    /// Set when carrying the action out failed; the next run retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This run found the backup's objects gone from the bucket and marked it `lost` (or, in a dry run, would):
    /// what is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetPurge {
    pub target: String,
    pub dry_run: bool,
    pub steps: Vec<PurgeStep>,
    /// The fraction rail held every deletion back: why, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The target was left alone (another purge holds its lease, or the catalog failed), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Skipped because another purge is running: nothing is wrong.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lease_held: bool,
    /// Skipped because a restore has held the purge off for longer than a restore usually takes: likely one that
    /// was stopped without letting go.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale_restore_hold: bool,
    /// Restore points whose recorded versions are hidden by a delete marker or a newer version (so a
    /// noncurrent-version lifecycle rule will delete them), one line each: `<backup id>: <which objects>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at_risk: Vec<String>,
}

impl TargetPurge {
    fn count(&self, action: StepAction) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// A step failed, or the target could not be purged at all (other than for a running purge).
    pub fn failed(&self) -> bool {
        !self.errors().is_empty() || (self.skipped.is_some() && !self.lease_held)
    }

    pub fn errors(&self) -> Vec<&PurgeStep> {
        self.steps.iter().filter(|s| s.error.is_some()).collect()
    }

    /// The backups this run found lost.
    pub fn lost(&self) -> Vec<&PurgeStep> {
        self.steps.iter().filter(|s| s.lost.is_some()).collect()
    }

    /// `deleted 2, kept 41, …` (or `would delete` in a dry run).
    pub fn summary(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("skipped: {why}");
        }
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let mut text = format!(
            "{verb} {} backup(s), kept {}, failed-backup leftovers {}, interrupted purges finished {}, abandoned uploads {}",
            self.count(StepAction::Delete),
            self.count(StepAction::Keep),
            self.count(StepAction::CleanUp),
            self.count(StepAction::Finish),
            self.count(StepAction::AbortUpload),
        );
        if !self.at_risk.is_empty() {
            text.push_str(&format!("; {} backup(s) AT RISK (hidden by a delete marker)", self.at_risk.len()));
        }
        if !self.lost().is_empty() {
            let verb = if self.dry_run { "would mark" } else { "marked" };
            text.push_str(&format!("; {verb} {} backup(s) LOST (objects gone from the bucket)", self.lost().len()));
        }
        if !self.errors().is_empty() {
            text.push_str(&format!("; {} step(s) FAILED", self.errors().len()));
        }
        if self.refused.is_some() {
            text.push_str("; deletions REFUSED by the safety rail");
        }
        text
    }
}

/// Everything a purge changes or sends. The job decides and reports the same way whichever is wired in: live
/// effects change the catalog and the bucket and tell the world; [`PlanOnly`] changes and sends nothing (the dry
/// run is this wiring, not a flag in the job's branches).
#[async_trait]
pub trait PurgeEffects: Send + Sync {
    /// Takes the target's purge lease.
    async fn take_lease(&self, lease: &LeaseRequest) -> Result<LeaseOutcome, CatalogError>;
    async fn release_lease(&self, target: &str, owner: &str) -> Result<(), CatalogError>;
    /// Moves the record to `purging`, only if its stored status is still the one it was read with.
    async fn mark_purging(&self, record: &BackupRecord) -> Result<(), CatalogError>;
    /// Moves a restore point to `lost` (saying what is missing), only if its stored status is still the one it
    /// was read with.
    async fn mark_lost(&self, record: &BackupRecord, missing: &str) -> Result<(), CatalogError>;
    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError>;
    async fn mark_purged(&self, record: &BackupRecord) -> Result<(), CatalogError>;
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError>;
    /// A target's outcome: its metrics line and, when something needs a person, its alerts.
    async fn report(&self, metrics: &str, alerts: Vec<Alert>);
    async fn record_run(&self, run: &RunRecord);
}

/// Carries the purge out.
pub struct LiveEffects {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub alerts: Arc<dyn Alerts>,
    pub metrics: Arc<dyn MetricsSink>,
}

#[async_trait]
impl PurgeEffects for LiveEffects {
    async fn take_lease(&self, lease: &LeaseRequest) -> Result<LeaseOutcome, CatalogError> {
        self.catalog.acquire_lease(lease).await
    }

    async fn release_lease(&self, target: &str, owner: &str) -> Result<(), CatalogError> {
        self.catalog.release_lease(target, Job::Purge, owner).await
    }

    async fn mark_purging(&self, record: &BackupRecord) -> Result<(), CatalogError> {
        let mut purging = record.clone();
        purging.status = BackupStatus::Purging;
        self.catalog.update_backup(&purging, record.status).await
    }

    async fn mark_lost(&self, record: &BackupRecord, missing: &str) -> Result<(), CatalogError> {
        let mut lost = record.clone();
        lost.status = BackupStatus::Lost;
        lost.error = Some(missing.to_string());
        self.catalog.update_backup(&lost, record.status).await
    }

    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError> {
        self.store.delete_version(version).await
    }

    async fn mark_purged(&self, record: &BackupRecord) -> Result<(), CatalogError> {
        let mut purged = record.clone();
        purged.status = BackupStatus::Purged;
        self.catalog.update_backup(&purged, BackupStatus::Purging).await
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        self.store.abort_upload(upload).await
    }

    async fn report(&self, metrics: &str, alerts: Vec<Alert>) {
        self.metrics.emit(metrics);
        for alert in &alerts {
            publish_or_warn(self.alerts.as_ref(), alert).await;
        }
    }

    async fn record_run(&self, run: &RunRecord) {
        record_run_or_warn(self.catalog.as_ref(), run).await;
    }
}

/// The dry run's effects: none. It takes no lease (it changes nothing, so it may look while a purge runs),
/// and sends no alert, metric or run record.
pub struct PlanOnly;

#[async_trait]
impl PurgeEffects for PlanOnly {
    async fn take_lease(&self, _: &LeaseRequest) -> Result<LeaseOutcome, CatalogError> {
        Ok(LeaseOutcome::Acquired)
    }
    async fn release_lease(&self, _: &str, _: &str) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn mark_purging(&self, _: &BackupRecord) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn mark_lost(&self, _: &BackupRecord, _: &str) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn delete_version(&self, _: &StoredVersion) -> Result<(), StoreError> {
        Ok(())
    }
    async fn mark_purged(&self, _: &BackupRecord) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn abort_upload(&self, _: &OpenUpload) -> Result<(), StoreError> {
        Ok(())
    }
    async fn report(&self, _: &str, _: Vec<Alert>) {}
    async fn record_run(&self, _: &RunRecord) {}
}

pub struct PurgeJob {
    config: Arc<Config>,
    deps: PurgeDeps,
}

impl PurgeJob {
    pub fn new(config: Arc<Config>, deps: PurgeDeps) -> Self {
        PurgeJob { config, deps }
    }

    pub async fn run(&self, request: &PurgeRequest) -> Result<Vec<TargetPurge>, UnknownTarget> {
        let mut targets = select_targets(&self.config, request.target.as_deref())?;
        if request.target.is_none() {
            // Databases gone from their server keep their backups under retention, like any target's.
            targets.extend(&self.config.gone);
        }
        let effects: Arc<dyn PurgeEffects> = if request.dry_run {
            Arc::new(PlanOnly)
        } else {
            Arc::new(LiveEffects {
                store: self.deps.store.clone(),
                catalog: self.deps.catalog.clone(),
                alerts: self.deps.alerts.clone(),
                metrics: self.deps.metrics.clone(),
            })
        };
        let started_at = self.deps.clock.now();
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut results = Vec::new();
        for target in targets {
            let begun = std::time::Instant::now();
            let result = self.purge_target(target, request, effects.as_ref(), &run_id).await;
            if !result.lease_held {
                self.report(target, &result, effects.as_ref()).await;
            }
            info!(target = %target.name, summary = %result.summary(), "purge");
            results.push((result, begun.elapsed()));
        }
        self.record_run(request, &run_id, started_at, &results, effects.as_ref()).await;
        Ok(results.into_iter().map(|(r, _)| r).collect())
    }

    #[instrument(skip_all, fields(target = %target.name))]
    async fn purge_target(
        &self,
        target: &TargetConfig,
        request: &PurgeRequest,
        effects: &dyn PurgeEffects,
        run_id: &str,
    ) -> TargetPurge {
        let mut result = TargetPurge {
            target: target.name.clone(),
            dry_run: request.dry_run,
            steps: Vec::new(),
            refused: None,
            skipped: None,
            lease_held: false,
            stale_restore_hold: false,
            at_risk: Vec::new(),
        };
        let now = self.deps.clock.now();
        let lease = lease_request(&target.name, Job::Purge, run_id, now, self.config.lease);
        match effects.take_lease(&lease).await {
            Ok(LeaseOutcome::Acquired) => {}
            Ok(LeaseOutcome::HeldBy { owner, expires_at }) => {
                use crate::jobs::restore::purge_hold::{HOLD_FOR, OWNER_PREFIX, QUIET_FOR};
                if !owner.starts_with(OWNER_PREFIX) {
                    result.skipped =
                        Some(format!("another purge ({owner}) holds this target's purge lease until {expires_at}"));
                    result.lease_held = true;
                    return result;
                }
                let since = expires_at - chrono::Duration::from_std(HOLD_FOR).unwrap_or_default();
                result.skipped = Some(format!(
                    "a restore reading one of its backups ({owner}) has held this target's purge off since {since} \
                     (until {expires_at})"
                ));
                // A day-long restore is rare; a hold this old is more likely a restore that was killed, and no
                // purge runs until it lapses: said, not kept quiet.
                if now - since > QUIET_FOR {
                    result.stale_restore_hold = true;
                } else {
                    result.lease_held = true;
                }
                return result;
            }
            Err(e) => {
                result.skipped = Some(format!("cannot take the purge lease: {e}"));
                return result;
            }
        }
        if let Err(why) = self.apply_policy(target, request, effects, &mut result).await {
            result.skipped = Some(why.to_string());
        }
        if let Err(e) = effects.release_lease(&target.name, run_id).await {
            warn!(error = %e, "could not release the purge lease; it expires by itself");
        }
        result
    }

    /// Reads, decides, carries out. `Err`: nothing could be decided (the catalog failed): nothing was done.
    async fn apply_policy(
        &self,
        target: &TargetConfig,
        request: &PurgeRequest,
        effects: &dyn PurgeEffects,
        result: &mut TargetPurge,
    ) -> Result<(), NotDecided> {
        let mut records =
            self.deps.catalog.recent_backups(&target.name, MAX_RECORDS).await.map_err(NotDecided::Records)?;
        if records.len() >= MAX_RECORDS {
            return Err(NotDecided::TooManyRecords);
        }
        let drills = self.deps.catalog.recent_drills(&target.name, 100).await.map_err(NotDecided::Drills)?;
        let being_verified: BTreeSet<BackupId> =
            drills.into_iter().filter(|d| d.phase != DrillPhase::Done).map(|d| d.backup_id).collect();
        let bucket = lost::check_restore_points(self.deps.store.as_ref(), &records, &being_verified)
            .await
            .map_err(NotDecided::Store)?;
        // (what is missing, why marking it failed): the plan treats a lost backup as lost even when the mark
        // failed, so that this run deletes nothing in its place.
        let mut marked_lost: Vec<(BackupId, String, Option<String>)> = Vec::new();
        for found in bucket.lost {
            let record = records.iter_mut().find(|r| r.backup_id == found.backup_id).expect("found among the records");
            let missing = found.lost();
            warn!(backup_id = %found.backup_id, %missing, "a restore point's objects are gone");
            let failed =
                effects.mark_lost(record, &missing).await.err().map(|e| format!("could not mark it lost: {e}"));
            record.status = BackupStatus::Lost;
            record.error = Some(missing.clone());
            marked_lost.push((found.backup_id, missing, failed));
        }
        let now = self.deps.clock.now();
        let hidden = bucket.at_risk.iter().map(|found| found.backup_id.clone()).collect();
        let plan =
            decide(&records, &target.retention, now, &DecideContext { force: request.force, being_verified, hidden });
        result.refused = plan.refused.clone();
        // Hidden versions of a backup this run deletes anyway are no news.
        for found in &bucket.at_risk {
            if plan.decisions.iter().any(|d| d.backup_id == found.backup_id && d.action == Action::Keep) {
                warn!(backup_id = %found.backup_id, objects = ?found.objects, "a restore point's objects are hidden");
                result.at_risk.push(format!("{}: {}", found.backup_id, found.at_risk()));
            }
        }
        for decision in &plan.decisions {
            let record = records
                .iter()
                .find(|r| r.backup_id == decision.backup_id)
                .expect("decisions are about the records given");
            let (lost, lost_mark_failed) = match marked_lost.iter().find(|(id, ..)| *id == decision.backup_id) {
                Some((_, missing, failed)) => (Some(missing.clone()), failed.clone()),
                None => (None, None),
            };
            let mut step = PurgeStep {
                backup_id: Some(decision.backup_id.clone()),
                status: Some(decision.status),
                started_at: Some(decision.started_at),
                action: decision.action.into(),
                reasons: decision.reasons.clone(),
                versions: 0,
                error: lost_mark_failed,
                lost,
            };
            if step.error.is_some() {
                result.steps.push(step);
                continue;
            }
            let outcome = match decision.action {
                Action::Keep | Action::Skip => Ok(0),
                Action::Delete => self.purge_backup(record, effects, true).await,
                Action::Finish => self.purge_backup(record, effects, false).await,
                Action::CleanUp => self.delete_objects(record, effects).await,
            };
            match outcome {
                Ok(versions) => step.versions = versions,
                Err(e) => {
                    warn!(backup_id = %decision.backup_id, error = %e, "purge step failed");
                    step.error = Some(e.to_string());
                }
            }
            result.steps.push(step);
        }
        self.abort_abandoned_uploads(target, effects, now, result).await;
        Ok(())
    }

    /// `purging` (unless already), every object version, `purged`: in that order, so a crash never leaves
    /// a record that claims objects which are gone without saying so.
    async fn purge_backup(
        &self,
        record: &BackupRecord,
        effects: &dyn PurgeEffects,
        mark_first: bool,
    ) -> Result<usize, StepError> {
        if mark_first {
            effects.mark_purging(record).await.map_err(StepError::MarkPurging)?;
        }
        let deleted = self.delete_objects(record, effects).await?;
        let mut purging = record.clone();
        purging.status = BackupStatus::Purging;
        effects.mark_purged(&purging).await.map_err(StepError::MarkPurged)?;
        Ok(deleted)
    }

    /// Deletes every version (and delete marker) under the backup's own key prefix.
    async fn delete_objects(&self, record: &BackupRecord, effects: &dyn PurgeEffects) -> Result<usize, StepError> {
        let prefix = attempt_prefix(record, &self.config.key_prefix);
        let versions = self
            .deps
            .store
            .versions(&prefix)
            .await
            .map_err(|cause| StepError::List { prefix: prefix.clone(), cause })?;
        for version in &versions {
            effects
                .delete_version(&version.stored())
                .await
                .map_err(|cause| StepError::Delete { key: version.key.clone(), cause })?;
        }
        Ok(versions.len())
    }

    async fn abort_abandoned_uploads(
        &self,
        target: &TargetConfig,
        effects: &dyn PurgeEffects,
        now: DateTime<Utc>,
        result: &mut TargetPurge,
    ) {
        let prefix = format!("{}{}/", self.config.key_prefix, target.name);
        let uploads = match self.deps.store.open_uploads(&prefix).await {
            Ok(uploads) => uploads,
            Err(e) => {
                result.steps.push(upload_step(
                    None,
                    vec![format!("cannot list open uploads under {prefix}")],
                    Some(e.to_string()),
                ));
                return;
            }
        };
        for upload in uploads {
            // No start time: it may be a running backup's; leave it to the bucket's lifecycle rule.
            let Some(initiated) = upload.initiated.filter(|t| now - *t > ABANDONED_UPLOAD_AGE) else { continue };
            let reason =
                format!("multipart upload of {} started {} and never finished", upload.key, initiated.to_rfc3339());
            let error = effects.abort_upload(&upload).await.err().map(|e| e.to_string());
            result.steps.push(upload_step(Some(&upload), vec![reason], error));
        }
    }

    /// Metrics, and an alert when a step failed or the rail refused.
    async fn report(&self, target: &TargetConfig, result: &TargetPurge, effects: &dyn PurgeEffects) {
        let metrics = emf_line(
            self.deps.clock.now(),
            &[("Target", target.name.as_str())],
            &[
                (
                    "PurgeDeletedBackups",
                    Unit::Count,
                    (result.count(StepAction::Delete) + result.count(StepAction::Finish)) as f64,
                ),
                ("PurgeKeptBackups", Unit::Count, result.count(StepAction::Keep) as f64),
                ("PurgeLostBackups", Unit::Count, result.lost().len() as f64),
                ("PurgeErrors", Unit::Count, (result.errors().len() + usize::from(result.skipped.is_some())) as f64),
            ],
        );
        let outcome = if result.stale_restore_hold {
            result.skipped.as_deref().map(|why| restore_hold_alert(target, why))
        } else if let Some(why) = &result.skipped {
            Some(purge_not_run_alert(target, why))
        } else if !result.errors().is_empty() {
            Some(purge_failed_alert(target, result))
        } else {
            result.refused.as_ref().map(|why| purge_refused_alert(target, why))
        };
        let lost = (!result.lost().is_empty()).then(|| backups_lost_alert(target, result));
        let at_risk = (!result.at_risk.is_empty()).then(|| backups_at_risk_alert(target, result));
        effects.report(&metrics, lost.into_iter().chain(at_risk).chain(outcome).collect()).await;
    }

    async fn record_run(
        &self,
        request: &PurgeRequest,
        run_id: &str,
        started_at: DateTime<Utc>,
        results: &[(TargetPurge, std::time::Duration)],
        effects: &dyn PurgeEffects,
    ) {
        let finished_at = self.deps.clock.now();
        let targets: Vec<TargetResult> = results
            .iter()
            .map(|(r, took)| TargetResult {
                target: r.target.clone(),
                outcome: if r.lease_held {
                    TargetOutcome::SkippedLeaseHeld
                } else if r.failed() {
                    TargetOutcome::Failed
                } else {
                    TargetOutcome::Completed
                },
                backup_id: None,
                message: r.summary(),
                duration_ms: took.as_millis() as u64,
            })
            .collect();
        let start = RunStart {
            run_id: run_id.to_string(),
            job: Job::Purge,
            trigger: request.trigger,
            request_id: request.request_id.clone(),
            idempotency_key: None,
            started_at,
        };
        let took = (finished_at - started_at).to_std().unwrap_or_default();
        let run = start.finish(finished_at, took, targets);
        effects.record_run(&run).await;
    }
}

fn upload_step(upload: Option<&OpenUpload>, reasons: Vec<String>, error: Option<String>) -> PurgeStep {
    PurgeStep {
        backup_id: None,
        status: None,
        started_at: upload.and_then(|u| u.initiated),
        action: StepAction::AbortUpload,
        reasons,
        versions: 0,
        error,
        lost: None,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod job_tests;
