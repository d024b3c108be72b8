//! What the `backstop` command prints for people: the status table and one backup in full, the purge plan,
//! where each target's backups run, what a restore did, and the monitoring-plugin text. The jobs return data; only the terminal needs these shapes.

use backstop::domain::drill::DrillRecord;
use backstop::domain::runner::Runner;
use backstop::domain::text::human_bytes;
use backstop::domain::verification::{CheckOutcome, VerificationReport};
use backstop::domain::{BackupRecord, BackupStatus};
use backstop::jobs::backup::PlannedUnit;
use backstop::jobs::monitor::{plugin_code, plugin_rank as rank, TargetReport};
use backstop::jobs::purge::{StepAction, TargetPurge};
use backstop::jobs::restore::{RestoreOutcome, TableRestoreOutcome};
use backstop::jobs::status::TargetStatus;

/// A plain-text table, one row per backup, newest first within each target.
pub fn status_table(statuses: &[TargetStatus]) -> String {
    let header =
        ["TARGET", "BACKUP ID", "STATUS", "STARTED (UTC)", "DURATION", "TABLES", "ROWS", "SQL", "STORED", "NOTE"];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in statuses {
        if s.backups.is_empty() {
            rows.push(vec![
                s.target.clone(),
                "-".into(),
                "no backups yet".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
            ]);
        }
        for b in &s.backups {
            let note = match b.status {
                BackupStatus::Failed => {
                    b.error.clone().unwrap_or_default().lines().next().unwrap_or_default().chars().take(60).collect()
                }
                _ => b.dump.as_ref().map(|d| d.key.clone()).unwrap_or_default(),
            };
            rows.push(vec![
                s.target.clone(),
                b.backup_id.to_string(),
                b.status.to_string(),
                b.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                b.duration_seconds().map(|d| format!("{d:.1}s")).unwrap_or_else(|| "-".into()),
                b.table_count.to_string(),
                b.row_count.to_string(),
                human_bytes(b.raw_bytes),
                b.dump.as_ref().map(|d| human_bytes(d.size)).unwrap_or_else(|| "-".into()),
                note,
            ]);
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out.push('\n');
    out
}

/// One backup in full: its record, and its latest drill's report check by check.
pub fn backup_in_full(record: &BackupRecord, drill: Option<&DrillRecord>) -> String {
    let mut out = format!(
        "backup     {}
target     {}
status     {}
started    {}
duration   {}
tables     {}, rows {}
SQL        {}, stored {}
",
        record.backup_id,
        record.target,
        record.status,
        record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        record.duration_seconds().map(|d| format!("{d:.1} s")).unwrap_or_else(|| "-".into()),
        record.table_count,
        record.row_count,
        human_bytes(record.raw_bytes),
        record.dump.as_ref().map(|d| human_bytes(d.size)).unwrap_or_else(|| "-".into()),
    );
    if let Some(dump) = &record.dump {
        out.push_str(&format!(
            "object     {} (version {})
sha256     {}
",
            dump.key,
            dump.version_id.as_deref().unwrap_or("-"),
            dump.sha256
        ));
    }
    if let Some(error) = &record.error {
        out.push_str(&format!(
            "error      {error}
"
        ));
    }
    let Some(drill) = drill else {
        out.push_str(
            "drill      none yet: `backstop verify` restores it and checks it
",
        );
        return out;
    };
    let t = &drill.report.timings;
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
    out.push_str(&format!(
        "drill      {} ({}), provisioning {}, restore {}, checks {}, RTO {}, RPO {}
",
        drill.drill_id,
        drill.phase,
        s(t.provision_seconds),
        s(t.restore_seconds),
        s(t.check_seconds),
        s(t.rto_seconds),
        s(t.rpo_seconds)
    ));
    if let Some(fault) =
        drill.report.scratch_fault().filter(|_| drill.phase == backstop::domain::drill::DrillPhase::Done)
    {
        out.push_str(&format!(
            "  inconclusive: {fault}; the drill's own failure, not the backup's, so its status stands
"
        ));
    }
    for warning in &drill.report.budget_warnings {
        out.push_str(&format!(
            "  budget   {warning}
"
        ));
    }
    out.push_str(&check_lines(&drill.report));
    out
}

/// One line per check of a report: its status, its name, what it found.
pub fn check_lines(report: &VerificationReport) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let (status, detail) = match &c.outcome {
            CheckOutcome::Ok { detail } => ("ok", detail.clone()),
            CheckOutcome::Warning { detail } => ("warning", detail.clone()),
            CheckOutcome::Mismatch { expected, found } => ("MISMATCH", format!("expected {expected}, found {found}")),
            CheckOutcome::Error { message } => ("ERROR", message.clone()),
            CheckOutcome::NotRun { reason } => ("not run", reason.clone()),
        };
        out.push_str(&format!(
            "  {status:<9} {:<40} {detail}
",
            c.name.label()
        ));
    }
    out
}

/// What `backstop restore` did, for a terminal.
pub fn restore_outcome(outcome: &RestoreOutcome) -> String {
    let mut out = format!(
        "backup     {} of {} ({}, started {})
restored   into {} on {}:{}
took       {:.1} s proving the object, {:.1} s restoring, {:.1} s checking; {} read from the store
",
        outcome.backup_id,
        outcome.target,
        outcome.backup_status,
        outcome.backup_started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        outcome.database,
        outcome.host,
        outcome.port,
        outcome.object_check_seconds,
        outcome.restore_seconds,
        outcome.check_seconds,
        human_bytes(outcome.object_bytes),
    );
    for note in &outcome.notes {
        out.push_str(&format!("note       {note}\n"));
    }
    out.push_str(&check_lines(&outcome.report));
    out.push_str(if outcome.passed {
        "verdict    restored, and every check above passed\n"
    } else {
        "verdict    NOT PROVEN: see the checks above\n"
    });
    out
}

/// A table restore: each table with its rows and digest against the backup's, what was left out, and how
/// little of the object was read.
pub fn table_restore_outcome(outcome: &TableRestoreOutcome) -> String {
    let share = if outcome.object_size == 0 {
        0.0
    } else {
        100.0 * outcome.stored_bytes_read as f64 / outcome.object_size as f64
    };
    let mut out = format!(
        "backup     {} of {} ({})
restored   into {} on {}:{}, in one transaction
read       {} of the {} object ({share:.2} %), in {:.1} s
",
        outcome.backup_id,
        outcome.target,
        outcome.backup_status,
        outcome.database,
        outcome.host,
        outcome.port,
        human_bytes(outcome.stored_bytes_read),
        human_bytes(outcome.object_size),
        outcome.seconds,
    );
    for t in &outcome.tables {
        let name = if t.source == t.restored { t.source.clone() } else { format!("{} as {}", t.source, t.restored) };
        let verdict = if t.rows == t.expected_rows && t.digest_matches { "ok" } else { "MISMATCH" };
        out.push_str(&format!(
            "table      {name}: {} of {} rows, digest {} {verdict}\n",
            t.rows,
            t.expected_rows,
            if t.digest_matches { "equal" } else { "different" }
        ));
    }
    for s in &outcome.sequences {
        let verdict = if s.value_matches { "the backup's value" } else { "MISMATCH" };
        out.push_str(&format!("sequence   {}: {verdict}\n", s.name));
    }
    for schema in &outcome.created_schemas {
        out.push_str(&format!("created    schema {schema}\n"));
    }
    for statement in &outcome.left_out {
        out.push_str(&format!("left out   {statement}\n"));
    }
    if !outcome.uses.is_empty() {
        out.push_str(&format!(
            "uses       {} (not restored: the destination must have them)\n",
            outcome.uses.join(", ")
        ));
    }
    for note in &outcome.notes {
        out.push_str(&format!("note       {note}\n"));
    }
    out.push_str(if outcome.passed {
        "verdict    restored, and every table reads back as the backup holds it\n"
    } else {
        "verdict    NOT RESTORED: the transaction was rolled back\n"
    });
    out
}

/// The report for a terminal: per target, one line per backup with its action and reasons, newest first.
pub fn purge_plan(results: &[TargetPurge]) -> String {
    let mut out = String::new();
    for r in results {
        let mode = if r.dry_run { " (dry run: nothing was changed)" } else { "" };
        out.push_str(&format!("{}: {}{mode}\n", r.target, r.summary()));
        if let Some(why) = &r.refused {
            out.push_str(&format!("  REFUSED: {why}\n"));
        }
        for line in &r.at_risk {
            out.push_str(&format!("  AT RISK: {line}\n"));
        }
        for step in &r.steps {
            let what = match (&step.backup_id, step.status) {
                (Some(id), Some(status)) => format!("{id} ({status})"),
                _ => "upload".to_string(),
            };
            let name = step.action.as_str().replace('_', " ");
            let verb = match (step.action, r.dry_run) {
                (StepAction::Delete | StepAction::CleanUp | StepAction::Finish | StepAction::AbortUpload, true) => {
                    format!("would {name}")
                }
                _ => name,
            };
            let versions =
                if step.versions > 0 { format!(" [{} object version(s)]", step.versions) } else { String::new() };
            out.push_str(&format!("  {verb:<16} {what}{versions}: {}\n", step.reasons.join("; ")));
            if let Some(missing) = &step.lost {
                let mark = if r.dry_run { "WOULD MARK LOST" } else { "MARKED LOST" };
                out.push_str(&format!("  {:<16} {mark}: {missing}\n", ""));
            }
            if let Some(e) = &step.error {
                out.push_str(&format!("  {:<16} ERROR: {e}\n", ""));
            }
        }
    }
    out
}

/// Monitoring-plugin text: one status line (the worst state and what causes it), then every check.
/// Where the backup state machine would run each target's next backup: one line per target, then its reasons.
pub fn runner_plan(units: &[PlannedUnit]) -> String {
    let mut out = String::new();
    for unit in units {
        let runner = match unit.runner.runner {
            Runner::Lambda => "lambda",
            Runner::Fargate => "fargate",
        };
        let estimate = match unit.runner.estimate_seconds {
            Some(seconds) if seconds < 10.0 => format!("estimated {seconds:.1} s"),
            Some(seconds) => format!("estimated {seconds:.0} s"),
            None => "no estimate".to_string(),
        };
        out.push_str(&format!("{:<20} {runner:<8} {estimate}\n", unit.target));
        for reason in &unit.runner.reasons {
            out.push_str(&format!("    {reason}\n"));
        }
    }
    out
}

pub fn monitor_plugin_text(reports: &[TargetReport]) -> String {
    const LABELS: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];
    let worst = backstop::jobs::monitor::worst_plugin_code(reports.iter().map(plugin_code));
    let mut causes = Vec::new();
    for r in reports.iter().filter(|r| plugin_code(r) == worst && worst > 0) {
        match (&r.error, &r.health) {
            (Some(e), _) => causes.push(format!("{}: {e}", r.target)),
            (None, Some(h)) => causes.extend(
                h.checks.iter().filter(|c| rank(c.severity) == worst).map(|c| format!("{}: {}", r.target, c.summary)),
            ),
            (None, None) => {}
        }
    }
    // Targets that could not be read are named even when a worse state leads.
    if worst != 3 {
        causes.extend(reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("UNKNOWN {}: {e}", r.target))));
    }
    let headline = if causes.is_empty() { format!("{} target(s) fine", reports.len()) } else { causes.join("; ") };
    let mut out = format!("BACKSTOP {} - {headline}\n", LABELS[worst as usize]);
    for r in reports {
        for c in r.health.iter().flat_map(|h| &h.checks) {
            out.push_str(&format!(
                "{:<20} {:<9} {:<22} {}\n",
                r.target,
                LABELS[rank(c.severity) as usize],
                c.check.as_str(),
                c.summary
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_runner_plan_names_each_target_its_runner_its_estimate_and_every_reason() {
        use backstop::domain::runner::{decide, Evidence, PastRun, RunnerSetting, Work};
        let unit = |target: &str, evidence: Evidence| super::PlannedUnit {
            target: target.into(),
            runner: decide(Work::Backup, RunnerSetting::Auto, &evidence, 870.0),
        };
        let small = Evidence {
            recent: vec![PastRun { seconds: 12.0, raw_bytes: 600_000_000, finished: true, stopped_at_limit: false }],
            configured_bytes: None,
        };
        let large = Evidence { recent: vec![], configured_bytes: Some(500_000_000_000) };
        let text =
            super::runner_plan(&[unit("orders", small), unit("archive", large), unit("new", Evidence::default())]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("orders") && lines[0].contains(" lambda ") && lines[0].ends_with("estimated 12 s"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(
                "    estimated 12 s (600 MB of SQL, from the newest run, at 50 MB/s, that of the last finished backup;"
            ) && lines[2].contains("within 50%"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("archive")
                && lines[3].contains(" fargate ")
                && lines[3].ends_with("estimated 10000 s"),
            "{text}"
        );
        assert!(
            text.contains("new                  lambda   no estimate\n    no finished backup to measure"),
            "{text}"
        );
    }

    use super::*;
    use backstop::domain::BackupId;
    use backstop::jobs::purge::PurgeStep;

    #[test]
    fn a_target_without_backups_gets_a_row_that_says_so() {
        let table = status_table(&[TargetStatus { target: "shop".into(), backups: vec![] }]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TARGET") && lines[0].contains("BACKUP ID"), "{table}");
        assert!(lines[1].starts_with("shop") && lines[1].contains("no backups yet"), "{table}");
    }

    #[test]
    fn a_dry_run_plan_says_would_and_names_every_reason_and_error() {
        let step = |action, error: Option<&str>| PurgeStep {
            backup_id: Some(BackupId("20261201T020000Z-0000abcd".into())),
            status: Some(BackupStatus::Verified),
            started_at: None,
            action,
            reasons: vec!["older than 30 daily".into(), "not a monthly".into()],
            versions: 3,
            error: error.map(str::to_string),
            lost: None,
        };
        let plan = |dry_run| {
            purge_plan(&[TargetPurge {
                target: "shop".into(),
                dry_run,
                steps: vec![step(StepAction::Delete, None), step(StepAction::Keep, Some("AccessDenied"))],
                refused: None,
                skipped: None,
                lease_held: false,
                stale_restore_hold: false,
                at_risk: Vec::new(),
            }])
        };
        let dry = plan(true);
        assert!(dry.contains("(dry run: nothing was changed)"), "{dry}");
        assert!(dry.contains("would delete") && dry.contains("[3 object version(s)]"), "{dry}");
        assert!(dry.contains("older than 30 daily; not a monthly"), "{dry}");
        assert!(dry.contains("ERROR: AccessDenied"), "{dry}");
        let live = plan(false);
        assert!(live.contains("  delete ") && !live.contains("would"), "{live}");
    }
}
