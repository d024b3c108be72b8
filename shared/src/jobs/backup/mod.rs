//! The backup job: for each target, under a lease and an idempotency claim, dump → fingerprint → compress →
//! upload, then manifest and record; or, on any failure, abort the upload, record `failed` and alert.
//!
//! Fail-closed is the rule: the multipart upload is completed only when the stream ran to pg_dump's completion
//! line *and* pg_dump exited 0; every other path aborts it. A record reaches `completed` only after the dump and
//! its manifest are stored.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::config::{Config, TargetConfig};
use crate::domain::backup::{attempt_prefix, dump_warnings, ObjectKeys};
use crate::domain::fingerprint::DumpSummary;
use crate::domain::manifest::{Manifest, ManifestTarget, RolesRef, MANIFEST_FORMAT};
use crate::domain::redact::redact;
use crate::domain::runner::{self, Evidence, RunnerDecision, Work};
use crate::domain::text::human_bytes;
use crate::domain::{
    BackupId, BackupRecord, BackupStatus, Job, ObjectRef, RunRecord, RunStart, TargetOutcome, TargetResult, Trigger,
};
use crate::metrics::{emf_line, MetricsSink, Unit};
use crate::passwords::{PasswordError, PasswordResolver};
use crate::pipeline::stream::{stream_to_upload, Progress, StreamError, StreamSettings};
use crate::ports::*;

mod alerts;
mod discover;
use super::kernel::{expiry, publish_or_warn, record_run_or_warn, select_targets, HeldBy, Lease, UnknownTarget};
use alerts::{backup_failed_alert, backup_succeeded_alert, backup_warned_alert};
pub use discover::ServerDiscovery;

pub const TOOL: &str = concat!("backstop ", env!("CARGO_PKG_VERSION"));

/// How many of a target's newest records a run looks through for backups a stopped run left `in_progress`.
/// Each run fails those it finds, so only the newest few can be; a catalog write that kept failing would leave
/// older ones, which the monitor shows.
const ABANDONED_LOOKBACK: usize = 20;

/// Where to look when a run stopped without finishing, for its alert.
const STOPPED_HINT: &str = "Find why the run stopped: the function's log (\"Task timed out\", \"Runtime exited\" or \
     an out-of-memory report), the task's stopped reason, or who stopped the process. A database that outgrew one \
     Lambda invocation runs on Fargate (docs/operations.md#stopped-at-the-time-limit).";

/// What one Lambda invocation gives a backup: the function's 900 s timeout less the 30 s it keeps to clean up
/// (`app::CLEANUP_MARGIN`; a template test holds the function's timeout to this).
pub const LAMBDA_BUDGET_SECONDS: f64 = 870.0;

/// One unit of a backup fan-out: a target and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedUnit {
    pub target: String,
    pub runner: RunnerDecision,
}

/// Why a fan-out could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error(transparent)]
    UnknownTarget(#[from] UnknownTarget),
    #[error(
        "the recent backups of {target} could not be read from the catalog (DynamoDB), to choose its runner: {cause}"
    )]
    History { target: String, cause: CatalogError },
    #[error("the server targets' inventories could not be read from the catalog (DynamoDB), to discover their databases: {0}")]
    Inventories(CatalogError),
}

/// The targets a request resolved to, with the server targets among them discovered.
struct Resolved {
    targets: Vec<TargetConfig>,
    /// Servers whose databases could not be listed, and why (each alerted already).
    failed_servers: Vec<(String, String)>,
}

/// Whether resolving a request's targets discovers its server targets now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    /// Discover, store the inventories and alert on what changed (a real run).
    Recorded,
    /// Discover, but store nothing and alert nobody (a dry run).
    Quiet,
    /// The servers' databases as the last discovery left them (a plan that is only shown).
    None,
}

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error(transparent)]
    Unknown(#[from] UnknownTarget),
    #[error(transparent)]
    Inventories(CatalogError),
}

/// What the failure path of a run that died found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedRun {
    pub target: String,
    /// Backups it left in progress, now failed (each alerted).
    pub failed: Vec<BackupId>,
    /// It died before it recorded a backup (alerted as such).
    pub nothing_recorded: bool,
}

/// Why the failure path of a run that died could not run.
#[derive(Debug, thiserror::Error)]
pub enum StoppedRunError {
    #[error(transparent)]
    UnknownTarget(#[from] UnknownTarget),
    #[error("the catalog (DynamoDB) failed: {0}")]
    Catalog(CatalogError),
}

impl From<CatalogError> for StoppedRunError {
    fn from(cause: CatalogError) -> Self {
        StoppedRunError::Catalog(cause)
    }
}

/// Everything the job talks to.
#[derive(Clone)]
pub struct BackupDeps {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub alerts: Arc<dyn Alerts>,
    pub dumper: Arc<dyn Dumper>,
    pub passwords: Arc<PasswordResolver>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn MetricsSink>,
}

/// One invocation's intent, already parsed and validated from its event or command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRequest {
    /// `None`: every configured target.
    pub target: Option<String>,
    /// Check configuration, credentials and connectivity; dump nothing, write nothing.
    pub dry_run: bool,
    pub trigger: Trigger,
    pub request_id: String,
    /// Deliveries sharing this key produce at most one backup per target.
    pub idempotency_key: Option<String>,
    /// A backup still running at this instant is stopped and failed cleanly (a Lambda's time limit, less a
    /// margin for cleanup); `None` lets it run as long as it needs (CLI).
    pub deadline: Option<tokio::time::Instant>,
}

/// Why one target's backup failed. Displayed (then redacted) into the record and the alert: each message
/// carries its cause (see `ports`: causes are fields, not `source()`s).
#[derive(Debug, thiserror::Error)]
enum BackupFailure {
    #[error("cannot get the database password: {0}")]
    Password(PasswordError),
    #[error("the pre-flight check failed: {0}")]
    Preflight(DumpError),
    #[error("dumping the roles failed: {0}")]
    Roles(DumpError),
    #[error("starting pg_dump failed: {0}")]
    StartDump(DumpError),
    #[error("pg_dump failed ({status}): {stderr_tail}")]
    DumpExited { status: String, stderr_tail: String },
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the catalog (DynamoDB) failed: {0}")]
    Catalog(CatalogError),
    #[error("the catalog (DynamoDB) failed while marking the backup completed ({write_error}) and could not be read back ({read_error})")]
    Unconfirmed { write_error: CatalogError, read_error: CatalogError },
    #[error(
        "the backup was stopped after {seconds} s: it would not have finished within this invocation's time limit"
    )]
    OutOfTime { seconds: u64 },
    #[error("encoding the manifest failed: {0}")]
    Manifest(serde_json::Error),
}

// `?` wraps these causes in their variant (thiserror's `#[from]` would also make them `source()`s).
impl From<PasswordError> for BackupFailure {
    fn from(cause: PasswordError) -> Self {
        BackupFailure::Password(cause)
    }
}
impl From<CatalogError> for BackupFailure {
    fn from(cause: CatalogError) -> Self {
        BackupFailure::Catalog(cause)
    }
}
impl From<serde_json::Error> for BackupFailure {
    fn from(cause: serde_json::Error) -> Self {
        BackupFailure::Manifest(cause)
    }
}

impl BackupFailure {
    /// The kind of the AWS failure behind this one, whichever call (S3 or DynamoDB) met it.
    fn service_kind(&self) -> Option<AwsErrorKind> {
        match self {
            BackupFailure::Store(e) | BackupFailure::Stream(StreamError::Upload(e)) => e.service_kind(),
            BackupFailure::Catalog(e) | BackupFailure::Unconfirmed { write_error: e, .. } => e.service_kind(),
            _ => None,
        }
    }

    /// Where a person should look first, for the alert.
    fn hint(&self) -> &'static str {
        // An AWS failure of a kind that says what to do, whichever call met it.
        match self.service_kind() {
            Some(AwsErrorKind::Denied) => {
                return "AWS denied the call: check the function's role (IAM), the bucket policy and the KMS key policy for the action named above.";
            }
            Some(AwsErrorKind::Throttled) => {
                return "AWS throttled the calls: a retry or the next scheduled run should succeed; if it recurs, spread the targets' schedules or raise the service quota.";
            }
            Some(AwsErrorKind::Unavailable) => {
                return "AWS did not answer or failed on its side: a retry or the next scheduled run should succeed; if it recurs, check the function's network path to the AWS endpoints (VPC endpoints, NAT) and the AWS Health Dashboard.";
            }
            _ => {}
        }
        match self {
            BackupFailure::Password(_) => "Check the target's password source (secret, variable or file) and that this function may read it.",
            BackupFailure::Preflight(DumpError::VersionMismatch(_)) => {
                "Give the function the PostgreSQL client programs of the server's major version (the layer in template.yaml's PgClientLayerArn, or BACKSTOP_PG_BIN_DIR)."
            }
            BackupFailure::Preflight(DumpError::Spawn { .. } | DumpError::ClientUnusable(_))
            | BackupFailure::Roles(DumpError::Spawn { .. })
            | BackupFailure::StartDump(DumpError::Spawn { .. }) => {
                "The PostgreSQL client programs are missing: attach the client layer or set BACKSTOP_PG_BIN_DIR."
            }
            BackupFailure::Preflight(_) | BackupFailure::Roles(_) | BackupFailure::StartDump(_) => {
                "Check that the database is reachable from the function (VPC, security group), the credentials, and pg_hba."
            }
            BackupFailure::DumpExited { .. } => "Read pg_dump's message above; check the server's log at that time for the same error.",
            BackupFailure::Stream(StreamError::Upload(_)) | BackupFailure::Store(_) => {
                "Check the bucket, its KMS key policy and the function's S3/KMS permissions."
            }
            BackupFailure::Stream(_) => "The dump stream broke before pg_dump finished; check the server's log and the function's memory and timeout.",
            BackupFailure::Catalog(_) | BackupFailure::Unconfirmed { .. } => "Check the DynamoDB table and the function's permissions on it.",
            BackupFailure::OutOfTime { .. } => {
                "This database outgrew one Lambda invocation: its next backups run on Fargate (runner = \"auto\", with the stack's BackupImageTag set), or set its runner to \"fargate\" (docs/operations.md#stopped-at-the-time-limit)."
            }
            BackupFailure::Manifest(_) => "This is a bug in Backstop; please report it with the log.",
        }
    }
}

pub struct BackupJob {
    config: Arc<Config>,
    deps: BackupDeps,
    progress: Arc<Progress>,
    settings: StreamSettings,
}

impl BackupJob {
    pub fn new(config: Arc<Config>, deps: BackupDeps) -> Self {
        let settings = StreamSettings::new(config.codec, config.compression_level);
        BackupJob { config, deps, progress: Arc::default(), settings }
    }

    /// Replaces the stream settings (part sizes and concurrency) — for tests and benchmarks.
    pub fn with_stream_settings(mut self, settings: StreamSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Live byte counters of the backup in progress, for a progress display.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs the request over its targets, one after the other, and records the run. Without a target, or with
    /// a server target's name, the server's databases are discovered first (a server whose list cannot be read
    /// is a failed result of its own).
    pub async fn run(&self, request: &BackupRequest) -> Result<RunRecord, UnknownTarget> {
        let named = request.target.clone().map(|name| vec![name]);
        let run_id = uuid::Uuid::new_v4().to_string();
        let started_at = self.deps.clock.now();
        let clock = Instant::now();
        let discovery = if request.dry_run { Discovery::Quiet } else { Discovery::Recorded };
        let (targets, mut results): (Vec<TargetConfig>, Vec<TargetResult>) =
            match self.resolve(named.as_deref(), discovery).await {
                Ok(resolved) => {
                    let failed = resolved.failed_servers.into_iter().map(|(server, why)| TargetResult {
                        target: server,
                        outcome: TargetOutcome::Failed,
                        backup_id: None,
                        message: format!("cannot list the server's databases: {why}"),
                        duration_ms: 0,
                    });
                    (resolved.targets, failed.collect())
                }
                Err(ResolveError::Unknown(e)) => return Err(e),
                Err(ResolveError::Inventories(e)) => {
                    // The servers asked for fail; the other targets asked for are backed up as usual.
                    let message = format!("cannot read the server targets' inventories from the catalog: {e}");
                    let asked = |name: &str| named.as_ref().is_none_or(|names| names.iter().any(|n| n == name));
                    let failed = self.config.servers.iter().filter(|s| asked(&s.name)).map(|s| TargetResult {
                        target: s.name.clone(),
                        outcome: TargetOutcome::Failed,
                        backup_id: None,
                        message: message.clone(),
                        duration_ms: 0,
                    });
                    let others = match &named {
                        None => self.config.targets.iter().filter(|t| !t.is_discovered()).cloned().collect(),
                        Some(names) => names.iter().filter_map(|n| self.config.target(n)).cloned().collect(),
                    };
                    (others, failed.collect())
                }
            };
        for target in &targets {
            let result = if request.dry_run {
                self.preflight_target(target).await
            } else {
                self.backup_target(target, request, &run_id).await
            };
            info!(target = %result.target, outcome = result.outcome.as_str(), detail = %result.message, "target done");
            results.push(result);
        }
        let start = RunStart {
            run_id,
            job: Job::Backup,
            trigger: request.trigger,
            request_id: request.request_id.clone(),
            idempotency_key: request.idempotency_key.clone(),
            started_at,
        };
        let run = start.finish(self.deps.clock.now(), clock.elapsed(), results);
        if !request.dry_run {
            record_run_or_warn(self.deps.catalog.as_ref(), &run).await;
        }
        Ok(run)
    }

    /// Dry run: resolves the password and checks the server can be dumped; writes nothing.
    #[instrument(skip_all, fields(target = %target.name))]
    async fn preflight_target(&self, target: &TargetConfig) -> TargetResult {
        let clock = Instant::now();
        let checked = async {
            let password = self.deps.passwords.resolve(&target.password).await?;
            let version = self
                .deps
                .dumper
                .preflight(&target.address(), &password)
                .await
                .map(|facts| facts.version)
                .map_err(BackupFailure::Preflight);
            Ok::<_, BackupFailure>((version, password))
        }
        .await;
        let (outcome, message) = match checked {
            Ok((Ok(version), _)) => (
                TargetOutcome::DryRun,
                format!(
                    "dry run: would back up database {:?} on {}:{} (PostgreSQL {version}) to s3://{}/{}{}/ with {} level {}",
                    target.database, target.host, target.port, self.config.bucket, self.config.key_prefix, target.name,
                    self.config.codec.name(), self.config.compression_level
                ),
            ),
            Ok((Err(failure), password)) => (TargetOutcome::Failed, redact(&format!("dry run: {failure}"), &[&password])),
            Err(failure) => (TargetOutcome::Failed, format!("dry run: {failure}")),
        };
        TargetResult {
            target: target.name.clone(),
            outcome,
            backup_id: None,
            message,
            duration_ms: clock.elapsed().as_millis() as u64,
        }
    }

    /// One target: idempotency claim → lease → backup → release, never more than one backup per delivery.
    #[instrument(skip_all, fields(target = %target.name))]
    async fn backup_target(&self, target: &TargetConfig, request: &BackupRequest, run_id: &str) -> TargetResult {
        let clock = Instant::now();
        let result = |outcome, backup_id, message: String| TargetResult {
            target: target.name.clone(),
            outcome,
            backup_id,
            message,
            duration_ms: clock.elapsed().as_millis() as u64,
        };
        let now = self.deps.clock.now();
        // The claim lasts as long as the lease: a claim whose run crashed stops blocking retries when the lease ends.
        let lease_expiry = expiry(now, self.config.lease);

        let claim = request.idempotency_key.as_ref().map(|key| IdempotencyClaim {
            key: key.clone(),
            target: target.name.clone(),
            owner: run_id.to_string(),
            now,
            expires_at: lease_expiry,
        });
        if let Some(claim) = &claim {
            match self.deps.catalog.claim_idempotency(claim).await {
                Ok(ClaimOutcome::Claimed) => {}
                Ok(ClaimOutcome::AlreadyDone { backup_id }) => {
                    let message = format!("this event ({}) was already handled: backup {backup_id}", claim.key);
                    return result(TargetOutcome::SkippedDuplicate, Some(backup_id), message);
                }
                Ok(ClaimOutcome::InProgress { owner }) => {
                    let message = format!("another delivery of this event ({}) is running as run {owner}", claim.key);
                    return result(TargetOutcome::SkippedDuplicate, None, message);
                }
                Err(e) => return self.fail_before_start(target, request, run_id, e, result).await,
            }
        }

        let leases: Arc<dyn Leases> = self.deps.catalog.clone();
        let mut lease = match Lease::take(leases, &target.name, Job::Backup, run_id, now, self.config.lease).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(HeldBy { owner, expires_at })) => {
                self.settle(claim.as_ref(), ClaimSettlement::Released).await;
                let message =
                    format!("another run ({owner}) is backing up this target; its lease ends at {expires_at}");
                return result(TargetOutcome::SkippedLeaseHeld, None, message);
            }
            Err(e) => {
                self.settle(claim.as_ref(), ClaimSettlement::Released).await;
                return self.fail_before_start(target, request, run_id, e, result).await;
            }
        };

        // Renewed while the backup runs, so a live run always holds it: a run that finds the lease free may
        // take what another left `in_progress` as abandoned, and a killed run frees the target within one lease.
        lease.keep_renewed(self.deps.clock.clone(), self.config.lease);
        self.fail_abandoned_attempts(target, run_id).await;
        let record = self.backup_under_lease(target, request, run_id).await;

        lease.release().await;
        let settlement = match record.status {
            BackupStatus::Completed => ClaimSettlement::Completed {
                backup_id: record.backup_id.clone(),
                keep_until: self.deps.clock.now() + chrono::Duration::days(7),
            },
            _ => ClaimSettlement::Released,
        };
        let unsettled = self.settle(claim.as_ref(), settlement).await;

        match record.status {
            BackupStatus::Completed => {
                let dump = record.dump.as_ref().expect("a completed record has its dump");
                let mut message = format!(
                    "backup {} completed: {} tables, {} rows, {} of SQL stored as {} in s3://{}/{}",
                    record.backup_id,
                    record.table_count,
                    record.row_count,
                    human_bytes(record.raw_bytes),
                    human_bytes(dump.size),
                    self.config.bucket,
                    dump.key
                );
                if let Some(unsettled) = unsettled {
                    message = format!("{message}; {unsettled}");
                }
                result(TargetOutcome::Completed, Some(record.backup_id), message)
            }
            _ => {
                let message =
                    format!("backup {} failed: {}", record.backup_id, record.error.clone().unwrap_or_default());
                result(TargetOutcome::Failed, Some(record.backup_id), message)
            }
        }
    }

    /// Settles the delivery's claim; what went wrong, for the run's result, when it could not be.
    async fn settle(&self, claim: Option<&IdempotencyClaim>, settlement: ClaimSettlement) -> Option<String> {
        let claim = claim?;
        let error = self.deps.catalog.settle_idempotency(claim, settlement).await.err()?;
        warn!(error = %error, "could not settle the idempotency claim; it expires by itself");
        Some(format!("the event's claim could not be settled ({error}), so a redelivery of it may run again"))
    }

    /// The catalog failed before a backup could start: nothing to clean up, but it is a failure and is alerted.
    async fn fail_before_start(
        &self,
        target: &TargetConfig,
        request: &BackupRequest,
        run_id: &str,
        error: CatalogError,
        result: impl Fn(TargetOutcome, Option<BackupId>, String) -> TargetResult,
    ) -> TargetResult {
        let failure = BackupFailure::Catalog(error);
        let reason = failure.to_string();
        let aftermath = "Nothing was dumped or written.";
        self.alert(&backup_failed_alert(target, None, request.trigger, run_id, &reason, failure.hint(), aftermath))
            .await;
        self.emit_metrics(&target.name, 0.0, 0, 0, false);
        result(TargetOutcome::Failed, None, format!("the backup could not start: {reason}"))
    }

    /// Creates the record, runs the backup, and settles the record as `completed` or `failed`.
    async fn backup_under_lease(&self, target: &TargetConfig, request: &BackupRequest, run_id: &str) -> BackupRecord {
        let started_at = self.deps.clock.now();
        let clock = Instant::now();
        let backup_id = BackupId::new(started_at);
        let keys = ObjectKeys::new(&self.config.key_prefix, &target.name, &backup_id, started_at, self.config.codec);
        let mut record =
            BackupRecord::in_progress(&target.name, backup_id, request.trigger, run_id, started_at, self.config.codec);
        self.progress.reset();

        let mut secrets: Vec<SecretString> = Vec::new();
        let mut open_upload = None;
        let created = self.deps.catalog.create_backup(&record).await;
        let record_exists = created.is_ok();
        let outcome = match created {
            Err(e) => Err(BackupFailure::Catalog(e)),
            Ok(()) => {
                let work = self.dump_and_store(target, &keys, &mut record, &mut secrets, &mut open_upload);
                match request.deadline {
                    // Stopping in time leaves room to abort, clean up, record and alert: a Lambda killed at its
                    // time limit could do none of it.
                    Some(deadline) => tokio::time::timeout_at(deadline, work)
                        .await
                        .unwrap_or_else(|_| Err(BackupFailure::OutOfTime { seconds: clock.elapsed().as_secs() })),
                    None => work.await,
                }
            }
        };
        record.finished_at = Some(self.deps.clock.now());
        let seconds = clock.elapsed().as_secs_f64();

        let outcome = match outcome {
            Ok(()) => self.record_completed(&mut record).await,
            Err(failure) => Err(failure),
        };
        let failure = match outcome {
            Ok(()) => {
                let stored = record.dump.as_ref().map_or(0, |d| d.size);
                self.emit_metrics(&target.name, seconds, record.raw_bytes, stored, true);
                info!(backup_id = %record.backup_id, seconds, raw_bytes = record.raw_bytes, stored_bytes = stored, "backup completed");
                if !record.warnings.is_empty() {
                    warn!(backup_id = %record.backup_id, warnings = ?record.warnings, "pg_dump warned");
                    if self.warnings_are_news(&record).await {
                        self.alert(&backup_warned_alert(target, &record)).await;
                    }
                }
                if self.config.notify_success {
                    self.alert(&backup_succeeded_alert(target, &record, &self.config.bucket)).await;
                }
                return record;
            }
            Err(failure) => failure,
        };

        let secret_refs: Vec<&SecretString> = secrets.iter().collect();
        let reason = redact(&failure.to_string(), &secret_refs);
        warn!(backup_id = %record.backup_id, reason = %reason, "backup failed");
        let cleanup = match failure {
            // The record may say completed after all: its objects must stay.
            BackupFailure::Unconfirmed { .. } => {
                "The objects it stored were kept, because the record may say completed.".to_string()
            }
            _ => self.undo(open_upload, &keys.attempt_prefix).await,
        };
        record.status = BackupStatus::Failed;
        record.error = Some(reason.clone());
        record.dump = None;
        record.manifest = None;
        record.roles = None;
        let recorded = if !record_exists {
            "No backup record could be created.".to_string()
        } else {
            match self.deps.catalog.update_backup(&record, BackupStatus::InProgress).await {
                Ok(()) => "The backup record is marked failed.".to_string(),
                Err(e) => {
                    warn!(error = %e, "could not record the failure");
                    format!("The failure could not be recorded in the catalog either ({e}).")
                }
            }
        };
        self.emit_metrics(
            &target.name,
            seconds,
            self.progress.raw_bytes.load(std::sync::atomic::Ordering::Relaxed),
            0,
            false,
        );
        let aftermath = format!("{cleanup} {recorded}");
        self.alert(&backup_failed_alert(
            target,
            Some(&record.backup_id),
            request.trigger,
            run_id,
            &reason,
            failure.hint(),
            &aftermath,
        ))
        .await;
        record
    }

    /// Marks the record completed. A write whose answer was lost may still have landed (and the SDK's retry of
    /// it then fails its condition), so a failed write is read back before it counts as a failure.
    async fn record_completed(&self, record: &mut BackupRecord) -> Result<(), BackupFailure> {
        record.status = BackupStatus::Completed;
        let Err(write_error) = self.deps.catalog.update_backup(record, BackupStatus::InProgress).await else {
            return Ok(());
        };
        let read_back = self.deps.catalog.get_backup(&record.target, &record.backup_id).await;
        record.status = BackupStatus::InProgress;
        match read_back {
            Ok(Some(stored)) if stored.status == BackupStatus::Completed && stored.dump == record.dump => {
                record.status = BackupStatus::Completed;
                Ok(())
            }
            Ok(_) => Err(BackupFailure::Catalog(write_error)),
            Err(read_error) => Err(BackupFailure::Unconfirmed { write_error, read_error }),
        }
    }

    /// The targets `named` names (`None`: every configured target, then every server target's databases), with
    /// each server target among them discovered now (unless `Discovery::None`): a new database is backed up by
    /// the run that finds it. A database of a server named alone (`<server>.<database>`, a unit of a fan-out)
    /// is taken from the inventory the configuration was loaded with: units never discover.
    async fn resolve(&self, named: Option<&[String]>, discovery: Discovery) -> Result<Resolved, ResolveError> {
        let discover = discovery != Discovery::None;
        let servers: Vec<&TargetConfig> = match named {
            _ if !discover => Vec::new(),
            None => self.config.servers.iter().collect(),
            Some(names) => self.config.servers.iter().filter(|s| names.contains(&s.name)).collect(),
        };
        let discovered =
            self.discover(&servers, discovery == Discovery::Recorded).await.map_err(ResolveError::Inventories)?;
        let failed_servers =
            discovered.iter().filter_map(|d| d.failure.clone().map(|why| (d.server.clone(), why))).collect();
        let of_server = |name: &str| discovered.iter().find(|d| d.server == name).map(|d| d.targets.clone());
        let targets = match named {
            None if discovery == Discovery::None => self.config.targets.clone(),
            None => {
                let configured = self.config.targets.iter().filter(|t| !t.is_discovered()).cloned();
                configured.chain(discovered.iter().flat_map(|d| d.targets.clone())).collect()
            }
            Some(names) => {
                let mut targets = Vec::new();
                for name in names {
                    match of_server(name) {
                        Some(found) => targets.extend(found),
                        None => targets.extend(select_targets(&self.config, Some(name))?.into_iter().cloned()),
                    }
                }
                targets
            }
        };
        Ok(Resolved { targets, failed_servers })
    }

    /// The units a fan-out runs, one per target (every configured one, in the configuration's order, then every
    /// server target's databases as discovered now; or those `named`, each a configured target, a server target
    /// for all its databases, or one of them), each with where it runs and why: [`runner::decide`] on the
    /// target's recent backups. Without the Fargate runner deployed, a unit that would go there runs on Lambda,
    /// and its reasons say so.
    pub async fn fan_out(&self, named: Option<&[String]>) -> Result<Vec<PlannedUnit>, FanOutError> {
        self.planned(named, Discovery::Recorded).await
    }

    /// The units [`Self::fan_out`] would run, with server targets' databases as their last discovery found them:
    /// reads the catalog, writes nothing, alerts nobody (`backstop runners`).
    pub async fn plan(&self, named: Option<&[String]>) -> Result<Vec<PlannedUnit>, FanOutError> {
        self.planned(named, Discovery::None).await
    }

    async fn planned(&self, named: Option<&[String]>, discovery: Discovery) -> Result<Vec<PlannedUnit>, FanOutError> {
        let targets = match self.resolve(named, discovery).await {
            Ok(resolved) => resolved.targets,
            Err(ResolveError::Unknown(e)) => return Err(e.into()),
            Err(ResolveError::Inventories(e)) => return Err(FanOutError::Inventories(e)),
        };
        let mut units = Vec::with_capacity(targets.len());
        for target in &targets {
            let records = self
                .deps
                .catalog
                .recent_backups(&target.name, runner::RUNS_WEIGHED + ABANDONED_LOOKBACK)
                .await
                .map_err(|cause| FanOutError::History { target: target.name.clone(), cause })?;
            let evidence = Evidence::of_backups(&records, target.size_gb);
            let decision = runner::decide(Work::Backup, target.runner, &evidence, LAMBDA_BUDGET_SECONDS);
            let decision = if self.config.fargate { decision } else { decision.without_fargate() };
            units.push(PlannedUnit { target: target.name.clone(), runner: decision });
        }
        Ok(units)
    }

    /// The failure path of a run that died (the backup state machine caught its invocation's timeout or crash;
    /// `why` is what Step Functions said): under the target's lease, fails what the run left in progress,
    /// removes what it wrote and alerts, as the target's next run would, only sooner. A run that recorded
    /// nothing since `since` died before it began, and is alerted as such; one that finished (its answer was
    /// lost) is left alone. `Ok(Err(held))`: the dead run's lease has not lapsed yet (it does within one
    /// lease): try again later.
    pub async fn fail_stopped_run(
        &self,
        target: &str,
        why: &str,
        since: DateTime<Utc>,
        trigger: Trigger,
    ) -> Result<Result<StoppedRun, HeldBy>, StoppedRunError> {
        let target = select_targets(&self.config, Some(target))?[0];
        let run_id = uuid::Uuid::new_v4().to_string();
        let leases: Arc<dyn Leases> = self.deps.catalog.clone();
        let now = self.deps.clock.now();
        let lease = match Lease::take(leases, &target.name, Job::Backup, &run_id, now, self.config.lease).await? {
            Ok(lease) => lease,
            Err(held) => return Ok(Err(held)),
        };
        // One read serves both questions: what the dead run left, and whether it recorded anything at all.
        let records = match self.deps.catalog.recent_backups(&target.name, ABANDONED_LOOKBACK).await {
            Ok(records) => records,
            Err(e) => {
                lease.release().await;
                return Err(e.into());
            }
        };
        let failed = self.fail_abandoned_in(target, &run_id, &records).await;
        lease.release().await;
        let nothing_recorded = failed.is_empty() && !records.iter().any(|r| r.started_at >= since);
        if nothing_recorded {
            let reason = format!("the backup run stopped before it recorded a backup ({why})");
            let aftermath = "It stopped before it created its record, so it wrote nothing.";
            self.alert(&backup_failed_alert(target, None, trigger, &run_id, &reason, STOPPED_HINT, aftermath)).await;
            self.emit_metrics(&target.name, 0.0, 0, 0, false);
        }
        Ok(Ok(StoppedRun { target: target.name.clone(), failed, nothing_recorded }))
    }

    /// Fails what a stopped run left `in_progress` for this target: a Lambda timeout or out-of-memory kill, a
    /// stopped task, a killed process. This run holds the target's lease, which a live run keeps renewed, so no
    /// run is still making them. Each record is marked `failed` (conditionally: of two runs that find it, one
    /// wins and does the rest), what its run wrote is removed (open uploads aborted, every object version under
    /// its keys deleted), and one alert says so.
    /// Returns the records this run failed.
    async fn fail_abandoned_attempts(&self, target: &TargetConfig, run_id: &str) -> Vec<BackupId> {
        match self.deps.catalog.recent_backups(&target.name, ABANDONED_LOOKBACK).await {
            Ok(records) => self.fail_abandoned_in(target, run_id, &records).await,
            Err(e) => {
                warn!(error = %e, "cannot look for backups a stopped run left in progress; the next run looks again");
                Vec::new()
            }
        }
    }

    /// [`Self::fail_abandoned_attempts`] on records already read.
    async fn fail_abandoned_in(&self, target: &TargetConfig, run_id: &str, records: &[BackupRecord]) -> Vec<BackupId> {
        let mut failed = Vec::new();
        let abandoned = records.iter().filter(|r| r.status == BackupStatus::InProgress && r.run_id != run_id);
        for record in abandoned {
            let mut record = record.clone();
            let reason = format!(
                "the run that started this backup ({}, at {}) stopped without finishing it: it was killed, timed out, ran \
                 out of memory or was stopped (found by run {run_id}, which holds the target's lease now)",
                record.run_id,
                record.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            record.status = BackupStatus::Failed;
            record.error = Some(reason.clone());
            record.finished_at = Some(self.deps.clock.now());
            match self.deps.catalog.update_backup(&record, BackupStatus::InProgress).await {
                Ok(()) => {}
                // Another run marked it first, and cleans up and alerts.
                Err(CatalogError::Conflict { .. }) => continue,
                Err(e) => {
                    warn!(error = %e, backup_id = %record.backup_id, "cannot mark an abandoned backup failed; the next run tries again");
                    continue;
                }
            }
            let prefix = attempt_prefix(&record, &self.config.key_prefix);
            let cleanup = self.discard_abandoned(&target.name, &prefix).await;
            warn!(backup_id = %record.backup_id, stopped_run = %record.run_id, cleanup = %cleanup, "failed a backup its run abandoned");
            self.emit_metrics(&target.name, 0.0, 0, 0, false);
            let aftermath = format!("{cleanup} The backup record is marked failed.");
            self.alert(&backup_failed_alert(
                target,
                Some(&record.backup_id),
                record.trigger,
                &record.run_id,
                &reason,
                STOPPED_HINT,
                &aftermath,
            ))
            .await;
            failed.push(record.backup_id);
        }
        failed
    }

    /// Removes what an abandoned attempt wrote: its multipart uploads (found by listing: the run that opened
    /// them is gone) and every object version under its keys. Says what it did, for the alert.
    async fn discard_abandoned(&self, target: &str, attempt_prefix: &str) -> String {
        let (mut aborted, mut problems) = (0, Vec::new());
        // Listed under the target's folder (S3 lists uploads by prefix), then narrowed to this attempt's keys.
        let target_prefix = format!("{}{target}/", self.config.key_prefix);
        match self.deps.store.open_uploads(&target_prefix).await {
            Ok(uploads) => {
                for upload in uploads.iter().filter(|u| u.key.starts_with(attempt_prefix)) {
                    match self.deps.store.abort_upload(upload).await {
                        Ok(()) => aborted += 1,
                        Err(e) => problems.push(format!(
                            "the upload of {} could not be aborted ({e}); the bucket's lifecycle rule removes it within a day",
                            upload.key
                        )),
                    }
                }
            }
            Err(e) => problems.push(format!("its open uploads could not be listed ({e})")),
        }
        let mut done = Vec::new();
        if aborted > 0 {
            done.push(format!("{aborted} multipart upload(s) it left open were aborted"));
        }
        self.delete_attempt_versions(attempt_prefix, &mut done, &mut problems).await;
        cleanup_summary("that attempt", &done, &problems, " (the next purge deletes what a failed backup left)")
    }

    /// Deletes every object version under `attempt_prefix`, adding what it deleted to `done` and what it could
    /// not to `problems`. Listed rather than remembered: a write cut off by a deadline may have landed unseen.
    async fn delete_attempt_versions(&self, attempt_prefix: &str, done: &mut Vec<String>, problems: &mut Vec<String>) {
        let versions = match self.deps.store.versions(attempt_prefix).await {
            Ok(versions) => versions,
            Err(e) => return problems.push(format!("its objects ({attempt_prefix}*) could not be listed: {e}")),
        };
        let (mut deleted, mut undeletable) = (0, Vec::new());
        for version in &versions {
            match self.deps.store.delete_version(&version.stored()).await {
                Ok(()) => deleted += 1,
                Err(e) => {
                    warn!(error = %e, key = %version.key, "deleting an object of a failed backup failed");
                    undeletable.push(format!("{} could not be deleted", version.key));
                }
            }
        }
        if !undeletable.is_empty() {
            problems.extend(undeletable);
        } else if deleted > 0 {
            done.push(format!("the {deleted} object version(s) it had written were deleted"));
        }
    }

    /// Undoes a failed attempt: aborts its open upload and deletes every object version under its keys, so
    /// nothing under its id can be taken for a backup. Says what it did, for the alert.
    async fn undo(&self, open_upload: Option<Arc<dyn MultipartUpload>>, attempt_prefix: &str) -> String {
        let (mut done, mut problems) = (Vec::new(), Vec::new());
        if let Some(upload) = open_upload {
            match upload.abort().await {
                Ok(()) => done.push("its multipart upload was aborted".to_string()),
                Err(e) => {
                    warn!(error = %e, key = %upload.key(), "aborting the multipart upload failed");
                    problems.push(format!(
                        "the upload of {} could not be aborted (the bucket's lifecycle rule removes it within a day)",
                        upload.key()
                    ));
                }
            }
        }
        self.delete_attempt_versions(attempt_prefix, &mut done, &mut problems).await;
        cleanup_summary("this attempt", &done, &problems, "")
    }

    /// The work proper. The upload it opens is left in `open_upload` until completed, for the caller to abort.
    async fn dump_and_store(
        &self,
        target: &TargetConfig,
        keys: &ObjectKeys,
        record: &mut BackupRecord,
        secrets: &mut Vec<SecretString>,
        open_upload: &mut Option<Arc<dyn MultipartUpload>>,
    ) -> Result<(), BackupFailure> {
        let password = self.deps.passwords.resolve(&target.password).await?;
        secrets.push(password.clone());
        let facts = self.deps.dumper.preflight(&target.address(), &password).await.map_err(BackupFailure::Preflight)?;

        record.dump_started_at = Some(self.deps.clock.now());
        let mut dump = self
            .deps
            .dumper
            .start_dump(&target.address(), &password, &facts.session.client_encoding)
            .await
            .map_err(BackupFailure::StartDump)?;
        let stdout = dump.take_stdout();
        let streaming = async {
            // If this fails, `dump` is dropped with this future and the process is killed with it.
            let upload = self.deps.store.create_multipart(&keys.dump, self.config.codec.content_type()).await?;
            *open_upload = Some(upload.clone());
            let streamed = stream_to_upload(stdout, upload.clone(), self.settings, self.progress.clone()).await;
            let exit = dump.wait().await;
            let exited_at = self.deps.clock.now();
            match (streamed, exit.success) {
                (Ok(streamed), true) => Ok((upload, streamed, exited_at, dump_warnings(&exit.stderr_tail))),
                // pg_dump's own message is the cause; a broken stream is only its symptom.
                (_, false) => Err(BackupFailure::DumpExited { status: exit.status, stderr_tail: exit.stderr_tail }),
                (Err(e), true) => Err(BackupFailure::Stream(e)),
            }
        };
        // The roles are another object: they are dumped and stored while pg_dump runs, not before it (that held
        // the dump back by a client program, a connection and an upload).
        let (roles_ref, (upload, streamed, exited_at, warnings)) =
            both_or_neither(self.dump_and_store_roles(target, &password, keys), streaming).await?;
        record.dump_finished_at = Some(exited_at);
        record.warnings = warnings;
        record.roles = Some(roles_ref.object.clone());
        let dump_version = upload.complete(streamed.parts.clone()).await?;
        *open_upload = None;

        let DumpSummary { fingerprint, versions, raw_bytes, tablespaces } = streamed.summary;
        let dump_ref = ObjectRef {
            key: dump_version.key,
            version_id: dump_version.version_id,
            size: streamed.stored_bytes,
            sha256: streamed.sha256,
        };
        record.dump = Some(dump_ref.clone());
        record.raw_bytes = raw_bytes;
        record.table_count = fingerprint.tables.len() as u64;
        record.row_count = fingerprint.total_rows();
        record.server_version = versions.server_version.clone();
        record.pg_dump_version = versions.pg_dump_version.clone();

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            tool: TOOL.to_string(),
            target: ManifestTarget {
                name: target.name.clone(),
                host: target.host.clone(),
                port: target.port,
                database: target.database.clone(),
            },
            backup_id: record.backup_id.clone(),
            started_at: record.started_at,
            finished_at: self.deps.clock.now(),
            server_version: versions.server_version,
            pg_dump_version: versions.pg_dump_version,
            codec: self.config.codec,
            compression_level: self.config.compression_level,
            raw_bytes,
            restore_hint: restore_hint(
                self.config.codec,
                &self.config.bucket,
                &dump_ref,
                &roles_ref.object,
                &facts.session.client_encoding,
            ),
            dump: dump_ref,
            roles: roles_ref,
            fingerprint,
            layout: Some(streamed.layout),
            session: Some(facts.session),
            tablespaces,
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&manifest)?);
        let manifest_sha = sha256_hex(&body);
        let manifest_size = body.len() as u64;
        let stored = self.deps.store.put_object(&keys.manifest, body, "application/json").await?;
        record.manifest = Some(ObjectRef {
            key: stored.key,
            version_id: stored.version_id,
            size: manifest_size,
            sha256: manifest_sha,
        });
        Ok(())
    }

    /// `pg_dumpall --roles-only` into the attempt's roles object.
    async fn dump_and_store_roles(
        &self,
        target: &TargetConfig,
        password: &SecretString,
        keys: &ObjectKeys,
    ) -> Result<RolesRef, BackupFailure> {
        let roles = self.deps.dumper.dump_roles(&target.address(), password).await.map_err(BackupFailure::Roles)?;
        let sha256 = sha256_hex(&roles.sql);
        let size = roles.sql.len() as u64;
        let stored = self.deps.store.put_object(&keys.roles, roles.sql, "application/sql").await?;
        Ok(RolesRef {
            object: ObjectRef { key: stored.key, version_id: stored.version_id, size, sha256 },
            passwords_included: roles.passwords_included,
        })
    }

    async fn alert(&self, alert: &Alert) {
        publish_or_warn(self.deps.alerts.as_ref(), alert).await;
    }

    /// pg_dump's warnings are alerted when they change: the same warning on every hourly backup (a subscription
    /// a role that is not a superuser cannot dump) would page every hour for what was said once. Unknown (the
    /// catalog did not answer) counts as news.
    async fn warnings_are_news(&self, record: &BackupRecord) -> bool {
        let Ok(recent) = self.deps.catalog.recent_backups(&record.target, 10).await else { return true };
        let previous = recent.iter().find(|b| {
            b.backup_id != record.backup_id
                && b.started_at <= record.started_at
                && matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
        });
        previous.is_none_or(|b| b.warnings != record.warnings)
    }

    fn emit_metrics(&self, target: &str, seconds: f64, raw: u64, stored: u64, success: bool) {
        let line = emf_line(
            self.deps.clock.now(),
            &[("Target", target)],
            &[
                ("BackupDurationSeconds", Unit::Seconds, seconds),
                ("BackupRawBytes", Unit::Bytes, raw as f64),
                ("BackupStoredBytes", Unit::Bytes, stored as f64),
                ("BackupSuccess", Unit::Count, if success { 1.0 } else { 0.0 }),
            ],
        );
        self.deps.metrics.emit(&line);
    }
}

/// Runs a short piece of work beside a long one and returns both results, or the first failure. The long one is
/// dropped as soon as the short one fails (a dropped dump's process is killed); the short one always runs to its
/// end, so nothing it stores lands after the caller has cleaned up the attempt. When both fail, the long one's
/// error is the one returned: pg_dump's own message says more than a symptom beside it.
async fn both_or_neither<S, L, E>(
    short: impl std::future::Future<Output = Result<S, E>>,
    long: impl std::future::Future<Output = Result<L, E>>,
) -> Result<(S, L), E> {
    tokio::pin!(short, long);
    let mut short_done = None;
    loop {
        tokio::select! {
            done = &mut short, if short_done.is_none() => short_done = Some(done?),
            done = &mut long => {
                let short = match short_done {
                    Some(s) => Ok(s),
                    None => short.await,
                };
                return match (short, done) {
                    (Ok(s), Ok(l)) => Ok((s, l)),
                    (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
                };
            }
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The runbook's restore of a downloaded dump into a new database, all or nothing: `--single-transaction` alone
/// is not (pg_dump wraps large objects' data in a `BEGIN`/`COMMIT` of its own, which ends psql's transaction
/// early), so a restore that fails drops the database it created. One that cannot be created (it exists) is
/// left alone. A dump in another `encoding` than UTF-8 gets a database in its own (from `template0`, C locale,
/// which every encoding accepts): SQL_ASCII's bytes would not load into UTF-8, nor read back as dumped.
pub fn restore_command(codec: crate::pipeline::codec::Codec, file: &str, database: &str, encoding: &str) -> String {
    let createdb = if crate::domain::manifest::is_utf8(encoding) {
        format!("createdb {database}")
    } else {
        format!("createdb -T template0 -E {encoding} --locale=C {database}")
    };
    format!(
        "{createdb} && {{ ( set -o pipefail; {} {file} | psql -X -v ON_ERROR_STOP=1 --single-transaction -d {database} ) \
         || {{ dropdb {database}; echo 'restore failed: {database} dropped, nothing half-restored is left' >&2; false; }}; }}",
        codec.decompress_command()
    )
}

/// The runbook's commands for this very backup (docs/restore-runbook.md explains each step): fetch the exact
/// versions, check the SHA-256 *before* restoring (a cut-short stream piped into psql would commit what
/// arrived), roles first, then the dump into a new database, all or nothing.
fn restore_hint(
    codec: crate::pipeline::codec::Codec,
    bucket: &str,
    dump: &ObjectRef,
    roles: &ObjectRef,
    encoding: &str,
) -> String {
    let file = format!("dump.{}", codec.extension());
    let get = |o: &ObjectRef, out: &str| match &o.version_id {
        Some(v) => format!("aws s3api get-object --bucket {bucket} --key '{}' --version-id '{v}' {out}", o.key),
        None => format!("aws s3 cp 's3://{bucket}/{}' {out}", o.key),
    };
    // `&&` throughout: psql -f without ON_ERROR_STOP exits 0 past "role already exists", so the chain goes on.
    format!(
        "{} && {} && printf '%s  roles.sql\\n%s  {file}\\n' {} {} | sha256sum -c && psql -X -d postgres -f roles.sql && \
         {}",
        get(roles, "roles.sql"),
        get(dump, &file),
        roles.sha256,
        dump.sha256,
        restore_command(codec, &file, "NEW_DB", encoding)
    )
}

/// What cleaning up an attempt did, for its alert: `attempt` names it ("this attempt"), `after_incomplete`
/// follows the list of what could not be removed.
fn cleanup_summary(attempt: &str, done: &[String], problems: &[String], after_incomplete: &str) -> String {
    match (problems.is_empty(), done.is_empty()) {
        (true, true) => format!("Nothing of {attempt} had been written."),
        (true, false) => format!("Nothing of {attempt} was kept: {}.", done.join(" and ")),
        (false, _) => format!("Cleaning up {attempt} was incomplete: {}{after_incomplete}.", problems.join("; ")),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod both_or_neither_tests {
    use super::both_or_neither;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn the_long_one_is_dropped_when_the_short_one_fails() {
        let short = async { Err::<(), _>("short failed") };
        let long = std::future::pending::<Result<(), &str>>();
        let done = tokio::time::timeout(Duration::from_secs(5), both_or_neither(short, long)).await;
        assert_eq!(done.expect("not waiting for the long one"), Err("short failed"));
    }

    #[tokio::test]
    async fn the_short_one_runs_to_its_end_when_the_long_one_fails_first() {
        let short_finished = AtomicBool::new(false);
        let short = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            short_finished.store(true, Ordering::SeqCst);
            Err::<(), _>("short failed too")
        };
        let long = async { Err::<(), _>("long failed") };
        assert_eq!(both_or_neither(short, long).await, Err("long failed"), "the long one's error is the cause");
        assert!(short_finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn both_results_come_back_whichever_ends_first() {
        let slow_short = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(1)
        };
        assert_eq!(both_or_neither(slow_short, async { Ok(2) }).await, Ok((1, 2)));
        let slow_long = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(2)
        };
        assert_eq!(both_or_neither(async { Ok(1) }, slow_long).await, Ok((1, 2)));
    }
}
