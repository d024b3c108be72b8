//! Server targets at run time: the backup job reads each server's list of databases, keeps the catalog's
//! inventory of it up to date (every other job reads it), says what changed, and hands back the targets the
//! server stands for now. Which databases are selected and how the inventory changes is `domain::discovery`.
//!
//! A server whose list cannot be read is not skipped silently: it alerts, and its databases known from the last
//! discovery are backed up as usual (each failing loudly on its own if the server is down).

use std::time::Duration;

use futures_util::future::join_all;
use tracing::{info, warn};

use super::BackupJob;
use crate::config::TargetConfig;
use crate::domain::discovery::{merge_inventory, unit_name, InventoryChanges, ServerInventory};
use crate::domain::redact::redact;
use crate::domain::runbook;
use crate::domain::Job;
use crate::jobs::kernel::subject_line;
use crate::ports::{Alert, CatalogError, Severity};

/// How long one server's list may take: a server that accepts connections and then hangs must not hold the
/// fan-out (the state machine's ListTargets step has 120 s for every target).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What discovering one server gave.
#[derive(Debug, Clone)]
pub struct ServerDiscovery {
    pub server: String,
    /// The targets the server stands for now: its databases present at this discovery (or, when the list could
    /// not be read, at the last one).
    pub targets: Vec<TargetConfig>,
    /// Why the server's list could not be read (alerted); `None` when it was.
    pub failure: Option<String>,
}

impl BackupJob {
    /// Discovers each of `servers` (server targets of the configuration), side by side; `record: false`
    /// (a dry run) stores no inventory and alerts nobody. A failed read of the catalog's inventories is an
    /// error: without them a discovery cannot tell a new database from a known one, or a dropped one from one
    /// never seen.
    pub async fn discover(
        &self,
        servers: &[&TargetConfig],
        record: bool,
    ) -> Result<Vec<ServerDiscovery>, CatalogError> {
        if servers.is_empty() {
            return Ok(Vec::new());
        }
        let inventories = self.deps.catalog.inventories().await?;
        let discoveries = servers.iter().map(|server| {
            let previous = inventories.iter().find(|i| i.server == server.name);
            self.discover_server(server, previous, record)
        });
        Ok(join_all(discoveries).await)
    }

    async fn discover_server(
        &self,
        server: &TargetConfig,
        previous: Option<&ServerInventory>,
        record: bool,
    ) -> ServerDiscovery {
        let listed = async {
            let password = self.deps.passwords.resolve(&server.password).await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(DISCOVERY_TIMEOUT, self.deps.dumper.list_databases(&server.address(), &password))
                .await
            {
                Ok(listed) => listed.map_err(|e| redact(&e.to_string(), &[&password])),
                // Dropping the call kills its psql (kill_on_drop).
                Err(_) => Err(format!("the server did not answer the list within {} s", DISCOVERY_TIMEOUT.as_secs())),
            }
        }
        .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(why) => {
                let known: Vec<TargetConfig> =
                    previous.map(|p| targets_of(server, p.present().map(|d| d.name.as_str()))).unwrap_or_default();
                if record {
                    self.alert(&discovery_failed_alert(server, &why, &known)).await;
                }
                return ServerDiscovery { server: server.name.clone(), targets: known, failure: Some(why) };
            }
        };
        let now = self.deps.clock.now();
        let (inventory, changes) = merge_inventory(&server.name, previous, &listed, &server.selection(), now);
        let present: Vec<&str> = inventory.present().map(|d| d.name.as_str()).collect();
        let mut targets = targets_of(server, present.iter().copied());
        if !record {
            return ServerDiscovery { server: server.name.clone(), targets, failure: None };
        }
        match self.deps.catalog.put_inventory(&inventory).await {
            Ok(true) => {}
            Ok(false) => {
                info!(server = %server.name, "a newer discovery of the server is stored; this run's list is used for it alone")
            }
            Err(e) => {
                // A unit runs in an invocation of its own, which finds its database in the stored inventory: a
                // database this list added but could not store would fail there. It waits for the next run.
                warn!(server = %server.name, error = %e, added = ?changes.added, "could not store the server's inventory; databases new in it wait for the next run");
                targets.retain(|t| !changes.added.contains(&t.database));
            }
        }
        if !changes.added.is_empty() {
            info!(server = %server.name, added = ?changes.added, "new databases on the server are backed up from now on");
        }
        if let Some(alert) = changes_alert(server, &changes, present.len(), listed.len()) {
            self.alert(&alert).await;
        }
        ServerDiscovery { server: server.name.clone(), targets, failure: None }
    }
}

/// The targets `server` stands for, one per database of `names` (in that order).
fn targets_of<'a>(server: &TargetConfig, names: impl Iterator<Item = &'a str>) -> Vec<TargetConfig> {
    names.filter_map(|db| unit_name(&server.name, db).map(|unit| server.for_database(unit, db))).collect()
}

fn where_is(server: &TargetConfig) -> String {
    format!("server target \"{}\" ({}:{})", server.name, server.host, server.port)
}

fn discovery_failed_alert(server: &TargetConfig, why: &str, known: &[TargetConfig]) -> Alert {
    let fallback = if known.is_empty() {
        "No database of it was known from an earlier discovery, so none of it was backed up.".to_string()
    } else {
        format!(
            "The {} database(s) known from the last discovery are backed up as usual: {}.",
            known.len(),
            known.iter().map(|t| t.database.as_str()).collect::<Vec<_>>().join(", ")
        )
    };
    Alert {
        subject: subject_line(&format!("Backstop: cannot list the databases of {}", server.name)),
        body: format!(
            "Backstop could not list the databases of {} by connecting to database \"{}\" as \"{}\".\n\n\
             What failed: {why}\n\n{fallback} A database added since then is not backed up until the list can be \
             read again.\n\nWhat to look at: the server is reachable from the functions' subnets, the password \
             source resolves, and the user may connect to \"{}\" (discovery reads pg_database there).",
            where_is(server),
            server.database,
            server.user,
            server.database
        ),
        severity: Severity::Critical,
        job: Job::Backup,
        target: Some(server.name.clone()),
        runbook: Some(runbook::SERVER_DATABASES),
    }
}

/// The alert for what a discovery found that needs a person: databases gone, databases whose names cannot be
/// targets, or nothing selected at all. New databases need nobody: they are backed up, and logged.
fn changes_alert(server: &TargetConfig, changes: &InventoryChanges, present: usize, listed: usize) -> Option<Alert> {
    let mut parts = Vec::new();
    if !changes.gone.is_empty() {
        parts.push(format!(
            "No longer on the server (or no longer selected by its patterns), so no longer backed up: {}. Their \
             backups are kept and purged by the target's retention as before, the newest ones never; a database \
             that comes back is backed up again.",
            quoted(&changes.gone)
        ));
    }
    if !changes.unnameable.is_empty() {
        parts.push(format!(
            "Selected, but NOT backed up, because their names cannot be part of S3 and catalog keys (letters, \
             digits, `-` and `_`, at most 63): {}. Configure each as a target of its own with a plain name \
             (\"database\" holds its real name), and leave it out with exclude_databases.",
            quoted(&changes.unnameable)
        ));
    }
    if present == 0 && changes.unnameable.is_empty() {
        parts.push(format!(
            "None of the server's {listed} databases that accept connections matches databases {:?} (less \
             exclude_databases {:?}): nothing of this server is backed up. Check the patterns (they match whole \
             names, case-sensitively).",
            server.databases, server.exclude_databases
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let severity = if changes.unnameable.is_empty() && present > 0 { Severity::Warning } else { Severity::Critical };
    Some(Alert {
        subject: subject_line(&format!("Backstop: the databases of {} changed", server.name)),
        body: format!("Backstop's discovery of {} found:\n\n{}", where_is(server), parts.join("\n\n")),
        severity,
        job: Job::Backup,
        target: Some(server.name.clone()),
        runbook: Some(runbook::SERVER_DATABASES),
    })
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}
