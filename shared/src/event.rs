//! Parsing a backup invocation's event: an EventBridge scheduled event, an EventBridge Scheduler input, or a
//! console test event such as `{"target": "orders", "dry_run": false}`.
//!
//! Unknown fields and wrong types are refused with a message that names the field; nothing is guessed.

use serde::Deserialize;
use serde_json::Value;

use crate::config::valid_target_name;
use crate::domain::Trigger;
use crate::jobs::backup::BackupRequest;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the event is not valid: {0}. Send {{}} for every target, or {{\"target\": \"NAME\", \"dry_run\": false}}")]
pub struct EventError(pub String);

/// A console or Scheduler event. `trigger` and `idempotency_key` are what Scheduler's input template sets
/// (`"idempotency_key": "<aws.scheduler.execution-id>"`); people at the console usually leave them out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualEvent {
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    trigger: Option<Trigger>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// The `detail` of an EventBridge rule's scheduled event: empty, or naming one target.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScheduledDetail {
    #[serde(default)]
    target: Option<String>,
}

/// Turns an event into a request. `request_id` (Lambda's, the same across Lambda's own retries of an
/// asynchronous invocation) is the idempotency key when the event carries none.
pub fn parse_backup_event(event: &Value, request_id: &str) -> Result<BackupRequest, EventError> {
    let is_scheduled_envelope = event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    let request = if is_scheduled_envelope {
        let id = event.get("id").and_then(Value::as_str).unwrap_or(request_id);
        let detail: ScheduledDetail = match event.get("detail") {
            None | Some(Value::Null) => ScheduledDetail::default(),
            Some(d) => serde_json::from_value(d.clone()).map_err(|e| EventError(format!("detail: {e}")))?,
        };
        BackupRequest {
            target: detail.target,
            dry_run: false,
            trigger: Trigger::Schedule,
            request_id: request_id.to_string(),
            idempotency_key: Some(id.to_string()),
            deadline: None,
        }
    } else {
        let event = if event.is_null() { Value::Object(Default::default()) } else { event.clone() };
        if !event.is_object() {
            return Err(EventError(format!("expected a JSON object, got {event}")));
        }
        let manual: ManualEvent = serde_json::from_value(event).map_err(|e| EventError(e.to_string()))?;
        if manual.trigger == Some(Trigger::Cli) {
            return Err(EventError("trigger: `cli` is for the command line; use `console` or `schedule`".into()));
        }
        BackupRequest {
            target: manual.target,
            dry_run: manual.dry_run,
            trigger: manual.trigger.unwrap_or(Trigger::Console),
            request_id: request_id.to_string(),
            idempotency_key: Some(manual.idempotency_key.unwrap_or_else(|| request_id.to_string())),
            deadline: None,
        }
    };
    if let Some(target) = &request.target {
        if !valid_target_name(target) {
            return Err(EventError(format!("target: {target:?} is not a target name (letters, digits, `-`, `_`)")));
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../functions/backup/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
    }

    #[test]
    fn a_scheduled_event_backs_up_every_target_once_per_event_id() {
        let r = parse_backup_event(&fixture("scheduled.json"), "req-1").unwrap();
        assert_eq!(r.target, None);
        assert_eq!(r.trigger, Trigger::Schedule);
        assert_eq!(r.idempotency_key.as_deref(), Some("cdc73f9d-aea9-11e3-9d5a-835b769c0d9c"));
    }

    #[test]
    fn a_console_event_names_its_target() {
        let r = parse_backup_event(&fixture("console.json"), "req-1").unwrap();
        assert_eq!(r.target.as_deref(), Some("orders"));
        assert_eq!((r.trigger, r.dry_run), (Trigger::Console, false));
        assert_eq!(r.idempotency_key.as_deref(), Some("req-1"), "Lambda's retries share the request id");
        assert!(parse_backup_event(&fixture("dry-run.json"), "req-1").unwrap().dry_run);
    }

    #[test]
    fn a_scheduler_input_carries_its_execution_id() {
        let r = parse_backup_event(&fixture("scheduler.json"), "req-1").unwrap();
        assert_eq!(r.trigger, Trigger::Schedule);
        assert_eq!(r.idempotency_key.as_deref(), Some("f1d5e6a8-0000-4000-8000-000000000001"));
    }

    #[test]
    fn empty_and_null_events_mean_every_target() {
        for e in [json!({}), Value::Null] {
            assert_eq!(parse_backup_event(&e, "r").unwrap().target, None);
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_by_name() {
        for (event, field) in [
            (json!({"target": "orders", "dry-run": true}), "dry-run"),
            (json!({"dry_run": "yes"}), "invalid type"),
            (json!({"target": 7}), "invalid type"),
            (json!({"target": "../etc"}), "target"),
            (json!({"trigger": "cron"}), "cron"),
            (json!({"trigger": "cli"}), "trigger"),
            (json!([1, 2]), "JSON object"),
            (json!({"detail-type": "Scheduled Event", "id": "x", "detail": {"targte": "a"}}), "targte"),
        ] {
            let err = parse_backup_event(&event, "r").unwrap_err().to_string();
            assert!(err.contains(field), "{event}: {err}");
        }
    }
}
