//! The manifest: a small JSON object stored beside each dump so the bucket describes itself even if the
//! catalog table is lost. It holds everything a restore (or `backstop verify`) needs to check the dump.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pipeline::codec::Codec;

use super::backup::{BackupId, ObjectRef};
use super::fingerprint::Fingerprint;

pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `backstop <version>` that wrote it.
    pub tool: String,
    pub target: ManifestTarget,
    pub backup_id: BackupId,
    /// When pg_dump started: its snapshot is taken within moments of this.
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
    pub codec: Codec,
    pub compression_level: i32,
    /// Bytes of SQL pg_dump wrote.
    pub raw_bytes: u64,
    pub dump: ObjectRef,
    pub roles: RolesRef,
    pub fingerprint: Fingerprint,
    /// The exact commands that restore this backup with stock tools.
    pub restore_hint: String,
}

/// Where the database lived (no credentials: those never leave the secret store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesRef {
    #[serde(flatten)]
    pub object: ObjectRef,
    /// False where the server forbids reading password hashes (RDS): roles restore without passwords.
    pub passwords_included: bool,
}
