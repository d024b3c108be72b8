//! `backstop status`: the recent backups of each target (the CLI prints them as a table, or as JSON).

use serde::Serialize;

use crate::config::Config;
use crate::domain::BackupRecord;
use crate::jobs::kernel::select_targets;
use crate::ports::{Backups, CatalogError};

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub backups: Vec<BackupRecord>,
}

/// The recent backups of every target, or of those `target` names (one target, or a server target's databases);
/// an unknown name gives nothing (the CLI checks names first, with [`select_targets`]).
pub async fn recent_backups(
    config: &Config,
    catalog: &dyn Backups,
    target: Option<&str>,
    limit: usize,
) -> Result<Vec<TargetStatus>, CatalogError> {
    let mut out = Vec::new();
    for t in select_targets(config, target).unwrap_or_default() {
        out.push(TargetStatus { target: t.name.clone(), backups: catalog.recent_backups(&t.name, limit).await? });
    }
    Ok(out)
}
