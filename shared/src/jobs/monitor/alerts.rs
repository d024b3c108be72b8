//! The monitor's alerts, written for the person paged at 3 a.m.: which check went bad (or cleared) on which
//! target, since when, the figures, and what to do next, with the runbook section to open.

use chrono::{DateTime, Utc};

use crate::domain::health::{AlertEvent, CheckResult, HealthCheck};
use crate::domain::runbook::{self, Runbook};
use crate::domain::Job;
use crate::jobs::kernel::subject_line;
use crate::ports::{Alert, Severity};

/// The runbook section for a monitor check.
pub fn monitor_runbook(check: HealthCheck) -> Runbook {
    match check {
        HealthCheck::BackupAge => runbook::BACKUPS_TOO_OLD,
        HealthCheck::VerifiedAge | HealthCheck::LastVerification => runbook::VERIFICATION_TOO_OLD,
        HealthCheck::ConsecutiveFailures => runbook::BACKUPS_KEEP_FAILING,
        HealthCheck::DumpShrank => runbook::DUMP_SHRANK,
        HealthCheck::TablesShrank => runbook::TABLE_LOST_ROWS,
    }
}

/// What a monitor check's alert means, what to do, and what its resolution does (and does not) say.
struct Guidance {
    meaning: &'static str,
    todo: String,
    resolved: &'static str,
}

fn guidance(check: HealthCheck, target: &str) -> Guidance {
    match check {
        HealthCheck::BackupAge => Guidance {
            meaning: "The newest completed (or verified) backup of this target started longer ago than the threshold, or there is \
                      none. If the database were lost now, everything written since that backup started would be lost with \
                      it. Failed, in-progress, verify_failed, lost and purged backups do not count.",
            todo: format!(
                "See whether backups run at all: `backstop status --target {target}`. Recent failed records: their \
                 failure alerts say why (runbook section \"A backup failed\"). No recent records: check the backup \
                 schedule and the backup function's Errors metric and log. Records stuck in_progress: the run died \
                 (\"Clearing a stuck lease\"). Then back up by hand: `backstop backup --target {target}`."
            ),
            resolved: "A completed backup is recent again.",
        },
        HealthCheck::VerifiedAge => Guidance {
            meaning: "No backup of this target younger than the threshold has been proven restorable by a restore drill (status \
                      verified), or none ever was. Newer backups may be fine, but nothing has shown that they restore.",
            todo: format!(
                "Drill the newest backup: `backstop verify --target {target}`. If drills run and fail, read the drill \
                 failure alert or `backstop status --target {target}`; if none ran, check that `backstop verify` is \
                 scheduled."
            ),
            resolved: "A recent backup has passed a restore drill.",
        },
        HealthCheck::LastVerification => Guidance {
            meaning: "The newest backup of this target that a restore drill has judged failed it: it did not restore, or the \
                      restored data did not match what was dumped. A drill stopped by its scratch server's failure (a crash, a full \
                      disk) gives no verdict and changes nothing here.",
            todo: format!(
                "Do not count on that backup. Read the drill's report with `backstop status --backup ID` (the id is \
                 above), fix what it names, then back up and drill again: `backstop backup --target {target}` and \
                 `backstop verify --target {target}`. A failure of the drill's own making (provisioning, a client \
                 too old) says nothing about the backup: fix it and drill again."
            ),
            resolved: "The newest drilled backup passed its drill.",
        },
        HealthCheck::ConsecutiveFailures => Guidance {
            meaning: "The newest backups of this target failed one after another, with no completed backup since. Each failure \
                      sent its own alert with the reason.",
            todo: format!(
                "Read the reason above and in the failure alerts; the section \"A backup failed\" lists the fixes by \
                 hint. Once fixed, back up by hand: `backstop backup --target {target}`."
            ),
            resolved: "A backup completed after the failures.",
        },
        HealthCheck::DumpShrank => Guidance {
            meaning: "The newest dump's SQL is much smaller than usual for this target (against the median of the completed \
                      backups before it). Either data was deleted from the database, and the backup faithfully holds the \
                      loss, or the dump misses something it used to hold.",
            todo: format!(
                "Find out whether the data is gone from the source: compare `backstop status --target {target}` (tables \
                 and rows of each backup) with the database. If the deletion was not intended, the backups before the \
                 shrink still hold the data: copy one aside before retention deletes it, and restore what was lost from \
                 it (docs/restore-runbook.md). If it was intended (an archive or cleanup), nothing to do."
            ),
            resolved: "The newest dump is no longer much smaller than the median of those before it. That is also what \
                       happens once a few smaller backups make the smaller size the new normal: the clearing is not proof \
                       that lost data came back.",
        },
        HealthCheck::TablesShrank => Guidance {
            meaning: "Between the previous completed backup of this target and the newest, the tables above lost more than the \
                      threshold share of their rows; a table missing from the newest backup lost all of them.",
            todo: format!(
                "Check on the source whether the rows were deleted on purpose (an archive job, a cleanup, a dropped \
                 table). If not, the previous backup still holds them: copy it aside before retention deletes it, and \
                 restore the tables from it (docs/restore-runbook.md). Tables that shrink by design (queues) can be \
                 listed in the monitor's `table_shrink_ignore`. Backups: `backstop status --target {target}`."
            ),
            resolved: "The newest backup no longer shows a table that shrank against the one before it. The next backup \
                       compares with an already smaller previous one, so this clears by itself even when the rows are \
                       really gone: the clearing is not proof that they came back.",
        },
    }
}

fn shout(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING",
        Severity::Info => "INFO",
    }
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The alert for a monitor event: `result` is the check's latest verdict, `event` what `next_alert` decided.
/// Fired, escalated and repeated alerts carry the check's severity; a resolution is `info`.
pub fn monitor_alert(result: &CheckResult, event: &AlertEvent, target: &str) -> Alert {
    let check = result.check;
    let label = check.label();
    let g = guidance(check, target);
    let severity = result.severity.filter(|s| *s != Severity::Info).unwrap_or(Severity::Warning);
    let (subject, body) = match event {
        AlertEvent::Resolved { was, since } => (
            format!("Backstop: {target} RESOLVED: {label}"),
            format!(
                "Target \"{target}\" is OK again on its {label} (check {check}); it was {was} since {since}.\n\n\
                 Now: {summary}\n\n{resolved}",
                was = shout(*was),
                since = utc(*since),
                summary = result.summary,
                resolved = g.resolved,
            ),
        ),
        AlertEvent::Fired { since } | AlertEvent::Escalated { since, .. } | AlertEvent::Repeated { since } => {
            let sev = shout(severity);
            let (subject, headline) = match event {
                AlertEvent::Escalated { from, .. } => (
                    format!("Backstop: {target} {sev}: {}", result.summary),
                    format!("went from {} to {sev} on its", shout(*from)),
                ),
                AlertEvent::Repeated { .. } => {
                    (format!("Backstop: {target} still {sev}: {}", result.summary), format!("still has a {sev} on its"))
                }
                _ => (format!("Backstop: {target} {sev}: {}", result.summary), format!("has a {sev} on its")),
            };
            (
                subject,
                format!(
                    "Target \"{target}\" {headline} {label} (check {check}).\n\n\
                     What Backstop's monitor found: {summary}\nSince: {since}\n\n\
                     What it means: {meaning}\n\n\
                     What to do: {todo}\n\n\
                     This alert is repeated while the condition lasts (every cooldown_hours, 6 by default), and one \
                     RESOLVED alert follows when it clears.",
                    summary = result.summary,
                    since = utc(*since),
                    meaning = g.meaning,
                    todo = g.todo,
                ),
            )
        }
    };
    Alert {
        subject: subject_line(&subject),
        body,
        severity: if matches!(event, AlertEvent::Resolved { .. }) { Severity::Info } else { severity },
        job: Job::Monitor,
        target: Some(target.to_string()),
        runbook: Some(monitor_runbook(check)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::health::{evaluate, next_alert, MonitorThresholds};
    use chrono::{Duration, TimeZone};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    /// One result per check, each as bad as an empty catalog and a dropped table can make it.
    fn bad_results(target: &str) -> Vec<CheckResult> {
        let tables = crate::domain::health::TableComparison {
            previous: [("public.orders".to_string(), 5000)].into(),
            latest: Default::default(),
        };
        let tables = crate::domain::health::RowCounts::Compared(tables);
        let mut results = evaluate(target, &[], Some(&tables), at(), &MonitorThresholds::default()).checks;
        for r in &mut results {
            if r.severity.is_none() {
                r.severity = Some(Severity::Warning);
                r.summary = format!("{} {}", r.summary, "x".repeat(200));
            }
        }
        results
    }

    fn events() -> Vec<AlertEvent> {
        let since = at() - Duration::hours(4);
        vec![
            AlertEvent::Fired { since },
            AlertEvent::Escalated { from: Severity::Warning, since },
            AlertEvent::Repeated { since },
            AlertEvent::Resolved { was: Severity::Critical, since },
        ]
    }

    #[test]
    fn every_monitor_alert_fits_sns_and_names_its_target_and_runbook() {
        // The longest name the configuration accepts (63 characters).
        let long_target = "a_target_name_as_long_as_the_configuration_allows_63_characters";
        assert_eq!(long_target.len(), 63);
        for target in ["orders", long_target] {
            for result in bad_results(target) {
                for event in events() {
                    let alert = monitor_alert(&result, &event, target);
                    let what = format!("{} {event:?}", result.check);
                    assert!(alert.subject.chars().count() < 100, "{what}: {}", alert.subject);
                    assert!(alert.subject.starts_with(&format!("Backstop: {target} ")), "{what}: {}", alert.subject);
                    assert!(alert.body.contains(&format!("Target \"{target}\"")), "{what}: {}", alert.body);
                    let runbook = format!("Runbook: docs/operations.md#{}", monitor_runbook(result.check).anchor);
                    assert!(alert.text("").ends_with(&runbook), "{what}: {}", alert.body);
                    assert!(alert.body.contains("2026-11-22 08:00 UTC"), "{what}: says since when");
                    assert_eq!(alert.job, Job::Monitor);
                    assert_eq!(alert.target.as_deref(), Some(target));
                    if matches!(event, AlertEvent::Resolved { .. }) {
                        assert_eq!(alert.severity, Severity::Info);
                        if target == "orders" {
                            assert_eq!(alert.subject, format!("Backstop: orders RESOLVED: {}", result.check.label()));
                        }
                        assert!(alert.body.contains("it was CRITICAL since"), "{}", alert.body);
                    } else {
                        assert_eq!(Some(alert.severity), result.severity);
                        assert!(alert.body.contains(&result.summary), "{what}: the figures are in the body");
                        assert!(alert.body.contains("What to do: "), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_stale_backup_alert_reads_as_in_the_runbook() {
        let results = evaluate("orders", &[], None, at(), &MonitorThresholds::default()).checks;
        let (_, event) = next_alert("orders", None, &results[0], at(), Duration::hours(6));
        let alert = monitor_alert(&results[0], &event.unwrap(), "orders");
        assert_eq!(
            alert.subject,
            "Backstop: orders CRITICAL: no completed backup on record (no backup records at all)"
        );
        assert_eq!(alert.severity, Severity::Critical);
        assert!(
            alert.body.starts_with("Target \"orders\" has a CRITICAL on its backup age (check backup_age).\n\n"),
            "{}",
            alert.body
        );
        assert!(alert.body.contains("`backstop backup --target orders`"));

        let repeated = monitor_alert(&results[0], &AlertEvent::Repeated { since: at() }, "orders");
        assert!(repeated.subject.starts_with("Backstop: orders still CRITICAL: "), "{}", repeated.subject);
        let escalated =
            monitor_alert(&results[0], &AlertEvent::Escalated { from: Severity::Warning, since: at() }, "orders");
        assert!(escalated.body.contains("went from WARNING to CRITICAL on its backup age"), "{}", escalated.body);
    }
}
