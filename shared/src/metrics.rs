//! Metrics as CloudWatch embedded-metric-format (EMF) lines: one JSON object per line on stdout, which Lambda's
//! log pipeline turns into CloudWatch metrics with no API call and no extra permission.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Backstop";

/// Where EMF lines go.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &str);
}

/// Lambda: EMF lines must be whole lines of their own on stdout, outside the tracing formatter.
pub struct StdoutEmf;

impl MetricsSink for StdoutEmf {
    fn emit(&self, line: &str) {
        println!("{line}");
    }
}

/// The CLI's `--emf`: on stderr, beside the logs, so stdout stays the command's own output (`--json`).
/// In a container, the log driver ships both streams to CloudWatch all the same.
pub struct StderrEmf;

impl MetricsSink for StderrEmf {
    fn emit(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// The CLI on a terminal: metrics would only clutter the screen.
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn emit(&self, _: &str) {}
}

/// Keeps the lines, for tests.
#[derive(Default)]
pub struct RecordingMetrics(pub Mutex<Vec<String>>);

impl MetricsSink for RecordingMetrics {
    fn emit(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Seconds,
    Bytes,
    Count,
    /// A plain number (CloudWatch has no "Hours" unit: ages are named `…Hours`).
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::None => "None",
            Unit::Count => "Count",
        }
    }
}

/// One EMF document: a set of metric values sharing dimensions and a timestamp.
pub fn emf_line(at: DateTime<Utc>, dimensions: &[(&str, &str)], metrics: &[(&str, Unit, f64)]) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // Per target, and rolled up across targets (the empty set): alarms in template.yaml watch the
                // roll-up, since the targets are not known when the stack is written.
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>(), Vec::<&str>::new()],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), Value::from(*v));
    }
    for (name, _, value) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_each_metric_and_carries_its_value() {
        let line = emf_line(
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            &[("Target", "orders")],
            &[("BackupSuccess", Unit::Count, 1.0)],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Backstop");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Target");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1], json!([]), "and the roll-up across targets");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "BackupSuccess");
        assert_eq!(v["Target"], "orders");
        assert_eq!(v["BackupSuccess"], 1.0);
    }
}
