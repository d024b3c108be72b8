//! The work of a drill's `restoring` and `checking` phases: read the backup's objects back with their
//! integrity checks (version, encryption of every object, SHA-256 against the record and the manifest),
//! restore roles then the dump into a scratch server (in parallel by the dump's layout, or as one stream for
//! older backups), and compare the restored copy with the fingerprint the backup recorded. Every finding is a
//! check value in the drill's report.

use std::io::Read;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::domain::dump_layout::{DumpLayout, SegmentKind};
use crate::domain::dump_parser::FINGERPRINT_V2;
use crate::domain::manifest::DumpSession;
use crate::domain::scratch_fault;
use crate::domain::verification::{compare_fingerprints, CheckName, CheckOutcome, RowCheck, VerificationReport};
use crate::domain::{BackupRecord, Manifest, ObjectRef};
use crate::pipeline::codec::Codec;
use crate::ports::{
    AwsErrorKind, EarlyReadBack, FramedDump, FramedRestoreReport, ObjectHead, ObjectStore, OpenedDump,
    ReadBackUnderway, RestoreError, Restorer, ScratchEndpoint, StoreError,
};

use crate::jobs::manifests::{fetch_manifest, read_small};

/// The database a drill restores into, on the scratch server.
pub const RESTORED_DB: &str = "backstop_restored";

/// Where a restore goes, and what it may do there: a drill owns its scratch server; `backstop restore` writes
/// into an operator's server, where it makes roles and drops a database only when told to.
pub struct Destination<'a> {
    pub server: &'a ScratchEndpoint,
    pub database: &'a str,
    /// Run the backup's roles script first (otherwise the server's own roles are used, checked beforehand).
    pub create_roles: bool,
    /// Run only the roles script's statements about these roles (those the server lacks), so an operator's
    /// existing roles keep their passwords, attributes and memberships. `None`: the whole script (a drill's
    /// scratch server has only its own superuser).
    pub only_roles: Option<&'a [String]>,
    /// Drop and create the database before the restore, and again before a one-stream fallback. When false the
    /// database exists, empty, and a parallel restore that stops leaves its rows there (and fails).
    pub remake: bool,
    /// Make the tablespaces the dump uses that the server lacks, in place (a scratch server's, gone with it); an
    /// operator's server must have them (the restore fails naming the one missing).
    pub make_tablespaces: bool,
}

impl<'a> Destination<'a> {
    /// A drill's: the scratch server's `backstop_restored`, made anew, roles from the backup.
    pub fn scratch(server: &'a ScratchEndpoint) -> Self {
        Destination {
            server,
            database: RESTORED_DB,
            create_roles: true,
            only_roles: None,
            remake: true,
            make_tablespaces: true,
        }
    }
}

/// Is the object encrypted as configured: SSE-KMS under the configured key, or, with no key configured, by
/// any server-side encryption (the bucket's default)?
pub(crate) fn encryption_check(head: &ObjectHead, expected_key: Option<&str>) -> CheckOutcome {
    let found = format!(
        "{} (key {})",
        head.server_side_encryption.as_deref().unwrap_or("no encryption"),
        head.kms_key_id.as_deref().unwrap_or("-")
    );
    let kms = match expected_key {
        Some(_) => head.server_side_encryption.as_deref() == Some("aws:kms"),
        None => head.server_side_encryption.is_some(),
    };
    // The store may report the key as an id or an ARN; the id is the ARN's last segment either way.
    let key_id = |k: &str| k.rsplit('/').next().unwrap_or(k).to_string();
    let key_ok = match (expected_key, head.kms_key_id.as_deref()) {
        (None, _) => true,
        (Some(expected), Some(actual)) => key_id(expected) == key_id(actual),
        (Some(_), None) => false,
    };
    if kms && key_ok {
        CheckOutcome::ok(found)
    } else {
        let expected = match expected_key {
            Some(key) => format!("aws:kms (key {key})"),
            None => "server-side encryption".to_string(),
        };
        CheckOutcome::Mismatch { expected, found }
    }
}

/// Counts and hashes the bytes that pass through it (the stored object, before decompression).
struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.lock().expect("hash state lock");
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// Reads the rest of the stream through the hash, so the checksum covers the whole object even when the
/// decompressor stopped early (a cut-short or corrupted object).
struct DrainOnDrop<R: Read> {
    inner: Option<R>,
}

impl<R: Read> Read for DrainOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.as_mut().expect("present until drop").read(buf)
    }
}

impl<R: Read> Drop for DrainOnDrop<R> {
    fn drop(&mut self) {
        if let Some(mut r) = self.inner.take() {
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
    }
}

pub(crate) fn decoder<R: Read + Send + 'static>(codec: Codec, raw: R) -> std::io::Result<Box<dyn Read + Send>> {
    Ok(match codec {
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
    })
}

/// Why a dump is restored as one stream rather than in parallel by its layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotParallel {
    #[error("the backup predates framed dumps")]
    NoLayout,
    #[error("its fingerprint scheme is {0}")]
    FingerprintScheme(String),
    #[error("the dump is in {0} (the parallel restore reads UTF-8 dumps)")]
    Encoding(String),
    #[error("{0}")]
    InvalidLayout(String),
}

/// The layout a parallel restore can follow, or why the dump is restored as one stream: backups made before
/// framed dumps have none, and the parallel path reads text as UTF-8 only.
pub fn parallel_layout<'m>(manifest: &'m Manifest, dump: &ObjectRef) -> Result<&'m DumpLayout, NotParallel> {
    let layout = manifest.layout.as_ref().ok_or(NotParallel::NoLayout)?;
    if manifest.fingerprint.algorithm != FINGERPRINT_V2 {
        return Err(NotParallel::FingerprintScheme(manifest.fingerprint.algorithm.clone()));
    }
    match &manifest.session {
        Some(session) if crate::domain::manifest::is_utf8(&session.client_encoding) => {}
        Some(session) => return Err(NotParallel::Encoding(session.client_encoding.clone())),
        None => return Err(NotParallel::Encoding("an unknown encoding".into())),
    }
    layout.validate(dump.size, manifest.raw_bytes).map_err(NotParallel::InvalidLayout)?;
    Ok(layout)
}

/// What was read of the stored dump while restoring it: its SHA-256 and size as read, and its metadata.
struct DumpRead {
    sha256: String,
    size: u64,
    head: ObjectHead,
}

/// Why the stored dump was not read whole.
#[derive(Debug, thiserror::Error)]
enum DumpUnread {
    #[error("the dump was not read")]
    NotRead,
    /// The framed restore's account of the read (the port reports it as text).
    #[error("{0}")]
    Reported(String),
    #[error("the dump could not be read: {0}")]
    Fetch(StoreError),
    /// The restore stopped before it read the dump (its error is the restore check's).
    #[error("the dump could not be read: {0}")]
    RestoreStopped(String),
}

/// The text of a failure to read the backup's objects, marked as the drill's own when S3 did not answer or
/// throttled the reads after every retry (`scratch_fault::STORE_UNAVAILABLE`). A refused, missing or changed
/// object stays the backup's failure: as things stand it cannot be restored.
pub(super) fn unread(text: String, kind: Option<AwsErrorKind>) -> String {
    let unavailable = kind.is_some_and(AwsErrorKind::is_transient);
    scratch_fault::mark_if(text, unavailable.then_some(scratch_fault::STORE_UNAVAILABLE))
}

/// Why restoring the dump failed, as the drill's restore check reports it.
#[derive(Debug, thiserror::Error)]
enum RestoreFailure {
    /// The parallel restore's own account of why it stopped (the port reports it as text).
    #[error("{0}")]
    Parallel(String),
    #[error("{0}")]
    Restorer(RestoreError),
    /// Why, marked when S3 did not answer ([`unread`]).
    #[error("the dump could not be fetched: {0}")]
    Fetch(String),
    #[error("cannot start decompressing: {0}")]
    Decompress(std::io::Error),
    #[error("the server took {loaded} rows into {table}, and the dump holds {expected}")]
    RowsShort { table: String, loaded: u64, expected: u64 },
    /// psql never ran, so the server's failure in either error (`scratch_fault`'s marks) leaves the dump unjudged.
    #[error("the parallel restore stopped ({why}), and the database could not be made anew for psql: {cause}")]
    NoFreshDatabase { why: String, cause: RestoreError },
    /// psql decides: the parallel restore's error is only its background, so that error's mark, if any, is
    /// taken off.
    #[error("{psql} (and before it, the parallel restore: {})", scratch_fault::unmarked(.why))]
    BothFailed { psql: Box<RestoreFailure>, why: String },
}

/// What [`restore`] did.
pub struct Restoration {
    /// Whether the copy is there to check: false when the drill cannot go on to checking.
    pub restored: bool,
    /// The read-back the parallel restore started (asked for with `read_early`), for [`check`] to take over.
    pub read_early: Option<Arc<dyn ReadBackUnderway>>,
}

impl Restoration {
    fn stopped() -> Self {
        Restoration { restored: false, read_early: None }
    }
}

/// What a restore reads of the backup before it needs a server: the dump's current version, the manifest, the
/// roles script, and (when asked, for a dump the manifest lays out for a parallel restore) the dump's object
/// opened and its tail read ahead, all side by side. A drill reads them while its scratch server is made and
/// hands them to its restore; a restore that is given none reads them itself.
pub struct FirstReads {
    version: Result<ObjectHead, StoreError>,
    manifest: Result<(Manifest, ObjectHead), crate::jobs::manifests::ManifestError>,
    roles: Result<(Vec<u8>, ObjectHead), StoreError>,
    opened: Option<OpenedDump>,
}

/// [`FirstReads`] of `backup`, the dump opened too when `open_dump`; `None` when its record names no dump or no
/// roles object ([`restore`] says so).
pub async fn first_reads(store: &dyn ObjectStore, backup: &BackupRecord, open_dump: bool) -> Option<FirstReads> {
    let (Some(dump), Some(roles)) = (&backup.dump, &backup.roles) else { return None };
    let manifest_then_dump = async {
        let manifest = fetch_manifest(store, backup).await;
        let layout =
            manifest.as_ref().ok().filter(|_| open_dump).and_then(|(manifest, _)| parallel_layout(manifest, dump).ok());
        let opened = match layout {
            Some(layout) => Some(OpenedDump::open(store, &dump.key, dump.version_id.as_deref(), layout).await),
            None => None,
        };
        (manifest, opened)
    };
    let (version, (manifest, opened), roles) =
        tokio::join!(store.head(&dump.key), manifest_then_dump, read_small(store, roles));
    Some(FirstReads { version, manifest, roles, opened })
}

/// `restoring`: object checks, roles, then the dump: in parallel by its layout, or streamed whole through
/// SHA-256 and the decompressor into psql. With `read_early`, the parallel restore reads tables back for that
/// rows check as they are ready (`ports::ReadBackUnderway`). `first`: the [`FirstReads`] already made, if any.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    store: Arc<dyn ObjectStore>,
    restorer: &dyn Restorer,
    destination: &Destination<'_>,
    backup: &BackupRecord,
    first: Option<FirstReads>,
    expected_kms_key: Option<&str>,
    read_early: Option<RowCheck>,
    report: &mut VerificationReport,
) -> Restoration {
    report.forget(|n| {
        matches!(
            n,
            CheckName::ObjectVersion
                | CheckName::ObjectEncryption
                | CheckName::ObjectChecksum
                | CheckName::Roles
                | CheckName::Restore
        )
    });
    let Destination { server, database, .. } = *destination;
    // Without reads made beforehand, the dump is opened by the restore itself, beside the server's preparation.
    let first = match first {
        Some(first) => Some(first),
        None => first_reads(store.as_ref(), backup, false).await,
    };
    let (Some(dump), Some(roles), Some(FirstReads { version, manifest, roles: roles_read, opened })) =
        (&backup.dump, &backup.roles, first)
    else {
        report.push(
            CheckName::Restore,
            CheckOutcome::Error { message: "the backup record names no dump or roles object".into() },
        );
        return Restoration::stopped();
    };

    // Overwritten since? The key's current version must still be the one the backup wrote.
    let version = match version {
        Ok(head) if head.version_id == dump.version_id => {
            CheckOutcome::ok(format!("current version is {}", dump.version_id.as_deref().unwrap_or("-")))
        }
        Ok(head) => CheckOutcome::Mismatch {
            expected: format!("current version {}", dump.version_id.as_deref().unwrap_or("-")),
            found: format!(
                "current version {} (the key was written again after the backup)",
                head.version_id.as_deref().unwrap_or("-")
            ),
        },
        Err(e) => CheckOutcome::Error { message: unread(e.to_string(), e.service_kind()) },
    };
    report.push(CheckName::ObjectVersion, version);

    // The manifest first: it says how the dump is laid out, and its copy of the dump's size and SHA-256 must
    // be the record's (the restored bytes are then checked against both).
    let (manifest, manifest_head) = match manifest {
        Ok(found) => found,
        Err(e) => {
            let message = unread(e.to_string(), e.service_kind());
            report.push(CheckName::ObjectChecksum, CheckOutcome::Error { message });
            return Restoration::stopped();
        }
    };
    if manifest.dump.sha256 != dump.sha256 || manifest.dump.size != dump.size {
        report.push(
            CheckName::ObjectChecksum,
            CheckOutcome::Mismatch {
                expected: format!("the record's {} bytes, sha256 {}", dump.size, dump.sha256),
                found: format!("the manifest's {} bytes, sha256 {}", manifest.dump.size, manifest.dump.sha256),
            },
        );
        return Restoration::stopped();
    }

    let (roles_sql, roles_head) = match roles_read {
        Ok((bytes, head)) if hex::encode(Sha256::digest(&bytes)) == roles.sha256 => (bytes, head),
        Ok(_) => {
            report.push(
                CheckName::Roles,
                CheckOutcome::Mismatch {
                    expected: format!("sha256 {}", roles.sha256),
                    found: "different bytes".into(),
                },
            );
            return Restoration::stopped();
        }
        Err(e) => {
            report.push(CheckName::Roles, CheckOutcome::Error { message: unread(e.to_string(), e.service_kind()) });
            return Restoration::stopped();
        }
    };
    // Only the `restore` check's wording needs it: asked once the server is ready, beside the restore.
    let upgrade =
        async { upgrade_note(backup.server_version.as_deref(), restorer.server_version(server).await.ok().as_deref()) };
    let mut started_early = None;
    let session = manifest.session.as_ref();
    // What the `restore` check's detail adds to how the restore went: tablespaces made, a locale not had, the
    // source database's settings, an upgrade.
    let (restored, dump_read, notes) = match parallel_layout(&manifest, dump) {
        Ok(layout) => {
            let (ready, server_ready) = tokio::sync::oneshot::channel();
            let framed = FramedDump {
                key: &dump.key,
                version_id: dump.version_id.as_deref(),
                codec: backup.codec,
                layout,
                read_early: manifest
                    .session
                    .as_ref()
                    .zip(read_early)
                    .map(|(session, rows)| EarlyReadBack { rows, session }),
                server_ready: Some(server_ready),
                opened,
            };
            // The object's first reads (its tail, its body's first bytes), when not made already, go on while the
            // server is prepared.
            let prepare = async {
                let prepared = prepare_server(restorer, destination, &roles_sql, session, &manifest.tablespaces).await;
                let _ = ready.send(prepared.ready());
                let notes =
                    if prepared.ready() { format!("{}{}", prepared.note, upgrade.await) } else { String::new() };
                (prepared, notes)
            };
            let ((prepared, notes), done) =
                tokio::join!(prepare, restorer.restore_framed(store.clone(), server, database, framed));
            if !prepared.report(report) {
                return Restoration::stopped();
            }
            let (restored, read) = match done {
                Ok(mut done) => {
                    started_early = done.read_early.take();
                    let read = match (&done.object_error, &done.object_head) {
                        (None, Some(head)) => Ok(DumpRead {
                            sha256: done.object_sha256.clone(),
                            size: done.object_size,
                            head: head.clone(),
                        }),
                        (Some(e), _) => Err(DumpUnread::Reported(e.clone())),
                        (None, None) => Err(DumpUnread::NotRead),
                    };
                    match &done.restore_error {
                        None => (rows_loaded_check(database, layout, &done).map(Restored::AsPlanned), read),
                        Some(why) => {
                            let object_intact =
                                matches!(&read, Ok(read) if read.sha256 == dump.sha256 && read.size == dump.size);
                            if object_intact && destination.remake {
                                // The bytes are the ones backed up, so psql decides: the parallel path may have
                                // met something it cannot place (or run side by side) that psql restores.
                                fall_back_to_one_stream(
                                    store.as_ref(),
                                    restorer,
                                    destination,
                                    backup,
                                    dump,
                                    session,
                                    why,
                                    read,
                                )
                                .await
                            } else if object_intact {
                                // The database was the operator's, empty: it is not dropped to start again.
                                let why = format!(
                                    "{why}; what was loaded so far is still in {database} (drop it, or restore again with --clean)"
                                );
                                (Err(RestoreFailure::Parallel(why)), read)
                            } else {
                                (Err(RestoreFailure::Parallel(why.clone())), read)
                            }
                        }
                    }
                }
                Err(e) => {
                    let unread = DumpUnread::RestoreStopped(e.to_string());
                    (Err(RestoreFailure::Restorer(e)), Err(unread))
                }
            };
            (restored, read, notes)
        }
        Err(why) => {
            let prepared = prepare_server(restorer, destination, &roles_sql, session, &manifest.tablespaces).await;
            let note = prepared.note.clone();
            if !prepared.report(report) {
                return Restoration::stopped();
            }
            let (restored, read) = restore_streamed(store.as_ref(), restorer, server, database, backup, dump).await;
            let restored = restored.map(|detail| Restored::AsPlanned(format!("{detail} (as one stream: {why})")));
            (restored, read, format!("{note}{}", upgrade.await))
        }
    };
    match dump_read {
        Ok(DumpRead { sha256: sha, size, head: dump_head }) => {
            let encryption = encryption_of(
                &[("dump", &dump_head), ("roles", &roles_head), ("manifest", &manifest_head)],
                expected_kms_key,
            );
            report.push(CheckName::ObjectEncryption, encryption);
            let checksum = if sha == dump.sha256 && size == dump.size {
                CheckOutcome::ok(format!("{size} bytes, sha256 {sha}, as the record and the manifest say"))
            } else {
                CheckOutcome::Mismatch {
                    expected: format!("{} bytes, sha256 {}", dump.size, dump.sha256),
                    found: format!("{size} bytes, sha256 {sha}"),
                }
            };
            report.push(CheckName::ObjectChecksum, checksum);
        }
        Err(unread) => {
            // The bytes could not be read to the end: nothing is known of them, and nothing of the encryption.
            let reason = format!("the dump could not be read whole: {unread}");
            report.push(CheckName::ObjectEncryption, CheckOutcome::not_run(reason.clone()));
            report.push(CheckName::ObjectChecksum, CheckOutcome::not_run(reason));
        }
    }
    // The source database's own settings, now that the restore cannot trip on them: what runs on the copy next
    // (the user checks) runs as it would on the source, with its search_path.
    let settings = session.map_or(&[][..], |s| s.database_settings.as_slice());
    let mut notes = notes;
    if restored.is_ok() && destination.remake && !settings.is_empty() {
        match restorer.apply_database_settings(server, database, settings).await {
            Ok(refused) if refused.is_empty() => {
                notes.push_str(&format!("; the source database's {} setting(s) applied", settings.len()))
            }
            Ok(refused) => notes.push_str(&format!(
                "; of the source database's {} setting(s), not applied: {}",
                settings.len(),
                refused.join(", ")
            )),
            Err(e) => notes.push_str(&format!("; the source database's settings could not be applied: {e}")),
        }
    }
    if session.is_some_and(|s| s.source_in_recovery) {
        notes.push_str(
            "; dumped from a hot standby, so the dump holds no rows of unlogged tables (pg_dump leaves them out) and \
             the copy has them empty",
        );
    }
    match restored {
        Ok(Restored::AsPlanned(detail)) => {
            report.push(CheckName::Restore, CheckOutcome::ok(format!("{detail}{notes}")));
            Restoration { restored: true, read_early: started_early }
        }
        Ok(Restored::OneStream { why_not_parallel }) => {
            report.push(
                CheckName::Restore,
                CheckOutcome::Warning {
                    detail: format!(
                        "restored into {database} on one connection by psql, because the parallel restore stopped: {why_not_parallel}{notes}"
                    ),
                },
            );
            Restoration { restored: true, read_early: None }
        }
        Err(failure) => {
            report.push(CheckName::Restore, CheckOutcome::Error { message: failure.to_string() });
            Restoration::stopped()
        }
    }
}

/// The server made ready for the dump's first statement: the backup's roles (or the server's own), on a scratch
/// server the dump's tablespaces, and, for a destination that is remade, the database made anew.
struct Prepared {
    roles: CheckOutcome,
    /// Why the tablespaces or the database could not be made (not tried when the roles failed).
    database: Result<(), String>,
    /// For the `restore` check's detail: the tablespaces made for the dump, the source's locale not had.
    note: String,
}

impl Prepared {
    fn ready(&self) -> bool {
        !self.roles.is_failure() && self.database.is_ok()
    }

    /// Its checks into `report`; `false` when the restore cannot go on.
    fn report(self, report: &mut VerificationReport) -> bool {
        let ready = self.ready();
        report.push(CheckName::Roles, self.roles);
        if let Err(message) = self.database {
            report.push(CheckName::Restore, CheckOutcome::Error { message });
        }
        ready
    }
}

/// Runs the roles script (or says the server's own roles are used), makes the dump's `tablespaces` on a scratch
/// server, then remakes the database (as the dump's `session` says: its encoding, the source's locale) when asked
/// to.
async fn prepare_server(
    restorer: &dyn Restorer,
    destination: &Destination<'_>,
    roles_sql: &[u8],
    session: Option<&DumpSession>,
    tablespaces: &[String],
) -> Prepared {
    let Destination { server, database, .. } = *destination;
    let roles = if !destination.create_roles {
        CheckOutcome::ok("the roles script was not run: the server's own roles are used")
    } else {
        let script = match destination.only_roles {
            Some(new) => crate::jobs::restore::roles_script_for(&String::from_utf8_lossy(roles_sql), new).into_bytes(),
            None => roles_sql.to_vec(),
        };
        match restorer.restore_roles(server, &script).await {
            Ok(warnings) if warnings.is_empty() => CheckOutcome::ok("all roles created"),
            Ok(warnings) => CheckOutcome::Warning {
                detail: format!("{} statement(s) refused, e.g. {}", warnings.len(), warnings[0]),
            },
            Err(e) => CheckOutcome::Error { message: e.to_string() },
        }
    };
    if roles.is_failure() {
        return Prepared { roles, database: Ok(()), note: String::new() };
    }
    let mut note = String::new();
    if destination.make_tablespaces {
        match restorer.create_tablespaces(server, tablespaces).await {
            Ok(made) if made.is_empty() => {}
            Ok(made) => note = format!("; tablespace(s) {} made on the scratch server for it", made.join(", ")),
            Err(e) => return Prepared { roles, database: Err(e.to_string()), note },
        }
    }
    let database = if destination.remake {
        match restorer.recreate_database(server, database, session).await {
            Ok(None) => Ok(()),
            Ok(Some(why_not_as_the_source)) => {
                note.push_str(&format!("; {why_not_as_the_source}"));
                Ok(())
            }
            Err(e) => Err(format!("cannot create the database to restore into: {e}")),
        }
    } else {
        Ok(())
    };
    Prepared { roles, database, note }
}

/// The major version of a version string, when there is one.
fn major(version: Option<&str>) -> Option<u32> {
    version.and_then(crate::domain::backup::major_version)
}

/// Says so when the scratch server is a newer major than the backup's source: the drill then proves an upgrade
/// by dump and restore, not a restore onto the same version.
fn upgrade_note(backup_server: Option<&str>, scratch_server: Option<&str>) -> String {
    match (major(backup_server), major(scratch_server)) {
        (Some(from), Some(to)) if to > from => format!(
            "; an upgrade drill: dumped from PostgreSQL {}, restored on PostgreSQL {}",
            backup_server.unwrap_or_default().trim(),
            scratch_server.unwrap_or_default().trim()
        ),
        _ => String::new(),
    }
}

/// How a restore that succeeded went.
enum Restored {
    /// As planned: in parallel by the layout, or as one stream for a dump without a usable layout.
    AsPlanned(String),
    /// In parallel first, which stopped; then psql, on one connection, restored the dump whole.
    OneStream { why_not_parallel: String },
}

/// The parallel restore stopped on an intact object: the database is made anew and psql restores the dump as one
/// stream, as the runbook does. A dump psql restores is never failed for the parallel path's sake; one it
/// cannot restore fails with psql's own error.
#[allow(clippy::too_many_arguments)]
async fn fall_back_to_one_stream(
    store: &dyn ObjectStore,
    restorer: &dyn Restorer,
    destination: &Destination<'_>,
    backup: &BackupRecord,
    dump: &ObjectRef,
    session: Option<&DumpSession>,
    why: &str,
    first_read: Result<DumpRead, DumpUnread>,
) -> (Result<Restored, RestoreFailure>, Result<DumpRead, DumpUnread>) {
    tracing::warn!(reason = %why, "the parallel restore stopped; restoring the dump again on one connection");
    let Destination { server, database, .. } = *destination;
    if let Err(cause) = restorer.recreate_database(server, database, session).await {
        return (Err(RestoreFailure::NoFreshDatabase { why: why.to_string(), cause }), first_read);
    }
    let (restored, read) = restore_streamed(store, restorer, server, database, backup, dump).await;
    let restored = match restored {
        Ok(_) => Ok(Restored::OneStream { why_not_parallel: why.to_string() }),
        Err(psql) => Err(RestoreFailure::BothFailed { psql: Box::new(psql), why: why.to_string() }),
    };
    (restored, read)
}

/// The server accepted as many rows per table as the layout says the dump holds.
fn rows_loaded_check(
    database: &str,
    layout: &DumpLayout,
    done: &FramedRestoreReport,
) -> Result<String, RestoreFailure> {
    // A table's rows may be in several segments (partitions pg_dump loads through their root).
    let mut expected = std::collections::BTreeMap::<(String, String), u64>::new();
    for segment in &layout.segments {
        let SegmentKind::Copy { schema, name, rows, .. } = &segment.kind else { continue };
        *expected.entry((schema.clone(), name.clone())).or_default() += rows;
    }
    let tables = expected.len();
    for ((schema, name), rows) in expected {
        let loaded = done.rows_loaded.get(&(schema.clone(), name.clone())).copied().unwrap_or(0);
        if loaded != rows {
            return Err(RestoreFailure::RowsShort { table: format!("{schema}.{name}"), loaded, expected: rows });
        }
    }
    let rows: u64 = done.rows_loaded.values().sum();
    let retried = if done.retried_alone > 0 {
        format!("; {} statement(s) run again alone after a deadlock", done.retried_alone)
    } else {
        String::new()
    };
    let early = if done.built_during_load > 0 {
        format!("; {} index and constraint builds started as their tables' rows came in", done.built_during_load)
    } else {
        String::new()
    };
    let event_triggers = if done.event_triggers_moved_last {
        "; the event triggers made after the materialized views were refreshed, as on the source (in pg_dump's \
         order every refresh fires them: a psql restore of this dump runs as a superuser with \
         PGOPTIONS='-c session_replication_role=replica', docs/restore-runbook.md)"
    } else {
        ""
    };
    Ok(format!(
        "restored into {database} in parallel: {} statements, {rows} rows in {tables} tables{early}{retried}{event_triggers}",
        done.statements
    ))
}

/// The sequential restore (backups without a usable layout): the object streamed through SHA-256 and the
/// decompressor into psql in one transaction. Returns the restore's outcome and what was read of the object.
async fn restore_streamed(
    store: &dyn ObjectStore,
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    database: &str,
    backup: &BackupRecord,
    dump: &ObjectRef,
) -> (Result<String, RestoreFailure>, Result<DumpRead, DumpUnread>) {
    let fetched = match store.get(&dump.key, dump.version_id.as_deref()).await {
        Ok(f) => f,
        Err(e) => {
            let why = unread(e.to_string(), e.service_kind());
            return (Err(RestoreFailure::Fetch(why)), Err(DumpUnread::Fetch(e)));
        }
    };
    let head = fetched.head.clone();
    let hashed = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let raw = DrainOnDrop {
        inner: Some(HashingReader { inner: tokio_util::io::SyncIoBridge::new(fetched.body), state: hashed.clone() }),
    };
    let restored = match decoder(backup.codec, raw) {
        Ok(sql) => restorer
            .restore_sql(server, database, sql)
            .await
            .map(|()| format!("restored into {database}"))
            .map_err(RestoreFailure::Restorer),
        Err(e) => Err(RestoreFailure::Decompress(e)),
    };
    let state = hashed.lock().expect("hash state lock");
    (restored, Ok(DumpRead { sha256: hex::encode(state.0.clone().finalize()), size: state.1, head }))
}

/// Every object of the backup must be encrypted as configured; the first that is not is named.
fn encryption_of(objects: &[(&str, &ObjectHead)], expected_key: Option<&str>) -> CheckOutcome {
    let mut details = Vec::new();
    for (name, head) in objects {
        match encryption_check(head, expected_key) {
            CheckOutcome::Ok { detail } => details.push(format!("{name}: {detail}")),
            CheckOutcome::Mismatch { expected, found } => {
                return CheckOutcome::Mismatch { expected, found: format!("the {name} object: {found}") }
            }
            other => return other,
        }
    }
    CheckOutcome::ok(details.join("; "))
}

/// `checking`: the restored copy against the manifest's fingerprint, then the target's own checks. Framed
/// dumps are read back over several connections (rows digested, or counted), beside the read-back the restore
/// started, if any (`read_early`, taken over); older backups by a full re-dump.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    database: &str,
    manifest: &Manifest,
    rows: RowCheck,
    physical: bool,
    user_checks: &[crate::config::UserCheck],
    timeout: std::time::Duration,
    read_early: Option<Arc<dyn ReadBackUnderway>>,
    report: &mut VerificationReport,
) {
    report.forget(|n| {
        matches!(
            n,
            CheckName::TableSet
                | CheckName::Table { .. }
                | CheckName::OtherTables
                | CheckName::SchemaDigest
                | CheckName::Sequences
                | CheckName::LargeObjects
                | CheckName::Physical
                | CheckName::User { .. }
        )
    });
    // How far the restore's own read-back had come when the restore ended, for the table-set check to say.
    let read_during_restore = read_early.as_ref().filter(|e| e.rows() == rows).map(|e| e.tables_read());
    let restored = if parallel_layout(manifest, &manifest.dump).is_ok() {
        restorer.read_back(server, database, manifest, rows, read_early).await.map(|f| (f, rows))
    } else {
        restorer
            .fingerprint(server, database, &manifest.fingerprint.algorithm, manifest.session.as_ref())
            .await
            .map(|s| (s.fingerprint, RowCheck::Digests))
    };
    match restored {
        Ok((restored, rows)) => {
            let mut checks = compare_fingerprints(&manifest.fingerprint, &restored, rows);
            if let Some(read) = read_during_restore {
                if let Some(CheckOutcome::Ok { detail }) =
                    checks.iter_mut().find(|c| c.name == CheckName::TableSet).map(|c| &mut c.outcome)
                {
                    detail.push_str(&format!(
                        " ({read} read back as the restore went, once their rows and builds were in)"
                    ));
                }
            }
            // Only a schema digest that differs asks which versions read the copy back (a connection and a
            // program run more): across versions, pg_dump's text may differ for the same schema.
            let mismatch = checks
                .iter_mut()
                .find(|c| c.name == CheckName::SchemaDigest && matches!(c.outcome, CheckOutcome::Mismatch { .. }));
            if let Some(check) = mismatch {
                let versions = read_back_versions(restorer, server).await;
                if let (Some(why), CheckOutcome::Mismatch { expected, found }) =
                    (schema_not_comparable(manifest, &versions), &check.outcome)
                {
                    check.outcome = CheckOutcome::Warning {
                        detail: format!("differs ({expected} before, {found} after), as expected: {why}; tables, rows, sequences and large objects were compared"),
                    };
                }
            }
            report.checks.extend(checks)
        }
        Err(e) => report.push(
            CheckName::TableSet,
            CheckOutcome::Error { message: format!("cannot read the restored copy back: {e}") },
        ),
    }
    if physical {
        // After the read-back: the extension amcheck needs must not show in the schema digest.
        let started = std::time::Instant::now();
        let outcome = match restorer.physical_check(server, database).await {
            Ok(found) => physical_outcome(&found, started.elapsed()),
            Err(e) => CheckOutcome::Error { message: e.to_string() },
        };
        report.push(CheckName::Physical, outcome);
    }
    run_user_checks(restorer, server, database, user_checks, timeout, report).await;
}

/// The client programs' major and the scratch server's version, which read the restored copy back.
async fn read_back_versions(restorer: &dyn Restorer, server: &ScratchEndpoint) -> (Option<u32>, Option<String>) {
    (restorer.client_major().await.ok(), restorer.server_version(server).await.ok())
}

/// Why the schema digest cannot be expected to match: it hashes pg_dump's text, which depends on pg_dump's
/// version and the server's (how it prints definitions). `None` when both are the backup's.
fn schema_not_comparable(
    manifest: &Manifest,
    (client_major, scratch_server): &(Option<u32>, Option<String>),
) -> Option<String> {
    let dumped_by = major(manifest.pg_dump_version.as_deref());
    let dumped_from = major(manifest.server_version.as_deref());
    let restored_on = major(scratch_server.as_deref());
    if dumped_by != *client_major || dumped_from != restored_on {
        let show = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
        Some(format!(
            "the backup's schema was written by pg_dump {} from PostgreSQL {}, the copy's by pg_dump {} from PostgreSQL {}",
            show(dumped_by),
            show(dumped_from),
            show(*client_major),
            show(restored_on)
        ))
    } else {
        None
    }
}

/// amcheck's findings as a check: any problem is a mismatch (pages that do not read back as PostgreSQL wrote
/// them), with the first few named.
fn physical_outcome(found: &crate::ports::PhysicalCheckReport, took: std::time::Duration) -> CheckOutcome {
    let what = if found.heap_checked {
        format!("{} tables (heap and TOAST) and {} B-tree indexes", found.tables, found.indexes)
    } else {
        format!("{} B-tree indexes (heaps need PostgreSQL 14's verify_heapam)", found.indexes)
    };
    if found.problem_count == 0 {
        CheckOutcome::ok(format!("{what} checked in {:.1} s, no problem", took.as_secs_f64()))
    } else {
        CheckOutcome::Mismatch {
            expected: format!("no problem in {what}"),
            found: format!(
                "{} problem(s), e.g. {}",
                found.problem_count,
                found.problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
        }
    }
}

/// A drill that stopped before its checking phase: every check it would have run is reported as not run,
/// with why, so the one that failed is the only one named as failed.
pub fn mark_unchecked(report: &mut VerificationReport, user_checks: &[crate::config::UserCheck], physical: bool) {
    // The last failure is the one that stopped the drill (an earlier one, such as a version mismatch, does not).
    let stopped_at = report.failures().last().map(|c| c.name.label());
    let reason = match stopped_at {
        Some(label) => format!("the drill stopped at {label} before the restored copy could be checked"),
        None => "the drill stopped before the restored copy could be checked".to_string(),
    };
    let mut names = vec![
        CheckName::ObjectVersion,
        CheckName::ObjectEncryption,
        CheckName::ObjectChecksum,
        CheckName::Roles,
        CheckName::Restore,
        CheckName::TableSet,
        CheckName::SchemaDigest,
        CheckName::Sequences,
        CheckName::LargeObjects,
    ];
    if physical {
        names.push(CheckName::Physical);
    }
    names.extend(user_checks.iter().map(|u| CheckName::User { name: u.name.clone() }));
    report.mark_not_run(names, &reason);
}

/// `checking` for a point-in-time copy: it has no fingerprint to compare, so it must accept connections to the
/// target's database and pass the target's own checks.
pub async fn check_live_copy(
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    database: &str,
    user_checks: &[crate::config::UserCheck],
    timeout: std::time::Duration,
    report: &mut VerificationReport,
) {
    report.forget(|n| matches!(n, CheckName::Restore | CheckName::User { .. }));
    let connects = match restorer.check(server, database, "SELECT true", timeout).await {
        Ok(true) => CheckOutcome::ok(format!("the copy accepts connections to {database}")),
        Ok(false) => CheckOutcome::Mismatch { expected: "SELECT true to return true".into(), found: "not true".into() },
        Err(e) => CheckOutcome::Error { message: format!("cannot query {database} on the copy: {e}") },
    };
    let reachable = !connects.is_failure();
    report.push(CheckName::Restore, connects);
    if reachable {
        run_user_checks(restorer, server, database, user_checks, timeout, report).await;
    }
}

async fn run_user_checks(
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    database: &str,
    user_checks: &[crate::config::UserCheck],
    timeout: std::time::Duration,
    report: &mut VerificationReport,
) {
    for user in user_checks {
        let outcome = match restorer.check(server, database, &user.sql, timeout).await {
            Ok(true) => CheckOutcome::ok("returned true"),
            Ok(false) => CheckOutcome::Mismatch { expected: "true".into(), found: "not true".into() },
            Err(e) => CheckOutcome::Error { message: e.to_string() },
        };
        report.push(CheckName::User { name: user.name.clone() }, outcome);
    }
}
