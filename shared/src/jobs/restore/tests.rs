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

#[test]
fn only_the_roles_the_server_lacks_are_made_and_no_other_is_altered() {
    let script = "\\restrict abc\nSET client_encoding = 'UTF8';\nCREATE ROLE \"Odd \"\"One\"\"\";\n\
        ALTER ROLE \"Odd \"\"One\"\"\" WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\n\
        CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:y';\n\
        CREATE ROLE reader;\nALTER ROLE reader WITH NOLOGIN;\nCOMMENT ON ROLE reader IS 'reads; ALTER ROLE postgres';\n\
        ALTER ROLE reader SET search_path TO 'app';\nGRANT reader TO \"Odd \"\"One\"\"\" GRANTED BY postgres;\n\
        GRANT postgres TO reader GRANTED BY postgres;\n\\unrestrict abc\n";
    let kept = super::roles_script_for(script, &["Odd \"One\"".to_string()]);
    assert_eq!(
        kept,
        "SET client_encoding = 'UTF8';\nCREATE ROLE \"Odd \"\"One\"\"\";\n\
         ALTER ROLE \"Odd \"\"One\"\"\" WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\n\
         GRANT reader TO \"Odd \"\"One\"\"\" GRANTED BY postgres;\n"
    );
    let all = super::roles_script_for(script, &["reader".to_string()]);
    assert!(all.contains("COMMENT ON ROLE reader") && all.contains("GRANT postgres TO reader"), "{all}");
    assert!(!all.contains("ALTER ROLE postgres WITH") && !all.contains("CREATE ROLE postgres"), "{all}");
    assert_eq!(super::roles_script_for(script, &[]), "SET client_encoding = 'UTF8';\n");
}
