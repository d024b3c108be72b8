//! A backup: its identity, where its objects live, and its status lifecycle.
//!
//! `in_progress` → `completed` | `failed`; later `verified` / `verify_failed` (verify), `purging` → `purged`
//! (purge), and `lost` when purge finds that a restore point's objects are gone from the bucket. Every change of status is a conditional write in the catalog that names the status it expects, so
//! two writers can never both move one backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::Codec;

use super::run::Trigger;

/// Sorts by time: `20261122T020000Z-1a2b3c4d` (UTC start, then random bits so two starts in one second differ).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(pub String);

impl BackupId {
    pub fn new(started_at: DateTime<Utc>) -> Self {
        BackupId(format!("{}-{:08x}", started_at.format("%Y%m%dT%H%M%SZ"), rand::random::<u32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    InProgress,
    Completed,
    Failed,
    Verified,
    VerifyFailed,
    Purging,
    Purged,
    /// A `completed` or `verified` backup whose dump, manifest or roles object the bucket no longer holds (deleted
    /// or expired outside Backstop): not a restore point any more. Purge finds and marks it.
    Lost,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::InProgress => "in_progress",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
            BackupStatus::Verified => "verified",
            BackupStatus::VerifyFailed => "verify_failed",
            BackupStatus::Purging => "purging",
            BackupStatus::Purged => "purged",
            BackupStatus::Lost => "lost",
        }
    }
}

impl std::fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub key: String,
    /// `None` only where the bucket is unversioned (never in a Backstop deployment).
    pub version_id: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// The catalog's record of one backup. Large details (the per-table fingerprint) live in the manifest object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub target: String,
    pub backup_id: BackupId,
    pub status: BackupStatus,
    pub trigger: Trigger,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When pg_dump started and when it exited: the backup's time splits into what came before (pre-flight,
    /// records), the dump itself, and what came after (the upload's completion, the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_finished_at: Option<DateTime<Utc>>,
    pub codec: Codec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<ObjectRef>,
    #[serde(default)]
    pub raw_bytes: u64,
    #[serde(default)]
    pub table_count: u64,
    #[serde(default)]
    pub row_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump_version: Option<String>,
    /// Why the backup failed, secrets already redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What pg_dump warned of in a backup that completed (`pg_dump: warning: subscriptions not dumped …`), secrets
    /// redacted: what the dump may lack although pg_dump succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The latest restore drill's verdict (`verified` / `verify_failed`); the full report is in the drill record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSummary>,
}

/// A restore drill's verdict on a backup, kept on the backup's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationSummary {
    pub drill_id: String,
    pub finished_at: DateTime<Utc>,
    pub passed: bool,
    /// Labels of the failed checks (`object_checksum`, `table public.orders`, …).
    #[serde(default)]
    pub failed_checks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
}

impl BackupRecord {
    pub fn in_progress(
        target: &str,
        backup_id: BackupId,
        trigger: Trigger,
        run_id: &str,
        started_at: DateTime<Utc>,
        codec: Codec,
    ) -> Self {
        BackupRecord {
            target: target.to_string(),
            backup_id,
            status: BackupStatus::InProgress,
            trigger,
            run_id: run_id.to_string(),
            started_at,
            finished_at: None,
            dump_started_at: None,
            dump_finished_at: None,
            codec,
            dump: None,
            manifest: None,
            roles: None,
            raw_bytes: 0,
            table_count: 0,
            row_count: 0,
            server_version: None,
            pg_dump_version: None,
            error: None,
            warnings: Vec::new(),
            verification: None,
        }
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        self.finished_at.map(|f| (f - self.started_at).num_milliseconds() as f64 / 1000.0)
    }
}

/// Where a backup's objects go: grouped by target, then date, so a bucket listing reads like a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKeys {
    /// What every key of this backup starts with (`…/<id>.`); ids are unique, so nothing else does.
    pub attempt_prefix: String,
    pub dump: String,
    pub manifest: String,
    pub roles: String,
}

impl ObjectKeys {
    pub fn new(prefix: &str, target: &str, id: &BackupId, started_at: DateTime<Utc>, codec: Codec) -> Self {
        let base = format!("{prefix}{target}/{}/{id}", started_at.format("%Y/%m/%d"));
        ObjectKeys {
            attempt_prefix: format!("{base}."),
            dump: format!("{base}.{}", codec.extension()),
            manifest: format!("{base}.manifest.json"),
            roles: format!("{base}.roles.sql"),
        }
    }
}

/// A bound above the id of every backup that started in `at`'s second or before, and below every later one: ids
/// begin with their start to the second (`20261122T020005Z-…`), and no id equals it (each has a suffix).
pub fn id_bound_after(at: DateTime<Utc>) -> String {
    let next_second =
        at - chrono::Duration::nanoseconds(at.timestamp_subsec_nanos() as i64) + chrono::Duration::seconds(1);
    next_second.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The key prefix every object of this backup starts with (`…/<backup id>.`), from what it recorded; for a
/// backup that recorded none (it failed early), where the backup job would have put them.
pub fn attempt_prefix(record: &BackupRecord, key_prefix: &str) -> String {
    let id = format!("{}.", record.backup_id);
    let recorded = [&record.dump, &record.manifest, &record.roles].into_iter().flatten().find_map(|o| {
        let at = o.key.rfind(&id)?;
        Some(o.key[..at + id.len()].to_string())
    });
    recorded.unwrap_or_else(|| {
        ObjectKeys::new(key_prefix, &record.target, &record.backup_id, record.started_at, record.codec).attempt_prefix
    })
}

/// pg_dump's warnings among the last lines it wrote to stderr: a dump that succeeded may still lack what they name.
pub fn dump_warnings(stderr: &str) -> Vec<String> {
    stderr.lines().map(str::trim).filter(|line| line.starts_with("pg_dump: warning:")).map(str::to_string).collect()
}

/// The major version in a PostgreSQL version string ("15.4", "16.1 (Debian 16.1-1)", "9.6.24" → 15, 16, 9).
pub fn major_version(version: &str) -> Option<u32> {
    version.trim().split(['.', ' ']).next().and_then(|m| m.parse().ok()).filter(|m: &u32| *m >= 9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_attempt_prefix_comes_from_the_recorded_keys_or_the_key_layout() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 5).unwrap();
        let id = BackupId("20261122T020005Z-00000001".into());
        let mut record = BackupRecord::in_progress("orders", id.clone(), Trigger::Schedule, "run", at, Codec::Zstd);
        assert_eq!(attempt_prefix(&record, "prod/"), "prod/orders/2026/11/22/20261122T020005Z-00000001.");
        record.dump = Some(ObjectRef {
            key: "old/orders/2026/11/22/20261122T020005Z-00000001.sql.zst".into(),
            version_id: None,
            size: 1,
            sha256: String::new(),
        });
        assert_eq!(
            attempt_prefix(&record, "prod/"),
            "old/orders/2026/11/22/20261122T020005Z-00000001.",
            "what the backup recorded wins"
        );
    }

    #[test]
    fn keys_group_by_target_and_date() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 5).unwrap();
        let id = BackupId("20261122T020005Z-00000001".into());
        let k = ObjectKeys::new("prod/", "orders", &id, at, Codec::Zstd);
        assert_eq!(k.dump, "prod/orders/2026/11/22/20261122T020005Z-00000001.sql.zst");
        assert_eq!(k.manifest, "prod/orders/2026/11/22/20261122T020005Z-00000001.manifest.json");
        assert_eq!(k.roles, "prod/orders/2026/11/22/20261122T020005Z-00000001.roles.sql");
    }

    #[test]
    fn ids_sort_by_start_time() {
        let a = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
        let b = BackupId::new(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap());
        assert!(a < b);
        assert!(a.as_str().starts_with("20260102T030405Z-"));
    }
}
