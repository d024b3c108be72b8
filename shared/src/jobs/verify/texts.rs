//! What a finished drill tells people: its metrics, and the alert texts of a failed, over-budget or passed drill.

use super::*;

impl VerifyJob {
    /// Metrics (named `<prefix>Success`, `<prefix>RtoSeconds`, …) and the alert a finished drill calls for.
    pub(super) async fn publish_verdict(&self, target: &TargetConfig, drill: &DrillRecord, prefix: &str) {
        let passed = drill.report.passed();
        let t = &drill.report.timings;
        let (rto, rpo) = (t.rto_seconds, t.rpo_seconds);
        let names = ["Success", "RtoSeconds", "RpoSeconds", "RestoreSeconds", "ProvisionSeconds"]
            .map(|n| format!("{prefix}{n}"));
        self.deps.metrics.emit(&emf_line(
            self.deps.clock.now(),
            &[("Target", target.name.as_str())],
            &[
                (names[0].as_str(), Unit::Count, if passed { 1.0 } else { 0.0 }),
                (names[1].as_str(), Unit::Seconds, rto.unwrap_or(0.0)),
                (names[2].as_str(), Unit::Seconds, rpo.unwrap_or(0.0)),
                (names[3].as_str(), Unit::Seconds, t.restore_seconds.unwrap_or(0.0)),
                (names[4].as_str(), Unit::Seconds, t.provision_seconds.unwrap_or(0.0)),
            ],
        ));
        let failed_checks: Vec<String> = drill.report.failures().iter().map(|c| c.name.label()).collect();
        info!(passed, ?failed_checks, ?rto, ?rpo, "drill done");
        if let Some(fault) = drill.report.scratch_fault() {
            self.alert(drill_inconclusive_alert(target, drill, &fault)).await;
        } else if !passed {
            self.alert(drill_failed_alert(target, drill)).await;
        } else if !drill.report.budget_warnings.is_empty() {
            self.alert(budget_alert(target, drill)).await;
        } else if self.config.notify_success {
            self.alert(drill_passed_alert(target, drill)).await;
        }
    }

    pub(super) async fn alert(&self, alert: Alert) {
        publish_or_warn(self.deps.alerts.as_ref(), &alert).await;
    }
}

/// What a drill restored, for alert texts.
pub(super) fn drilled(drill: &DrillRecord) -> String {
    match &drill.point_in_time {
        Some(p) => format!(
            "a point-in-time copy of RDS instance {} (as of {})",
            p.source_instance,
            p.restore_time.map_or("its latest restorable time".into(), |t| t.to_rfc3339())
        ),
        None => format!("backup {}", drill.backup_id),
    }
}

pub(super) fn timings_text(drill: &DrillRecord) -> String {
    let t = &drill.report.timings;
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
    format!(
        "Provisioning {}, restore {}, checks {}; RTO (restore start to checks done) {}; RPO (backup age at drill start) {}.",
        s(t.provision_seconds),
        s(t.restore_seconds),
        s(t.check_seconds),
        s(t.rto_seconds),
        s(t.rpo_seconds)
    )
}

pub(super) fn drill_failed_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    let failures = drill.report.failures();
    let not_run = drill.report.not_run();
    let first = match (failures.first(), not_run.first()) {
        (Some(c), _) => c.name.label(),
        (None, Some(c)) => format!("{} not run", c.name.label()),
        (None, None) => "restore".into(),
    };
    let lines: Vec<String> = failures.iter().take(20).map(|c| failure_line(c)).collect();
    let (verdict, advice) = match &drill.point_in_time {
        Some(p) => (
            "RDS's own point-in-time recovery of this database cannot be trusted".to_string(),
            format!(
                "check {source}'s automated backups (retention, latest restorable time) in the RDS console, that the \
                 checks above hold on the live database, and that the scratch network lets the verify function reach the copy; \
                 the dumps Backstop takes are unaffected (`backstop status --target {name}`).",
                source = p.source_instance,
                name = target.name
            ),
        ),
        None => (
            "this backup cannot be trusted to restore".to_string(),
            format!(
                "do not count on this backup. Check the newest other backups (`backstop status --target {name}`), \
                 run a new backup and drill it (`backstop backup --target {name}` then `backstop verify --target {name}`), and \
                 read the full report with `backstop status --backup {backup}`.",
                name = target.name,
                backup = drill.backup_id
            ),
        ),
    };
    let body = format!(
        "A restore drill of {what} of target \"{name}\" FAILED: {verdict}.\n\n\
         Failed checks ({count}):\n{lines}\n{unchecked}\n{timings}\n\n\
         What to do: {advice}\nDrill: {drill_id}",
        what = drilled(drill),
        name = target.name,
        count = failures.len(),
        lines = lines.join("\n"),
        unchecked = not_run_text(&not_run),
        timings = timings_text(drill),
        drill_id = drill.drill_id,
    );
    Alert {
        subject: subject_line(&format!("Backstop: restore drill of {} FAILED: {first}", target.name)),
        body,
        severity: Severity::Critical,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: Some(runbook::DRILL_FAILED),
    }
}

/// A drill stopped by its own failure (its scratch server's, its invocation's time), not the backup's: nothing is
/// known of the backup, which keeps its status. A warning (one crash is not worth a page); drills that keep ending
/// so leave the verification ageing until the monitor's critical alert.
pub(super) fn drill_inconclusive_alert(target: &TargetConfig, drill: &DrillRecord, fault: &str) -> Alert {
    let lines: Vec<String> = drill.report.failures().iter().take(5).map(|c| failure_line(c)).collect();
    let stands = match drill.point_in_time {
        Some(_) => "nothing is known of RDS's point-in-time recovery either way; the next drill tries again",
        None => {
            "nothing is known of the backup either way, so it keeps the status it had (the next scheduled drill takes \
             the newest backup, which may be this one again)"
        }
    };
    let body = format!(
        "A restore drill of {what} of target \"{name}\" was INCONCLUSIVE: {fault}. That is the drill's own failure, \
         not the backup's: {stands}.\n\n\
         What stopped the drill:\n{lines}\n\n{timings}\n\n\
         What to do: if this repeats, {remedy} {again}\nDrill: {drill_id}",
        remedy = if fault.contains(crate::domain::scratch_fault::STORE_UNAVAILABLE) {
            "check the drill's network path to S3 (a VPC endpoint or NAT, its route tables and security groups) and \
             the AWS Health Dashboard for S3 in this region; the drill reads every byte of the backup and cannot \
             judge it while S3 does not answer."
        } else if fault.contains(crate::domain::scratch_fault::ABANDONED) {
            "read the verify state machine's execution history for what stopped it: an error of the loop (the \
             catalog, SSM) or its time bound. A drill that keeps outlasting the bound belongs on the container \
             runner or the CLI (docs/operations.md#restore-drills)."
        } else if fault.contains(crate::domain::scratch_fault::SCRATCH_FAILED) {
            "see what happened to the scratch server (the RDS instance's events). If it was swept at the end of its \
             lifetime, the drill outlived `scratch_lifetime_seconds`: raise it, or drill on the container runner or \
             the CLI."
        } else if fault.contains(crate::domain::scratch_fault::NOT_PROVISIONED) {
            "read the error above: on RDS, the account's DB instance quota, the instance class's capacity in the \
             subnets' zones, the `rds_subnet_group`, security groups and parameter group, and the function's \
             `rds:CreateDBInstance` permission; locally, the PostgreSQL server binaries for the backup's major version \
             (`pg_bin_dir`) and free space under `scratch_dir` (without one: /dev/shm, or the temp dir for a database too \
             large for memory). Until it is fixed no drill runs, and the monitor's \
             verification age grows."
        } else {
            "the scratch server is too small or unhealthy for this database: free space under `scratch_dir` (local; \
             without one, /dev/shm or the temp dir) or \
             a larger `rds_instance_class`, fewer `restore_jobs`; what stopped it (the kernel's OOM killer, a full disk, \
             a restart) is in the host's log or the RDS instance's events. A restore that outlasts the invocation needs \
             the container runner (docs/operations.md#restore-drills)."
        },
        what = drilled(drill),
        name = target.name,
        lines = lines.join("\n"),
        timings = timings_text(drill),
        drill_id = drill.drill_id,
        again = match drill.point_in_time {
            Some(_) => format!("Drill again with `backstop verify --target {}`.", target.name),
            None => format!(
                "Drill this backup again with `backstop verify --target {} --backup {}`.",
                target.name, drill.backup_id
            ),
        },
    );
    Alert {
        subject: subject_line(&format!("Backstop: restore drill of {} inconclusive: {fault}", target.name)),
        body,
        severity: Severity::Warning,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: Some(runbook::DRILL_INCONCLUSIVE),
    }
}

/// One failed check, for an alert: a mismatch as expected and found, an error with its message.
fn failure_line(c: &CheckResult) -> String {
    match &c.outcome {
        CheckOutcome::Mismatch { expected, found } => {
            format!("- {}: expected {expected}, found {found}", c.name.label())
        }
        CheckOutcome::Error { message } => format!("- {}: {message}", c.name.label()),
        _ => format!("- {}", c.name.label()),
    }
}

/// The checks that could not run, grouped by why: what the person paged must not read as failed.
pub(super) fn not_run_text(not_run: &[&CheckResult]) -> String {
    let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
    for c in not_run {
        let CheckOutcome::NotRun { reason } = &c.outcome else { continue };
        match by_reason.iter_mut().find(|(r, _)| r == reason) {
            Some((_, names)) => names.push(c.name.label()),
            None => by_reason.push((reason, vec![c.name.label()])),
        }
    }
    let lines: Vec<String> = by_reason
        .iter()
        .map(|(reason, names)| {
            let shown = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            let more = if names.len() > 8 { format!(" and {} more", names.len() - 8) } else { String::new() };
            format!("- {shown}{more}: {reason}")
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nNot checked (not failed; nothing is known of them) ({}):\n{}\n", not_run.len(), lines.join("\n"))
    }
}

pub(super) fn budget_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: restore drill of {} over budget", target.name)),
        body: format!(
            "A restore drill of {} of target \"{}\" passed its checks, but: {}.\n\n{}\n\nWhat to do: a slow restore means a long outage; \
             consider a larger scratch instance class, or back up more often for a smaller RPO.",
            drilled(drill),
            target.name,
            drill.report.budget_warnings.join("; "),
            timings_text(drill)
        ),
        severity: Severity::Warning,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: Some(runbook::DRILL_FAILED),
    }
}

pub(super) fn drill_passed_alert(target: &TargetConfig, drill: &DrillRecord) -> Alert {
    Alert {
        subject: subject_line(&format!("Backstop: backup of {} verified by a restore drill", target.name)),
        body: format!(
            "A restore drill of {} of target \"{}\" passed all {} checks.\n\n{}",
            drilled(drill),
            target.name,
            drill.report.checks.len(),
            timings_text(drill)
        ),
        severity: Severity::Info,
        job: Job::Verify,
        target: Some(target.name.clone()),
        runbook: None,
    }
}
