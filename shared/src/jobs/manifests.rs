//! Reading a backup's small objects back (its manifest, its roles script) from the exact version its record
//! names, with what the store says of them, and the manifest checked against the SHA-256 the record holds.

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::domain::{BackupRecord, Manifest, ObjectRef};
use crate::ports::{ObjectHead, ObjectStore, StoreError};

/// Why a backup's manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the backup record names no manifest")]
    NotRecorded,
    #[error("{0}")]
    Unreadable(StoreError),
    #[error("the manifest {key} does not have the SHA-256 its record holds")]
    ChecksumMismatch { key: String },
    #[error("the manifest {key} is not valid: {cause}")]
    Invalid { key: String, cause: serde_json::Error },
}

/// Reads a small object whole, with what the store says of it.
pub async fn read_small(store: &dyn ObjectStore, object: &ObjectRef) -> Result<(Vec<u8>, ObjectHead), StoreError> {
    let mut fetched = store.get(&object.key, object.version_id.as_deref()).await?;
    let mut bytes = Vec::new();
    fetched.body.read_to_end(&mut bytes).await.map_err(|e| StoreError {
        operation: "GetObject",
        key: object.key.clone(),
        cause: Box::new(e),
    })?;
    Ok((bytes, fetched.head))
}

impl ManifestError {
    /// What kind of failure S3 met, when the manifest could not be read.
    pub fn service_kind(&self) -> Option<crate::ports::AwsErrorKind> {
        match self {
            ManifestError::Unreadable(e) => e.service_kind(),
            _ => None,
        }
    }
}

/// The manifest the backup wrote, from the exact version the record names, with its metadata.
pub async fn fetch_manifest(
    store: &dyn ObjectStore,
    backup: &BackupRecord,
) -> Result<(Manifest, ObjectHead), ManifestError> {
    let object = backup.manifest.as_ref().ok_or(ManifestError::NotRecorded)?;
    let (bytes, head) = read_small(store, object).await.map_err(ManifestError::Unreadable)?;
    if hex::encode(Sha256::digest(&bytes)) != object.sha256 {
        return Err(ManifestError::ChecksumMismatch { key: object.key.clone() });
    }
    let manifest =
        serde_json::from_slice(&bytes).map_err(|cause| ManifestError::Invalid { key: object.key.clone(), cause })?;
    Ok((manifest, head))
}

/// The manifest the backup wrote, from the exact version the record names.
pub async fn read_manifest(store: &dyn ObjectStore, backup: &BackupRecord) -> Result<Manifest, ManifestError> {
    fetch_manifest(store, backup).await.map(|(manifest, _)| manifest)
}
