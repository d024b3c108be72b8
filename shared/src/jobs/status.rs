//! `backstop status`: the recent backups of each target (the CLI prints them as a table, or as JSON).

use serde::Serialize;

use crate::config::Config;
use crate::domain::BackupRecord;
use crate::ports::{Backups, CatalogError};

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub backups: Vec<BackupRecord>,
}

pub async fn recent_backups(
    config: &Config,
    catalog: &dyn Backups,
    target: Option<&str>,
    limit: usize,
) -> Result<Vec<TargetStatus>, CatalogError> {
    let mut out = Vec::new();
    for t in config.targets.iter().filter(|t| target.is_none_or(|name| t.name == name)) {
        out.push(TargetStatus { target: t.name.clone(), backups: catalog.recent_backups(&t.name, limit).await? });
    }
    Ok(out)
}
