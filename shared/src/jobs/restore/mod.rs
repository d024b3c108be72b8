//! `backstop restore`: one backup of a target restored into a server the operator names, with the drill's
//! engine (the parallel restore by the dump's layout, the same checks), and the refusals a production restore
//! needs: the stored object is proven intact before any row is written, a database that holds anything is
//! left alone unless the operator asks for it to be dropped, the backup's own source database is never the
//! destination by accident, and with `--no-roles` every role the backup's server had must already exist.
//!
//! [`pick_backup`] is the pure choice of backup (newest verified, one named, newest before a time).

mod destination;
pub mod purge_hold;
pub mod table_plan;
#[cfg(test)]
mod table_plan_tests;
mod tables;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::{Config, TargetConfig};
use crate::domain::verification::{RowCheck, VerificationReport};
use crate::domain::{BackupId, BackupRecord, BackupStatus, Manifest};
use crate::jobs::kernel::unknown_target;
use crate::jobs::manifests::{fetch_manifest, read_small};
use crate::jobs::verify::steps::{self, encryption_check, Destination};
use crate::ports::{Catalog, ObjectStore, Restorer, ScratchEndpoint};

pub use destination::{role_names, roles_script_for, DatabaseState};
pub use tables::{RestoredTable, TableChoice, TableRestoreOutcome};

/// How many of a target's newest backups are looked through for one to restore.
const BACKUPS_LOOKED_AT: usize = 1000;

pub struct RestoreDeps {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub restorer: Arc<dyn Restorer>,
    /// Resolves the destination's password from the sources a target's may come from.
    pub passwords: Arc<crate::passwords::PasswordResolver>,
}

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The newest backup a drill verified.
    NewestVerified,
    /// This one (any backup whose objects are still kept).
    Named(BackupId),
    /// The newest restorable backup whose dump started before this time (its data is as of its start).
    Before(DateTime<Utc>),
}

pub struct RestoreRequest {
    pub target: String,
    pub pick: Pick,
    pub server: ScratchEndpoint,
    pub database: String,
    /// Run the backup's roles script (otherwise every role it names must exist on the server already).
    pub create_roles: bool,
    /// Drop and recreate a database that holds something (the CLI has asked on a terminal).
    pub clean: bool,
    /// Restore even into the database the backup was taken from.
    pub allow_source: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub target: String,
    pub backup_id: BackupId,
    pub backup_status: BackupStatus,
    pub backup_started_at: DateTime<Utc>,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Each check, as a drill reports it.
    pub report: VerificationReport,
    /// Seconds proving the stored object intact, restoring, and checking the restored copy.
    pub object_check_seconds: f64,
    pub restore_seconds: f64,
    pub check_seconds: f64,
    /// Bytes read from the store: the object once to prove it, once to restore it.
    pub object_bytes: u64,
    pub notes: Vec<String>,
    pub passed: bool,
}

/// Why nothing was restored. Nothing was written to the destination in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRefused {
    #[error(transparent)]
    UnknownTarget(#[from] crate::jobs::kernel::UnknownTarget),
    #[error("cannot read the backup records of {target}: {cause}")]
    Catalog { target: String, cause: crate::ports::CatalogError },
    #[error("{0}")]
    NoBackup(String),
    #[error(
        "{database} on {host}:{port} is the database backup {backup} was taken from; restore elsewhere, or give \
         --allow-source to restore into it"
    )]
    SourceDatabase { host: String, port: u16, database: String, backup: BackupId },
    #[error(
        "database {database} on {host}:{port} is not empty ({what}); restore into a new database (--database), or \
         give --clean to drop and recreate it"
    )]
    NotEmpty { host: String, port: u16, database: String, what: String },
    #[error(
        "the backup's server had roles {host}:{port} does not: {missing}; objects of the dump may belong to them. \
         Create them, or restore without --no-roles to create them from the backup's roles script"
    )]
    MissingRoles { host: String, port: u16, missing: String },
    #[error("the stored backup is not intact, so nothing was restored: {0}")]
    ObjectDamaged(String),
    #[error("{0}")]
    Tables(String),
    #[error(
        "{tables} already exist in {database} on {host}:{port}; restore beside them under another name (--as \
         SCHEMA.NEW_NAME), or drop them first"
    )]
    TablesExist { host: String, port: u16, database: String, tables: String },
    /// The table restore ran and stopped; its transaction was rolled back, so nothing of it was kept.
    #[error("the table restore stopped and was rolled back (nothing was kept): {0}")]
    TableRestoreFailed(String),
    /// `--to-file` could not write (the file is removed by the caller).
    #[error("writing the SQL stopped: {0}")]
    WriteFailed(String),
    #[error("cannot reach the destination {host}:{port}: {cause}")]
    Unreachable { host: String, port: u16, cause: String },
}

pub struct RestoreJob {
    config: Arc<Config>,
    deps: RestoreDeps,
}

impl RestoreJob {
    pub fn new(config: Arc<Config>, deps: RestoreDeps) -> Self {
        RestoreJob { config, deps }
    }

    /// The resolver for the destination's password (Secrets Manager, environment, 0600 file).
    pub fn passwords(&self) -> &crate::passwords::PasswordResolver {
        &self.deps.passwords
    }

    /// The target named (a server target's database as `server.database`).
    pub fn target(&self, name: &str) -> Result<&TargetConfig, RestoreRefused> {
        self.config.target(name).ok_or_else(|| RestoreRefused::UnknownTarget(unknown_target(&self.config, name)))
    }

    /// The backup `pick` chooses among the target's records. A named backup is read by its id, and one before a
    /// time among the records from that time back, so a monthly backup a year old is found however many newer
    /// records there are.
    pub async fn choose(&self, target: &str, pick: &Pick) -> Result<BackupRecord, RestoreRefused> {
        let catalog = self.deps.catalog.as_ref();
        let backups = match pick {
            Pick::NewestVerified => catalog.recent_backups(target, BACKUPS_LOOKED_AT).await,
            Pick::Named(id) => catalog.get_backup(target, id).await.map(|found| found.into_iter().collect()),
            Pick::Before(time) => catalog.backups_started_before(target, *time, BACKUPS_LOOKED_AT).await,
        }
        .map_err(|cause| RestoreRefused::Catalog { target: target.to_string(), cause })?;
        pick_backup(target, &backups, pick).cloned().map_err(RestoreRefused::NoBackup)
    }

    /// Restores the chosen backup and checks the result. `progress` hears each phase as it starts.
    pub async fn run(
        &self,
        request: &RestoreRequest,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<RestoreOutcome, RestoreRefused> {
        let target = self.target(&request.target)?;
        let backup = self.choose(&target.name, &request.pick).await?;
        let server = &request.server;
        let unreachable =
            |cause: String| RestoreRefused::Unreachable { host: server.host.clone(), port: server.port, cause };

        // The manifest first (small): it names the backup's source, which the destination must not be unasked.
        let (manifest, manifest_head) = fetch_manifest(self.deps.store.as_ref(), &backup)
            .await
            .map_err(|e| RestoreRefused::ObjectDamaged(e.to_string()))?;
        if !request.allow_source && destination::is_source(target, &manifest, server, &request.database).await {
            return Err(RestoreRefused::SourceDatabase {
                host: server.host.clone(),
                port: server.port,
                database: request.database.clone(),
                backup: backup.backup_id.clone(),
            });
        }
        let restorer = self.deps.restorer.as_ref();
        let state = destination::database_state(restorer, server, &request.database).await.map_err(unreachable)?;
        // The restore's own connections (beside psql's) must reach the server too, before anything is written:
        // they speak TLS by another library, which may refuse what psql took (docs/restore-runbook.md).
        restorer
            .server_version(server)
            .await
            .map_err(|e| unreachable(format!("psql connects, but the restore's parallel connections cannot: {e}")))?;
        let mut notes = Vec::new();
        match backup.status {
            BackupStatus::Completed => notes.push(format!(
                "backup {} has not been drilled yet: the checks below are the first proof of it",
                backup.backup_id
            )),
            BackupStatus::VerifyFailed => notes.push(format!(
                "backup {} failed its last drill ({}): the checks below say whether this copy is sound",
                backup.backup_id,
                backup.verification.as_ref().map_or("no detail".into(), |v| v.failed_checks.join(", "))
            )),
            _ => {}
        }
        if let DatabaseState::Holds(what) = &state {
            if !request.clean {
                return Err(RestoreRefused::NotEmpty {
                    host: server.host.clone(),
                    port: server.port,
                    database: request.database.clone(),
                    what: what.clone(),
                });
            }
            notes.push(format!("{} is dropped and recreated (--clean); it held {what}", request.database));
        }
        // The roles the backup's server had that this one lacks: made by the restore (only they: the roles
        // that exist keep their passwords, attributes and memberships), or, with --no-roles, a refusal.
        let missing = {
            let roles = backup
                .roles
                .as_ref()
                .ok_or_else(|| RestoreRefused::NoBackup("the backup names no roles object".into()))?;
            let (script, _) = read_small(self.deps.store.as_ref(), roles)
                .await
                .map_err(|e| RestoreRefused::ObjectDamaged(format!("the roles script: {e}")))?;
            if hex::encode(Sha256::digest(&script)) != roles.sha256 {
                return Err(RestoreRefused::ObjectDamaged(format!(
                    "the roles script {} does not hash to its recorded SHA-256",
                    roles.key
                )));
            }
            let names = role_names(&String::from_utf8_lossy(&script));
            destination::missing_roles(restorer, server, &names).await.map_err(unreachable)?
        };
        if !request.create_roles && !missing.is_empty() {
            return Err(RestoreRefused::MissingRoles {
                host: server.host.clone(),
                port: server.port,
                missing: missing.join(", "),
            });
        }
        if request.create_roles {
            notes.push(if missing.is_empty() {
                "every role of the backup's server exists here: no role was created or changed".to_string()
            } else {
                format!("roles created: {}; the roles that existed were left as they are", missing.join(", "))
            });
        }

        // Last of the refusals, as it reads the whole object: proven before anything is written.
        progress(&format!("proving backup {} intact (version, encryption, SHA-256 of every byte)", backup.backup_id));
        let started = Instant::now();
        let object_bytes =
            self.prove_intact(&backup, &manifest, &manifest_head).await.map_err(RestoreRefused::ObjectDamaged)?;
        let object_check_seconds = started.elapsed().as_secs_f64();

        // A database that is missing or dropped (--clean) is made by the restore; an empty one is used as it is,
        // with what its owner set on it.
        let remake = !matches!(state, DatabaseState::Empty);
        let destination = Destination {
            server,
            database: &request.database,
            create_roles: request.create_roles && !missing.is_empty(),
            only_roles: Some(&missing),
            remake,
            make_tablespaces: false,
        };
        progress(&format!("restoring into {} on {}:{}", request.database, server.host, server.port));
        let started = Instant::now();
        let mut report = VerificationReport::default();
        let restoration = steps::restore(
            self.deps.store.clone(),
            restorer,
            &destination,
            &backup,
            None,
            self.config.kms_key_id.as_deref(),
            Some(RowCheck::Digests),
            &mut report,
        )
        .await;
        let restore_seconds = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let restored = restoration.restored;
        if restored {
            progress("checking the restored database against the backup's fingerprint");
            // The physical check is left out: it installs amcheck, and this is the operator's database.
            steps::check(
                restorer,
                server,
                &request.database,
                &manifest,
                RowCheck::Digests,
                false,
                &target.checks,
                self.config.verify.check_timeout,
                restoration.read_early,
                &mut report,
            )
            .await;
        } else {
            notes.push(format!(
                "the restore stopped; {} may hold part of the backup: drop it, or restore again with --clean",
                request.database
            ));
        }
        let check_seconds = started.elapsed().as_secs_f64();
        let passed = restored && report.passed();
        // The database it made gets the source database's owner, comment, privileges and roles' settings, last:
        // they may take from the restoring user the right to connect that the restore and the check needed.
        let properties = manifest.session.as_ref().and_then(|s| s.database_properties.as_ref());
        if let Some(properties) = properties.filter(|_| passed && remake) {
            progress("giving the database the source's owner, comment, privileges and role settings");
            let left_out = properties.left_out();
            if !left_out.is_empty() {
                notes.push(format!(
                    "role settings that load a library, not applied (apply them once this server has the library): {}",
                    left_out.join(", ")
                ));
            }
            notes.push(match restorer.apply_database_properties(server, &request.database, properties).await {
                Ok(refused) if refused.is_empty() => format!(
                    "the source database's owner ({}), comment, privileges and role settings applied",
                    properties.owner
                ),
                Ok(refused) => format!(
                    "of the source database's owner, comment, privileges and role settings, not applied (apply them \
                     by hand, docs/restore-runbook.md#create-the-database): {}",
                    refused.join(", ")
                ),
                Err(e) => format!(
                    "the source database's owner, comment, privileges and role settings could not be applied (apply \
                     them by hand, docs/restore-runbook.md#create-the-database): {e}"
                ),
            });
        }
        Ok(RestoreOutcome {
            target: target.name.clone(),
            backup_id: backup.backup_id.clone(),
            backup_status: backup.status,
            backup_started_at: backup.started_at,
            host: server.host.clone(),
            port: server.port,
            database: request.database.clone(),
            report,
            object_check_seconds,
            restore_seconds,
            check_seconds,
            object_bytes: object_bytes * 2,
            notes,
            passed,
        })
    }

    /// Writes the backup's plain SQL to `out`, after proving the object intact (so nothing unproven is written).
    pub async fn write_sql(
        &self,
        backup: &BackupRecord,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, RestoreRefused> {
        let (manifest, manifest_head) = fetch_manifest(self.deps.store.as_ref(), backup)
            .await
            .map_err(|e| RestoreRefused::ObjectDamaged(e.to_string()))?;
        self.prove_intact(backup, &manifest, &manifest_head).await.map_err(RestoreRefused::ObjectDamaged)?;
        let dump = backup.dump.clone().ok_or_else(|| RestoreRefused::NoBackup("the backup names no dump".into()))?;
        let fetched = self
            .deps
            .store
            .get(&dump.key, dump.version_id.as_deref())
            .await
            .map_err(|e| RestoreRefused::ObjectDamaged(e.to_string()))?;
        let codec = backup.codec;
        tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut out = out;
            let raw = tokio_util::io::SyncIoBridge::new(fetched.body);
            let mut sql = steps::decoder(codec, raw)?;
            let written = std::io::copy(&mut sql, &mut out)?;
            out.flush()?;
            Ok(written)
        })
        .await
        .expect("the SQL writer does not panic")
        .map_err(|e| RestoreRefused::ObjectDamaged(format!("writing the SQL stopped: {e}")))
    }

    /// The object's current version is the backup's, every object is encrypted as configured, and the dump's
    /// bytes hash to the recorded SHA-256 (and the manifest's): read whole before anything is written, since
    /// the restore itself loads rows while it hashes. Returns the dump's size.
    async fn prove_intact(
        &self,
        backup: &BackupRecord,
        manifest: &Manifest,
        manifest_head: &crate::ports::ObjectHead,
    ) -> Result<u64, String> {
        let dump = backup.dump.as_ref().ok_or("the backup record names no dump")?;
        let store = self.deps.store.as_ref();
        current_head(store, dump).await?;
        if manifest.dump.sha256 != dump.sha256 || manifest.dump.size != dump.size {
            return Err("the manifest's size and SHA-256 of the dump are not the record's".into());
        }
        let mut fetched = store.get(&dump.key, dump.version_id.as_deref()).await.map_err(|e| e.to_string())?;
        for (name, head) in [("dump", &fetched.head), ("manifest", manifest_head)] {
            if let crate::domain::verification::CheckOutcome::Mismatch { expected, found } =
                encryption_check(head, self.config.kms_key_id.as_deref())
            {
                return Err(format!("the {name} object is encrypted with {found}, not {expected}"));
            }
        }
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = fetched.body.read(&mut buf).await.map_err(|e| format!("reading {}: {e}", dump.key))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
        }
        let sha = hex::encode(hash.finalize());
        if sha != dump.sha256 || size != dump.size {
            return Err(format!(
                "{} holds {size} bytes with SHA-256 {sha}; the backup recorded {} bytes with SHA-256 {}",
                dump.key, dump.size, dump.sha256
            ));
        }
        Ok(size)
    }
}

/// The dump's metadata, when its current version is still the backup's: a key written again since is refused
/// by both restores rather than worked around.
async fn current_head(
    store: &dyn ObjectStore,
    dump: &crate::domain::ObjectRef,
) -> Result<crate::ports::ObjectHead, String> {
    let head = store.head(&dump.key).await.map_err(|e| e.to_string())?;
    if head.version_id != dump.version_id {
        return Err(format!(
            "{} was written again after the backup (its current version is {}, the backup's {})",
            dump.key,
            head.version_id.as_deref().unwrap_or("-"),
            dump.version_id.as_deref().unwrap_or("-")
        ));
    }
    Ok(head)
}

/// The backup `pick` chooses from `backups` (newest first), or why none.
pub fn pick_backup<'b>(target: &str, backups: &'b [BackupRecord], pick: &Pick) -> Result<&'b BackupRecord, String> {
    let kept = |b: &&BackupRecord| {
        matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
    };
    let listed = format!("`backstop status --target {target}` lists its backups");
    match pick {
        Pick::NewestVerified => backups.iter().find(|b| b.status == BackupStatus::Verified).ok_or_else(|| {
            format!("{target} has no verified backup; name one with --backup ({listed}), or drill one with `backstop verify --target {target}`")
        }),
        Pick::Named(id) => {
            let found = backups
                .iter()
                .find(|b| &b.backup_id == id)
                .ok_or_else(|| format!("{target} has no backup {id}; {listed}"))?;
            if kept(&found) {
                Ok(found)
            } else {
                Err(format!("backup {id} of {target} is {}: it cannot be restored; {listed}", found.status.as_str()))
            }
        }
        Pick::Before(time) => backups
            .iter()
            .filter(kept)
            .filter(|b| b.status != BackupStatus::VerifyFailed)
            .find(|b| b.started_at < *time)
            .ok_or_else(|| {
                format!("{target} has no restorable backup that started before {}; {listed}", time.format("%Y-%m-%d %H:%M:%S UTC"))
            }),
    }
}
