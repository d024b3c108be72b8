//! Restore points whose objects are gone: before retention decides, purge checks that the bucket still holds
//! every object version each `completed` or `verified` backup recorded (dump, manifest, roles).
//!
//! Retention trusts the catalog: a record that says `completed` keeps its day's slot, and an older backup is
//! deleted in its place. If the record's objects were deleted or expired outside Backstop (a person, a lifecycle
//! rule expiring noncurrent versions, a script), that trade would delete the last copy that does restore. So a
//! backup missing any recorded version is marked `lost` first, and the rules choose among the others.
//!
//! One paginated listing of versions under the keys' common prefix serves every record of the target, so the
//! check costs a request or a few per target, not one per backup. A version hidden behind a delete marker (or a
//! newer version) is still there, so only a version that is itself gone counts as lost. A hidden one is *at
//! risk*: drills and `backstop restore` refuse a recorded version that is not current, so it is no restore point
//! while hidden (retention treats it like a failed drill), and a lifecycle rule expiring noncurrent versions (the
//! template's `ExpireOverwrittenVersions`) will delete it; purge warns while there is time to remove the marker.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::domain::{BackupId, BackupRecord, BackupStatus, ObjectRef};
use crate::ports::{ObjectStore, StoreError};

/// A restore point some of whose recorded objects are gone, or hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finding {
    pub backup_id: BackupId,
    /// `dump prod/orders/…sql.zst (version 3HL4k…)`, one per object.
    pub objects: Vec<String>,
}

impl Finding {
    pub fn lost(&self) -> String {
        format!("objects gone from the bucket: {}", self.objects.join("; "))
    }

    pub fn at_risk(&self) -> String {
        format!(
            "hidden by a delete marker or a newer version, so a noncurrent-version rule will delete them: {}",
            self.objects.join("; ")
        )
    }
}

/// What the bucket says of a target's restore points.
#[derive(Debug, Default)]
pub(super) struct BucketCheck {
    pub lost: Vec<Finding>,
    pub at_risk: Vec<Finding>,
}

/// Checks the restore points among `records`, leaving out the backups a drill is reading (the drill gives its own
/// verdict on them, and a status change under it would be refused anyway).
pub(super) async fn check_restore_points(
    store: &dyn ObjectStore,
    records: &[BackupRecord],
    being_verified: &BTreeSet<BackupId>,
) -> Result<BucketCheck, StoreError> {
    let checked: Vec<&BackupRecord> = records
        .iter()
        .filter(|r| matches!(r.status, BackupStatus::Completed | BackupStatus::Verified))
        .filter(|r| !being_verified.contains(&r.backup_id))
        .collect();
    let keys: Vec<&str> = checked.iter().flat_map(|r| recorded_objects(r)).map(|(_, o)| o.key.as_str()).collect();
    let Some(prefix) = common_prefix(&keys) else { return Ok(BucketCheck::default()) };
    let listed = store.versions(&prefix).await?;
    // (key, version) → is it the key's current version.
    let held: HashMap<(&str, Option<&str>), bool> =
        listed.iter().map(|v| ((v.key.as_str(), v.version_id.as_deref()), v.current)).collect();
    let held_keys: HashSet<&str> = listed.iter().map(|v| v.key.as_str()).collect();
    let state = |object: &ObjectRef| match &object.version_id {
        Some(version) => match held.get(&(object.key.as_str(), Some(version.as_str()))) {
            None => Held::Gone,
            Some(true) => Held::Current,
            Some(false) => Held::Hidden,
        },
        // An unversioned bucket (never a Backstop deployment's) lists the key alone, and has no markers.
        None if held_keys.contains(object.key.as_str()) => Held::Current,
        None => Held::Gone,
    };
    let mut check = BucketCheck::default();
    for record in checked {
        let in_state = |wanted: Held| -> Vec<String> {
            recorded_objects(record)
                .filter(|(_, object)| state(object) == wanted)
                .map(|(kind, object)| match &object.version_id {
                    Some(version) => format!("{kind} {} (version {version})", object.key),
                    None => format!("{kind} {}", object.key),
                })
                .collect()
        };
        let (gone, hidden) = (in_state(Held::Gone), in_state(Held::Hidden));
        if !gone.is_empty() {
            check.lost.push(Finding { backup_id: record.backup_id.clone(), objects: gone });
        } else if !hidden.is_empty() {
            check.at_risk.push(Finding { backup_id: record.backup_id.clone(), objects: hidden });
        }
    }
    Ok(check)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Current,
    Hidden,
    Gone,
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
