//! The domain: what a backup, its manifest, a run and a fingerprint are. Plain data, no I/O.

pub mod backup;
pub mod fingerprint;
pub mod manifest;
pub mod redact;
pub mod run;

pub use backup::{BackupId, BackupRecord, BackupStatus, ObjectRef};
pub use fingerprint::{Fingerprint, FingerprintBuilder, TableFingerprint};
pub use manifest::Manifest;
pub use run::{Job, RunRecord, TargetOutcome, TargetResult, Trigger};
