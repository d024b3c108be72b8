//! What every job does the same way, so that each job's module holds only its own decisions: choosing the
//! targets a request names, publishing an alert without letting a failed publish stop the run, and the
//! dependencies the simpler jobs share.

use std::sync::Arc;

use tracing::warn;

use crate::config::{Config, TargetConfig};
use crate::metrics::MetricsSink;
use crate::ports::{Alert, Alerts, Catalog, Clock, ObjectStore};

/// What a job that reads the store and the catalog, alerts and emits metrics runs on (purge and monitor; the
/// backup and verify jobs add their own programs and servers to the same five).
#[derive(Clone)]
pub struct JobDeps {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub alerts: Arc<dyn Alerts>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn MetricsSink>,
}

/// A request named a target the configuration does not have (an `InvalidEvent` for the Lambda handlers, exit
/// code 2 for the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target {name:?}; configured targets: {known}")]
pub struct UnknownTarget {
    pub name: String,
    pub known: String,
}

/// Every configured target, in the configuration's order, or the one `requested` names.
pub fn select_targets<'a>(config: &'a Config, requested: Option<&str>) -> Result<Vec<&'a TargetConfig>, UnknownTarget> {
    match requested {
        None => Ok(config.targets.iter().collect()),
        Some(name) => config
            .target(name)
            .map(|target| vec![target])
            .ok_or_else(|| UnknownTarget { name: name.to_string(), known: config.target_names().join(", ") }),
    }
}

/// Publishes `alert`. A failure is logged and the run goes on: nothing else can carry the message now, and the
/// run's result, its record and the function's error metric still say what happened.
pub async fn publish_or_warn(alerts: &dyn Alerts, alert: &Alert) {
    if let Err(e) = alerts.publish(alert).await {
        warn!(error = %e, subject = %alert.subject, "could not publish the alert");
    }
}
