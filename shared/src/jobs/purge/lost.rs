//! Restore points whose objects are gone: before retention decides, purge checks that the bucket still holds
//! every object version each `completed` or `verified` backup recorded (dump, manifest, roles).
//!
//! Retention trusts the catalog: a record that says `completed` keeps its day's slot, and an older backup is
//! deleted in its place. If the record's objects were deleted or expired outside Backstop (a person, a lifecycle
//! rule expiring noncurrent versions, a script), that trade would delete the last copy that does restore. So a
//! backup missing any recorded version is marked `lost` first, and the rules choose among the others.
//!
//! One paginated listing of versions under the keys' common prefix serves every record of the target, so the
//! check costs a request or a few per target, not one per backup. A version hidden behind a delete marker is
//! still held (a drill or a restore reads it by its version id), so only a version that is itself gone counts.

use std::collections::{BTreeSet, HashSet};

use crate::domain::{BackupId, BackupRecord, BackupStatus, ObjectRef};
use crate::ports::{ObjectStore, StoreError};

/// A restore point whose recorded objects are not all in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LostBackup {
    pub backup_id: BackupId,
    /// `dump prod/orders/…sql.zst (version 3HL4k…)`, one per missing object.
    pub missing: Vec<String>,
}

impl LostBackup {
    pub fn describe(&self) -> String {
        format!("objects gone from the bucket: {}", self.missing.join("; "))
    }
}

/// The restore points among `records` that miss an object, leaving out the backups a drill is reading (the drill
/// gives its own verdict on them, and a status change under it would be refused anyway).
pub(super) async fn find_lost(
    store: &dyn ObjectStore,
    records: &[BackupRecord],
    being_verified: &BTreeSet<BackupId>,
) -> Result<Vec<LostBackup>, StoreError> {
    let checked: Vec<&BackupRecord> = records
        .iter()
        .filter(|r| matches!(r.status, BackupStatus::Completed | BackupStatus::Verified))
        .filter(|r| !being_verified.contains(&r.backup_id))
        .collect();
    let keys: Vec<&str> = checked.iter().flat_map(|r| recorded_objects(r)).map(|(_, o)| o.key.as_str()).collect();
    let Some(prefix) = common_prefix(&keys) else { return Ok(Vec::new()) };
    let listed = store.versions(&prefix).await?;
    let held: HashSet<(&str, Option<&str>)> =
        listed.iter().map(|v| (v.key.as_str(), v.version_id.as_deref())).collect();
    let held_keys: HashSet<&str> = listed.iter().map(|v| v.key.as_str()).collect();
    let is_held = |object: &ObjectRef| match &object.version_id {
        Some(version) => held.contains(&(object.key.as_str(), Some(version.as_str()))),
        // An unversioned bucket (never a Backstop deployment's) lists the key alone.
        None => held_keys.contains(object.key.as_str()),
    };
    Ok(checked
        .into_iter()
        .filter_map(|record| {
            let missing: Vec<String> = recorded_objects(record)
                .filter(|(_, object)| !is_held(object))
                .map(|(kind, object)| match &object.version_id {
                    Some(version) => format!("{kind} {} (version {version})", object.key),
                    None => format!("{kind} {}", object.key),
                })
                .collect();
            (!missing.is_empty()).then(|| LostBackup { backup_id: record.backup_id.clone(), missing })
        })
        .collect())
}

/// What a finished backup stored, by kind. A good record without a dump or manifest is lost too: nothing
/// restores from it (no Backstop run writes one, but the catalog may be edited by hand).
fn recorded_objects(record: &BackupRecord) -> impl Iterator<Item = (&'static str, &ObjectRef)> {
    [("dump", &record.dump), ("manifest", &record.manifest), ("roles", &record.roles)]
        .into_iter()
        .filter_map(|(kind, object)| object.as_ref().map(|o| (kind, o)))
}

/// The longest prefix every key shares (cut at a character boundary), `None` when there are no keys.
fn common_prefix(keys: &[&str]) -> Option<String> {
    let (first, rest) = keys.split_first()?;
    let mut end = first.len();
    for key in rest {
        end = first[..end].char_indices().zip(key.chars()).take_while(|((_, a), b)| a == b).count();
        end = first.char_indices().nth(end).map_or(first.len(), |(at, _)| at);
    }
    Some(first[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_prefix_stops_where_keys_differ_and_at_a_character_boundary() {
        assert_eq!(common_prefix(&[]), None);
        assert_eq!(common_prefix(&["a/b/c.sql"]).as_deref(), Some("a/b/c.sql"));
        assert_eq!(common_prefix(&["p/o/2026/11/01/x", "p/o/2026/10/31/y"]).as_deref(), Some("p/o/2026/1"));
        assert_eq!(common_prefix(&["p/é1", "p/é2", "p/èx"]).as_deref(), Some("p/"));
        assert_eq!(common_prefix(&["abc", "ab"]).as_deref(), Some("ab"));
        assert_eq!(common_prefix(&["x", "y"]).as_deref(), Some(""));
    }
}
