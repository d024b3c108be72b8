//! The purge job's alerts: a purge that could not finish some steps, one that could not run for a target, and
//! one its fraction rail held back; each says what is safe, what is not yet done and what to do.

use crate::config::TargetConfig;
use crate::domain::runbook;
use crate::domain::Job;
use crate::jobs::kernel::subject_line;
use crate::ports::{Alert, Severity};

use super::TargetPurge;

pub(super) fn purge_failed_alert(target: &TargetConfig, result: &TargetPurge) -> Alert {
    let lines: Vec<String> = result
        .errors()
        .iter()
        .take(20)
        .map(|s| {
            format!(
                "- {}: {}",
                s.backup_id.as_ref().map_or("upload".to_string(), |b| b.to_string()),
                s.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    Alert {
        subject: subject_line(&format!("Backstop: purge of {} FAILED for {} step(s)", target.name, lines.len())),
        body: format!(
            "The purge of target \"{name}\" could not finish {count} step(s):\n{lines}\n\n\
             Nothing is lost by this: a backup whose purge stopped midway stays `purging` and the next purge run \
             finishes it; kept backups were not touched. Until then, storage is not freed.\n\n\
             What to do: read the errors (permissions on s3:DeleteObjectVersion, an Object Lock retention, throttling), \
             fix the cause, and run `backstop purge --target {name}` (or wait for tomorrow's run).",
            name = target.name,
            count = lines.len(),
            lines = lines.join("\n"),
        ),
        severity: Severity::Warning,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::PURGE_FAILED),
    }
}

pub(super) fn purge_not_run_alert(target: &TargetConfig, why: &str) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: purge of {} could not run", target.name)),
        body: format!(
            "The purge of target \"{name}\" did nothing: {why}\n\n\
             Nothing was deleted, so nothing is lost; storage is not freed until a purge runs.\n\n\
             What to do: check the catalog table (DynamoDB) and the function's permissions on it, then run \
             `backstop purge --target {name}`.",
            name = target.name,
        ),
        severity: Severity::Warning,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::PURGE_FAILED),
    }
}

pub(super) fn purge_refused_alert(target: &TargetConfig, why: &str) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: purge of {} REFUSED by its safety rail", target.name)),
        body: format!(
            "The purge of target \"{name}\" deleted nothing: {why}\n\n\
             This rail stops a wrong policy or a wrong clock from deleting most backups at once. Backups keep \
             accumulating (and costing) until it is resolved.\n\n\
             What to do: run `backstop purge --target {name} --dry-run` and read why each backup would go. If the plan \
             is right (a policy was just tightened), run `backstop purge --target {name} --force` once. If not, fix the \
             retention policy or the clock.",
            name = target.name,
        ),
        severity: Severity::Warning,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::PURGE_FAILED),
    }
}

pub(super) fn backups_lost_alert(target: &TargetConfig, result: &TargetPurge) -> Alert {
    let lost = result.lost();
    let lines: Vec<String> = lost
        .iter()
        .take(20)
        .map(|s| {
            format!(
                "- {}: {}",
                s.backup_id.as_ref().map_or(String::new(), |b| b.to_string()),
                s.lost.as_deref().unwrap_or("")
            )
        })
        .collect();
    Alert {
        subject: subject_line(&format!(
            "Backstop: {} backup(s) of {} LOST: their objects are gone from the bucket",
            lost.len(),
            target.name
        )),
        body: format!(
            "Purge found that the bucket no longer holds objects these backups of \"{name}\" stored:\n{lines}\n\n\
             Something outside Backstop deleted them (a person, a script, a lifecycle rule that expires noncurrent \
             versions). They are marked `lost` and are no longer restore points: retention keeps older backups in \
             their place, drills and restores skip them, and the monitor counts backup age from the newest backup \
             that is still whole. Purge never deletes what is left of them.\n\n\
             What to do: find what deleted them (CloudTrail's DeleteObject / DeleteObjectVersion events on the \
             bucket, its lifecycle rules) and stop it. The replica bucket may still hold them, to restore from by hand \
             (docs/restore-runbook.md). If the newest restore point is now old, run \
             `backstop backup --target {name}`.",
            name = target.name,
            lines = lines.join("\n"),
        ),
        severity: Severity::Critical,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::BACKUPS_LOST),
    }
}

pub(super) fn backups_at_risk_alert(target: &TargetConfig, result: &TargetPurge) -> Alert {
    let lines: Vec<String> = result.at_risk.iter().take(20).map(|line| format!("- {line}")).collect();
    Alert {
        subject: subject_line(&format!(
            "Backstop: {} backup(s) of {} hidden by a delete marker: they will expire",
            result.at_risk.len(),
            target.name
        )),
        body: format!(
            "The bucket still holds these backups of \"{name}\", but their recorded versions are no longer current: \
             a delete marker (a plain `aws s3 rm`) or a newer version is over them:\n{lines}\n\n\
             Nothing is lost yet (a restore by hand from the version ids works), but drills and `backstop restore` \
             refuse a recorded version that is not current, so they no longer count as restore points: retention \
             keeps older backups in their place. And a lifecycle rule that expires noncurrent versions (the \
             template's ExpireOverwrittenVersions, NoncurrentVersionDays after) will delete them for good, and the \
             purge after that marks them lost.\n\n\
             What to do: if they were deleted by mistake, remove the marker: find its version id with \
             `aws s3api list-object-versions --bucket BUCKET --prefix KEY` (the entry under DeleteMarkers) and run \
             `aws s3api delete-object --bucket BUCKET --key KEY --version-id MARKER_VERSION`. Find who deleted them \
             (CloudTrail); only purge should delete backups. This warning repeats with every purge until then.",
            name = target.name,
            lines = lines.join("\n"),
        ),
        severity: Severity::Warning,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::BACKUPS_LOST),
    }
}

/// A restore's hold on the purge, older than a restore usually takes: likely a `backstop restore` stopped without
/// letting go. Purging waits until it lapses (a day after it was taken) unless a person clears it.
pub(super) fn restore_hold_alert(target: &TargetConfig, why: &str) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: purge of {} held off by a restore for hours", target.name)),
        body: format!(
            "The purge of target \"{name}\" did nothing: {why}.\n\n\
             Nothing was deleted, so nothing is lost; storage is not freed while the hold lasts.\n\n\
             What to do: if a `backstop restore --target {name}` is still running, let it finish (the hold goes with \
             it). If none is, one was stopped without letting go: delete the lease item (pk `TARGET#{name}`, sk \
             `LEASE#purge`, its owner the `restore-…` above) from the catalog table, or wait until it lapses, and \
             run `backstop purge --target {name}`.",
            name = target.name,
        ),
        severity: Severity::Warning,
        job: Job::Purge,
        target: Some(target.name.clone()),
        runbook: Some(runbook::PURGE_FAILED),
    }
}
