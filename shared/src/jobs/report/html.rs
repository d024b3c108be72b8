//! The report as one HTML file: inline styles and SVG, no script, no external font or image, so it opens
//! offline, prints, and survives being mailed. Everything an operator configured or a database named (target,
//! schema and table names, error messages) is escaped where it is printed.

use std::fmt::Write;

use super::svg::{seconds_text, Chart, Scale, Series};
use super::{DrillEvidence, ReportData, TargetSection};
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::health::{dated_believably, rank};
use crate::domain::retention::Action;
use crate::domain::text::human_bytes;
use crate::domain::verification::CheckOutcome;
use crate::domain::{BackupRecord, BackupStatus, Severity};
use chrono::{DateTime, Utc};

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:16px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:4px 0}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #e3e7ee;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#5b6678}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:10px}
.card{border:1px solid #d8dde6;border-left:6px solid #2f9e44;border-radius:6px;padding:8px 10px;overflow-wrap:anywhere}
.card.WARNING{border-left-color:#e8a200}.card.CRITICAL{border-left-color:#d6336c}.card.UNKNOWN{border-left-color:#868e96}
.card a{color:inherit;text-decoration:none;font-weight:600}
.badge{display:inline-block;font-size:12px;font-weight:700;padding:1px 6px;border-radius:4px;background:#2f9e44;color:#fff}
.badge.WARNING{background:#e8a200}.badge.CRITICAL{background:#d6336c}.badge.UNKNOWN{background:#868e96}
ul.checks{margin:4px 0;padding-left:18px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eceff4;vertical-align:top;overflow-wrap:anywhere}
th{background:#f5f7fa;position:sticky;top:0}
td.num{text-align:right;white-space:nowrap}
.st-failed,.st-verify_failed,.st-lost,.fail{color:#c2255c;font-weight:600}.st-verified,.pass{color:#2b8a3e;font-weight:600}
.st-in_progress,.st-purging,.warn{color:#b07800}
figure{margin:8px 0}figcaption{font-weight:600}
svg{width:100%;height:auto;max-width:720px;display:block}
svg .axis{stroke:#5b6678}svg .grid{stroke:#e3e7ee}svg .tick{font-size:11px;fill:#5b6678}
svg polyline{fill:none;stroke-width:1.6}svg .budget{stroke:#d6336c;stroke-dasharray:5 4}
svg .failure{stroke:#c2255c;stroke-width:2}
svg .raw{stroke:#1c7ed6;fill:#1c7ed6}svg .stored{stroke:#2f9e44;fill:#2f9e44}
svg .rto{stroke:#7048e8;fill:#7048e8}svg .rpo{stroke:#f08c00;fill:#f08c00}
circle{stroke:none}
.legend .key{margin-right:12px;font-size:12px}.legend .key:before{content:'';display:inline-block;width:18px;height:3px;margin:0 5px 3px 0;background:currentColor}
.key.raw{color:#1c7ed6}.key.stored{color:#2f9e44}.key.rto{color:#7048e8}.key.rpo{color:#f08c00}.key.budget{color:#d6336c}.key.failure{color:#c2255c}
details{border:1px solid #e3e7ee;border-radius:5px;margin:4px 0;padding:2px 8px}
summary{cursor:pointer;padding:3px 0;overflow-wrap:anywhere}
pre{background:#f5f7fa;padding:8px;border-radius:5px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12.5px}
.empty{color:#5b6678;font-style:italic}
@media print{details{break-inside:avoid}details:not([open]) > *:not(summary){display:none}}
";

/// The page.
pub fn render(data: &ReportData) -> String {
    let mut out = String::with_capacity(64 * 1024 + data.targets.iter().map(|t| t.backups.len() * 400).sum::<usize>());
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Backstop report</title><style>{STYLE}</style></head><body>\
         <h1>Backstop: backups and restore drills</h1>\
         <p class=\"meta\">Generated {} UTC from the catalog, for {} target(s). Statuses follow the same rules as \
         <code>backstop check</code>.</p>",
        data.generated_at.format("%Y-%m-%d %H:%M"),
        data.targets.len()
    );
    out.push_str("<section class=\"cards\">");
    for (index, t) in data.targets.iter().enumerate() {
        card(&mut out, index, t, data.generated_at);
    }
    out.push_str("</section>");
    if data.targets.is_empty() {
        out.push_str("<p class=\"empty\">No targets are configured.</p>");
    }
    for (index, t) in data.targets.iter().enumerate() {
        target_section(&mut out, index, t, data);
    }
    out.push_str("</body></html>\n");
    out
}

/// A backup one could restore now (what "last backup" means on the card, as in the monitor's checks).
fn restorable(status: BackupStatus) -> bool {
    matches!(status, BackupStatus::Completed | BackupStatus::Verified)
}

/// OK, WARNING, CRITICAL (the worst of the monitor's checks), or UNKNOWN when they could not be evaluated.
fn status(t: &TargetSection) -> &'static str {
    match &t.health {
        None => "UNKNOWN",
        Some(h) => match h.overall() {
            Some(Severity::Critical) => "CRITICAL",
            Some(Severity::Warning) => "WARNING",
            _ => "OK",
        },
    }
}

fn card(out: &mut String, index: usize, t: &TargetSection, now: DateTime<Utc>) {
    let status = status(t);
    // As the monitor judges: a record dated in the future (a wrong clock) is not the last of anything.
    let believable = |b: &&BackupRecord| dated_believably(b, now);
    let last = t.backups.iter().filter(believable).find(|b| restorable(b.status));
    let verified = t.backups.iter().filter(believable).find(|b| b.status == BackupStatus::Verified);
    let _ = write!(
        out,
        "<div class=\"card {status}\"><a href=\"#target-{index}\">{}</a> <span class=\"badge {status}\">{status}</span><br>\
         <span class=\"meta\">{} on {}:{}</span><br>Last backup: {}<br>Last verified: {}",
        escape(&t.name),
        escape(&t.database),
        escape(&t.host),
        t.port,
        last.map_or("none".to_string(), |b| format!(
            "{} UTC, {}, {}",
            b.started_at.format("%Y-%m-%d %H:%M"),
            human_bytes(b.dump.as_ref().map_or(0, |d| d.size)),
            b.status
        )),
        verified
            .and_then(|b| b.verification.as_ref())
            .map_or("never".to_string(), |v| format!("{} UTC", v.finished_at.format("%Y-%m-%d %H:%M"))),
    );
    if let Some(error) = &t.health_error {
        let _ = write!(out, "<br><span class=\"fail\">{}</span>", escape(error));
    }
    out.push_str("</div>");
}

fn target_section(out: &mut String, index: usize, t: &TargetSection, data: &ReportData) {
    let status = status(t);
    let _ = write!(
        out,
        "<section id=\"target-{index}\"><h2>{} <span class=\"badge {status}\">{status}</span></h2>\
         <p class=\"meta\">Database {} on {}:{}.</p>",
        escape(&t.name),
        escape(&t.database),
        escape(&t.host),
        t.port
    );
    if let Some(health) = &t.health {
        out.push_str("<ul class=\"checks\">");
        for check in &health.checks {
            let class = match check.severity.map(rank) {
                Some(2) => "fail",
                Some(1) => "warn",
                _ => "pass",
            };
            let _ = write!(
                out,
                "<li><span class=\"{class}\">{}</span>: {}</li>",
                escape(check.check.label()),
                escape(&check.summary)
            );
        }
        out.push_str("</ul>");
    }
    charts(out, t, data);
    history(out, t);
    drills(out, t, data);
    retention(out, t);
    actions(out, t);
    out.push_str("</section>");
}

fn charts(out: &mut String, t: &TargetSection, data: &ReportData) {
    let oldest_first = || t.backups.iter().rev();
    let sizes = Chart {
        title: "Dump size and stored size".into(),
        scale: Scale::Bytes,
        series: vec![
            Series {
                label: "plain SQL".into(),
                class: "raw",
                points: oldest_first()
                    // Every backup that was dumped, purged ones too: their sizes are still measurements.
                    .filter(|b| !matches!(b.status, BackupStatus::Failed | BackupStatus::InProgress))
                    .map(|b| (b.started_at, b.raw_bytes as f64))
                    .collect(),
            },
            Series {
                label: "stored".into(),
                class: "stored",
                points: oldest_first()
                    .filter_map(|b| {
                        b.dump
                            .as_ref()
                            .filter(|_| b.status != BackupStatus::Failed)
                            .map(|d| (b.started_at, d.size as f64))
                    })
                    .collect(),
            },
        ],
        budget: None,
        failures: oldest_first()
            .filter(|b| b.status == BackupStatus::Failed)
            .map(|b| (b.started_at, format!("backup {} failed", b.backup_id)))
            .collect(),
    };
    let finished: Vec<&DrillRecord> = t.drills.iter().rev().filter(|d| d.phase == DrillPhase::Done).collect();
    let timing = |pick: fn(&DrillRecord) -> Option<f64>| -> Vec<_> {
        finished.iter().filter_map(|d| pick(d).map(|v| (d.started_at, v))).collect()
    };
    let recovery = Chart {
        title: "Restore drills: recovery time (RTO) and backup age at the drill (RPO)".into(),
        scale: Scale::Seconds,
        series: vec![
            Series { label: "RTO".into(), class: "rto", points: timing(|d| d.report.timings.rto_seconds) },
            Series { label: "RPO".into(), class: "rpo", points: timing(|d| d.report.timings.rpo_seconds) },
        ],
        budget: data.rto_budget.map(|b| ("RTO budget".to_string(), b.as_secs_f64())),
        failures: finished
            .iter()
            .filter(|d| !d.report.passed())
            .map(|d| {
                let what = if d.report.scratch_fault().is_some() { "was inconclusive" } else { "failed" };
                (d.started_at, format!("drill {} {what}", d.drill_id))
            })
            .collect(),
    };
    out.push_str(&sizes.render());
    out.push_str(&recovery.render());
    if let Some(budget) = data.rpo_budget {
        let _ = write!(out, "<p class=\"meta\">RPO budget: {}.</p>", seconds_text(budget.as_secs_f64()));
    }
}

fn history(out: &mut String, t: &TargetSection) {
    let _ = write!(out, "<h3>Backups ({}), newest first</h3>", t.backups.len());
    if t.backups.is_empty() {
        out.push_str("<p class=\"empty\">No backup on record.</p>");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Backup id</th><th>Status</th><th>Started (UTC)</th>\
         <th>Completed (UTC)</th><th>SQL</th><th>Stored</th><th>Verified at (UTC)</th><th>Note</th></tr></thead><tbody>",
    );
    for b in &t.backups {
        let completed = b.finished_at.filter(|_| b.status != BackupStatus::Failed);
        let verified = b.verification.as_ref().filter(|v| v.passed);
        let note = match (&b.error, &b.verification) {
            (Some(error), _) => error.lines().next().unwrap_or_default().to_string(),
            (None, Some(v)) if !v.passed => format!("drill failed: {}", v.failed_checks.join(", ")),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"st-{}\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(b.backup_id.as_str()),
            b.status.as_str(),
            b.status.as_str(),
            b.started_at.format("%Y-%m-%d %H:%M"),
            completed.map_or(String::new(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
            if b.raw_bytes > 0 { human_bytes(b.raw_bytes) } else { String::new() },
            b.dump.as_ref().map_or(String::new(), |d| human_bytes(d.size)),
            verified.map_or(String::new(), |v| v.finished_at.format("%Y-%m-%d %H:%M").to_string()),
            escape(&note)
        );
    }
    out.push_str("</tbody></table></div>");
}

fn drills(out: &mut String, t: &TargetSection, data: &ReportData) {
    let _ = write!(out, "<h3>Restore drills ({}), newest first</h3>", t.drills.len());
    if t.drills.is_empty() {
        out.push_str("<p class=\"empty\">No restore drill on record.</p>");
        return;
    }
    for d in &t.drills {
        let evidence = DrillEvidence::of(d, data.rto_budget, data.rpo_budget);
        let verdict = match (d.phase, evidence.passed, d.report.scratch_fault()) {
            (DrillPhase::Done, true, _) => "<span class=\"pass\">verified</span>".to_string(),
            (DrillPhase::Done, false, Some(fault)) => {
                format!("<span class=\"warn\">inconclusive: {}</span>", escape(&fault))
            }
            (DrillPhase::Done, false, None) => "<span class=\"fail\">failed</span>".to_string(),
            (phase, ..) => format!("<span class=\"warn\">{}</span>", phase.as_str()),
        };
        let compliance = |c: Option<bool>| match c {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "no budget",
        };
        let timings = &d.report.timings;
        let _ = write!(
            out,
            "<details><summary>{} UTC — drill {} of backup {} — {verdict} — RTO {} ({}), RPO {} ({})</summary>",
            d.started_at.format("%Y-%m-%d %H:%M"),
            escape(&d.drill_id),
            escape(d.backup_id.as_str()),
            timings.rto_seconds.map_or("-".into(), seconds_text),
            compliance(evidence.rto_compliant),
            timings.rpo_seconds.map_or("-".into(), seconds_text),
            compliance(evidence.rpo_compliant),
        );
        let _ = write!(
            out,
            "<p class=\"meta\">Provisioning {}, restore {}, checks {}.</p>",
            timings.provision_seconds.map_or("-".into(), seconds_text),
            timings.restore_seconds.map_or("-".into(), seconds_text),
            timings.check_seconds.map_or("-".into(), seconds_text)
        );
        for warning in &d.report.budget_warnings {
            let _ = write!(out, "<p class=\"warn\">{}</p>", escape(warning));
        }
        out.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead><tbody>",
        );
        for check in &d.report.checks {
            let (class, result, detail) = match &check.outcome {
                CheckOutcome::Ok { detail } => ("pass", "ok", detail.clone()),
                CheckOutcome::Warning { detail } => ("warn", "warning", detail.clone()),
                CheckOutcome::Mismatch { expected, found } => {
                    ("fail", "MISMATCH", format!("expected {expected}, found {found}"))
                }
                CheckOutcome::Error { message } => ("fail", "ERROR", message.clone()),
                CheckOutcome::NotRun { reason } => ("warn", "not run", reason.clone()),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{class}\">{result}</td><td>{}</td></tr>",
                escape(&check.name.label()),
                escape(&detail)
            );
        }
        out.push_str("</tbody></table></div></details>");
    }
}

fn retention(out: &mut String, t: &TargetSection) {
    let p = &t.retention;
    let _ = write!(
        out,
        "<h3>Retention</h3><p>Keeps {} daily, {} weekly, {} monthly and {} yearly backups (days in {}), never fewer \
         than {}; one purge deletes at most {:.0}% of the backups.</p>",
        p.daily,
        p.weekly,
        p.monthly,
        p.yearly,
        escape(p.time_zone.name()),
        p.min_keep,
        p.max_delete_fraction * 100.0
    );
    if let Some(refused) = &t.plan.refused {
        let _ = write!(out, "<p class=\"warn\">The next purge would delete nothing: {}</p>", escape(refused));
    }
    let deleting: Vec<_> = t
        .plan
        .decisions
        .iter()
        .filter(|d| matches!(d.action, Action::Delete | Action::Finish | Action::CleanUp))
        .collect();
    if deleting.is_empty() {
        out.push_str("<p>The next purge would delete nothing.</p>");
        return;
    }
    let _ = write!(out, "<p>The next purge would act on {} backup(s):</p><ul>", deleting.len());
    for d in deleting {
        let _ = write!(
            out,
            "<li>{} {} ({}): {}</li>",
            d.action.as_str(),
            escape(d.backup_id.as_str()),
            d.started_at.format("%Y-%m-%d"),
            escape(&d.reasons.join("; "))
        );
    }
    out.push_str("</ul>");
}

fn actions(out: &mut String, t: &TargetSection) {
    // JSON-encode the name for the events, then escape the whole text for the page.
    let name_json = serde_json::to_string(&t.name).expect("strings serialize");
    let text = format!(
        "# Back up now: from a shell with the deployment's configuration\nbackstop backup --target {name}\n\
         # or the backup state machine (Step Functions console, Start execution), input:\n{{\"targets\": [{json}]}}\n\
         # or the backup function's console test event:\n{{\"target\": {json}}}\n\n\
         # Verify latest: from a shell\nbackstop verify --target {name}\n\
         # or the verify state machine, input:\n{{\"target\": {json}}}\n",
        name = shell_word(&t.name),
        json = name_json
    );
    let _ = write!(out, "<h3>Manual actions</h3><pre>{}</pre>", escape(&text));
}

/// `word` as one shell word (single-quoted unless it is plain).
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
