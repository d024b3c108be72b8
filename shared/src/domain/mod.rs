//! The domain: what a backup, its manifest, a run and a fingerprint are, and how healthy a target's backups
//! are. Plain data and pure functions, no I/O.

pub mod backup;
pub mod codec;
pub mod database;
pub mod database_properties;
pub mod discovery;
pub mod drill;
pub mod dump_layout;
pub mod dump_parser;
pub mod evidence;
pub mod fingerprint;
pub mod health;
pub mod manifest;
pub mod redact;
pub mod retention;
pub mod row_digest;
pub mod run;
pub mod runbook;
pub mod runner;
pub mod scratch_fault;
pub mod severity;
pub mod sql;
pub mod text;
pub mod verification;

pub use backup::{BackupId, BackupRecord, BackupStatus, ObjectRef, VerificationSummary};
pub use database::DatabaseAddress;
pub use fingerprint::{Fingerprint, FingerprintBuilder, TableFingerprint};
pub use manifest::Manifest;
pub use run::{Job, RunRecord, RunStart, TargetOutcome, TargetResult, Trigger};
pub use severity::Severity;
