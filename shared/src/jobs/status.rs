//! `backstop status`: the recent backups of each target, as a table for people or JSON for scripts.

use serde::Serialize;

use crate::config::Config;
use crate::domain::{BackupRecord, BackupStatus};
use crate::ports::{Catalog, CatalogError};

use super::backup::human_bytes;

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub backups: Vec<BackupRecord>,
}

pub async fn recent_backups(config: &Config, catalog: &dyn Catalog, target: Option<&str>, limit: usize) -> Result<Vec<TargetStatus>, CatalogError> {
    let mut out = Vec::new();
    for t in config.targets.iter().filter(|t| target.is_none_or(|name| t.name == name)) {
        out.push(TargetStatus { target: t.name.clone(), backups: catalog.recent_backups(&t.name, limit).await? });
    }
    Ok(out)
}

/// A plain-text table, one row per backup, newest first within each target.
pub fn render_table(statuses: &[TargetStatus]) -> String {
    let header = ["TARGET", "BACKUP ID", "STATUS", "STARTED (UTC)", "DURATION", "TABLES", "ROWS", "SQL", "STORED", "NOTE"];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in statuses {
        if s.backups.is_empty() {
            rows.push(vec![s.target.clone(), "-".into(), "no backups yet".into(), "".into(), "".into(), "".into(), "".into(), "".into(), "".into(), "".into()]);
        }
        for b in &s.backups {
            let note = match b.status {
                BackupStatus::Failed => b.error.clone().unwrap_or_default().lines().next().unwrap_or_default().chars().take(60).collect(),
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
