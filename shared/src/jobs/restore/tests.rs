//! The choice of backup, as a table, and the roles read off a roles script.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{pick_backup, role_names, Pick};
use crate::domain::{BackupId, BackupRecord, BackupStatus, Trigger};
use crate::pipeline::codec::Codec;

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 0).unwrap()
}

/// Newest first, as the catalog lists them.
fn history(statuses: &[(u32, BackupStatus)]) -> Vec<BackupRecord> {
    let mut backups: Vec<BackupRecord> = statuses
        .iter()
        .map(|(hour, status)| {
            let mut b = BackupRecord::in_progress(
                "app",
                BackupId(format!("b{hour:02}")),
                Trigger::Cli,
                "test",
                at(*hour),
                Codec::Zstd,
            );
            b.status = *status;
            b
        })
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.started_at));
    backups
}

#[test]
fn the_backup_picked_is_the_one_an_operator_means() {
    use BackupStatus::*;
    let backups = history(&[
        (1, Verified),
        (2, Purged),
        (3, Verified),
        (4, VerifyFailed),
        (5, Completed),
        (6, Failed),
        (7, InProgress),
    ]);
    let cases: &[(Pick, Option<&str>)] = &[
        // The newest a drill proved, not the newest made.
        (Pick::NewestVerified, Some("b03")),
        // Named: any whose objects are kept, even one whose drill failed (the restore checks it again).
        (Pick::Named(BackupId("b05".into())), Some("b05")),
        (Pick::Named(BackupId("b04".into())), Some("b04")),
        (Pick::Named(BackupId("b02".into())), None),
        (Pick::Named(BackupId("b06".into())), None),
        (Pick::Named(BackupId("b07".into())), None),
        (Pick::Named(BackupId("b99".into())), None),
        // Before a time: the newest restorable that started earlier; a failed drill is passed over.
        (Pick::Before(at(6) + Duration::minutes(30)), Some("b05")),
        (Pick::Before(at(5) + Duration::minutes(1)), Some("b05")),
        (Pick::Before(at(5)), Some("b03")),
        (Pick::Before(at(3)), Some("b01")),
        (Pick::Before(at(1)), None),
    ];
    for (pick, expected) in cases {
        let picked = pick_backup("app", &backups, pick).map(|b| b.backup_id.0.as_str());
        match expected {
            Some(id) => assert_eq!(picked, Ok(*id), "{pick:?}"),
            None => assert!(picked.is_err(), "{pick:?} picked {picked:?}"),
        }
    }
}

#[test]
fn with_no_verified_backup_the_error_says_how_to_name_one() {
    let backups = history(&[(1, BackupStatus::Completed)]);
    let error = pick_backup("app", &backups, &Pick::NewestVerified).unwrap_err();
    assert!(error.contains("no verified backup") && error.contains("--backup"), "{error}");
    let error = pick_backup("app", &backups, &Pick::Named(BackupId("b09".into()))).unwrap_err();
    assert!(error.contains("backstop status --target app"), "{error}");
}

#[test]
fn the_roles_of_a_roles_script_are_read_with_their_quoting() {
    let script = "--\n-- Roles\n--\n\nCREATE ROLE app;\nALTER ROLE app WITH NOSUPERUSER LOGIN;\n\
                  CREATE ROLE \"Report \"\"Team\"\"\";\nALTER ROLE \"Report \"\"Team\"\"\" WITH NOLOGIN;\n\
                  -- CREATE ROLE commented;\n";
    assert_eq!(role_names(script), ["app", "Report \"Team\""]);
}
