//! `backstop status`: the recent backups of each target, as a table for people or JSON for scripts.

use serde::Serialize;

use crate::config::Config;
use crate::domain::drill::DrillRecord;
use crate::domain::verification::CheckOutcome;
use crate::domain::{BackupRecord, BackupStatus};
use crate::ports::{Catalog, CatalogError};

use crate::domain::text::human_bytes;

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub backups: Vec<BackupRecord>,
}

pub async fn recent_backups(
    config: &Config,
    catalog: &dyn Catalog,
    target: Option<&str>,
    limit: usize,
) -> Result<Vec<TargetStatus>, CatalogError> {
    let mut out = Vec::new();
    for t in config.targets.iter().filter(|t| target.is_none_or(|name| t.name == name)) {
        out.push(TargetStatus { target: t.name.clone(), backups: catalog.recent_backups(&t.name, limit).await? });
    }
    Ok(out)
}

/// One backup in full: its record, and its latest drill's report check by check.
pub fn render_backup(record: &BackupRecord, drill: Option<&DrillRecord>) -> String {
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
    for warning in &drill.report.budget_warnings {
        out.push_str(&format!(
            "  budget   {warning}
"
        ));
    }
    for c in &drill.report.checks {
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

/// A plain-text table, one row per backup, newest first within each target.
pub fn render_table(statuses: &[TargetStatus]) -> String {
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
