//! The monitor job: is every target's latest backup fresh, verified and sane? Alerts on changes of state.
//!
//! Per target: read its recent backup records (and the per-table row counts of its two newest completed
//! backups, from their manifests), evaluate them (`domain::health`), emit `BackupAgeHours` and
//! `VerifiedAgeHours`, and, when alerting, advance each check's alert state (`domain::health::next_alert`):
//! an alert fires once when a check goes bad, repeats only after the cooldown, and a "resolved" message
//! follows when it clears. The state lives in the catalog; it is saved only once its alert was published, so a
//! failed publish is retried next hour rather than lost.
//!
//! `backstop check` runs the same evaluation without alerting or saving state (a monitoring plugin reads the
//! exit code instead).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{instrument, warn};

use crate::config::{Config, TargetConfig};
use crate::domain::health::{
    dated_believably, evaluate, next_alert, AlertState, CheckResult, HealthCheck, RowCounts, TableComparison,
    TargetHealth,
};
use crate::domain::{BackupRecord, BackupStatus};
use crate::metrics::{emf_line, Unit};
use crate::ports::*;

mod alerts;
use super::kernel::{select_targets, UnknownTarget};
use super::manifests::read_manifest;
use super::report;
use alerts::monitor_alert;

/// Backups read per target: enough for the shrink median and the failure streak.
const HISTORY: usize = 30;
/// The most read when the newest [`HISTORY`] hold no drill's verdict: six weeks of hourly backups.
const MAX_HISTORY: usize = 1_000;

pub type MonitorDeps = super::kernel::JobDeps;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorRequest {
    pub target: Option<String>,
    /// Publish alerts and keep alert state (the Lambda); `false` only evaluates (`backstop check`).
    pub alert: bool,
}

/// One target's evaluation, or why it could not be evaluated (then it counts as critical).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<TargetHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Subjects of the alerts published in this run.
    pub alerts_sent: Vec<String>,
}

impl TargetReport {
    /// The worst severity: an evaluation that failed is critical (nobody knows the backups are fine).
    pub fn severity(&self) -> Option<Severity> {
        match &self.health {
            Some(h) => h.overall(),
            None => Some(Severity::Critical),
        }
    }
}

pub struct MonitorJob {
    config: Arc<Config>,
    deps: MonitorDeps,
}

impl MonitorJob {
    pub fn new(config: Arc<Config>, deps: MonitorDeps) -> Self {
        MonitorJob { config, deps }
    }

    pub async fn run(&self, request: &MonitorRequest) -> Result<Vec<TargetReport>, UnknownTarget> {
        let mut reports = Vec::new();
        for target in judged_targets(&self.config, request.target.as_deref())? {
            reports.push(self.monitor_target(target, request).await);
        }
        if request.alert && request.target.is_none() {
            self.resolve_no_longer_judged().await;
        }
        Ok(reports)
    }

    #[instrument(skip_all, fields(target = %target.name))]
    async fn monitor_target(&self, target: &TargetConfig, request: &MonitorRequest) -> TargetReport {
        let mut report =
            TargetReport { target: target.name.clone(), health: None, error: None, alerts_sent: Vec::new() };
        let backups = match self.history(&target.name).await {
            Ok(backups) => backups,
            Err(e) => {
                // Loud: an unreadable catalog must not look like "no news".
                report.error = Some(format!("cannot read the backup records: {e}"));
                warn!(error = %e, "monitor could not read the catalog");
                return report;
            }
        };
        let now = self.deps.clock.now();
        let tables = self.table_comparison(&backups, now).await;
        let mut health = evaluate(&target.name, &backups, tables.as_ref(), now, &self.config.monitor);
        if target.is_server() {
            if let Some(age) = health.checks.iter_mut().find(|c| c.check == HealthCheck::BackupAge) {
                age.summary = format!(
                    "no database of server target {} is known: its backup run's discovery has not run or failed, or its \
                     `databases` patterns match none of the server's databases, so nothing of it is backed up",
                    target.name
                );
            }
        }
        let mut figures = Vec::new();
        if let Some(hours) = health.backup_age_hours {
            figures.push(("BackupAgeHours", Unit::None, hours));
        }
        if let Some(hours) = health.verified_age_hours {
            figures.push(("VerifiedAgeHours", Unit::None, hours));
        }
        if !figures.is_empty() {
            self.deps.metrics.emit(&emf_line(now, &[("Target", target.name.as_str())], &figures));
        }
        if request.alert {
            report.alerts_sent = self.advance_alerts(target, &health).await;
        }
        report.health = Some(health);
        report
    }

    /// The target's newest records: [`HISTORY`] of them, or as many more as it takes to reach the newest verified
    /// backup (up to [`MAX_HISTORY`]). Hourly backups and weekly drills put 168 records between two
    /// verdicts: a fixed window would lose the last verified backup (a false "never verified") and the last
    /// failed drill (a false "resolved").
    async fn history(&self, target: &str) -> Result<Vec<BackupRecord>, CatalogError> {
        let mut limit = HISTORY;
        loop {
            let backups = self.deps.catalog.recent_backups(target, limit).await?;
            // The newest verified backup is what `verified_age` needs; the newest verdict of any kind, which
            // `last_verification` needs, is never older than it.
            let verified = backups.iter().any(|b| b.status == BackupStatus::Verified);
            if verified || backups.len() < limit || limit >= MAX_HISTORY {
                return Ok(backups);
            }
            limit = (limit * 8).min(MAX_HISTORY);
        }
    }

    /// Alerts still firing for a name the monitor no longer judges are resolved, saying why, instead of staying
    /// open forever: a server target judged itself until its databases were discovered (they are judged one by
    /// one now), and a database gone from its server (its backups stay under retention; nothing is judged).
    async fn resolve_no_longer_judged(&self) {
        let discovered = self
            .config
            .servers
            .iter()
            .filter(|server| select_targets(&self.config, Some(&server.name)).is_ok_and(|units| !units.is_empty()));
        let names = discovered
            .map(|server| (&server.name, "its databases are known now, and each is judged as a target of its own"))
            .chain(self.config.gone.iter().map(|unit| {
                (
                    &unit.name,
                    "the database is gone from its server: its backups stay under retention, and nothing is judged",
                )
            }));
        let now = self.deps.clock.now();
        for (name, why) in names {
            let Ok(states) = self.deps.catalog.alert_states(name).await else { continue };
            for state in states.iter().filter(|s| s.firing.is_some()) {
                let result = CheckResult::ok(state.check, format!("no longer judged: {why}"));
                self.advance_alert(name, Some(state), &result, now).await;
            }
        }
    }

    /// Per check: the next alert state, the alert it calls for, and the state saved once the alert is out.
    async fn advance_alerts(&self, target: &TargetConfig, health: &TargetHealth) -> Vec<String> {
        let states = match self.deps.catalog.alert_states(&target.name).await {
            Ok(states) => states,
            Err(e) => {
                // Without the previous states, every bad check fires as new, every run, until the states can be
                // read again: a repeated page is better than a silent one.
                warn!(error = %e, "cannot read alert states; every bad check alerts as if for the first time");
                Vec::new()
            }
        };
        let now = self.deps.clock.now();
        let mut sent = Vec::new();
        for result in &health.checks {
            let previous = states.iter().find(|s| s.check == result.check);
            sent.extend(self.advance_alert(&target.name, previous, result, now).await);
        }
        sent
    }

    /// One check's next alert state: the alert it calls for is published, then the state saved (when it changed).
    /// An alert that could not be published leaves the state as it was, so the next run sends it. Returns the
    /// subject sent, if any.
    async fn advance_alert(
        &self,
        target: &str,
        previous: Option<&AlertState>,
        result: &CheckResult,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let (next, event) = next_alert(target, previous, result, now, self.config.monitor.cooldown());
        let mut sent = None;
        if let Some(event) = event {
            let alert = monitor_alert(result, &event, target);
            if let Err(e) = self.deps.alerts.publish(&alert).await {
                warn!(error = %e, target, check = result.check.as_str(), "could not publish the alert; the next run tries again");
                return None;
            }
            sent = Some(alert.subject);
        }
        if previous != Some(&next) {
            if let Err(e) = self.deps.catalog.put_alert_state(&next).await {
                warn!(error = %e, target, check = result.check.as_str(), "could not save the alert state");
            }
        }
        sent
    }

    /// Rewrites the report page of every target (`jobs::report`) at [`report::page_key`] in the bucket
    /// (encrypted like the backups; nothing public: `backstop report --url` gives a short-lived link), from
    /// `reports`, this run's evaluation. Returns the key written.
    pub async fn refresh_report(&self, reports: Vec<TargetReport>) -> Result<String, String> {
        let now = self.deps.clock.now();
        let data = report::gather(&self.config, self.deps.catalog.as_ref(), reports, None, now)
            .await
            .map_err(|e| e.to_string())?;
        let key = report::page_key(&self.config.key_prefix);
        let page = bytes::Bytes::from(report::html::render(&data));
        self.deps
            .store
            .put_object(&key, page, "text/html; charset=utf-8")
            .await
            .map_err(|e| format!("cannot write {key}: {e}"))?;
        Ok(key)
    }

    /// Row counts per table of the two newest completed backups, from their manifests; `None` when there are
    /// not two. A manifest that cannot be read is reported as such (the check warns), never as "no change".
    async fn table_comparison(&self, backups: &[BackupRecord], now: DateTime<Utc>) -> Option<RowCounts> {
        let mut good: Vec<&BackupRecord> = backups
            .iter()
            .filter(|b| {
                matches!(b.status, BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed)
                    && b.manifest.is_some()
                    && dated_believably(b, now)
            })
            .collect();
        good.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.backup_id.cmp(&a.backup_id)));
        let [latest, previous, ..] = good.as_slice() else { return None };
        let read = async |record: &BackupRecord| -> Result<BTreeMap<String, u64>, RowCounts> {
            let manifest = read_manifest(self.deps.store.as_ref(), record).await.map_err(|error| {
                warn!(backup_id = %record.backup_id, error = %error, "cannot read the manifest; the table check warns");
                RowCounts::Unreadable { backup_id: record.backup_id.to_string(), error: error.to_string() }
            })?;
            Ok(manifest.fingerprint.tables.iter().map(|t| (t.qualified_name(), t.rows)).collect())
        };
        let compared = async {
            Ok::<_, RowCounts>(TableComparison { latest: read(latest).await?, previous: read(previous).await? })
        };
        Some(compared.await.map_or_else(|unreadable| unreadable, RowCounts::Compared))
    }
}

/// The targets the monitor (and the report page) judge: every unit, or the one named; and a server target none of
/// whose databases is known yet (its discovery never ran or failed, or its patterns match nothing), which has no
/// unit to judge: it is judged itself, with no backup on record, rather than left out of a report that would then
/// say every target is fine.
pub fn judged_targets<'c>(config: &'c Config, target: Option<&str>) -> Result<Vec<&'c TargetConfig>, UnknownTarget> {
    let mut targets = select_targets(config, target)?;
    for server in &config.servers {
        let asked = target.is_none_or(|name| name == server.name);
        if asked && select_targets(config, Some(&server.name)).is_ok_and(|units| units.is_empty()) {
            targets.push(server);
        }
    }
    Ok(targets)
}

/// The monitoring-plugin state of one report: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (not evaluated).
pub fn plugin_code(report: &TargetReport) -> u8 {
    if report.error.is_some() {
        return 3;
    }
    plugin_rank(report.severity())
}

/// The state a run of several reports exits with: the worst in the monitoring plugins' order, CRITICAL over
/// WARNING over UNKNOWN over OK (numerically UNKNOWN is 3: the largest code would let one target that could not
/// be read hide every CRITICAL one, and many setups do not page on UNKNOWN).
pub fn worst_plugin_code(codes: impl IntoIterator<Item = u8>) -> u8 {
    let order = |code: u8| match code {
        2 => 3,
        1 => 2,
        3 => 1,
        _ => 0,
    };
    codes.into_iter().max_by_key(|code| order(*code)).unwrap_or(0)
}

/// A check's monitoring-plugin state: OK (and info) 0, WARNING 1, CRITICAL 2.
pub fn plugin_rank(s: Option<Severity>) -> u8 {
    s.map_or(0, crate::domain::health::rank)
}

#[cfg(test)]
mod tests;
