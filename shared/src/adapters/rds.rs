//! Scratch PostgreSQL servers for restore drills as Amazon RDS instances (`ScratchDatabases`), and
//! point-in-time-restore (PITR) drills of an RDS source.
//!
//! **What a scratch instance is.** `create` makes one `postgres` instance per drill, named
//! `<identifier_prefix><drill id>` so a resumed drill finds the same one. It is built to be thrown away and
//! never to be reachable from outside: not publicly accessible, in the configured subnet group and security
//! groups (never the account's defaults: `create` refuses without them), storage encrypted (with the
//! configured KMS key, else RDS's), no deletion protection, no automated backups, no final snapshot. Every
//! scratch instance carries the tags `backstop:scratch=true`, `backstop:drill-id=<id>` and
//! `backstop:expires-at=<RFC 3339 UTC>`; the sweeper destroys only instances tagged `backstop:scratch=true`,
//! and `destroy` refuses an instance without that tag, so a wrong or corrupted handle cannot delete a real
//! database.
//!
//! **Credentials.** The master user (`backstop_drill`) has a password RDS generates and keeps in Secrets
//! Manager (`ManageMasterUserPassword`): Backstop never chooses, logs or stores it, and RDS deletes the secret
//! with the instance. `poll` reads it, from the instance's `MasterUserSecret`, only when the instance is
//! ready. moto implements this (see below), so there is no fallback secret of our own.
//!
//! **PITR drills** (`restore_to_point_in_time`) restore a source instance into a new scratch instance with
//! the same placement, tags and safety settings (the tag `backstop:pitr-source` marks them; their handles
//! have the kind `rds-pitr`). A restored PostgreSQL instance keeps the source's roles and passwords *as of
//! the restore time*, and RDS cannot hand it a managed secret during the restore (RDS allows that for Oracle
//! only), so its credentials are the caller's: `poll_with_credentials` with the source's user and password
//! (what the backup job resolves for the target), right unless the password changed between the restore time
//! and now. (Having RDS set a new managed password with ModifyDBInstance would cover that case; no drill needs
//! it yet, so the adapter does not offer it.)
//!
//! `poll` on a PITR instance without a managed secret is an error that says so.
//!
//! **Engine version.** `create` asks DescribeDBEngineVersions for the newest available minor of the
//! requested major (a restore must not go to an older server; the newest minor of the same major is safe).
//! If that call fails (moto 5.2.5 does not implement it and answers HTTP 500; an IAM policy might not allow
//! it), the major alone is sent ("16"), for which RDS picks its default minor of that major, and a warning
//! is logged.
//!
//! **What moto 5.2.5 does, so what the tests can show.** Instances are `available` at once; a deleted
//! instance is gone at once. `ManageMasterUserPassword` creates a secret whose JSON is always
//! `{"username": "admin", "password": "P@55w0rd!"}` whatever the master user is, so the user is taken from
//! the instance's `MasterUsername` and the secret's `username` serves only if the instance has none.
//! `StorageEncrypted` without a key reports `KmsKeyId` `default_kms_key_id`. DescribeDBInstances returns
//! `TagList` (as RDS does), but rejects tag filters (RDS does not have them either: the sweeper lists
//! everything and filters by tag itself). RestoreDBInstanceToPointInTime copies the source and applies the
//! request's settings that are not false or 0 (subnet group, security groups, parameter group, class, tags;
//! so `PubliclyAccessible=false` and `BackupRetentionPeriod=0` show the source's values there), does not
//! check `RestoreTime`, and gives the copy its own managed secret if the source had one.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_rds::primitives::DateTime as AwsDateTime;
use aws_sdk_rds::types::{DbInstance, Tag};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::sdk_error_text;
use super::secrets::SecretsManager;
use crate::ports::{
    PointInTimeRestores, ScratchDatabases, ScratchEndpoint, ScratchError, ScratchHandle, ScratchSpec, ScratchState,
    SecretStore,
};

pub const DEFAULT_IDENTIFIER_PREFIX: &str = "backstop-drill-";
/// Handle kind of an instance `create` made.
pub const KIND_RDS: &str = "rds";
/// Handle kind of an instance `restore_to_point_in_time` made.
pub const KIND_RDS_PITR: &str = "rds-pitr";

pub const TAG_SCRATCH: &str = "backstop:scratch";
pub const TAG_DRILL_ID: &str = "backstop:drill-id";
pub const TAG_EXPIRES_AT: &str = "backstop:expires-at";
pub const TAG_PITR_SOURCE: &str = "backstop:pitr-source";

const MASTER_USER: &str = "backstop_drill";
const MIN_STORAGE_GIB: u32 = 20;

/// Statuses from which an instance will not become available by waiting.
const FAILED_STATUSES: &[&str] = &[
    "failed",
    "incompatible-create",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "insufficient-capacity",
    "restore-error",
    "storage-full",
    // Someone (or the sweeper) is deleting or has stopped it: it is not coming up for this drill.
    "deleting",
    "stopping",
    "stopped",
];

/// Where and how scratch instances are made. Subnet group and security groups have no defaults on purpose:
/// a scratch copy of production data belongs in a network chosen for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsScratchSettings {
    /// `db.t4g.medium`, …
    pub instance_class: String,
    pub subnet_group: String,
    pub security_group_ids: Vec<String>,
    pub parameter_group: Option<String>,
    /// Storage encryption key; RDS's default key when `None`.
    pub kms_key_id: Option<String>,
    /// Prepended to the sanitized drill id; must start with a letter.
    pub identifier_prefix: String,
}

impl RdsScratchSettings {
    pub fn new(
        instance_class: impl Into<String>,
        subnet_group: impl Into<String>,
        security_group_ids: Vec<String>,
    ) -> Self {
        RdsScratchSettings {
            instance_class: instance_class.into(),
            subnet_group: subnet_group.into(),
            security_group_ids,
            parameter_group: None,
            kms_key_id: None,
            identifier_prefix: DEFAULT_IDENTIFIER_PREFIX.into(),
        }
    }

    /// Refuses settings that would put a copy of the data on a default network or nowhere.
    fn check(&self, operation: &'static str) -> Result<(), ScratchError> {
        const NETWORK: &str = "RDS's default would put a copy of the data on the default network";
        let missing = if self.instance_class.trim().is_empty() {
            Some(("an instance class", "RDS needs one"))
        } else if self.subnet_group.trim().is_empty() {
            Some(("a DB subnet group", NETWORK))
        } else if self.security_group_ids.is_empty() || self.security_group_ids.iter().any(|g| g.trim().is_empty()) {
            Some(("VPC security group ids", NETWORK))
        } else {
            None
        };
        match missing {
            Some((what, why)) => Err(backend(
                operation,
                format!("refusing to create a scratch RDS instance without {what} ({why}); configure it"),
            )),
            None => Ok(()),
        }
    }
}

pub struct RdsScratch {
    rds: aws_sdk_rds::Client,
    secrets: SecretsManager,
    settings: RdsScratchSettings,
}

impl RdsScratch {
    pub fn new(
        rds: aws_sdk_rds::Client,
        secrets: aws_sdk_secretsmanager::Client,
        settings: RdsScratchSettings,
    ) -> Self {
        RdsScratch { rds, secrets: SecretsManager::new(secrets), settings }
    }

    /// The instance identifier a drill's scratch server gets.
    pub fn identifier(&self, drill_id: &str) -> Result<String, ScratchError> {
        instance_identifier(&self.settings.identifier_prefix, drill_id)
    }

    /// Restores `source_instance_id` as it was at `target_time` (`None`: the latest restorable time) into a
    /// scratch instance for the drill. Idempotent like `create`. Poll the handle with `poll_with_credentials`
    /// (see the module header).
    pub async fn restore_to_point_in_time(
        &self,
        source_instance_id: &str,
        target_time: Option<DateTime<Utc>>,
        drill_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<ScratchHandle, ScratchError> {
        const OP: &str = "RestoreDBInstanceToPointInTime";
        self.settings.check(OP)?;
        let id = self.identifier(drill_id)?;
        let handle = ScratchHandle { kind: KIND_RDS_PITR.into(), id: id.clone() };
        let mut tags = scratch_tags(drill_id, expires_at);
        tags.push(tag(TAG_PITR_SOURCE, source_instance_id));
        let request = self
            .rds
            .restore_db_instance_to_point_in_time()
            .source_db_instance_identifier(source_instance_id)
            .target_db_instance_identifier(&id)
            .set_restore_time(target_time.map(to_aws_time))
            .set_use_latest_restorable_time(target_time.is_none().then_some(true))
            .db_instance_class(&self.settings.instance_class)
            .db_subnet_group_name(&self.settings.subnet_group)
            .set_vpc_security_group_ids(Some(self.settings.security_group_ids.clone()))
            .set_db_parameter_group_name(self.settings.parameter_group.clone())
            .publicly_accessible(false)
            .multi_az(false)
            .deletion_protection(false)
            // Otherwise the copy keeps the source's retention and RDS starts backing up a throwaway.
            .backup_retention_period(0)
            .copy_tags_to_snapshot(false)
            .set_tags(Some(tags));
        // Storage encryption and its key are the source's: RDS does not change them in a restore.
        match request.send().await {
            Ok(_) => Ok(handle),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_already_exists_fault()) => {
                self.resume(OP, &id, drill_id, true).await?;
                Ok(handle)
            }
            Err(e) => Err(backend(OP, format!("restoring {source_instance_id} into {id}: {}", sdk_error_text(&e)))),
        }
    }

    /// The newest time `source_instance_id` can be restored to (what a PITR drill can promise as its RPO);
    /// `None` when RDS reports none (automated backups off, or the instance is new).
    pub async fn latest_restorable_time(
        &self,
        source_instance_id: &str,
    ) -> Result<Option<DateTime<Utc>>, ScratchError> {
        match self.describe("DescribeDBInstances", source_instance_id).await? {
            Some(instance) => Ok(instance.latest_restorable_time().and_then(from_aws_time)),
            None => Err(backend("DescribeDBInstances", format!("source instance {source_instance_id} does not exist"))),
        }
    }

    /// `poll`, with the credentials the caller knows (a PITR copy's are the source's) instead of a managed
    /// secret.
    pub async fn poll_with_credentials(
        &self,
        handle: &ScratchHandle,
        user: &str,
        password: SecretString,
    ) -> Result<ScratchState, ScratchError> {
        self.poll_inner(handle, Some((user.to_string(), password))).await
    }

    /// The newest available minor of `major`, or the major alone (RDS's default minor) if RDS cannot say.
    async fn engine_version(&self, major: u32) -> String {
        match self.newest_minor(major).await {
            Ok(Some(version)) => version,
            Ok(None) => {
                tracing::warn!(major, "RDS lists no available postgres {major}.x; asking for the major version alone");
                major.to_string()
            }
            Err(error) => {
                tracing::warn!(major, %error, "cannot list postgres engine versions; asking for the major version alone");
                major.to_string()
            }
        }
    }

    async fn newest_minor(&self, major: u32) -> Result<Option<String>, String> {
        let versions: Vec<_> = self
            .rds
            .describe_db_engine_versions()
            .engine("postgres")
            .db_parameter_group_family(format!("postgres{major}"))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_error_text(&e))?;
        Ok(newest_available(&versions, major))
    }

    /// The instance, or `None` if RDS says it does not exist.
    async fn describe(&self, operation: &'static str, id: &str) -> Result<Option<DbInstance>, ScratchError> {
        match self.rds.describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => Ok(out.db_instances().first().cloned()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => Ok(None),
            Err(e) => Err(backend(operation, format!("describing {id}: {}", sdk_error_text(&e)))),
        }
    }

    /// An instance with our identifier already exists: it is this drill's (resumed) only if its tags say so.
    async fn resume(&self, operation: &'static str, id: &str, drill_id: &str, pitr: bool) -> Result<(), ScratchError> {
        let Some(instance) = self.describe(operation, id).await? else {
            // Created and deleted in between (a sweep): let the caller try again.
            return Err(backend(operation, format!("{id} existed a moment ago and is gone now; try again")));
        };
        let tags = tag_map(&instance);
        if tags.get(TAG_SCRATCH).map(String::as_str) != Some("true")
            || tags.get(TAG_DRILL_ID).map(String::as_str) != Some(drill_id)
        {
            return Err(backend(operation, format!("an RDS instance named {id} exists but is not drill {drill_id:?}'s scratch server; refusing to use it")));
        }
        if tags.contains_key(TAG_PITR_SOURCE) != pitr {
            let what =
                if pitr { "a new scratch instance, not a point-in-time restore" } else { "a point-in-time restore" };
            return Err(backend(operation, format!("{id} is drill {drill_id:?}'s, but it is {what}")));
        }
        Ok(())
    }

    async fn poll_inner(
        &self,
        handle: &ScratchHandle,
        credentials: Option<(String, SecretString)>,
    ) -> Result<ScratchState, ScratchError> {
        const OP: &str = "DescribeDBInstances";
        check_kind(OP, handle)?;
        let Some(instance) = self.describe(OP, &handle.id).await? else {
            return Err(ScratchError::Failed {
                id: handle.id.clone(),
                message: "the RDS instance does not exist (deleted, swept or never created)".into(),
            });
        };
        let status = instance.db_instance_status().unwrap_or("unknown");
        if FAILED_STATUSES.contains(&status) {
            return Err(ScratchError::Failed {
                id: handle.id.clone(),
                message: format!("RDS reports the instance as {status}"),
            });
        }
        if status != "available" {
            return Ok(ScratchState::Creating { status: status.to_string() });
        }
        let Some((host, port)) = instance.endpoint().and_then(|e| Some((e.address()?.to_string(), e.port()?))) else {
            return Ok(ScratchState::Creating { status: "available, endpoint not published yet".into() });
        };
        let port = u16::try_from(port).map_err(|_| backend(OP, format!("{} reports port {port}", handle.id)))?;
        let (user, password) = match credentials {
            Some(given) => given,
            None => {
                let Some(secret) = instance.master_user_secret() else {
                    let hint = if handle.kind == KIND_RDS_PITR {
                        "a point-in-time copy keeps the source's password: poll it with poll_with_credentials"
                    } else {
                        "its master password is no longer managed by RDS"
                    };
                    return Err(backend(OP, format!("{} has no managed master secret; {hint}", handle.id)));
                };
                if secret.secret_status() == Some("creating") {
                    return Ok(ScratchState::Creating { status: "available, master secret being created".into() });
                }
                let arn = secret
                    .secret_arn()
                    .ok_or_else(|| backend(OP, format!("{}'s master secret has no ARN", handle.id)))?;
                let value =
                    self.secrets.secret_string(arn).await.map_err(|e| backend("GetSecretValue", e.to_string()))?;
                let parsed = parse_master_secret(value.expose_secret())
                    .map_err(|m| backend("GetSecretValue", format!("{arn}: {m}")))?;
                let user = instance
                    .master_username()
                    .map(str::to_string)
                    .or(parsed.username)
                    .ok_or_else(|| backend(OP, format!("{} reports no master user", handle.id)))?;
                (user, parsed.password)
            }
        };
        Ok(ScratchState::Ready(ScratchEndpoint {
            host,
            port,
            user,
            password,
            maintenance_db: "postgres".into(),
            sslmode: "require".into(),
        }))
    }

    /// Deletes one instance after checking it is a scratch one; gone or going is success.
    async fn destroy_instance(&self, id: &str) -> Result<(), ScratchError> {
        const OP: &str = "DeleteDBInstance";
        let Some(instance) = self.describe(OP, id).await? else {
            return Ok(());
        };
        refuse_unless_scratch(OP, &instance)?;
        if instance.db_instance_status() == Some("deleting") {
            return Ok(());
        }
        let result = self
            .rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => Ok(()),
            // Deleted by someone else between our describe and delete (RDS says "already being deleted").
            Err(e) if e.as_service_error().is_some_and(|s| s.is_invalid_db_instance_state_fault()) => {
                match self.describe(OP, id).await? {
                    None => Ok(()),
                    Some(i) if i.db_instance_status() == Some("deleting") => Ok(()),
                    Some(_) => Err(backend(OP, format!("{id}: {}", sdk_error_text(&e)))),
                }
            }
            Err(e) => Err(backend(OP, format!("{id}: {}", sdk_error_text(&e)))),
        }
    }
}

#[async_trait]
impl PointInTimeRestores for RdsScratch {
    async fn latest_restorable_time(&self, source_instance: &str) -> Result<Option<DateTime<Utc>>, ScratchError> {
        RdsScratch::latest_restorable_time(self, source_instance).await
    }

    async fn restore(
        &self,
        source_instance: &str,
        at: DateTime<Utc>,
        drill_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<ScratchHandle, ScratchError> {
        self.restore_to_point_in_time(source_instance, Some(at), drill_id, expires_at).await
    }

    async fn poll(
        &self,
        handle: &ScratchHandle,
        user: &str,
        password: SecretString,
    ) -> Result<ScratchState, ScratchError> {
        self.poll_with_credentials(handle, user, password).await
    }

    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError> {
        ScratchDatabases::destroy(self, handle).await
    }
}

#[async_trait]
impl ScratchDatabases for RdsScratch {
    async fn create(&self, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        const OP: &str = "CreateDBInstance";
        self.settings.check(OP)?;
        let id = self.identifier(&spec.drill_id)?;
        let handle = ScratchHandle { kind: KIND_RDS.into(), id: id.clone() };
        let engine_version = self.engine_version(spec.engine_major).await;
        let storage = spec.storage_gib.max(MIN_STORAGE_GIB).min(i32::MAX as u32) as i32;
        let request = self
            .rds
            .create_db_instance()
            .db_instance_identifier(&id)
            .engine("postgres")
            .engine_version(engine_version)
            .db_instance_class(&self.settings.instance_class)
            .allocated_storage(storage)
            // gp3's baseline IOPS do not depend on size (gp2 gives a 20 GiB volume 100): restores are write-bound.
            .storage_type("gp3")
            .storage_encrypted(true)
            .set_kms_key_id(self.settings.kms_key_id.clone())
            .publicly_accessible(false)
            .db_subnet_group_name(&self.settings.subnet_group)
            .set_vpc_security_group_ids(Some(self.settings.security_group_ids.clone()))
            .set_db_parameter_group_name(self.settings.parameter_group.clone())
            .multi_az(false)
            .deletion_protection(false)
            // No automated backups or snapshots of a throwaway copy: nothing outlives the drill.
            .backup_retention_period(0)
            .copy_tags_to_snapshot(false)
            .master_username(MASTER_USER)
            .manage_master_user_password(true)
            .set_tags(Some(scratch_tags(&spec.drill_id, spec.expires_at)));
        match request.send().await {
            Ok(_) => Ok(handle),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_already_exists_fault()) => {
                self.resume(OP, &id, &spec.drill_id, false).await?;
                Ok(handle)
            }
            Err(e) => Err(backend(OP, format!("{id}: {}", sdk_error_text(&e)))),
        }
    }

    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError> {
        self.poll_inner(handle, None).await
    }

    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError> {
        check_kind("DeleteDBInstance", handle)?;
        self.destroy_instance(&handle.id).await
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Vec<ScratchHandle>, ScratchError> {
        // RDS has no tag filter for DescribeDBInstances: list all, judge by the tags in the answer.
        let instances: Vec<DbInstance> = self
            .rds
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| backend("DescribeDBInstances", sdk_error_text(&e)))?;
        let mut swept = Vec::new();
        let mut failures = Vec::new();
        for instance in &instances {
            let Some(id) = instance.db_instance_identifier() else { continue };
            let tags = tag_map(instance);
            if tags.get(TAG_SCRATCH).map(String::as_str) != Some("true")
                || instance.db_instance_status() == Some("deleting")
            {
                continue;
            }
            let expires = tags.get(TAG_EXPIRES_AT).and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let Some(expires) = expires else {
                // Never guess about something that might be in use.
                tracing::warn!(instance = id, "scratch instance without a readable {TAG_EXPIRES_AT} tag; left alone");
                continue;
            };
            if expires >= now {
                continue;
            }
            let kind = if tags.contains_key(TAG_PITR_SOURCE) { KIND_RDS_PITR } else { KIND_RDS };
            // One instance that cannot be deleted must not keep the others alive (and billing).
            match self.destroy_instance(id).await {
                Ok(()) => {
                    tracing::info!(instance = id, expired_at = %expires, "destroyed expired scratch instance");
                    swept.push(ScratchHandle { kind: kind.into(), id: id.to_string() });
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(swept)
        } else {
            Err(backend(
                "sweep",
                format!(
                    "destroyed {} expired scratch instance(s); failed on {}: {}",
                    swept.len(),
                    failures.len(),
                    failures.join("; ")
                ),
            ))
        }
    }
}

fn backend(operation: &'static str, message: String) -> ScratchError {
    ScratchError::Backend { operation, message }
}

fn check_kind(operation: &'static str, handle: &ScratchHandle) -> Result<(), ScratchError> {
    if handle.kind == KIND_RDS || handle.kind == KIND_RDS_PITR {
        Ok(())
    } else {
        Err(backend(
            operation,
            format!("handle {:?} of kind {:?} is not an RDS scratch instance", handle.id, handle.kind),
        ))
    }
}

fn refuse_unless_scratch(operation: &'static str, instance: &DbInstance) -> Result<(), ScratchError> {
    if tag_map(instance).get(TAG_SCRATCH).map(String::as_str) == Some("true") {
        Ok(())
    } else {
        let id = instance.db_instance_identifier().unwrap_or("?");
        Err(backend(operation, format!("refusing to touch RDS instance {id}: it has no {TAG_SCRATCH}=true tag")))
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn scratch_tags(drill_id: &str, expires_at: DateTime<Utc>) -> Vec<Tag> {
    vec![
        tag(TAG_SCRATCH, "true"),
        tag(TAG_DRILL_ID, drill_id),
        tag(TAG_EXPIRES_AT, &expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    ]
}

fn tag_map(instance: &DbInstance) -> HashMap<String, String> {
    instance
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

fn to_aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

fn from_aws_time(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The highest available `major.x` among RDS's engine versions.
fn newest_available(versions: &[aws_sdk_rds::types::DbEngineVersion], major: u32) -> Option<String> {
    versions
        .iter()
        .filter(|v| v.status().is_none_or(|s| s == "available"))
        .filter_map(|v| v.engine_version())
        .filter_map(|v| version_key(v).filter(|k| k.first() == Some(&major)).map(|k| (k, v)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.to_string())
}

/// `16.4` → `[16, 4]`; `None` for anything not made of numbers (custom engine versions).
fn version_key(version: &str) -> Option<Vec<u32>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

/// RDS instance identifiers: 1–63 letters, digits and hyphens, starting with a letter, no `--`, no hyphen at
/// the end. RDS folds them to lower case.
pub fn is_valid_identifier(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-')
}

/// `prefix` + the drill id made into identifier characters. Lower-casing is the only change made silently
/// (RDS folds case itself); if anything else had to change (other characters, length), a hash of the whole
/// drill id is appended so two drills cannot end up with one name. A collision would be caught anyway (the
/// drill-id tag is checked on resume), but as a failed drill.
pub fn instance_identifier(prefix: &str, drill_id: &str) -> Result<String, ScratchError> {
    let prefix = prefix.to_ascii_lowercase();
    let lower = drill_id.to_ascii_lowercase();
    let mut body = String::with_capacity(lower.len());
    for c in lower.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (body.is_empty() || body.ends_with('-')) {
            continue;
        }
        body.push(c);
    }
    while body.ends_with('-') {
        body.pop();
    }
    let room = 63usize.saturating_sub(prefix.len());
    let identifier = if body == lower && !body.is_empty() && body.len() <= room {
        format!("{prefix}{body}")
    } else {
        use sha2::Digest;
        let hash = hex::encode(&sha2::Sha256::digest(drill_id.as_bytes())[..4]);
        body.truncate(room.saturating_sub(hash.len() + 1));
        while body.ends_with('-') {
            body.pop();
        }
        if body.is_empty() {
            format!("{prefix}{hash}")
        } else {
            format!("{prefix}{body}-{hash}")
        }
    };
    if is_valid_identifier(&identifier) {
        Ok(identifier)
    } else {
        Err(backend(
            "CreateDBInstance",
            format!("{identifier:?} (from prefix {prefix:?} and drill id {drill_id:?}) is not a valid RDS identifier; the prefix must start with a letter and hold only letters, digits and single hyphens"),
        ))
    }
}

#[derive(Deserialize)]
struct MasterSecret {
    username: Option<String>,
    password: SecretString,
}

/// The RDS-managed secret's JSON. Errors never quote the value (serde's messages can).
fn parse_master_secret(json: &str) -> Result<MasterSecret, String> {
    serde_json::from_str::<MasterSecret>(json).map_err(|e| {
        let why = match e.classify() {
            serde_json::error::Category::Data => "JSON without a string \"password\"",
            _ => "not JSON",
        };
        format!("the master secret is {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_generated_drill_id_when_named_then_it_is_only_lower_cased() {
        assert_eq!(
            instance_identifier(DEFAULT_IDENTIFIER_PREFIX, "20261122T051100Z-a1b2c3").unwrap(),
            "backstop-drill-20261122t051100z-a1b2c3"
        );
    }

    #[test]
    fn given_odd_characters_when_named_then_they_become_single_hyphens_and_a_hash_keeps_it_unique() {
        let a = instance_identifier(DEFAULT_IDENTIFIER_PREFIX, "orders/2026--11_22!").unwrap();
        let b = instance_identifier(DEFAULT_IDENTIFIER_PREFIX, "orders_2026--11/22!").unwrap();
        assert!(a.starts_with("backstop-drill-orders-2026-11-22-"), "{a}");
        assert_ne!(a, b);
        assert!(is_valid_identifier(&a) && is_valid_identifier(&b));
    }

    #[test]
    fn given_a_long_drill_id_when_named_then_it_fits_63_characters() {
        let id = instance_identifier(DEFAULT_IDENTIFIER_PREFIX, &"x".repeat(200)).unwrap();
        assert_eq!(id.len(), 63);
        assert!(is_valid_identifier(&id));
        let other = instance_identifier(DEFAULT_IDENTIFIER_PREFIX, &format!("{}y", "x".repeat(199))).unwrap();
        assert_ne!(id, other);
    }

    #[test]
    fn given_a_drill_id_of_only_symbols_when_named_then_the_hash_names_it() {
        let id = instance_identifier(DEFAULT_IDENTIFIER_PREFIX, "///").unwrap();
        assert!(is_valid_identifier(&id), "{id}");
    }

    #[test]
    fn given_a_prefix_starting_with_a_digit_when_named_then_it_is_refused() {
        assert!(instance_identifier("1drill-", "abc").is_err());
        assert!(instance_identifier("", "20261122T051100Z-a1b2c3").is_err());
        assert!(instance_identifier("drill--", "abc").is_err());
    }

    #[test]
    fn given_versions_when_ordered_then_numerically() {
        let mut v = vec!["16.10", "16.9", "16.2"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(v, ["16.2", "16.9", "16.10"]);
        assert_eq!(version_key("16.4-custom"), None);
    }

    #[test]
    fn given_engine_versions_when_choosing_then_the_newest_available_minor_of_the_major() {
        let v = |version: &str, status: &str| {
            aws_sdk_rds::types::DbEngineVersion::builder().engine_version(version).status(status).build()
        };
        let versions = [
            v("16.2", "available"),
            v("16.10", "available"),
            v("16.11", "deprecated"),
            v("17.1", "available"),
            v("16.9", "available"),
        ];
        assert_eq!(newest_available(&versions, 16).as_deref(), Some("16.10"));
        assert_eq!(newest_available(&versions, 15), None);
    }

    #[test]
    fn given_a_bad_secret_when_parsed_then_the_error_does_not_quote_it() {
        let err = parse_master_secret(r#"{"username": "u", "password": 12345678}"#).err().unwrap();
        assert!(!err.contains("12345678"), "{err}");
        let err = parse_master_secret("hunter2-not-json").err().unwrap();
        assert!(!err.contains("hunter2"), "{err}");
        let ok = parse_master_secret(r#"{"username": "u", "password": "p"}"#).unwrap();
        assert_eq!(ok.password.expose_secret(), "p");
    }

    #[test]
    fn given_settings_without_network_when_checked_then_refused() {
        let mut s = RdsScratchSettings::new("db.t4g.micro", "", vec!["sg-1".into()]);
        assert!(s.check("x").unwrap_err().to_string().contains("subnet group"));
        s.subnet_group = "subnets".into();
        s.security_group_ids.clear();
        assert!(s.check("x").unwrap_err().to_string().contains("security group"));
        s.security_group_ids.push("sg-1".into());
        assert!(s.check("x").is_ok());
    }
}
