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
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::runbook;
use crate::domain::verification::{CheckName, CheckOutcome, CheckResult};
use crate::domain::{BackupId, BackupRecord, BackupStatus, Job, Trigger, VerificationSummary};
use crate::metrics::{emf_line, MetricsSink, Unit};
use crate::passwords::PasswordResolver;
use crate::ports::*;

use super::alerts::subject_line;
use super::drill_steps;
use super::kernel::{publish_or_warn, select_targets, UnknownTarget};

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
    /// Give up on unfinished drills, saying why: each is failed and sent straight to cleaning (its scratch
    /// server destroyed, its verdict `verify_failed`). For a caller out of patience (Step Functions' bound).
    pub abandon: Option<String>,
    /// Only destroy scratch servers past their expiry (the hourly sweep); touch no drill.
    pub sweep_only: bool,
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
    /// `verified` or `verify_failed` once done.
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

fn lease_request(target: &str, owner: &str, now: DateTime<Utc>, lease: std::time::Duration) -> LeaseRequest {
    let expires_at = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(2));
    LeaseRequest { target: target.to_string(), job: Job::Verify, owner: owner.to_string(), now, expires_at }
}

/// Renews the verify lease every quarter of its length until aborted; gives up (loudly) if another run took it.
async fn renew_lease(
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    target: String,
    owner: String,
    lease: std::time::Duration,
) {
    loop {
        tokio::time::sleep(lease / 4).await;
        match catalog.acquire_lease(&lease_request(&target, &owner, clock.now(), lease)).await {
            Ok(LeaseOutcome::Acquired) => {}
            Ok(LeaseOutcome::HeldBy { owner: other, .. }) => {
                // Only after a renewal failed for a whole lease; phases are saved conditionally, so the two runs
                // cannot both advance a drill, and this one's next save fails and stops it.
                warn!(target = %target, other = %other, "lost the verify lease to another run");
                return;
            }
            Err(e) => warn!(target = %target, error = %e, "could not renew the verify lease; trying again"),
        }
    }
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

    pub async fn run(&self, request: &VerifyRequest) -> Result<VerifyRun, VerifyJobError> {
        let targets = select_targets(&self.config, request.target.as_deref())?;
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
            match self.verify_target(target, request, &run_id).await? {
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
    ) -> Result<Result<Vec<DrillSummary>, LeftAlone>, VerifyJobError> {
        let lease = lease_request(&target.name, run_id, self.deps.clock.now(), self.config.verify.lease);
        if let LeaseOutcome::HeldBy { owner, expires_at } = self.deps.catalog.acquire_lease(&lease).await? {
            info!(owner = %owner, "another verify run is advancing this target's drills");
            return Ok(Err(LeftAlone::LeaseHeld(format!(
                "another verify run ({owner}) holds this target's lease until {expires_at}"
            ))));
        }
        // The lease is short and renewed while this run works, so a run that is killed (a Lambda timeout, a
        // SIGKILL) keeps other runs off the target's drills for at most one lease, not for hours.
        let heartbeat = tokio::spawn(renew_lease(
            self.deps.catalog.clone(),
            self.deps.clock.clone(),
            target.name.clone(),
            run_id.to_string(),
            self.config.verify.lease,
        ));
        let result = self.drills_of(target, request).await;
        let result = match result {
            Ok(mut drills) => {
                let mut summaries = Vec::new();
                for drill in drills.iter_mut() {
                    summaries.push(self.advance(target, drill, request).await);
                }
                Ok(summaries)
            }
            Err(e) => Err(e),
        };
        heartbeat.abort();
        if let Err(e) = self.deps.catalog.release_lease(&target.name, Job::Verify, run_id).await {
            warn!(error = %e, "could not release the verify lease; it expires by itself");
        }
        result.map(Ok)
    }

    /// The drills to advance: unfinished ones first (resumed), else new ones on the chosen backups.
    async fn drills_of(
        &self,
        target: &TargetConfig,
        request: &VerifyRequest,
    ) -> Result<Vec<DrillRecord>, VerifyJobError> {
        let recent = self.deps.catalog.recent_drills(&target.name, 20).await?;
        let unfinished: Vec<DrillRecord> = recent.into_iter().filter(|d| d.phase != DrillPhase::Done).collect();
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
    async fn advance(&self, target: &TargetConfig, drill: &mut DrillRecord, request: &VerifyRequest) -> DrillSummary {
        if let Some(why) = &request.abandon {
            self.abandon(drill, why).await;
        }
        let mut steps = 0;
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
            let expected = drill.phase;
            let waiting = match self.step(target, drill, request.deadline).await {
                Ok(waiting) => waiting,
                Err(message) => {
                    // A step that cannot even run (the catalog, the store) leaves the drill where it was.
                    break Pause::Later(message);
                }
            };
            steps += 1;
            if let Err(e) = self.deps.catalog.update_drill(drill, expected).await {
                break Pause::Later(format!("could not save the drill's progress: {e}"));
            }
            if let Some(status) = waiting {
                break Pause::Later(status);
            }
        };
        let message = match &pause {
            Pause::Done => format!(
                "{} ({} checks, {} failed)",
                if drill.report.passed() { "verified" } else { "verify_failed" },
                drill.report.checks.len(),
                drill.report.failures().len()
            ),
            Pause::Later(why) => why.clone(),
        };
        DrillSummary {
            target: drill.target.clone(),
            drill_id: drill.drill_id.clone(),
            backup_id: drill.backup_id.clone(),
            phase: drill.phase,
            outcome: (drill.phase == DrillPhase::Done).then(|| {
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

    /// Runs the drill's current phase and moves it to the next. `Ok(Some(status))`: the phase must wait (the
    /// scratch server is still being created). `Err`: the phase could not run at all; try again later.
    async fn step(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<String>, String> {
        if drill.point_in_time.is_some() {
            return self.step_point_in_time(target, drill).await;
        }
        let now = self.deps.clock.now();
        match drill.phase {
            DrillPhase::Provisioning => {
                let Some(backup) = self.backup_of(drill).await? else { return Ok(None) };
                let handle = match &drill.scratch {
                    Some(handle) => handle.clone(),
                    None => {
                        let engine_major = match server_major(&backup) {
                            Ok(major) => major,
                            Err(why) => return Ok(self.fail_phase(drill, why)),
                        };
                        let spec = ScratchSpec {
                            drill_id: drill.drill_id.clone(),
                            engine_major,
                            storage_gib: storage_for(&backup),
                            expires_at: now
                                + chrono::Duration::from_std(self.config.verify.scratch_lifetime)
                                    .unwrap_or(chrono::Duration::hours(6)),
                        };
                        match self.deps.scratch.create(&spec).await {
                            Ok(handle) => {
                                drill.scratch = Some(handle.clone());
                                handle
                            }
                            Err(e) => {
                                return Ok(
                                    self.fail_phase(drill, format!("provisioning the scratch server failed: {e}"))
                                )
                            }
                        }
                    }
                };
                match self.deps.scratch.poll(&handle).await {
                    Ok(ScratchState::Ready(_)) => {
                        drill.provisioned_at = Some(self.deps.clock.now());
                        drill.phase = DrillPhase::Restoring;
                        Ok(None)
                    }
                    Ok(ScratchState::Creating { status }) => {
                        Ok(Some(format!("scratch server {} is {status}", handle.id)))
                    }
                    Err(e) => Ok(self.fail_phase(drill, format!("the scratch server failed: {e}"))),
                }
            }
            DrillPhase::Restoring => {
                let Some(backup) = self.backup_of(drill).await? else { return Ok(None) };
                let Some(server) = self.endpoint(drill).await else { return Ok(None) };
                if let Err(why) = self.client_can_restore(&backup).await {
                    return Ok(self.fail_phase(drill, why));
                }
                drill.restore_started_at = Some(self.deps.clock.now());
                let mut report = drill.report.clone();
                let restoring = drill_steps::restore(
                    self.deps.store.clone(),
                    self.deps.restorer.as_ref(),
                    &server,
                    &backup,
                    self.config.kms_key_id.as_deref(),
                    &mut report,
                );
                // A restore cannot pause halfway: one that would outlast the invocation is stopped (its
                // connections drop, the server rolls back) and the drill fails, saying where to run it instead.
                let restored = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, restoring).await.ok(),
                    None => Some(restoring.await),
                };
                drill.restored_at = Some(self.deps.clock.now());
                match restored {
                    Some(restored) => {
                        drill.report = report;
                        drill.phase = if restored { DrillPhase::Checking } else { DrillPhase::Cleaning };
                    }
                    None => {
                        let took = drill
                            .restored_at
                            .zip(drill.restore_started_at)
                            .map_or(0, |(end, start)| (end - start).num_seconds());
                        self.fail_phase(
                            drill,
                            format!(
                                "the restore was still running when this invocation's time ran out (after {took} s): a backup this \
                                 large cannot be drilled within one Lambda invocation; run `backstop verify --target {}` from \
                                 the CLI or a container (docs/operations.md#restore-drills)",
                                target.name
                            ),
                        );
                    }
                }
                Ok(None)
            }
            DrillPhase::Checking => {
                let Some(backup) = self.backup_of(drill).await? else { return Ok(None) };
                let Some(server) = self.endpoint(drill).await else { return Ok(None) };
                match drill_steps::read_manifest(self.deps.store.as_ref(), &backup).await {
                    Ok(manifest) => {
                        drill_steps::check(
                            self.deps.restorer.as_ref(),
                            &server,
                            &manifest,
                            self.config.verify.rows,
                            self.config.verify.physical,
                            &target.checks,
                            self.config.verify.check_timeout,
                            &mut drill.report,
                        )
                        .await
                    }
                    Err(message) => drill.report.push(CheckName::TableSet, CheckOutcome::Error { message }),
                }
                drill.checked_at = Some(self.deps.clock.now());
                drill.phase = DrillPhase::Cleaning;
                Ok(None)
            }
            DrillPhase::Cleaning => {
                if let Some(handle) = &drill.scratch {
                    // Not done until the server is gone: a failed destroy keeps the drill here for the next run.
                    self.deps
                        .scratch
                        .destroy(handle)
                        .await
                        .map_err(|e| format!("destroying the scratch server failed: {e}"))?;
                }
                self.finish_cleaning(target, drill).await
            }
            DrillPhase::Done => Ok(None),
        }
    }

    /// `step` for a point-in-time drill: RDS restores while the copy is provisioned, so `provisioning` leads
    /// straight to `checking`, where only a connection check and the target's own checks run.
    async fn step_point_in_time(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
    ) -> Result<Option<String>, String> {
        let Some(source) = drill.point_in_time.as_ref().map(|p| p.source_instance.clone()) else { return Ok(None) };
        let Some(rds) = self.deps.point_in_time.clone() else {
            let message =
                "point-in-time drills need RDS scratch servers (scratch = \"rds\"), and this run has local ones"
                    .to_string();
            if drill.scratch.is_some() {
                // The copy exists and only RDS can delete it: leave the drill as it is for a run that can.
                return Err(message);
            }
            if drill.phase != DrillPhase::Cleaning {
                self.fail_phase(drill, message);
            }
            return self.finish_cleaning(target, drill).await;
        };
        match drill.phase {
            DrillPhase::Provisioning | DrillPhase::Restoring => {
                let handle = match &drill.scratch {
                    Some(handle) => handle.clone(),
                    None => {
                        let at = match rds.latest_restorable_time(&source).await {
                            Ok(Some(at)) => at,
                            Ok(None) => {
                                let why = format!("RDS reports no restorable time for {source}: are its automated backups on (backup retention above 0)?");
                                return Ok(self.fail_phase(drill, why));
                            }
                            Err(e) => {
                                return Ok(self
                                    .fail_phase(drill, format!("cannot read {source}'s latest restorable time: {e}")))
                            }
                        };
                        let expires_at = self.deps.clock.now()
                            + chrono::Duration::from_std(self.config.verify.scratch_lifetime)
                                .unwrap_or(chrono::Duration::hours(6));
                        match rds.restore(&source, at, &drill.drill_id, expires_at).await {
                            Ok(handle) => {
                                drill.scratch = Some(handle.clone());
                                if let Some(p) = drill.point_in_time.as_mut() {
                                    p.restore_time = Some(at);
                                }
                                handle
                            }
                            Err(e) => {
                                return Ok(self.fail_phase(
                                    drill,
                                    format!("restoring {source} to {} failed: {e}", at.to_rfc3339()),
                                ))
                            }
                        }
                    }
                };
                match self.point_in_time_copy(rds.as_ref(), target, &handle).await {
                    Ok(ScratchState::Ready(_)) => {
                        let now = self.deps.clock.now();
                        // RDS's restore is the provisioning: restore and provisioning are the same span.
                        drill.provisioned_at = Some(now);
                        drill.restore_started_at = Some(drill.started_at);
                        drill.restored_at = Some(now);
                        drill.phase = DrillPhase::Checking;
                        Ok(None)
                    }
                    Ok(ScratchState::Creating { status }) => {
                        Ok(Some(format!("point-in-time copy {} of {source} is {status}", handle.id)))
                    }
                    Err(message) => Ok(self.fail_phase(drill, message)),
                }
            }
            DrillPhase::Checking => {
                let Some(handle) = drill.scratch.clone() else {
                    return Ok(self.fail_phase(drill, "the point-in-time copy was never created".into()));
                };
                match self.point_in_time_copy(rds.as_ref(), target, &handle).await {
                    Ok(ScratchState::Ready(server)) => {
                        drill_steps::check_live_copy(
                            self.deps.restorer.as_ref(),
                            &server,
                            &target.database,
                            &target.checks,
                            self.config.verify.check_timeout,
                            &mut drill.report,
                        )
                        .await;
                        drill.checked_at = Some(self.deps.clock.now());
                        drill.phase = DrillPhase::Cleaning;
                        Ok(None)
                    }
                    Ok(ScratchState::Creating { status }) => Ok(self.fail_phase(
                        drill,
                        format!("the point-in-time copy is {status} again in the middle of the drill"),
                    )),
                    Err(message) => Ok(self.fail_phase(drill, message)),
                }
            }
            DrillPhase::Cleaning => {
                if let Some(handle) = &drill.scratch {
                    rds.destroy(handle).await.map_err(|e| format!("deleting the point-in-time copy failed: {e}"))?;
                }
                self.finish_cleaning(target, drill).await
            }
            DrillPhase::Done => Ok(None),
        }
    }

    /// The drill's client programs must be at least the backup's server version: psql would stop on newer
    /// syntax and pg_dump refuses to re-read a newer server. Said before restoring, with what to deploy.
    async fn client_can_restore(&self, backup: &BackupRecord) -> Result<(), String> {
        let needed = server_major(backup)?;
        match self.deps.restorer.client_major().await {
            Ok(client) if client >= needed => Ok(()),
            Ok(client) => Err(format!(
                "the drill's PostgreSQL client programs are version {client}, older than the backup's server ({needed}): \
                 attach the PostgreSQL {needed} client layer to the verify function (PgClientLayerArn, docs/deploy.md) \
                 or point BACKSTOP_PG_BIN_DIR at PostgreSQL {needed}'s programs"
            )),
            Err(e) => Err(format!("the PostgreSQL client programs cannot be used: {e} (attach the client layer or set BACKSTOP_PG_BIN_DIR)")),
        }
    }

    /// Polls a point-in-time copy with the target's own credentials (the copy has the source's users).
    async fn point_in_time_copy(
        &self,
        rds: &dyn PointInTimeRestores,
        target: &TargetConfig,
        handle: &ScratchHandle,
    ) -> Result<ScratchState, String> {
        let password = self
            .deps
            .passwords
            .resolve(&target.password)
            .await
            .map_err(|e| format!("cannot read {}'s password to reach the point-in-time copy: {e}", target.name))?;
        rds.poll(handle, &target.user, password).await.map_err(|e| format!("the point-in-time copy failed: {e}"))
    }

    /// The last step of `cleaning`, once the scratch server is gone: the verdict, then `done`.
    async fn finish_cleaning(&self, target: &TargetConfig, drill: &mut DrillRecord) -> Result<Option<String>, String> {
        drill.finished_at = Some(self.deps.clock.now());
        self.settle(target, drill).await?;
        drill.phase = DrillPhase::Done;
        Ok(None)
    }

    /// Fails an unfinished drill before cleaning, and saves that, so the cleaning that follows (now or in a
    /// later invocation) destroys its server and gives the verdict.
    async fn abandon(&self, drill: &mut DrillRecord, why: &str) {
        if matches!(drill.phase, DrillPhase::Cleaning | DrillPhase::Done) {
            return;
        }
        let expected = drill.phase;
        self.fail_phase(drill, format!("the drill was abandoned in phase {expected}: {why}"));
        if let Err(e) = self.deps.catalog.update_drill(drill, expected).await {
            warn!(error = %e, "could not save the abandoned drill; it stays as it was");
            drill.phase = expected;
        }
    }

    /// A phase that failed for good: recorded as an error check, and the drill goes straight to cleaning.
    fn fail_phase(&self, drill: &mut DrillRecord, message: String) -> Option<String> {
        warn!(message = %message, "drill phase failed");
        drill.report.push(CheckName::Restore, CheckOutcome::Error { message });
        drill.phase = DrillPhase::Cleaning;
        None
    }

    /// The drilled backup's record. `Err`: the catalog failed (try later). A record that is gone fails the
    /// drill for good (`Ok(None)`, and the drill is sent to cleaning) so it cannot block the target forever.
    async fn backup_of(&self, drill: &mut DrillRecord) -> Result<Option<BackupRecord>, String> {
        match self.deps.catalog.get_backup(&drill.target, &drill.backup_id).await {
            Ok(Some(b)) => Ok(Some(b)),
            Ok(None) => {
                if drill.phase != DrillPhase::Cleaning {
                    self.fail_phase(drill, format!("backup {} is gone from the catalog", drill.backup_id));
                }
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The scratch server's endpoint; when it is gone, the drill is failed and sent to cleaning.
    async fn endpoint(&self, drill: &mut DrillRecord) -> Option<ScratchEndpoint> {
        let handle = drill.scratch.clone()?;
        match self.deps.scratch.poll(&handle).await {
            Ok(ScratchState::Ready(endpoint)) => Some(endpoint),
            Ok(ScratchState::Creating { status }) => {
                self.fail_phase(drill, format!("the scratch server is {status} again in the middle of the drill"));
                None
            }
            Err(e) => {
                self.fail_phase(drill, format!("the scratch server is unreachable: {e}"));
                None
            }
        }
    }

    /// The drill's verdict: timings and budgets, the backup record's status, metrics and the alert.
    async fn settle(&self, target: &TargetConfig, drill: &mut DrillRecord) -> Result<(), String> {
        if let Some(pitr) = drill.point_in_time.clone() {
            // No backup record to update: the verdict is the drill's report, its metrics and its alert.
            record_timings(drill, pitr.restore_time, &self.config.verify);
            self.publish_verdict(target, drill, "Pitr").await;
            return Ok(());
        }
        let Some(backup) = self.backup_of(drill).await? else {
            warn!(backup_id = %drill.backup_id, "the drilled backup's record is gone; the drill ends without a verdict on it");
            return Ok(());
        };
        record_timings(drill, Some(backup.started_at), &self.config.verify);
        if drill.checked_at.is_none() {
            drill_steps::mark_unchecked(&mut drill.report, &target.checks, self.config.verify.physical);
        }
        let passed = drill.report.passed();
        let mut updated = backup.clone();
        updated.status = if passed { BackupStatus::Verified } else { BackupStatus::VerifyFailed };
        updated.verification = Some(VerificationSummary {
            drill_id: drill.drill_id.clone(),
            finished_at: drill.finished_at.unwrap_or_else(|| self.deps.clock.now()),
            passed,
            failed_checks: drill.report.failures().iter().map(|c| c.name.label()).collect(),
            rto_seconds: drill.report.timings.rto_seconds,
            rpo_seconds: drill.report.timings.rpo_seconds,
        });
        if restorable(&backup) {
            self.deps.catalog.update_backup(&updated, backup.status).await.map_err(|e| e.to_string())?;
        } else {
            // Purged (or failed) meanwhile: the drill's report stands, the record is not rewritten.
            warn!(status = %backup.status, "the backup's status changed during the drill; its record is left as it is");
        }
        self.publish_verdict(target, drill, "Verify").await;
        Ok(())
    }

    /// Metrics (named `<prefix>Success`, `<prefix>RtoSeconds`, …) and the alert a finished drill calls for.
    async fn publish_verdict(&self, target: &TargetConfig, drill: &DrillRecord, prefix: &str) {
        let passed = drill.report.passed();
        let t = &drill.report.timings;
        let (rto, rpo) = (t.rto_seconds, t.rpo_seconds);
        let names = ["Success", "RtoSeconds", "RpoSeconds", "RestoreSeconds", "ProvisionSeconds"]
            .map(|n| format!("{prefix}{n}"));
        self.deps.metrics.emit(&emf_line(
            self.deps.clock.now(),
            &[("Target", target.name.as_str())],
            &[
                (names[0].as_str(), Unit::Count, if passed { 1.0 } else { 0.0 }),
                (names[1].as_str(), Unit::Seconds, rto.unwrap_or(0.0)),
                (names[2].as_str(), Unit::Seconds, rpo.unwrap_or(0.0)),
                (names[3].as_str(), Unit::Seconds, t.restore_seconds.unwrap_or(0.0)),
                (names[4].as_str(), Unit::Seconds, t.provision_seconds.unwrap_or(0.0)),
            ],
        ));
        let failed_checks: Vec<String> = drill.report.failures().iter().map(|c| c.name.label()).collect();
        info!(passed, ?failed_checks, ?rto, ?rpo, "drill done");
        if !passed {
            self.alert(drill_failed_alert(target, drill)).await;
        } else if !drill.report.budget_warnings.is_empty() {
            self.alert(budget_alert(target, drill)).await;
        } else if self.config.notify_success {
            self.alert(drill_passed_alert(target, drill)).await;
        }
    }

    async fn alert(&self, alert: Alert) {
        publish_or_warn(self.deps.alerts.as_ref(), &alert).await;
    }
}

/// Fills the drill's timings and budget warnings. `snapshot_time` is the moment the restored data is from: the
/// backup's start for a dump, the restore time for a point-in-time copy; RPO is its age when the drill began.
fn record_timings(
    drill: &mut DrillRecord,
    snapshot_time: Option<DateTime<Utc>>,
    settings: &crate::config::VerifySettings,
) {
    let seconds = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let timings = &mut drill.report.timings;
    timings.provision_seconds = seconds(Some(drill.started_at), drill.provisioned_at);
    timings.restore_seconds = seconds(drill.restore_started_at, drill.restored_at);
    timings.check_seconds = seconds(drill.restored_at, drill.checked_at);
    timings.rto_seconds = seconds(drill.restore_started_at, drill.checked_at);
    timings.rpo_seconds = seconds(snapshot_time, Some(drill.started_at));
    let (rto, rpo) = (timings.rto_seconds, timings.rpo_seconds);
    let what = if drill.point_in_time.is_some() { "the newest restorable point's age" } else { "the backup's age" };
    drill.report.budget_warnings.clear();
    if let (Some(budget), Some(rto)) = (settings.rto_budget, rto) {
        if rto > budget.as_secs_f64() {
            drill.report.budget_warnings.push(format!("RTO {rto:.0} s exceeds the budget of {} s", budget.as_secs()));
        }
    }
    if let (Some(budget), Some(rpo)) = (settings.rpo_budget, rpo) {
        if rpo > budget.as_secs_f64() {
            drill
                .report
                .budget_warnings
                .push(format!("RPO {rpo:.0} s ({what}) exceeds the budget of {} s", budget.as_secs()));
        }
    }
}

/// What a drill restored, for alert texts.
fn drilled(drill: &DrillRecord) -> String {
    match &drill.point_in_time {
        Some(p) => format!(
            "a point-in-time copy of RDS instance {} (as of {})",
            p.source_instance,
            p.restore_time.map_or("its latest restorable time".into(), |t| t.to_rfc3339())
        ),
        None => format!("backup {}", drill.backup_id),
    }
}

/// A backup a drill can restore: it completed, whatever earlier drills said.
fn restorable(b: &BackupRecord) -> bool {
    matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
}

/// The major version of the server the backup was dumped from ("15.4", "16.1 (Debian 16.1-1)" → 15, 16). No
/// guess when the record does not say: a scratch server of another version proves nothing about a restore.
fn server_major(b: &BackupRecord) -> Result<u32, String> {
    let version = b.server_version.as_deref().unwrap_or_default();
    crate::domain::backup::major_version(version).ok_or_else(|| {
        format!(
            "backup {} does not record which PostgreSQL version it was dumped from (server_version {version:?}), so no \
             scratch server can be chosen for it: drill a newer backup, or take one",
            b.backup_id
        )
    })
}

/// Room for the restored data and its indexes: about twice the SQL, at least 20 GiB (RDS's floor for gp3).
fn storage_for(b: &BackupRecord) -> u32 {
    let gib = (b.raw_bytes.saturating_mul(2) / (1 << 30)) as u32 + 1;
    gib.max(20)
}

fn timings_text(drill: &DrillRecord) -> String {
    let t = &drill.report.timings;
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
    format!(
        "Provisioning {}, restore {}, checks {}; RTO (restore start to checks done) {}; RPO (backup age at drill start) {}.",
        s(t.provision_seconds),
        s(t.restore_seconds),
        s(t.check_seconds),
        s(t.rto_seconds),
        s(t.rpo_seconds)
    )
}

fn drill_failed_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    let failures = drill.report.failures();
    let not_run = drill.report.not_run();
    let first = match (failures.first(), not_run.first()) {
        (Some(c), _) => c.name.label(),
        (None, Some(c)) => format!("{} not run", c.name.label()),
        (None, None) => "restore".into(),
    };
    let lines: Vec<String> = failures
        .iter()
        .take(20)
        .map(|c| match &c.outcome {
            CheckOutcome::Mismatch { expected, found } => {
                format!("- {}: expected {expected}, found {found}", c.name.label())
            }
            CheckOutcome::Error { message } => format!("- {}: {message}", c.name.label()),
            _ => format!("- {}", c.name.label()),
        })
        .collect();
    let (verdict, advice) = match &drill.point_in_time {
        Some(p) => (
            "RDS's own point-in-time recovery of this database cannot be trusted".to_string(),
            format!(
                "check {source}'s automated backups (retention, latest restorable time) in the RDS console, that the \
                 checks above hold on the live database, and that the scratch network lets the verify function reach the copy; \
                 the dumps Backstop takes are unaffected (`backstop status --target {name}`).",
                source = p.source_instance,
                name = target.name
            ),
        ),
        None => (
            "this backup cannot be trusted to restore".to_string(),
            format!(
                "do not count on this backup. Check the newest other backups (`backstop status --target {name}`), \
                 run a new backup and drill it (`backstop backup --target {name}` then `backstop verify --target {name}`), and \
                 read the full report with `backstop status --backup {backup}`.",
                name = target.name,
                backup = drill.backup_id
            ),
        ),
    };
    let body = format!(
        "A restore drill of {what} of target \"{name}\" FAILED: {verdict}.\n\n\
         Failed checks ({count}):\n{lines}\n{unchecked}\n{timings}\n\n\
         What to do: {advice}\nDrill: {drill_id}",
        what = drilled(drill),
        name = target.name,
        count = failures.len(),
        lines = lines.join("\n"),
        unchecked = not_run_text(&not_run),
        timings = timings_text(drill),
        drill_id = drill.drill_id,
    );
    Alert {
        subject: subject_line(&format!("Backstop: restore drill of {} FAILED: {first}", target.name)),
        body,
        severity: Severity::Critical,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: Some(runbook::DRILL_FAILED),
    }
}

/// The checks that could not run, grouped by why: what the person paged must not read as failed.
fn not_run_text(not_run: &[&CheckResult]) -> String {
    let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
    for c in not_run {
        let CheckOutcome::NotRun { reason } = &c.outcome else { continue };
        match by_reason.iter_mut().find(|(r, _)| r == reason) {
            Some((_, names)) => names.push(c.name.label()),
            None => by_reason.push((reason, vec![c.name.label()])),
        }
    }
    let lines: Vec<String> = by_reason
        .iter()
        .map(|(reason, names)| {
            let shown = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            let more = if names.len() > 8 { format!(" and {} more", names.len() - 8) } else { String::new() };
            format!("- {shown}{more}: {reason}")
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nNot checked (not failed; nothing is known of them) ({}):\n{}\n", not_run.len(), lines.join("\n"))
    }
}

fn budget_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: restore drill of {} over budget", target.name)),
        body: format!(
            "A restore drill of {} of target \"{}\" passed its checks, but: {}.\n\n{}\n\nWhat to do: a slow restore means a long outage; \
             consider a larger scratch instance class, or back up more often for a smaller RPO.",
            drilled(drill),
            target.name,
            drill.report.budget_warnings.join("; "),
            timings_text(drill)
        ),
        severity: Severity::Warning,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: Some(runbook::DRILL_FAILED),
    }
}

fn drill_passed_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: backup of {} verified by a restore drill", target.name)),
        body: format!(
            "A restore drill of {} of target \"{}\" passed all {} checks.\n\n{}",
            drilled(drill),
            target.name,
            drill.report.checks.len(),
            timings_text(drill)
        ),
        severity: Severity::Info,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BackupId, Trigger};
    use crate::pipeline::codec::Codec;

    fn with_version(version: Option<&str>) -> BackupRecord {
        let at = Utc::now();
        let mut b = BackupRecord::in_progress("app", BackupId::new(at), Trigger::Cli, "test", at, Codec::Zstd);
        b.server_version = version.map(str::to_string);
        b
    }

    #[test]
    fn the_scratch_server_version_is_the_backups_never_a_guess() {
        assert_eq!(server_major(&with_version(Some("15.4"))), Ok(15));
        assert_eq!(server_major(&with_version(Some("16.1 (Debian 16.1-1.pgdg120+1)"))), Ok(16));
        for unknown in [None, Some(""), Some("unknown"), Some("0.1")] {
            let error = server_major(&with_version(unknown)).unwrap_err();
            assert!(error.contains("does not record which PostgreSQL version"), "{error}");
        }
    }
}
