//! In-memory adapters for unit tests, one for every port: an object store, a catalog with the same conditional
//! semantics as the DynamoDB adapter, an alert recorder, secrets, a scripted dumper, a fixed clock, scratch
//! servers, point-in-time copies and a scripted restorer; each with fault injection. Never wired in production.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::discovery::ServerInventory;
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::health::AlertState;
use crate::domain::DatabaseAddress;
use crate::domain::{BackupId, BackupRecord, BackupStatus, Job, RunRecord};
use crate::ports::*;

// ---------------------------------------------------------------- faults

/// Operations a fake is told to fail, by the name of the call it stands for (`"DeleteObject"`, `"GetItem"`):
/// how a test reaches a failure path that the real service takes only on a bad day.
#[derive(Default, Clone)]
pub struct Faults(Arc<Mutex<BTreeMap<&'static str, (AwsErrorKind, &'static str)>>>);

impl Faults {
    /// Every later call of `operation` fails, until [`Faults::heal`].
    pub fn fail(&self, operation: &'static str) {
        self.fail_as(operation, AwsErrorKind::Other);
    }

    /// Every later call of `operation` fails with a service failure of `kind` (access denied, throttled, …).
    pub fn fail_as(&self, operation: &'static str, kind: AwsErrorKind) {
        self.0.lock().unwrap().insert(operation, (kind, "injected failure"));
    }

    /// Every later call of `operation` fails with `message`, as the real program or server would word it.
    pub fn fail_saying(&self, operation: &'static str, message: &'static str) {
        self.0.lock().unwrap().insert(operation, (AwsErrorKind::Other, message));
    }

    pub fn heal(&self, operation: &'static str) {
        self.0.lock().unwrap().remove(operation);
    }

    fn failing(&self, operation: &str) -> Option<ServiceFailure> {
        let (kind, text) = *self.0.lock().unwrap().get(operation)?;
        Some(ServiceFailure { kind, code: None, text: text.into() })
    }

    fn store(&self, operation: &'static str, key: &str) -> Result<(), StoreError> {
        match self.failing(operation) {
            Some(failure) => Err(StoreError { operation, key: key.to_string(), cause: Box::new(failure) }),
            None => Ok(()),
        }
    }

    fn catalog(&self, operation: &'static str) -> Result<(), CatalogError> {
        match self.failing(operation) {
            Some(failure) => Err(CatalogError::Backend { operation, cause: Box::new(failure) }),
            None => Ok(()),
        }
    }

    fn scratch(&self, operation: &'static str) -> Result<(), ScratchError> {
        match self.failing(operation) {
            Some(failure) => Err(ScratchError::Backend { operation, message: failure.text }),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- object store

#[derive(Default)]
struct StoreState {
    /// key → versions, oldest first.
    objects: BTreeMap<String, Vec<(String, Bytes)>>,
    open_uploads: HashMap<String, BTreeMap<u32, Bytes>>,
    upload_started: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

/// Versioned object store in memory; can be told to fail part uploads to exercise fail-closed paths.
#[derive(Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<StoreState>>,
    fail_parts_from: Arc<AtomicU32>,
    /// Puts of keys ending with one of these fail.
    fail_puts: Arc<Mutex<Vec<String>>>,
    /// Calls that fail, by S3 operation name (`ListObjectVersions`, `DeleteObject`, `AbortMultipartUpload`, …).
    pub faults: Faults,
    /// How many times each key was read, by operation (`HeadObject`, `GetObject`).
    reads: Arc<Mutex<BTreeMap<(&'static str, String), u32>>>,
}

impl MemoryStore {
    /// Part uploads numbered `n` and above fail.
    pub fn fail_part_uploads_from(&self, n: u32) {
        self.fail_parts_from.store(n, Ordering::SeqCst);
    }

    /// Puts of keys ending with `suffix` fail (`.manifest.json`, `.roles.sql`).
    pub fn fail_puts_ending_with(&self, suffix: &str) {
        self.fail_puts.lock().unwrap().push(suffix.to_string());
    }

    /// Every version of every key, oldest first: what a failed run must not leave behind.
    pub fn all_versions(&self) -> Vec<(String, String)> {
        let state = self.state.lock().unwrap();
        state.objects.iter().flat_map(|(k, vs)| vs.iter().map(move |(v, _)| (k.clone(), v.clone()))).collect()
    }

    /// The current version's bytes.
    pub fn object_bytes(&self, key: &str) -> Option<Bytes> {
        self.state.lock().unwrap().objects.get(key).and_then(|v| v.last()).map(|(_, b)| b.clone())
    }

    /// Keys of the multipart uploads still open.
    pub fn open_upload_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().open_uploads.keys().cloned().collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }

    /// How many times `key` was read by `operation` (`HeadObject`, or `GetObject`, ranged reads included).
    pub fn reads(&self, operation: &'static str, key: &str) -> u32 {
        self.reads.lock().unwrap().get(&(operation, key.to_string())).copied().unwrap_or(0)
    }

    fn count_read(&self, operation: &'static str, key: &str) {
        *self.reads.lock().unwrap().entry((operation, key.to_string())).or_default() += 1;
    }

    fn store(&self, key: &str, body: Bytes) -> StoredVersion {
        let mut state = self.state.lock().unwrap();
        let versions = state.objects.entry(key.to_string()).or_default();
        let version_id = format!("v{}", versions.len() + 1);
        versions.push((version_id.clone(), body));
        StoredVersion { key: key.to_string(), version_id: Some(version_id) }
    }
}

fn store_error(operation: &'static str, key: &str, message: &str) -> StoreError {
    StoreError { operation, key: key.to_string(), cause: message.to_string().into() }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn create_multipart(&self, key: &str, _content_type: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        self.faults.store("CreateMultipartUpload", key)?;
        let mut state = self.state.lock().unwrap();
        state.open_uploads.insert(key.to_string(), BTreeMap::new());
        state.upload_started.insert(key.to_string(), chrono::Utc::now());
        drop(state);
        Ok(Arc::new(MemoryUpload { key: key.to_string(), store: self.clone() }))
    }

    async fn put_object(&self, key: &str, body: Bytes, _content_type: &str) -> Result<StoredVersion, StoreError> {
        if self.fail_puts.lock().unwrap().iter().any(|suffix| key.ends_with(suffix.as_str())) {
            return Err(store_error("PutObject", key, "injected failure"));
        }
        Ok(self.store(key, body))
    }

    async fn versions(&self, prefix: &str) -> Result<Vec<ListedVersion>, StoreError> {
        self.faults.store("ListObjectVersions", prefix)?;
        let state = self.state.lock().unwrap();
        Ok(state
            .objects
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .flat_map(|(key, versions)| {
                let latest = versions.len() - 1;
                versions.iter().enumerate().map(move |(at, (v, _))| ListedVersion {
                    key: key.clone(),
                    version_id: Some(v.clone()),
                    current: at == latest,
                })
            })
            .collect())
    }

    async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
        self.count_read("HeadObject", key);
        self.faults.store("HeadObject", key)?;
        let state = self.state.lock().unwrap();
        let (version, body) = state
            .objects
            .get(key)
            .and_then(|v| v.last())
            .ok_or_else(|| store_error("HeadObject", key, "no such key"))?;
        Ok(ObjectHead {
            version_id: Some(version.clone()),
            size: body.len() as u64,
            server_side_encryption: Some("aws:kms".into()),
            kms_key_id: None,
        })
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<FetchedObject, StoreError> {
        self.count_read("GetObject", key);
        self.faults.store("GetObject", key)?;
        let state = self.state.lock().unwrap();
        let versions = state.objects.get(key).ok_or_else(|| store_error("GetObject", key, "no such key"))?;
        let (version, body) = match version_id {
            Some(v) => versions
                .iter()
                .find(|(id, _)| id == v)
                .ok_or_else(|| store_error("GetObject", key, "no such version"))?,
            None => versions.last().expect("keys have versions"),
        };
        let head = ObjectHead {
            version_id: Some(version.clone()),
            size: body.len() as u64,
            server_side_encryption: Some("aws:kms".into()),
            kms_key_id: None,
        };
        Ok(FetchedObject { head, body: Box::new(std::io::Cursor::new(body.clone())) })
    }

    async fn get_range(
        &self,
        key: &str,
        version_id: Option<&str>,
        start: u64,
        len: u64,
    ) -> Result<FetchedObject, StoreError> {
        let mut whole = self.get(key, version_id).await?;
        let mut body = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut whole.body, &mut body).await.expect("memory reads do not fail");
        let end = start.checked_add(len).filter(|end| *end <= body.len() as u64 && len > 0);
        let Some(end) = end else {
            return Err(store_error("GetObject", key, "the range is outside the object"));
        };
        whole.head.size = len;
        let range = body[start as usize..end as usize].to_vec();
        Ok(FetchedObject { head: whole.head, body: Box::new(std::io::Cursor::new(range)) })
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        self.faults.store("ListMultipartUploads", prefix)?;
        let state = self.state.lock().unwrap();
        Ok(state
            .open_uploads
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|key| OpenUpload {
                key: key.clone(),
                upload_id: key.clone(),
                initiated: state.upload_started.get(key).copied(),
            })
            .collect())
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        self.faults.store("AbortMultipartUpload", &upload.key)?;
        self.state.lock().unwrap().open_uploads.remove(&upload.key);
        Ok(())
    }

    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError> {
        self.faults.store("DeleteObject", &version.key)?;
        let mut state = self.state.lock().unwrap();
        if let Some(versions) = state.objects.get_mut(&version.key) {
            versions.retain(|(v, _)| Some(v) != version.version_id.as_ref());
            if versions.is_empty() {
                state.objects.remove(&version.key);
            }
        }
        Ok(())
    }
}

struct MemoryUpload {
    key: String,
    store: MemoryStore,
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn upload_part(&self, part: PartToUpload) -> Result<UploadedPart, StoreError> {
        let fail_from = self.store.fail_parts_from.load(Ordering::SeqCst);
        if fail_from != 0 && part.number >= fail_from {
            return Err(store_error("UploadPart", &self.key, "injected failure"));
        }
        let mut state = self.store.state.lock().unwrap();
        let parts = state
            .open_uploads
            .get_mut(&self.key)
            .ok_or_else(|| store_error("UploadPart", &self.key, "no such upload"))?;
        parts.insert(part.number, part.body);
        Ok(UploadedPart {
            number: part.number,
            etag: format!("etag-{}", part.number),
            checksum_sha256: Some(hex::encode(part.sha256)),
        })
    }

    async fn complete(&self, parts: Vec<UploadedPart>) -> Result<StoredVersion, StoreError> {
        self.store.faults.store("CompleteMultipartUpload", &self.key)?;
        let uploaded = self
            .store
            .state
            .lock()
            .unwrap()
            .open_uploads
            .remove(&self.key)
            .ok_or_else(|| store_error("CompleteMultipartUpload", &self.key, "no such upload"))?;
        let mut body = Vec::new();
        for p in &parts {
            body.extend_from_slice(
                uploaded
                    .get(&p.number)
                    .ok_or_else(|| store_error("CompleteMultipartUpload", &self.key, "missing part"))?,
            );
        }
        Ok(self.store.store(&self.key, Bytes::from(body)))
    }

    async fn abort(&self) -> Result<(), StoreError> {
        self.store.faults.store("AbortMultipartUpload", &self.key)?;
        self.store.state.lock().unwrap().open_uploads.remove(&self.key);
        Ok(())
    }
}

// ---------------------------------------------------------------- catalog

#[derive(Default)]
struct CatalogState {
    leases: HashMap<(String, Job), (String, DateTime<Utc>)>,
    claims: HashMap<(String, String), Claim>,
    backups: BTreeMap<(String, BackupId), BackupRecord>,
    drills: BTreeMap<(String, String), DrillRecord>,
    runs: Vec<RunRecord>,
    alert_states: BTreeMap<(String, String), AlertState>,
    inventories: BTreeMap<String, ServerInventory>,
}

#[derive(Clone)]
enum Claim {
    Running { owner: String, expires_at: DateTime<Utc> },
    Done { backup_id: BackupId },
}

/// The catalog in memory, with the DynamoDB adapter's conditional behaviour.
#[derive(Default, Clone)]
pub struct MemoryCatalog {
    state: Arc<Mutex<CatalogState>>,
    /// Updates that would set this status fail as if DynamoDB were unreachable.
    fail_updates_to: Arc<Mutex<Option<BackupStatus>>>,
    /// Updates that would set this status land, but their answer is lost (an error comes back).
    lose_answers_to: Arc<Mutex<Option<BackupStatus>>>,
    /// Calls that fail, by the port method's name (`get_backup`, `acquire_lease`, …).
    pub faults: Faults,
}

impl MemoryCatalog {
    pub fn fail_updates_to(&self, status: BackupStatus) {
        *self.fail_updates_to.lock().unwrap() = Some(status);
    }

    /// Updates succeed again.
    pub fn heal_updates(&self) {
        *self.fail_updates_to.lock().unwrap() = None;
    }

    pub fn lose_answers_to(&self, status: BackupStatus) {
        *self.lose_answers_to.lock().unwrap() = Some(status);
    }

    pub fn backups(&self) -> Vec<BackupRecord> {
        self.state.lock().unwrap().backups.values().cloned().collect()
    }

    pub fn runs(&self) -> Vec<RunRecord> {
        self.state.lock().unwrap().runs.clone()
    }

    /// Every drill record, in id order.
    pub fn drills(&self) -> Vec<DrillRecord> {
        self.state.lock().unwrap().drills.values().cloned().collect()
    }

    pub fn lease_holder(&self, target: &str, job: Job) -> Option<String> {
        self.state.lock().unwrap().leases.get(&(target.to_string(), job)).map(|(o, _)| o.clone())
    }
}

#[async_trait]
impl Leases for MemoryCatalog {
    async fn acquire_lease(&self, r: &LeaseRequest) -> Result<LeaseOutcome, CatalogError> {
        self.faults.catalog("acquire_lease")?;
        let mut s = self.state.lock().unwrap();
        let key = (r.target.clone(), r.job);
        if let Some((owner, expires_at)) = s.leases.get(&key) {
            // Held by someone else until it expires; its own owner renews it.
            if *expires_at >= r.now && *owner != r.owner {
                return Ok(LeaseOutcome::HeldBy { owner: owner.clone(), expires_at: *expires_at });
            }
        }
        s.leases.insert(key, (r.owner.clone(), r.expires_at));
        Ok(LeaseOutcome::Acquired)
    }

    async fn release_lease(&self, target: &str, job: Job, owner: &str) -> Result<(), CatalogError> {
        self.faults.catalog("release_lease")?;
        let mut s = self.state.lock().unwrap();
        let key = (target.to_string(), job);
        if s.leases.get(&key).is_some_and(|(o, _)| o == owner) {
            s.leases.remove(&key);
        }
        Ok(())
    }
}

#[async_trait]
impl Claims for MemoryCatalog {
    async fn claim_idempotency(&self, c: &IdempotencyClaim) -> Result<ClaimOutcome, CatalogError> {
        self.faults.catalog("claim_idempotency")?;
        let mut s = self.state.lock().unwrap();
        let key = (c.key.clone(), c.target.clone());
        match s.claims.get(&key) {
            Some(Claim::Done { backup_id }) => return Ok(ClaimOutcome::AlreadyDone { backup_id: backup_id.clone() }),
            Some(Claim::Running { owner, expires_at }) if *expires_at >= c.now => {
                return Ok(ClaimOutcome::InProgress { owner: owner.clone() })
            }
            _ => {}
        }
        s.claims.insert(key, Claim::Running { owner: c.owner.clone(), expires_at: c.expires_at });
        Ok(ClaimOutcome::Claimed)
    }

    async fn settle_idempotency(&self, c: &IdempotencyClaim, settlement: ClaimSettlement) -> Result<(), CatalogError> {
        self.faults.catalog("settle_idempotency")?;
        let mut s = self.state.lock().unwrap();
        let key = (c.key.clone(), c.target.clone());
        // As DynamoDB's conditional writes: only this owner's running claim is settled.
        let ours = matches!(s.claims.get(&key), Some(Claim::Running { owner, .. }) if *owner == c.owner);
        match settlement {
            ClaimSettlement::Completed { .. } if !ours => Err(CatalogError::claim_taken_over(c)),
            ClaimSettlement::Completed { backup_id, .. } => {
                s.claims.insert(key, Claim::Done { backup_id });
                Ok(())
            }
            ClaimSettlement::Released => {
                if ours {
                    s.claims.remove(&key);
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Backups for MemoryCatalog {
    async fn create_backup(&self, record: &BackupRecord) -> Result<(), CatalogError> {
        self.faults.catalog("create_backup")?;
        let mut s = self.state.lock().unwrap();
        let key = (record.target.clone(), record.backup_id.clone());
        if s.backups.contains_key(&key) {
            return Err(CatalogError::Conflict { what: record.backup_id.to_string(), expected: "absent".into() });
        }
        s.backups.insert(key, record.clone());
        Ok(())
    }

    async fn update_backup(&self, record: &BackupRecord, expected: BackupStatus) -> Result<(), CatalogError> {
        self.faults.catalog("update_backup")?;
        if *self.fail_updates_to.lock().unwrap() == Some(record.status) {
            return Err(CatalogError::Backend { operation: "PutItem", cause: "injected failure".into() });
        }
        let mut s = self.state.lock().unwrap();
        let key = (record.target.clone(), record.backup_id.clone());
        match s.backups.get(&key) {
            Some(current) if current.status == expected => {
                s.backups.insert(key, record.clone());
                if *self.lose_answers_to.lock().unwrap() == Some(record.status) {
                    return Err(CatalogError::Backend { operation: "PutItem", cause: "injected lost answer".into() });
                }
                Ok(())
            }
            _ => Err(CatalogError::Conflict { what: record.backup_id.to_string(), expected: expected.to_string() }),
        }
    }

    async fn get_backup(&self, target: &str, backup_id: &BackupId) -> Result<Option<BackupRecord>, CatalogError> {
        self.faults.catalog("get_backup")?;
        Ok(self.state.lock().unwrap().backups.get(&(target.to_string(), backup_id.clone())).cloned())
    }

    async fn recent_backups(&self, target: &str, limit: usize) -> Result<Vec<BackupRecord>, CatalogError> {
        self.faults.catalog("recent_backups")?;
        let s = self.state.lock().unwrap();
        Ok(s.backups.values().rev().filter(|b| b.target == target).take(limit).cloned().collect())
    }

    async fn backups_started_before(
        &self,
        target: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        self.faults.catalog("recent_backups")?;
        let bound = crate::domain::backup::id_bound_after(before);
        let s = self.state.lock().unwrap();
        Ok(s.backups
            .values()
            .rev()
            .filter(|b| b.target == target && b.backup_id.as_str() < bound.as_str())
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Drills for MemoryCatalog {
    async fn create_drill(&self, drill: &DrillRecord) -> Result<(), CatalogError> {
        self.faults.catalog("create_drill")?;
        let mut s = self.state.lock().unwrap();
        let key = (drill.target.clone(), drill.drill_id.clone());
        if s.drills.contains_key(&key) {
            return Err(CatalogError::Conflict { what: drill.drill_id.clone(), expected: "absent".into() });
        }
        s.drills.insert(key, drill.clone());
        Ok(())
    }

    async fn update_drill(&self, drill: &DrillRecord, expected: DrillPhase) -> Result<(), CatalogError> {
        self.faults.catalog("update_drill")?;
        let mut s = self.state.lock().unwrap();
        let key = (drill.target.clone(), drill.drill_id.clone());
        match s.drills.get(&key) {
            Some(current) if current.phase == expected => {
                s.drills.insert(key, drill.clone());
                Ok(())
            }
            _ => Err(CatalogError::Conflict { what: drill.drill_id.clone(), expected: expected.to_string() }),
        }
    }

    async fn recent_drills(&self, target: &str, limit: usize) -> Result<Vec<DrillRecord>, CatalogError> {
        self.faults.catalog("recent_drills")?;
        let s = self.state.lock().unwrap();
        Ok(s.drills.values().rev().filter(|d| d.target == target).take(limit).cloned().collect())
    }

    async fn unfinished_drills(&self, target: &str, among_latest: usize) -> Result<Vec<DrillRecord>, CatalogError> {
        self.faults.catalog("unfinished_drills")?;
        let s = self.state.lock().unwrap();
        let latest = s.drills.values().rev().filter(|d| d.target == target).take(among_latest);
        Ok(latest.filter(|d| d.phase != DrillPhase::Done).cloned().collect())
    }
}

#[async_trait]
impl Runs for MemoryCatalog {
    async fn put_run(&self, run: &RunRecord) -> Result<(), CatalogError> {
        self.faults.catalog("put_run")?;
        self.state.lock().unwrap().runs.push(run.clone());
        Ok(())
    }
}

#[async_trait]
impl AlertStates for MemoryCatalog {
    async fn alert_states(&self, target: &str) -> Result<Vec<AlertState>, CatalogError> {
        self.faults.catalog("alert_states")?;
        let s = self.state.lock().unwrap();
        Ok(s.alert_states.values().filter(|a| a.target == target).cloned().collect())
    }

    async fn put_alert_state(&self, state: &AlertState) -> Result<(), CatalogError> {
        self.faults.catalog("put_alert_state")?;
        self.state
            .lock()
            .unwrap()
            .alert_states
            .insert((state.target.clone(), state.check.as_str().to_string()), state.clone());
        Ok(())
    }
}

#[async_trait]
impl Inventories for MemoryCatalog {
    async fn inventories(&self) -> Result<Vec<ServerInventory>, CatalogError> {
        self.faults.catalog("inventories")?;
        Ok(self.state.lock().unwrap().inventories.values().cloned().collect())
    }

    async fn put_inventory(&self, inventory: &ServerInventory) -> Result<bool, CatalogError> {
        self.faults.catalog("put_inventory")?;
        let mut state = self.state.lock().unwrap();
        if state.inventories.get(&inventory.server).is_some_and(|stored| stored.discovered_at > inventory.discovered_at)
        {
            return Ok(false);
        }
        state.inventories.insert(inventory.server.clone(), inventory.clone());
        Ok(true)
    }
}

// ---------------------------------------------------------------- alerts

/// Records every alert instead of sending it.
#[derive(Default, Clone)]
pub struct RecordingAlerts {
    sent: Arc<Mutex<Vec<Alert>>>,
    /// `Publish` fails (nothing is recorded) while set.
    pub faults: Faults,
}

impl RecordingAlerts {
    pub fn sent(&self) -> Vec<Alert> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Alerts for RecordingAlerts {
    async fn publish(&self, alert: &Alert) -> Result<(), AlertError> {
        if let Some(failure) = self.faults.failing("Publish") {
            return Err(AlertError { subject: alert.subject.clone(), cause: Box::new(failure) });
        }
        self.sent.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

// ---------------------------------------------------------------- secrets

#[derive(Default, Clone)]
pub struct MemorySecrets {
    pub secrets: HashMap<String, String>,
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError> {
        self.secrets.get(secret_id).map(|s| SecretString::from(s.clone())).ok_or_else(|| SecretError {
            secret_id: secret_id.into(),
            message: "no such secret".into(),
            transient: false,
        })
    }
}

// ---------------------------------------------------------------- dumper

/// How a scripted dump behaves.
#[derive(Clone, Debug)]
pub struct ScriptedDump {
    pub stdout: Vec<u8>,
    pub exit: DumpExit,
    /// Trickle the output slowly until the run is dropped (killed), like a dump too big for its time.
    pub stall: bool,
}

impl ScriptedDump {
    pub fn succeeding(sql: &[u8]) -> Self {
        ScriptedDump {
            stdout: sql.to_vec(),
            exit: DumpExit { success: true, status: "exit status 0".into(), stderr_tail: String::new() },
            stall: false,
        }
    }

    pub fn failing(partial_sql: &[u8], stderr: &str) -> Self {
        ScriptedDump {
            stdout: partial_sql.to_vec(),
            exit: DumpExit { success: false, status: "exit status 1".into(), stderr_tail: stderr.into() },
            stall: false,
        }
    }
}

/// A dumper that plays back a script and records the passwords it was handed (to check redaction).
#[derive(Clone)]
pub struct ScriptedDumper {
    pub dump: Arc<Mutex<ScriptedDump>>,
    pub roles_sql: Bytes,
    pub preflight_error: Arc<Mutex<Option<String>>>,
    /// `dump_roles` fails with this message while set.
    pub roles_error: Arc<Mutex<Option<String>>>,
    pub dumps_started: Arc<AtomicU32>,
    /// What `list_databases` answers: the server's databases, or the error it fails with.
    pub databases: Arc<Mutex<Result<Vec<String>, String>>>,
    /// `list_databases` never answers while set (a server that accepted the connection and hangs).
    pub list_hangs: Arc<std::sync::atomic::AtomicBool>,
}

impl ScriptedDumper {
    /// The server's databases, as `list_databases` answers from now on.
    pub fn set_databases(&self, names: &[&str]) {
        *self.databases.lock().unwrap() = Ok(names.iter().map(|n| n.to_string()).collect());
    }

    pub fn new(dump: ScriptedDump) -> Self {
        ScriptedDumper {
            dump: Arc::new(Mutex::new(dump)),
            roles_sql: Bytes::from_static(b"CREATE ROLE app_owner;\n"),
            preflight_error: Arc::default(),
            roles_error: Arc::default(),
            dumps_started: Arc::default(),
            databases: Arc::new(Mutex::new(Ok(Vec::new()))),
            list_hangs: Arc::default(),
        }
    }
}

#[async_trait]
impl Dumper for ScriptedDumper {
    async fn preflight(&self, _: &DatabaseAddress, _: &SecretString) -> Result<ServerFacts, DumpError> {
        match self.preflight_error.lock().unwrap().clone() {
            Some(message) => {
                Err(DumpError::Failed { program: "psql".into(), status: "exit status 2".into(), stderr_tail: message })
            }
            None => {
                Ok(ServerFacts { version: "15.18".into(), session: crate::domain::manifest::DumpSession::default() })
            }
        }
    }

    async fn dump_roles(&self, _: &DatabaseAddress, _: &SecretString) -> Result<RolesDump, DumpError> {
        if let Some(message) = self.roles_error.lock().unwrap().clone() {
            return Err(DumpError::Failed {
                program: "pg_dumpall".into(),
                status: "exit status 1".into(),
                stderr_tail: message,
            });
        }
        Ok(RolesDump { sql: self.roles_sql.clone(), passwords_included: true })
    }

    async fn list_databases(&self, _: &DatabaseAddress, _: &SecretString) -> Result<Vec<String>, DumpError> {
        if self.list_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.databases.lock().unwrap().clone().map_err(|message| DumpError::Failed {
            program: "psql".into(),
            status: "exit status 2".into(),
            stderr_tail: message,
        })
    }

    async fn start_dump(
        &self,
        _: &DatabaseAddress,
        _: &SecretString,
        _: &str,
    ) -> Result<Box<dyn RunningDump>, DumpError> {
        self.dumps_started.fetch_add(1, Ordering::SeqCst);
        let script = self.dump.lock().unwrap().clone();
        Ok(Box::new(ScriptedRun {
            stdout: Some(script.stdout),
            exit: script.exit,
            stall: script.stall,
            killed: Arc::default(),
        }))
    }
}

struct ScriptedRun {
    stdout: Option<Vec<u8>>,
    exit: DumpExit,
    stall: bool,
    killed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for ScriptedRun {
    fn drop(&mut self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// Ten bytes every ten milliseconds until killed, then end of stream (what a killed pg_dump's pipe gives).
struct Trickle {
    killed: Arc<std::sync::atomic::AtomicBool>,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.killed.load(Ordering::SeqCst) {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        let n = buf.len().min(10);
        buf[..n].fill(b'-');
        Ok(n)
    }
}

#[async_trait]
impl RunningDump for ScriptedRun {
    fn take_stdout(&mut self) -> Box<dyn Read + Send> {
        if self.stall {
            return Box::new(Trickle { killed: self.killed.clone() });
        }
        Box::new(std::io::Cursor::new(self.stdout.take().unwrap_or_default()))
    }

    async fn wait(self: Box<Self>) -> DumpExit {
        self.exit.clone()
    }
}

// ---------------------------------------------------------------- clock

/// A clock that says what it is told.
#[derive(Clone)]
pub struct FixedClock(pub Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        FixedClock(Arc::new(Mutex::new(t)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

// ---------------------------------------------------------------- scratch servers

#[derive(Default)]
struct ScratchFakeState {
    /// drill id → (expires at, polls so far)
    live: BTreeMap<String, (DateTime<Utc>, u32)>,
    destroyed: Vec<String>,
}

/// Scratch servers in memory: each answers "creating" to its first `creating_polls` polls, then "ready";
/// destroyed ones are remembered, so a test can check that nothing is left running.
#[derive(Default, Clone)]
pub struct MemoryScratch {
    state: Arc<Mutex<ScratchFakeState>>,
    pub creating_polls: Arc<AtomicU32>,
    /// Says its servers take long to make, as RDS's do (`ScratchDatabases::ready_when_made` false).
    pub made_slowly: Arc<std::sync::atomic::AtomicBool>,
    /// `create`, `poll`, `destroy` and `sweep_expired` fail while named here.
    pub faults: Faults,
}

impl MemoryScratch {
    /// The ids of the scratch servers that exist.
    pub fn live(&self) -> Vec<String> {
        self.state.lock().unwrap().live.keys().cloned().collect()
    }

    pub fn destroyed(&self) -> Vec<String> {
        self.state.lock().unwrap().destroyed.clone()
    }
}

fn scratch_endpoint() -> ScratchEndpoint {
    ScratchEndpoint {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: SecretString::from("scratch"),
        maintenance_db: "postgres".into(),
        sslmode: "disable".into(),
    }
}

#[async_trait]
impl ScratchDatabases for MemoryScratch {
    fn ready_when_made(&self) -> bool {
        !self.made_slowly.load(Ordering::SeqCst)
    }

    async fn create(&self, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        self.faults.scratch("create")?;
        self.state.lock().unwrap().live.entry(spec.drill_id.clone()).or_insert((spec.expires_at, 0));
        Ok(ScratchHandle { kind: "memory".into(), id: spec.drill_id.clone() })
    }

    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError> {
        self.faults.scratch("poll")?;
        let mut state = self.state.lock().unwrap();
        let Some((_, polls)) = state.live.get_mut(&handle.id) else {
            return Err(ScratchError::Failed { id: handle.id.clone(), message: "no such scratch server".into() });
        };
        *polls += 1;
        if *polls <= self.creating_polls.load(Ordering::SeqCst) {
            return Ok(ScratchState::Creating { status: "creating".into() });
        }
        Ok(ScratchState::Ready(scratch_endpoint()))
    }

    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError> {
        self.faults.scratch("destroy")?;
        let mut state = self.state.lock().unwrap();
        if state.live.remove(&handle.id).is_some() {
            state.destroyed.push(handle.id.clone());
        }
        Ok(())
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Vec<ScratchHandle>, ScratchError> {
        self.faults.scratch("sweep_expired")?;
        let mut state = self.state.lock().unwrap();
        let expired: Vec<String> =
            state.live.iter().filter(|(_, (at, _))| *at < now).map(|(id, _)| id.clone()).collect();
        for id in &expired {
            state.live.remove(id);
            state.destroyed.push(id.clone());
        }
        Ok(expired.into_iter().map(|id| ScratchHandle { kind: "memory".into(), id }).collect())
    }
}

// ---------------------------------------------------------------- point-in-time copies

#[derive(Default)]
struct PointInTimeFakeState {
    /// drill id → (source instance, restored to, polls so far)
    live: BTreeMap<String, (String, DateTime<Utc>, u32)>,
    destroyed: Vec<String>,
}

/// RDS point-in-time restores in memory: the source's latest restorable time is `restorable_at` (`None`: it
/// has no automated backups); each copy answers "creating" to its first `creating_polls` polls, then "ready";
/// deleted copies are remembered. There is no source to harm: the fake only ever makes and deletes copies.
#[derive(Default, Clone)]
pub struct MemoryPointInTime {
    state: Arc<Mutex<PointInTimeFakeState>>,
    pub restorable_at: Arc<Mutex<Option<DateTime<Utc>>>>,
    pub creating_polls: Arc<AtomicU32>,
    /// `latest_restorable_time`, `restore`, `poll` and `destroy` fail while named here.
    pub faults: Faults,
}

impl MemoryPointInTime {
    /// The drill ids of the copies that exist, with the source and the time each was restored to.
    pub fn live(&self) -> Vec<(String, String, DateTime<Utc>)> {
        let state = self.state.lock().unwrap();
        state.live.iter().map(|(id, (source, at, _))| (id.clone(), source.clone(), *at)).collect()
    }

    pub fn destroyed(&self) -> Vec<String> {
        self.state.lock().unwrap().destroyed.clone()
    }
}

#[async_trait]
impl PointInTimeRestores for MemoryPointInTime {
    async fn latest_restorable_time(&self, _source_instance: &str) -> Result<Option<DateTime<Utc>>, ScratchError> {
        self.faults.scratch("latest_restorable_time")?;
        Ok(*self.restorable_at.lock().unwrap())
    }

    async fn restore(
        &self,
        source_instance: &str,
        at: DateTime<Utc>,
        drill_id: &str,
        _expires_at: DateTime<Utc>,
    ) -> Result<ScratchHandle, ScratchError> {
        self.faults.scratch("restore")?;
        let mut state = self.state.lock().unwrap();
        state.live.entry(drill_id.to_string()).or_insert((source_instance.to_string(), at, 0));
        Ok(ScratchHandle { kind: "memory-pitr".into(), id: drill_id.to_string() })
    }

    async fn poll(
        &self,
        handle: &ScratchHandle,
        user: &str,
        password: SecretString,
    ) -> Result<ScratchState, ScratchError> {
        self.faults.scratch("poll")?;
        let mut state = self.state.lock().unwrap();
        let Some((_, _, polls)) = state.live.get_mut(&handle.id) else {
            return Err(ScratchError::Failed { id: handle.id.clone(), message: "no such copy".into() });
        };
        *polls += 1;
        if *polls <= self.creating_polls.load(Ordering::SeqCst) {
            return Ok(ScratchState::Creating { status: "creating".into() });
        }
        // The copy answers to the source's own user and password.
        Ok(ScratchState::Ready(ScratchEndpoint { user: user.to_string(), password, ..scratch_endpoint() }))
    }

    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError> {
        self.faults.scratch("destroy")?;
        let mut state = self.state.lock().unwrap();
        if state.live.remove(&handle.id).is_some() {
            state.destroyed.push(handle.id.clone());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- restorer

/// A restorer that loads nothing but answers as a faithful restore would: it reads and hashes the whole dump
/// object from the store (as the framed restore does), reports each table's rows as the layout records them,
/// and reads back exactly the manifest's fingerprint. Any call fails while its name is in `faults`.
#[derive(Default, Clone)]
pub struct ScriptedRestorer {
    pub faults: Faults,
}

impl ScriptedRestorer {
    fn fault(&self, operation: &'static str) -> Result<(), RestoreError> {
        match self.faults.failing(operation) {
            Some(failure) => Err(RestoreError::Failed {
                program: operation.into(),
                status: "exit status: 1".into(),
                stderr_tail: failure.text,
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Restorer for ScriptedRestorer {
    async fn client_major(&self) -> Result<u32, RestoreError> {
        self.fault("client_major")?;
        Ok(17)
    }

    async fn restore_roles(&self, _: &ScratchEndpoint, _: &[u8]) -> Result<Vec<String>, RestoreError> {
        self.fault("restore_roles")?;
        Ok(Vec::new())
    }

    async fn apply_database_settings(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &[String],
    ) -> Result<Vec<String>, RestoreError> {
        self.fault("apply_database_settings").map(|()| Vec::new())
    }

    async fn apply_database_properties(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &crate::domain::database_properties::DatabaseProperties,
    ) -> Result<Vec<String>, RestoreError> {
        self.fault("apply_database_properties").map(|()| Vec::new())
    }

    async fn create_tablespaces(&self, _: &ScratchEndpoint, names: &[String]) -> Result<Vec<String>, RestoreError> {
        self.fault("create_tablespaces")?;
        Ok(names.to_vec())
    }

    async fn recreate_database(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: Option<&crate::domain::manifest::DumpSession>,
    ) -> Result<Option<String>, RestoreError> {
        self.fault("recreate_database").map(|()| None)
    }

    async fn restore_sql(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        mut sql: Box<dyn Read + Send>,
    ) -> Result<(), RestoreError> {
        self.fault("restore_sql")?;
        std::io::copy(&mut sql, &mut std::io::sink())?;
        Ok(())
    }

    async fn fingerprint(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        _: &str,
        _: Option<&crate::domain::manifest::DumpSession>,
    ) -> Result<crate::domain::fingerprint::DumpSummary, RestoreError> {
        self.fault("fingerprint")?;
        Err(RestoreError::Failed { program: "pg_dump".into(), status: "-".into(), stderr_tail: "not scripted".into() })
    }

    async fn restore_framed(
        &self,
        store: Arc<dyn ObjectStore>,
        _: &ScratchEndpoint,
        _: &str,
        mut dump: FramedDump<'_>,
    ) -> Result<FramedRestoreReport, RestoreError> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        if let Some(ready) = dump.server_ready.take() {
            if !ready.await.unwrap_or(false) {
                return Err(RestoreError::Failed {
                    program: "scripted".into(),
                    status: "not started".into(),
                    stderr_tail: "the server was not made ready".into(),
                });
            }
        }
        self.fault("restore_framed")?;
        let mut report = FramedRestoreReport::default();
        match store.get(dump.key, dump.version_id).await {
            Ok(mut fetched) => {
                let mut bytes = Vec::new();
                fetched.body.read_to_end(&mut bytes).await?;
                report.object_sha256 = hex::encode(sha2::Sha256::digest(&bytes));
                report.object_size = bytes.len() as u64;
                report.object_head = Some(fetched.head);
            }
            Err(e) => report.object_error = Some(e.to_string()),
        }
        for segment in &dump.layout.segments {
            report.statements += 1;
            if let crate::domain::dump_layout::SegmentKind::Copy { schema, name, rows, .. } = &segment.kind {
                report.rows_loaded.insert((schema.clone(), name.clone()), *rows);
            }
        }
        Ok(report)
    }

    async fn restore_tables(
        &self,
        _: Arc<dyn ObjectStore>,
        _: &ScratchEndpoint,
        _: &str,
        _: crate::ports::TableLoad<'_>,
        _: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<crate::ports::TableLoadReport, RestoreError> {
        self.fault("restore_tables")?;
        Err(RestoreError::Failed {
            program: "scripted".into(),
            status: "error".into(),
            stderr_tail: "the scripted restorer restores no tables; the integration tests do, on real servers".into(),
        })
    }

    async fn read_back(
        &self,
        _: &ScratchEndpoint,
        _: &str,
        manifest: &crate::domain::Manifest,
        _: crate::domain::verification::RowCheck,
        _: Option<Arc<dyn crate::ports::ReadBackUnderway>>,
    ) -> Result<crate::domain::fingerprint::Fingerprint, RestoreError> {
        self.fault("read_back")?;
        Ok(manifest.fingerprint.clone())
    }

    async fn server_version(&self, _: &ScratchEndpoint) -> Result<String, RestoreError> {
        self.fault("server_version")?;
        Ok("15.18".into())
    }

    async fn physical_check(&self, _: &ScratchEndpoint, _: &str) -> Result<PhysicalCheckReport, RestoreError> {
        self.fault("physical_check")?;
        Ok(PhysicalCheckReport { heap_checked: true, ..Default::default() })
    }

    async fn check(&self, _: &ScratchEndpoint, _: &str, _: &str, _: std::time::Duration) -> Result<bool, RestoreError> {
        self.fault("check")?;
        Ok(true)
    }
}
