//! The drill's phases, one step at a time: provisioning the scratch server, restoring the backup (or, for a
//! point-in-time drill, having RDS restore the source), checking the restored copy against the manifest,
//! cleaning up; each step moves the drill to its next phase, which the caller saves before the next step.

use super::*;
use crate::domain::scratch_fault;

/// What one step of a drill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stepped {
    /// The drill moved on: to its next phase, or (a phase that failed for good) straight to cleaning.
    Advanced,
    /// The phase must wait, saying for what: the scratch server (or the point-in-time copy) is being created.
    Waiting(String),
}

/// What one step hands the next within a run, in memory; a drill resumed by another run does without.
#[derive(Default)]
pub(super) struct Handover {
    /// What the restore reads before it needs a server, read while the scratch server was made.
    pub first_reads: Option<steps::FirstReads>,
    /// The read-back the restore started, for the check to take over.
    pub read_early: Option<Arc<dyn ReadBackUnderway>>,
}

/// Why a step could not run at all: the drill stays in its phase, and a later step (or run) tries again.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error("{0}")]
    Catalog(CatalogError),
    #[error("destroying the scratch server failed: {0}")]
    DestroyScratch(ScratchError),
    #[error("deleting the point-in-time copy failed: {0}")]
    DestroyCopy(ScratchError),
    /// The copy exists and only RDS can delete it: the drill is left as it is for a run that can.
    #[error("point-in-time drills need RDS scratch servers (scratch = \"rds\"), and this run has local ones")]
    NoPointInTimeRestores,
}

impl From<CatalogError> for StepError {
    fn from(cause: CatalogError) -> Self {
        StepError::Catalog(cause)
    }
}

/// Why the drill's client programs cannot restore a backup.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientUnfit {
    #[error(transparent)]
    UnknownServer(#[from] UnknownServerVersion),
    #[error(
        "the drill's PostgreSQL client programs are version {client}, older than the backup's server ({needed}): \
         attach the PostgreSQL {needed} client layer to the verify function (PgClientLayerArn, docs/deploy.md) \
         or point BACKSTOP_PG_BIN_DIR at PostgreSQL {needed}'s programs"
    )]
    TooOld { client: u32, needed: u32 },
    #[error("the PostgreSQL client programs cannot be used: {0} (attach the client layer or set BACKSTOP_PG_BIN_DIR)")]
    Unusable(RestoreError),
}

/// The backup's record does not say which PostgreSQL version it was dumped from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "backup {backup_id} does not record which PostgreSQL version it was dumped from (server_version {version:?}), \
     so no scratch server can be chosen for it: drill a newer backup, or take one"
)]
pub(super) struct UnknownServerVersion {
    backup_id: BackupId,
    version: String,
}

/// Why a point-in-time copy cannot be reached.
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyUnreachable {
    #[error("cannot read {target}'s password to reach the point-in-time copy: {cause}")]
    Password { target: String, cause: crate::passwords::PasswordError },
    #[error("the point-in-time copy failed: {0}")]
    Copy(ScratchError),
}

impl VerifyJob {
    /// Runs the drill's current phase and moves it to the next (or says what it waits for). `Err`: the phase
    /// could not run at all; the drill stays where it was and a later step tries again. `handover` carries
    /// what a step read or started to the next.
    pub(super) async fn step(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
        deadline: Option<tokio::time::Instant>,
        handover: &mut Handover,
    ) -> Result<Stepped, StepError> {
        if drill.point_in_time.is_some() {
            return self.step_point_in_time(target, drill).await;
        }
        let now = self.deps.clock.now();
        match drill.phase {
            DrillPhase::Provisioning => {
                let Some(backup) = self.backup_of(drill).await? else { return Ok(Stepped::Advanced) };
                let mut first_reads = None;
                let handle = match &drill.scratch {
                    Some(handle) => handle.clone(),
                    None => {
                        let engine_major = match server_major(&backup) {
                            Ok(major) => major,
                            Err(why) => return Ok(self.fail_phase(drill, why.to_string())),
                        };
                        let spec = ScratchSpec {
                            drill_id: drill.drill_id.clone(),
                            engine_major,
                            storage_gib: storage_for(&backup),
                            expires_at: expiry(now, self.config.verify.scratch_lifetime),
                        };
                        // A server that is ready when made (a local one) is restored to in the next step of this
                        // run: the restore's first reads of the backup go on while it is made, bounded by the
                        // deadline (the restore reads again what they did not get). One that takes minutes is
                        // waited for across runs, and nothing is read ahead for it.
                        let reading = async {
                            if !self.deps.scratch.ready_when_made() {
                                return None;
                            }
                            let reading = steps::first_reads(self.deps.store.as_ref(), &backup, true);
                            match deadline {
                                Some(deadline) => tokio::time::timeout_at(deadline, reading).await.ok().flatten(),
                                None => reading.await,
                            }
                        };
                        let (created, read) = tokio::join!(self.deps.scratch.create(&spec), reading);
                        first_reads = read;
                        match created {
                            Ok(handle) => {
                                drill.scratch = Some(handle.clone());
                                handle
                            }
                            Err(e) => {
                                let message = format!("provisioning the scratch server failed: {e}");
                                let marked = scratch_fault::mark(&message, scratch_fault::NOT_PROVISIONED);
                                return Ok(self.fail_phase(drill, marked));
                            }
                        }
                    }
                };
                match self.deps.scratch.poll(&handle).await {
                    Ok(ScratchState::Ready(_)) => {
                        drill.provisioned_at = Some(self.deps.clock.now());
                        drill.phase = DrillPhase::Restoring;
                        handover.first_reads = first_reads;
                        Ok(Stepped::Advanced)
                    }
                    Ok(ScratchState::Creating { status }) => {
                        Ok(Stepped::Waiting(format!("scratch server {} is {status}", handle.id)))
                    }
                    Err(e) => {
                        let message = format!("the scratch server failed before it was ready: {e}");
                        Ok(self.fail_phase(drill, scratch_fault::mark(&message, scratch_fault::NOT_PROVISIONED)))
                    }
                }
            }
            DrillPhase::Restoring => {
                let first_reads = handover.first_reads.take();
                let Some(backup) = self.backup_of(drill).await? else { return Ok(Stepped::Advanced) };
                let Some(server) = self.endpoint(drill).await else { return Ok(Stepped::Advanced) };
                if let Err(why) = self.client_can_restore(&backup).await {
                    return Ok(self.fail_phase(drill, why.to_string()));
                }
                drill.restore_started_at = Some(self.deps.clock.now());
                let mut report = drill.report.clone();
                let destination = steps::Destination::scratch(&server);
                let restoring = steps::restore(
                    self.deps.store.clone(),
                    self.deps.restorer.as_ref(),
                    &destination,
                    &backup,
                    first_reads,
                    self.config.kms_key_id.as_deref(),
                    Some(self.config.verify.rows),
                    &mut report,
                );
                // A restore cannot pause halfway: one that would outlast the invocation is stopped (its
                // connections drop, the server rolls back) and the drill fails, saying where to run it instead.
                let restored = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, restoring).await.ok(),
                    None => Some(restoring.await),
                };
                match restored {
                    Some(restoration) => {
                        drill.restored_at = Some(self.deps.clock.now());
                        drill.report = report;
                        drill.phase = if restoration.restored { DrillPhase::Checking } else { DrillPhase::Cleaning };
                        handover.read_early = restoration.read_early;
                    }
                    None => {
                        // No `restored_at`: the runner's evidence counts a restore that never ended as unfinished.
                        let took =
                            drill.restore_started_at.map_or(0, |start| (self.deps.clock.now() - start).num_seconds());
                        let message = format!(
                            "the restore was still running when this invocation's time ran out (after {took} s): a backup this \
                             large cannot be drilled within one Lambda invocation; run `backstop verify --target {}` from the \
                             CLI or a container (docs/operations.md#restore-drills)",
                            target.name
                        );
                        self.fail_phase(drill, scratch_fault::mark(&message, scratch_fault::OUTLASTED_THE_INVOCATION));
                    }
                }
                Ok(Stepped::Advanced)
            }
            DrillPhase::Checking => {
                let Some(backup) = self.backup_of(drill).await? else { return Ok(Stepped::Advanced) };
                let Some(server) = self.endpoint(drill).await else { return Ok(Stepped::Advanced) };
                match crate::jobs::manifests::read_manifest(self.deps.store.as_ref(), &backup).await {
                    Ok(manifest) => {
                        steps::check(
                            self.deps.restorer.as_ref(),
                            &server,
                            steps::RESTORED_DB,
                            &manifest,
                            self.config.verify.rows,
                            self.config.verify.physical,
                            &target.checks,
                            self.config.verify.check_timeout,
                            handover.read_early.take(),
                            &mut drill.report,
                        )
                        .await
                    }
                    Err(e) => drill.report.push(
                        CheckName::TableSet,
                        CheckOutcome::Error { message: steps::unread(e.to_string(), e.service_kind()) },
                    ),
                }
                drill.checked_at = Some(self.deps.clock.now());
                drill.phase = DrillPhase::Cleaning;
                Ok(Stepped::Advanced)
            }
            DrillPhase::Cleaning => {
                // A read-back no check took over stops before its server goes.
                drop(handover.read_early.take());
                if let Some(handle) = &drill.scratch {
                    // Not done until the server is gone: a failed destroy keeps the drill here for the next run.
                    self.deps.scratch.destroy(handle).await.map_err(StepError::DestroyScratch)?;
                }
                self.finish_cleaning(target, drill).await
            }
            DrillPhase::Done => Ok(Stepped::Advanced),
        }
    }

    /// `step` for a point-in-time drill: RDS restores while the copy is provisioned, so `provisioning` leads
    /// straight to `checking`, where only a connection check and the target's own checks run.
    pub(super) async fn step_point_in_time(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
    ) -> Result<Stepped, StepError> {
        let Some(source) = drill.point_in_time.as_ref().map(|p| p.source_instance.clone()) else {
            return Ok(Stepped::Advanced);
        };
        let Some(rds) = self.deps.point_in_time.clone() else {
            if drill.scratch.is_some() {
                // The copy exists and only RDS can delete it: leave the drill as it is for a run that can.
                return Err(StepError::NoPointInTimeRestores);
            }
            if drill.phase != DrillPhase::Cleaning {
                self.fail_phase(drill, StepError::NoPointInTimeRestores.to_string());
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
                                return Ok(self.fail_phase(drill, why.to_string()));
                            }
                            Err(e) => {
                                return Ok(self
                                    .fail_phase(drill, format!("cannot read {source}'s latest restorable time: {e}")))
                            }
                        };
                        let expires_at = expiry(self.deps.clock.now(), self.config.verify.scratch_lifetime);
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
                        Ok(Stepped::Advanced)
                    }
                    Ok(ScratchState::Creating { status }) => {
                        Ok(Stepped::Waiting(format!("point-in-time copy {} of {source} is {status}", handle.id)))
                    }
                    Err(unreachable) => Ok(self.fail_phase(drill, unreachable.to_string())),
                }
            }
            DrillPhase::Checking => {
                let Some(handle) = drill.scratch.clone() else {
                    return Ok(self.fail_phase(drill, "the point-in-time copy was never created".into()));
                };
                match self.point_in_time_copy(rds.as_ref(), target, &handle).await {
                    Ok(ScratchState::Ready(server)) => {
                        steps::check_live_copy(
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
                        Ok(Stepped::Advanced)
                    }
                    Ok(ScratchState::Creating { status }) => Ok(self.fail_phase(
                        drill,
                        format!("the point-in-time copy is {status} again in the middle of the drill"),
                    )),
                    Err(unreachable) => Ok(self.fail_phase(drill, unreachable.to_string())),
                }
            }
            DrillPhase::Cleaning => {
                if let Some(handle) = &drill.scratch {
                    rds.destroy(handle).await.map_err(StepError::DestroyCopy)?;
                }
                self.finish_cleaning(target, drill).await
            }
            DrillPhase::Done => Ok(Stepped::Advanced),
        }
    }

    /// The drill's client programs must be at least the backup's server version: psql would stop on newer
    /// syntax and pg_dump refuses to re-read a newer server. Said before restoring, with what to deploy.
    pub(super) async fn client_can_restore(&self, backup: &BackupRecord) -> Result<(), ClientUnfit> {
        let needed = server_major(backup)?;
        match self.deps.restorer.client_major().await {
            Ok(client) if client >= needed => Ok(()),
            Ok(client) => Err(ClientUnfit::TooOld { client, needed }),
            Err(e) => Err(ClientUnfit::Unusable(e)),
        }
    }

    /// Polls a point-in-time copy with the target's own credentials (the copy has the source's users).
    pub(super) async fn point_in_time_copy(
        &self,
        rds: &dyn PointInTimeRestores,
        target: &TargetConfig,
        handle: &ScratchHandle,
    ) -> Result<ScratchState, CopyUnreachable> {
        let password = self
            .deps
            .passwords
            .resolve(&target.password)
            .await
            .map_err(|cause| CopyUnreachable::Password { target: target.name.clone(), cause })?;
        rds.poll(handle, &target.user, password).await.map_err(CopyUnreachable::Copy)
    }

    /// The last step of `cleaning`, once the scratch server is gone: the verdict, then `done`.
    pub(super) async fn finish_cleaning(
        &self,
        target: &TargetConfig,
        drill: &mut DrillRecord,
    ) -> Result<Stepped, StepError> {
        drill.finished_at = Some(self.deps.clock.now());
        self.settle(target, drill).await?;
        drill.phase = DrillPhase::Done;
        Ok(Stepped::Advanced)
    }

    /// Fails an unfinished drill before cleaning, and saves that, so the cleaning that follows (now or in a
    /// later invocation) destroys its server and gives the verdict.
    pub(super) async fn abandon(&self, drill: &mut DrillRecord, why: &str) {
        if matches!(drill.phase, DrillPhase::Cleaning | DrillPhase::Done) {
            return;
        }
        let expected = drill.phase;
        // Given up by its caller (a time bound, or an error that stopped the loop): nothing was judged.
        let message = format!("the drill was abandoned in phase {expected}: {why}");
        self.fail_phase(drill, scratch_fault::mark(&message, scratch_fault::ABANDONED));
        if let Err(e) = self.deps.catalog.update_drill(drill, expected).await {
            warn!(error = %e, "could not save the abandoned drill; it stays as it was");
            drill.phase = expected;
        }
    }

    /// A phase that failed for good: recorded as an error check, and the drill goes straight to cleaning.
    pub(super) fn fail_phase(&self, drill: &mut DrillRecord, message: String) -> Stepped {
        warn!(message = %message, "drill phase failed");
        drill.report.push(CheckName::Restore, CheckOutcome::Error { message });
        drill.phase = DrillPhase::Cleaning;
        Stepped::Advanced
    }

    /// The drilled backup's record. `Err`: the catalog failed (try later). A record that is gone fails the
    /// drill for good (`Ok(None)`, and the drill is sent to cleaning) so it cannot block the target forever.
    pub(super) async fn backup_of(&self, drill: &mut DrillRecord) -> Result<Option<BackupRecord>, CatalogError> {
        match self.deps.catalog.get_backup(&drill.target, &drill.backup_id).await {
            Ok(Some(b)) => Ok(Some(b)),
            Ok(None) => {
                if drill.phase != DrillPhase::Cleaning {
                    self.fail_phase(drill, format!("backup {} is gone from the catalog", drill.backup_id));
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The scratch server's endpoint; when it is gone, the drill is failed and sent to cleaning.
    pub(super) async fn endpoint(&self, drill: &mut DrillRecord) -> Option<ScratchEndpoint> {
        let handle = drill.scratch.clone()?;
        match self.deps.scratch.poll(&handle).await {
            Ok(ScratchState::Ready(endpoint)) => Some(endpoint),
            Ok(ScratchState::Creating { status }) => {
                let message = format!("the scratch server is {status} again in the middle of the drill");
                // RDS's own word for a full disk is the more useful mark; either way the server's, not the backup's.
                let why = if status == "storage-full" { scratch_fault::DISK } else { scratch_fault::SCRATCH_FAILED };
                self.fail_phase(drill, scratch_fault::mark(&message, why));
                None
            }
            Err(e) => {
                let message = format!("the scratch server is unreachable: {e}");
                self.fail_phase(drill, scratch_fault::mark(&message, scratch_fault::SCRATCH_FAILED));
                None
            }
        }
    }

    /// The drill's verdict: timings and budgets, the backup record's status, metrics and the alert.
    pub(super) async fn settle(&self, target: &TargetConfig, drill: &mut DrillRecord) -> Result<(), CatalogError> {
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
            steps::mark_unchecked(&mut drill.report, &target.checks, self.config.verify.physical);
        }
        if let Some(fault) = drill.report.scratch_fault() {
            // The drill says nothing of the backup: its record (a restore point, or not) stays as it was, for a
            // later drill to judge.
            warn!(fault = %fault, status = %backup.status, "the drill is inconclusive; the backup keeps its status");
            self.publish_verdict(target, drill, "Verify").await;
            return Ok(());
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
            self.deps.catalog.update_backup(&updated, backup.status).await?;
            self.write_evidence(drill, &updated).await;
        } else {
            // Purged (or failed) meanwhile: the drill's report stands, the record is not rewritten.
            warn!(status = %backup.status, "the backup's status changed during the drill; its record is left as it is");
        }
        self.publish_verdict(target, drill, "Verify").await;
        Ok(())
    }

    /// The drill's evidence document, beside the backup (encrypted like it, deleted with it by purge). A write
    /// that fails is said in the drill's report and the log: the verdict stands, the audit trail has a gap.
    async fn write_evidence(&self, drill: &mut DrillRecord, backup: &BackupRecord) {
        let budget = |b: Option<std::time::Duration>| b.map(|b| b.as_secs_f64());
        let document = DrillEvidenceDocument::of(
            drill,
            backup,
            budget(self.config.verify.rto_budget),
            budget(self.config.verify.rpo_budget),
        );
        let key = evidence_key(&attempt_prefix(backup, &self.config.key_prefix), &drill.drill_id);
        let body = Bytes::from(serde_json::to_vec_pretty(&document).expect("evidence serializes"));
        if let Err(e) = self.deps.store.put_object(&key, body, "application/json").await {
            warn!(key = %key, error = %e, "could not write the drill's evidence document");
            drill.report.budget_warnings.push(format!("the evidence document {key} could not be written: {e}"));
        }
    }
}

/// Fills the drill's timings and budget warnings. `snapshot_time` is the moment the restored data is from: the
/// backup's start for a dump, the restore time for a point-in-time copy; RPO is its age when the drill began.
pub(super) fn record_timings(
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

/// The major version of the server the backup was dumped from ("15.4", "16.1 (Debian 16.1-1)" → 15, 16). No
/// guess when the record does not say: a scratch server of another version proves nothing about a restore.
pub(super) fn server_major(b: &BackupRecord) -> Result<u32, UnknownServerVersion> {
    let version = b.server_version.as_deref().unwrap_or_default();
    crate::domain::backup::major_version(version)
        .ok_or_else(|| UnknownServerVersion { backup_id: b.backup_id.clone(), version: version.to_string() })
}

/// Room for the restored data and its indexes: about twice the SQL, in whole GiB (at least 1). Each kind of
/// scratch server applies its own floor (RDS's gp3: 20 GiB); a local one uses it to choose memory-backed storage
/// or disk. A record that does not say how big its dump was (an old one) gets 20, as every drill did before.
pub(super) fn storage_for(b: &BackupRecord) -> u32 {
    if b.raw_bytes == 0 {
        return UNKNOWN_SIZE_GIB;
    }
    (b.raw_bytes.saturating_mul(2) / (1 << 30)).min(u64::from(u32::MAX) - 1) as u32 + 1
}

/// The storage a drill of a backup of unknown size asks for.
const UNKNOWN_SIZE_GIB: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BackupId, Trigger};
    use crate::pipeline::codec::Codec;

    #[test]
    fn storage_is_twice_the_sql_in_whole_gib_and_20_when_the_record_does_not_say() {
        let sized = |raw_bytes| BackupRecord { raw_bytes, ..with_version(Some("15.4")) };
        assert_eq!(storage_for(&sized(253_335_778)), 1);
        assert_eq!(storage_for(&sized(1_007_273_336)), 2);
        assert_eq!(storage_for(&sized(4 << 30)), 9);
        assert_eq!(storage_for(&sized(0)), 20, "an old record without its size: as large as RDS's floor");
    }

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
            let error = server_major(&with_version(unknown)).unwrap_err().to_string();
            assert!(error.contains("does not record which PostgreSQL version"), "{error}");
        }
    }
}
