//! Ports: the narrow interfaces jobs use to reach the world. AWS and process adapters implement them in
//! production (`adapters::{s3, dynamodb, sns, secrets, postgres}`); `adapters::memory` implements them in memory
//! for unit tests.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::discovery::ServerInventory;
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::health::AlertState;
use crate::domain::runbook::Runbook;
use crate::domain::DatabaseAddress;
use crate::domain::{BackupId, BackupRecord, BackupStatus, Job, RunRecord};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

// ---------------------------------------------------------------- object store

/// What kind of failure a call to a service met, for decisions and hints upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Too many requests: a later try may succeed.
    Throttled,
    /// The caller may not (IAM, a key policy, expired credentials): a person must change a permission.
    Denied,
    /// The resource is not there.
    NotFound,
    /// The service did not answer (no connection, a timeout) or failed on its side (a 5xx other than 503's
    /// slow-down): a later try may succeed.
    Unavailable,
    /// A condition failed or the resource is busy: another writer got there first.
    Conflict,
    Other,
}

impl AwsErrorKind {
    /// A failure that mends by itself in time (throttled, no answer): a later try may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, AwsErrorKind::Throttled | AwsErrorKind::Unavailable)
    }
}

/// A failed call to a service: what kind of failure, the service's error code, and the text for people. The
/// adapters keep it as their errors' source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct ServiceFailure {
    pub kind: AwsErrorKind,
    /// The service's error code (`AccessDenied`, `ThrottlingException`, …), when it answered.
    pub code: Option<String>,
    pub text: String,
}

impl ServiceFailure {
    /// The kind of failure, when `cause` is a service's (an adapter's error keeps it as its cause).
    pub fn kind_of(cause: &BoxError) -> Option<AwsErrorKind> {
        cause.downcast_ref::<ServiceFailure>().map(|failure| failure.kind)
    }
}

// Errors here (and in the jobs) print their cause in their own message and keep it as a plain field, not as a
// `source()`: a reporter that walks the chain would print it twice. What a caller decides on, such as the kind
// of a service failure, it asks for by a method (`service_kind`), not by walking the chain.

#[derive(Debug, thiserror::Error)]
#[error("{operation} on s3 object {key:?} failed: {cause}")]
pub struct StoreError {
    pub operation: &'static str,
    pub key: String,
    pub cause: BoxError,
}

impl StoreError {
    /// What kind of failure the store met, when S3 answered (not a broken stream, say).
    pub fn service_kind(&self) -> Option<AwsErrorKind> {
        ServiceFailure::kind_of(&self.cause)
    }
}

/// A stored object version, as the store reports it after a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub key: String,
    pub version_id: Option<String>,
}

/// One object version or delete marker, as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedVersion {
    pub key: String,
    pub version_id: Option<String>,
    /// The key's latest version or marker. A recorded version that is not has a delete marker or a newer version
    /// over it: a lifecycle rule expiring noncurrent versions will delete it.
    pub current: bool,
}

impl ListedVersion {
    pub fn stored(&self) -> StoredVersion {
        StoredVersion { key: self.key.clone(), version_id: self.version_id.clone() }
    }
}

/// One part ready to upload, with its SHA-256 so the store can check what arrived.
#[derive(Debug, Clone)]
pub struct PartToUpload {
    pub number: u32,
    pub body: Bytes,
    pub sha256: [u8; 32],
}

/// What the store answered for an uploaded part; completing the upload needs it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: u32,
    pub etag: String,
    pub checksum_sha256: Option<String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Starts a multipart upload (encrypted as configured; parts checksummed).
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<Arc<dyn MultipartUpload>, StoreError>;
    /// Writes a small object in one request.
    async fn put_object(&self, key: &str, body: Bytes, content_type: &str) -> Result<StoredVersion, StoreError>;
    /// Every version (and delete marker) of the objects whose keys start with `prefix`.
    async fn versions(&self, prefix: &str) -> Result<Vec<ListedVersion>, StoreError>;
    /// Deletes one version for good (not a delete marker): undoes what a failed run wrote.
    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError>;
    /// What the store says about the key's *current* version.
    async fn head(&self, key: &str) -> Result<ObjectHead, StoreError>;
    /// Streams one exact version.
    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<FetchedObject, StoreError>;
    /// `len` bytes of one version from `start` (a ranged GET): a restore of a few tables reads only theirs.
    /// The head's `size` is the range's length.
    async fn get_range(
        &self,
        key: &str,
        version_id: Option<&str>,
        start: u64,
        len: u64,
    ) -> Result<FetchedObject, StoreError>;
    /// The `len` bytes of one version from `start`, read whole; an error names what was asked when fewer came.
    async fn read_range(&self, key: &str, version_id: Option<&str>, start: u64, len: u64) -> Result<Vec<u8>, String> {
        use tokio::io::AsyncReadExt;
        let mut fetched = self.get_range(key, version_id, start, len).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(len as usize);
        fetched
            .body
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("reading {len} bytes of {key} at {start}: {e}"))?;
        if bytes.len() as u64 != len {
            return Err(format!("asked {key} for {len} bytes at {start}, read {}", bytes.len()));
        }
        Ok(bytes)
    }
    /// Multipart uploads under `prefix` that were started and never completed nor aborted.
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError>;
    /// Aborts one, freeing the parts it stored (which S3 bills for, and lists nowhere else).
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError>;
}

/// A multipart upload nobody finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// A stored object's metadata: which version is current and how it is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub version_id: Option<String>,
    pub size: u64,
    /// `aws:kms`, `AES256`, or `None` when the store reports no encryption.
    pub server_side_encryption: Option<String>,
    pub kms_key_id: Option<String>,
}

/// An object being read: its metadata and its bytes as a stream.
pub struct FetchedObject {
    pub head: ObjectHead,
    pub body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

#[async_trait]
pub trait MultipartUpload: Send + Sync {
    fn key(&self) -> &str;
    async fn upload_part(&self, part: PartToUpload) -> Result<UploadedPart, StoreError>;
    async fn complete(&self, parts: Vec<UploadedPart>) -> Result<StoredVersion, StoreError>;
    async fn abort(&self) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------- catalog

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A conditional write found the record in another state than the writer expected.
    #[error("record {what} was not in the expected state ({expected}); another writer changed it")]
    Conflict { what: String, expected: String },
    #[error("catalog {operation} failed: {cause}")]
    Backend { operation: &'static str, cause: BoxError },
    #[error("catalog record {what} cannot be read: {message}")]
    Corrupt { what: String, message: String },
}

impl CatalogError {
    /// The answer to settling an idempotency claim that another run took over after ours expired.
    pub fn claim_taken_over(claim: &IdempotencyClaim) -> Self {
        CatalogError::Conflict {
            what: format!("the idempotency claim on event {} for target {}", claim.key, claim.target),
            expected: format!("running as run {}; another run took it over after it expired", claim.owner),
        }
    }

    /// What kind of failure the catalog met: a conditional write that lost is a conflict; DynamoDB's answers
    /// keep their own kind.
    pub fn service_kind(&self) -> Option<AwsErrorKind> {
        match self {
            CatalogError::Conflict { .. } => Some(AwsErrorKind::Conflict),
            CatalogError::Backend { cause, .. } => ServiceFailure::kind_of(cause),
            CatalogError::Corrupt { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub target: String,
    pub job: Job,
    /// The run that wants it; only this owner can release it.
    pub owner: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    HeldBy { owner: String, expires_at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The delivery's identity: the EventBridge event id, Scheduler execution id or Lambda request id.
    pub key: String,
    pub target: String,
    pub owner: String,
    pub now: DateTime<Utc>,
    /// A claim whose run crashed stops blocking retries after this.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// A delivery with this key already produced this backup.
    AlreadyDone {
        backup_id: BackupId,
    },
    /// Another delivery with this key is running right now.
    InProgress {
        owner: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSettlement {
    /// The claim is done: later deliveries of the same event are duplicates of this backup.
    Completed { backup_id: BackupId, keep_until: DateTime<Utc> },
    /// Nothing was produced; a retried delivery may try again.
    Released,
}

// The catalog is one DynamoDB table, seen through narrow ports: a job (or a function of one) asks for the
// part it uses, and a fake implements each part alone. `Catalog` is all of them, for the wiring.

/// Each job's lease on a target: one run at a time per target and job.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes the lease if it is free or expired; its holder calling again renews it (a heartbeat).
    async fn acquire_lease(&self, request: &LeaseRequest) -> Result<LeaseOutcome, CatalogError>;
    /// Releases the lease if `owner` still holds it; a lease already taken over is left alone.
    async fn release_lease(&self, target: &str, job: Job, owner: &str) -> Result<(), CatalogError>;
}

/// Idempotency claims: a delivery of an event (retried, or delivered twice) produces at most one backup.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Claims a delivery for `claim.owner`: free, or a running claim that expired (its run crashed).
    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> Result<ClaimOutcome, CatalogError>;
    /// Marks the owner's claim done, or releases it. Only the owner's own running claim is touched: a claim
    /// another run took over after ours expired is left as it is; marking it done then fails with `Conflict`
    /// (this run's backup stands, but the event is no longer known as handled), and releasing it does nothing.
    async fn settle_idempotency(
        &self,
        claim: &IdempotencyClaim,
        settlement: ClaimSettlement,
    ) -> Result<(), CatalogError>;
}

/// The backup records.
#[async_trait]
pub trait Backups: Send + Sync {
    /// Creates a record; fails with `Conflict` if one with the same id exists.
    async fn create_backup(&self, record: &BackupRecord) -> Result<(), CatalogError>;
    /// Replaces a record, only if its stored status is still `expected`.
    async fn update_backup(&self, record: &BackupRecord, expected: BackupStatus) -> Result<(), CatalogError>;
    async fn get_backup(&self, target: &str, backup_id: &BackupId) -> Result<Option<BackupRecord>, CatalogError>;
    /// The newest `limit` backups of a target, newest first.
    async fn recent_backups(&self, target: &str, limit: usize) -> Result<Vec<BackupRecord>, CatalogError>;
    /// The newest `limit` backups of a target whose ids (their start, to the second) are before `before`'s second
    /// or in it, newest first: how a restore finds a backup older than the newest records reach.
    async fn backups_started_before(
        &self,
        target: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BackupRecord>, CatalogError>;
}

/// The restore drills' records.
#[async_trait]
pub trait Drills: Send + Sync {
    /// Creates a drill record; fails with `Conflict` if the id exists.
    async fn create_drill(&self, drill: &DrillRecord) -> Result<(), CatalogError>;
    /// Replaces a drill record, only if its stored phase is still `expected`.
    async fn update_drill(&self, drill: &DrillRecord, expected: DrillPhase) -> Result<(), CatalogError>;
    /// A target's drills, newest first.
    async fn recent_drills(&self, target: &str, limit: usize) -> Result<Vec<DrillRecord>, CatalogError>;
    /// Of a target's newest `among_latest` drills, those not done, newest first. Only they are read back: a
    /// finished drill carries its whole report, which a run looking for drills to resume does not need.
    async fn unfinished_drills(&self, target: &str, among_latest: usize) -> Result<Vec<DrillRecord>, CatalogError>;
}

/// Each run's record (what it did, for the CLI's history and the audit trail).
#[async_trait]
pub trait Runs: Send + Sync {
    async fn put_run(&self, run: &RunRecord) -> Result<(), CatalogError>;
}

/// The monitor's alert state of each check, so an alert fires once, repeats after its cooldown and resolves.
#[async_trait]
pub trait AlertStates: Send + Sync {
    /// The alert state of each of a target's checks (absent: never alerted).
    async fn alert_states(&self, target: &str) -> Result<Vec<AlertState>, CatalogError>;
    async fn put_alert_state(&self, state: &AlertState) -> Result<(), CatalogError>;
}

/// What each server target's discovery last found (`domain::discovery`): written by the backup fan-out, read by
/// every job to know the databases a server target stands for.
#[async_trait]
pub trait Inventories: Send + Sync {
    /// Every server's inventory (one read serves a whole run).
    async fn inventories(&self) -> Result<Vec<ServerInventory>, CatalogError>;
    /// Stores a server's inventory unless a newer one (by `discovered_at`) is stored already: of two fan-outs
    /// racing, the later read of the server wins. `Ok(false)`: a newer one was kept.
    async fn put_inventory(&self, inventory: &ServerInventory) -> Result<bool, CatalogError>;
}

/// The whole catalog: every narrow port, as the one DynamoDB adapter (and the in-memory fake) implements them.
pub trait Catalog: Leases + Claims + Backups + Drills + Runs + AlertStates + Inventories {}

impl<T: Leases + Claims + Backups + Drills + Runs + AlertStates + Inventories + ?Sized> Catalog for T {}

// ---------------------------------------------------------------- alerts

pub use crate::domain::Severity;

/// A message for a person: subject, body, the runbook section to open, and the attributes subscription
/// filter policies select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub subject: String,
    pub body: String,
    pub severity: Severity,
    pub job: Job,
    pub target: Option<String>,
    /// Appended to the text as `Runbook: <link>` by [`Alert::text`].
    pub runbook: Option<Runbook>,
}

impl Alert {
    /// The message as sent: the body, then the runbook link under `runbook_url` (empty: a repository path).
    pub fn text(&self, runbook_url: &str) -> String {
        match &self.runbook {
            Some(runbook) => format!("{}\nRunbook: {}", self.body, runbook.link(runbook_url)),
            None => self.body.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("publishing the alert {subject:?} failed: {cause}")]
pub struct AlertError {
    pub subject: String,
    pub cause: BoxError,
}

#[async_trait]
pub trait Alerts: Send + Sync {
    async fn publish(&self, alert: &Alert) -> Result<(), AlertError>;
}

// ---------------------------------------------------------------- secrets

#[derive(Debug, thiserror::Error)]
#[error("reading secret {secret_id:?} failed: {message}")]
pub struct SecretError {
    pub secret_id: String,
    /// Never contains the secret's value.
    pub message: String,
    /// The service did not answer or throttled (after the SDK's retries): a later try may succeed.
    pub transient: bool,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret's string value (JSON for RDS-managed secrets).
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError>;
}

// ---------------------------------------------------------------- dumper

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot start {program}: {cause} (is the PostgreSQL client installed? set BACKSTOP_PG_BIN_DIR)")]
    Spawn { program: String, cause: std::io::Error },
    #[error("{program} failed ({status}): {stderr_tail}")]
    Failed { program: String, status: String, stderr_tail: String },
    #[error("{0}")]
    VersionMismatch(String),
    /// The program ran but is not a usable PostgreSQL client (its version cannot be read).
    #[error("{0}")]
    ClientUnusable(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a dump process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpExit {
    pub success: bool,
    /// `exit status 1`, `killed by signal 9`, …
    pub status: String,
    /// The last lines pg_dump wrote to stderr, secrets redacted.
    pub stderr_tail: String,
}

/// A running pg_dump: its SQL on `stdout`, its end by `wait`.
#[async_trait]
pub trait RunningDump: Send {
    /// Taken once; reading happens on a blocking thread.
    fn take_stdout(&mut self) -> Box<dyn Read + Send>;
    async fn wait(self: Box<Self>) -> DumpExit;
}

/// The roles a database needs, as SQL.
#[derive(Debug, Clone)]
pub struct RolesDump {
    pub sql: Bytes,
    pub passwords_included: bool,
}

/// What the pre-flight learned of the server: its version, and the session settings pg_dump's output depends
/// on and does not set itself (a restore drill reads the restored copy back under the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    pub session: crate::domain::manifest::DumpSession,
}

#[async_trait]
pub trait Dumper: Send + Sync {
    /// Checks that the client can dump the server (pg_dump refuses newer servers) and reads [`ServerFacts`].
    async fn preflight(&self, target: &DatabaseAddress, password: &SecretString) -> Result<ServerFacts, DumpError>;
    async fn dump_roles(&self, target: &DatabaseAddress, password: &SecretString) -> Result<RolesDump, DumpError>;
    /// The names of the server's databases that accept connections (templates left out), connecting to
    /// `target.database`: what a server target's discovery selects from.
    async fn list_databases(&self, target: &DatabaseAddress, password: &SecretString)
        -> Result<Vec<String>, DumpError>;
    /// pg_dump of `target.database`, written in `encoding` (the database's, which the pre-flight read): a
    /// `client_encoding` set on the database or the role would otherwise change what the dump is written in.
    async fn start_dump(
        &self,
        target: &DatabaseAddress,
        password: &SecretString,
        encoding: &str,
    ) -> Result<Box<dyn RunningDump>, DumpError>;
}

// ---------------------------------------------------------------- clock

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

// ---------------------------------------------------------------- scratch databases

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("{operation} failed: {message}")]
    Backend { operation: &'static str, message: String },
    #[error("scratch server {id} failed to come up: {message}")]
    Failed { id: String, message: String },
}

/// What a drill asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchSpec {
    /// The drill's id: names the scratch server, so asking twice (a resumed drill) finds the same one.
    pub drill_id: String,
    /// The source's PostgreSQL major version (a restore must not cross to an older server).
    pub engine_major: u32,
    /// Storage for the restored database, sized from the backup (about twice its SQL) in whole GiB, before any
    /// floor of the server's kind (RDS applies its own).
    pub storage_gib: u32,
    /// After this, the orphan sweeper destroys it whatever happened to the drill.
    pub expires_at: DateTime<Utc>,
}

pub use crate::domain::drill::ScratchHandle;

/// How to reach a ready scratch server as its administrator.
#[derive(Debug, Clone)]
pub struct ScratchEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    /// A database that always exists to connect to (`postgres`).
    pub maintenance_db: String,
    pub sslmode: String,
}

#[derive(Debug, Clone)]
pub enum ScratchState {
    /// Still being created: ask again later.
    Creating {
        status: String,
    },
    Ready(ScratchEndpoint),
}

/// Throwaway PostgreSQL servers for restore drills: an RDS instance in AWS, a local cluster elsewhere.
#[async_trait]
pub trait ScratchDatabases: Send + Sync {
    /// Starts creating the drill's server; if it already exists (a resumed drill), returns it.
    async fn create(&self, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError>;
    /// Whether a server is ready as soon as `create` returns (a local cluster), so the restore can follow in
    /// the same step; not when it takes minutes (RDS), in which the drill waits across steps and runs.
    fn ready_when_made(&self) -> bool {
        false
    }
    /// Whether the server is ready; when it is, how to reach it.
    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError>;
    /// Destroys the server (no final snapshot); a server already gone is not an error.
    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError>;
    /// Destroys every Backstop scratch server whose expiry has passed; returns what it destroyed.
    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Vec<ScratchHandle>, ScratchError>;
}

/// Point-in-time restores of an RDS source instance into a scratch instance (RDS only): the drill that proves
/// the source's own automated backups restore, and how far behind now they are.
#[async_trait]
pub trait PointInTimeRestores: Send + Sync {
    /// The newest time the source can be restored to; `None` when it has no automated backups.
    async fn latest_restorable_time(&self, source_instance: &str) -> Result<Option<DateTime<Utc>>, ScratchError>;
    /// Starts restoring the source as of `at` into the drill's scratch instance; idempotent for one drill.
    async fn restore(
        &self,
        source_instance: &str,
        at: DateTime<Utc>,
        drill_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<ScratchHandle, ScratchError>;
    /// Whether the copy is ready; it answers to the source's own user and password.
    async fn poll(
        &self,
        handle: &ScratchHandle,
        user: &str,
        password: SecretString,
    ) -> Result<ScratchState, ScratchError>;
    /// Deletes the copy (never the source); a copy already gone is not an error.
    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError>;
}

// ---------------------------------------------------------------- restorer

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot start {program}: {cause}")]
    Spawn { program: String, cause: std::io::Error },
    #[error("{program} failed ({status}): {stderr_tail}")]
    Failed { program: String, status: String, stderr_tail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The stored dump to restore: one exact version, with its layout.
pub struct FramedDump<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub codec: crate::domain::codec::Codec,
    pub layout: &'a crate::domain::dump_layout::DumpLayout,
    /// Read each table back as soon as its rows and builds are in, while the rest of the restore runs, for
    /// the check that follows (`None`: the restore only restores).
    pub read_early: Option<EarlyReadBack<'a>>,
    /// Says whether the server is ready for the restore's first statement (`true`) or will not be (`false`, or
    /// the sender dropped): the caller makes the roles and the database while the restore's first reads of the
    /// object go on. `None`: the server is ready now.
    pub server_ready: Option<tokio::sync::oneshot::Receiver<bool>>,
    /// The object's first reads, when the caller made them (a drill, while its scratch server was made);
    /// `None`: the restore starts them.
    pub opened: Option<OpenedDump>,
}

/// A framed dump's first reads: the object's in-order read, opened, and its tail read ahead.
pub struct OpenedDump {
    /// Behind a lock only so that the [`FramedDump`] carrying it can be shared across awaits (the body is not
    /// `Sync`); [`OpenedDump::object`] takes it.
    object: std::sync::Mutex<Result<FetchedObject, StoreError>>,
    /// The tail's bytes ([`crate::domain::dump_layout::DumpLayout::tail`]); `None` when it was not read ahead
    /// (no tail, or one over [`crate::domain::dump_layout::MAX_TAIL_AHEAD`]).
    pub tail: Option<Result<Vec<u8>, String>>,
}

impl OpenedDump {
    /// Opens one version of the object and reads its tail, side by side.
    pub async fn open(
        store: &dyn ObjectStore,
        key: &str,
        version_id: Option<&str>,
        layout: &crate::domain::dump_layout::DumpLayout,
    ) -> OpenedDump {
        let tail = layout.tail().filter(|tail| tail.stored_len <= crate::domain::dump_layout::MAX_TAIL_AHEAD);
        let read_tail = async {
            match tail {
                Some(tail) => Some(store.read_range(key, version_id, tail.stored_offset, tail.stored_len).await),
                None => None,
            }
        };
        let (object, tail) = tokio::join!(store.get(key, version_id), read_tail);
        OpenedDump { object: std::sync::Mutex::new(object), tail }
    }

    /// The object's opened read.
    pub fn object(self) -> Result<FetchedObject, StoreError> {
        self.object.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How to read tables back during a framed restore: the rows check the drill will make, and the session the
/// dump's rows were written under (`DumpSession`), which the reads take on so equal data reads as equal text.
#[derive(Clone, Copy)]
pub struct EarlyReadBack<'a> {
    pub rows: crate::domain::verification::RowCheck,
    pub session: &'a crate::domain::manifest::DumpSession,
}

/// A read-back a framed restore started (`EarlyReadBack`): each table is read as soon as its rows and builds
/// are in and nothing left to run in the restore could write to it, while the rest of the restore runs
/// (`adapters::read_back`). The check that follows in the same run hands it to the same restorer's
/// `read_back`, which reads the other tables beside it, then the sequences, the large objects and the schema:
/// nothing is verified before all of it has run on the whole copy. Dropping it stops it.
pub trait ReadBackUnderway: std::fmt::Debug + Send + Sync {
    /// The rows check it reads tables for.
    fn rows(&self) -> crate::domain::verification::RowCheck;
    /// Tables it has read so far.
    fn tables_read(&self) -> usize;
    /// For the restorer that started it, to take it back.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Some tables of a framed dump, restored in one transaction (`backstop restore --table`): fetched by ranged
/// reads of their chunks only, checked before the transaction commits.
pub struct TableLoad<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub codec: crate::domain::codec::Codec,
    /// Schemas the restored tables go into that the database lacks: created first, in the same transaction.
    pub create_schemas: Vec<String>,
    pub steps: Vec<LoadStep>,
    /// Each restored table and the rows and digest the backup holds for it.
    pub tables: Vec<TableToCheck>,
    /// Each sequence set (as restored: usable as a relation name) and the value the backup holds.
    pub sequences: Vec<crate::domain::dump_parser::SequenceValue>,
    /// The settings the rows were dumped under, to read them back as equal text.
    pub session: crate::domain::manifest::DumpSession,
}

/// One step of a table restore, in dump order.
pub enum LoadStep {
    Sql(String),
    /// One table's rows: the stored ranges `(offset, length)` of its chunks, the `COPY` line they start with,
    /// and the `COPY` that loads them (the table's restored name).
    Rows {
        ranges: Vec<(u64, u64)>,
        statement: String,
        restored_statement: String,
    },
}

#[derive(Debug, Clone)]
pub struct TableToCheck {
    /// `schema`, `name` as restored.
    pub restored: (String, String),
    /// `COPY … FROM stdin;` with the dump's column list, naming the restored table.
    pub copy_statement: String,
    pub expected_rows: u64,
    pub expected_digest: String,
}

/// What a table restore did. It committed only when every table and sequence read back as the backup holds it.
#[derive(Debug, Clone, Default)]
pub struct TableLoadReport {
    /// Rows and digest read back per restored table.
    pub found: Vec<crate::domain::fingerprint::TableFingerprint>,
    /// Each sequence's value read back (`None`: not found).
    pub sequences: Vec<(String, Option<(i64, bool)>)>,
    pub stored_bytes_read: u64,
    pub committed: bool,
}

/// What a framed restore did.
#[derive(Debug, Clone, Default)]
pub struct FramedRestoreReport {
    /// Rows the server accepted per table (`schema`, `name`).
    pub rows_loaded: std::collections::BTreeMap<(String, String), u64>,
    pub statements: usize,
    /// Foreign keys the server failed for a deadlock with another, run again alone.
    pub retried_alone: usize,
    /// Index and constraint builds handed to the loading connections as their table's rows came in, rather
    /// than after the last row.
    pub built_during_load: usize,
    /// The dump's event triggers were made after the statements pg_dump wrote after them (the materialized
    /// views' refreshes), as on the source (`domain::sql::statement::event_triggers_last`).
    pub event_triggers_moved_last: bool,
    /// The whole object as read by the hashing stream: its SHA-256 (hex), size and metadata.
    pub object_sha256: String,
    pub object_size: u64,
    pub object_head: Option<ObjectHead>,
    /// Why the object could not be hashed (the restore itself may still have run).
    pub object_error: Option<String>,
    /// Why the restore stopped, if it did: the object was still read to its end and hashed.
    pub restore_error: Option<String>,
    /// The read-back started while the restore ran, when it was asked for and the restore finished whole.
    pub read_early: Option<Arc<dyn ReadBackUnderway>>,
}

/// What `amcheck` found in a restored copy.
#[derive(Debug, Clone, Default)]
pub struct PhysicalCheckReport {
    /// Whether heaps were checked (`verify_heapam` needs PostgreSQL 14); B-tree indexes always are.
    pub heap_checked: bool,
    pub tables: u64,
    pub indexes: u64,
    /// Every problem amcheck reported, counted; the first ones kept with their relation.
    pub problem_count: u64,
    pub problems: Vec<String>,
}

/// Loads a dump into a scratch server and reads it back: with psql and pg_dump, and over several connections
/// for framed dumps.
#[async_trait]
pub trait Restorer: Send + Sync {
    /// The client programs' major version: psql restores and pg_dump re-reads only servers no newer than it.
    async fn client_major(&self) -> Result<u32, RestoreError>;
    /// Runs the roles script; "already exists" errors are expected on a server with its own roles and are
    /// returned as warnings, other errors too (a role the server forbids is not a failed restore).
    async fn restore_roles(&self, server: &ScratchEndpoint, sql: &[u8]) -> Result<Vec<String>, RestoreError>;
    /// Gives `database` the source database's own settings (`name=value`, as `ALTER DATABASE … SET`), after
    /// the restore (one could stop it: `default_transaction_read_only`), but not those about connections rather
    /// than data (`domain::manifest::for_a_copy`). Returns those not applied, each with why (left out, or a
    /// setting of an extension the server lacks): they are noted, not failed.
    async fn apply_database_settings(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        settings: &[String],
    ) -> Result<Vec<String>, RestoreError>;
    /// Gives the restored database the source database's owner, comment, privileges and role settings
    /// (`domain::database_properties`). Returns those not applied, each with the server's reason (a role the
    /// server lacks): they are noted, not failed.
    async fn apply_database_properties(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        properties: &crate::domain::database_properties::DatabaseProperties,
    ) -> Result<Vec<String>, RestoreError>;
    /// Makes each of the dump's `tablespaces` the server lacks, inside its own data directory (a scratch server's
    /// tablespaces go when it goes). Returns the names it made.
    async fn create_tablespaces(&self, server: &ScratchEndpoint, names: &[String])
        -> Result<Vec<String>, RestoreError>;
    /// Drops (if present) and creates `database` as the dump's `session` says: in its encoding (a dump in
    /// another encoding than UTF-8, SQL_ASCII's bytes above all, restores and reads back as dumped only into its
    /// own) and with the source database's locale, or the server's default when the server lacks it (then
    /// `Some` says so): a resumed restore starts from empty.
    async fn recreate_database(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        session: Option<&crate::domain::manifest::DumpSession>,
    ) -> Result<Option<String>, RestoreError>;
    /// Feeds plain SQL from `sql` (read on a blocking thread) to psql in one transaction, stopping at the
    /// first error.
    async fn restore_sql(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        sql: Box<dyn Read + Send>,
    ) -> Result<(), RestoreError>;
    /// Dumps `database` and reads its fingerprint off the stream, the same way the backup did.
    /// `scheme` is the backup fingerprint's algorithm (v1 or v2); `session`, the source settings the backup's
    /// pg_dump printed values with (time zone, bytea output), when its manifest records them.
    async fn fingerprint(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        scheme: &str,
        session: Option<&crate::domain::manifest::DumpSession>,
    ) -> Result<crate::domain::fingerprint::DumpSummary, RestoreError>;
    /// Restores a framed dump (manifest format 2) over several connections, reading its chunks from `store`.
    async fn restore_framed(
        &self,
        store: Arc<dyn ObjectStore>,
        server: &ScratchEndpoint,
        database: &str,
        dump: FramedDump<'_>,
    ) -> Result<FramedRestoreReport, RestoreError>;
    /// Restores some tables of a framed dump into `database` in one transaction, reading only their chunks,
    /// and commits only when each reads back as the backup holds it. `progress` hears stored bytes read of all.
    async fn restore_tables(
        &self,
        store: Arc<dyn ObjectStore>,
        server: &ScratchEndpoint,
        database: &str,
        load: TableLoad<'_>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<TableLoadReport, RestoreError>;
    /// Reads the restored copy back for a fingerprint-v2 comparison: its tables (rows, and digests unless
    /// `rows` says counts), sequences, large objects, and the schema digest of its schema-only dump. A
    /// read-back the restore started (`early`, for the same `rows`) is taken over: what it read is kept.
    async fn read_back(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        manifest: &crate::domain::Manifest,
        rows: crate::domain::verification::RowCheck,
        early: Option<Arc<dyn ReadBackUnderway>>,
    ) -> Result<crate::domain::fingerprint::Fingerprint, RestoreError>;
    /// The scratch server's version, as `SHOW server_version` gives it (e.g. `17.12 (Debian 17.12-0+deb13u1)`).
    async fn server_version(&self, server: &ScratchEndpoint) -> Result<String, RestoreError>;
    /// Checks the restored copy's pages with `amcheck`: heaps and B-tree indexes.
    async fn physical_check(
        &self,
        server: &ScratchEndpoint,
        database: &str,
    ) -> Result<PhysicalCheckReport, RestoreError>;
    /// Runs a user check read-only with a statement timeout; true when it returned exactly `t`.
    async fn check(
        &self,
        server: &ScratchEndpoint,
        database: &str,
        sql: &str,
        timeout: std::time::Duration,
    ) -> Result<bool, RestoreError>;
}
