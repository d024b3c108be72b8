//! Parsing a backup invocation's event: an EventBridge scheduled event, an EventBridge Scheduler input, a
//! console test event such as `{"target": "orders", "dry_run": false}`, or one of the backup state machine's
//! two steps around the per-target runs (`"action": "list_targets"` and `"action": "fail_stopped"`).
//!
//! Unknown fields and wrong types are refused with a message that names the field; nothing is guessed.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::domain::discovery::valid_unit_name;
use crate::domain::Trigger;
use crate::jobs::backup::BackupRequest;

/// What a backup invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupInvocation {
    /// Back up every target, or the one named.
    Run(BackupRequest),
    /// The state machine's first step: one unit of work per target (every target, or those named), each
    /// carrying the execution's trigger and idempotency key.
    ListTargets(TargetList),
    /// The state machine's failure path for a run that died (its invocation timed out or crashed).
    FailStopped(StoppedRunEvent),
}

/// The targets a fan-out runs, as the state machine's execution input names them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetList {
    /// Only these targets (a manual execution); every target when absent.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// A run that died, as the state machine's Catch reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedRunEvent {
    pub target: String,
    /// Step Functions' error name (`States.Timeout`, `Lambda.Unknown`, …).
    pub error: String,
    /// Its cause, as Step Functions reports it.
    pub cause: Option<String>,
    /// When the execution started: a run that recorded nothing since then died before it began.
    pub since: DateTime<Utc>,
    /// What started the execution (the unit's trigger).
    pub trigger: Trigger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTargetsEvent {
    #[allow(dead_code)] // matched on before parsing
    action: String,
    /// The execution's input, as it was started.
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailStoppedEvent {
    #[allow(dead_code)] // matched on before parsing
    action: String,
    target: String,
    /// What the state machine's Catch put in the state's input.
    error: CaughtError,
    /// Parsed here rather than by serde, whose message would not name the field.
    since: String,
    #[serde(default)]
    trigger: Option<Trigger>,
}

/// Step Functions' error output: its name and cause.
#[derive(Debug, Deserialize)]
struct CaughtError {
    #[serde(rename = "Error")]
    error: String,
    #[serde(rename = "Cause", default)]
    cause: Option<String>,
}

/// Turns any backup invocation's event into what it asks for.
pub fn parse_backup_invocation(event: &Value, request_id: &str) -> Result<BackupInvocation, EventError> {
    match event.get("action").and_then(Value::as_str) {
        None if event.get("action").is_none() => parse_backup_event(event, request_id).map(BackupInvocation::Run),
        Some("list_targets") => {
            let parsed: ListTargetsEvent =
                serde_json::from_value(event.clone()).map_err(|e| EventError(format!("list_targets: {e}")))?;
            let input = match parsed.input {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(input) => input,
            };
            if let Some(problem) = null_field(&input) {
                return Err(EventError(format!("the execution's input: {problem}")));
            }
            let list: TargetList =
                serde_json::from_value(input).map_err(|e| EventError(format!("the execution's input: {e}")))?;
            for name in list.targets.iter().flatten() {
                if !valid_unit_name(name) {
                    return Err(EventError(format!("targets: {name:?} is not a target name")));
                }
            }
            if list.trigger == Some(Trigger::Cli) {
                return Err(EventError("trigger: `cli` is for the command line; use `console` or `schedule`".into()));
            }
            Ok(BackupInvocation::ListTargets(list))
        }
        Some("fail_stopped") => {
            let parsed: FailStoppedEvent =
                serde_json::from_value(event.clone()).map_err(|e| EventError(format!("fail_stopped: {e}")))?;
            let FailStoppedEvent { target, error: CaughtError { error, cause }, since, trigger, .. } = parsed;
            if !valid_unit_name(&target) {
                return Err(EventError(format!("target: {target:?} is not a target name")));
            }
            let since = DateTime::parse_from_rfc3339(&since)
                .map_err(|e| EventError(format!("since: {since:?} is not an RFC 3339 time ({e})")))?
                .with_timezone(&Utc);
            let trigger = trigger.unwrap_or(Trigger::Console);
            Ok(BackupInvocation::FailStopped(StoppedRunEvent { target, error, cause, since, trigger }))
        }
        _ => Err(EventError(format!(
            "action: {} is not one of list_targets, fail_stopped (leave it out to back up)",
            event["action"]
        ))),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the event is not valid: {0}. Send {{}} for every target, or {{\"target\": \"NAME\", \"dry_run\": false}}")]
pub struct EventError(pub String);

/// The fields of an EventBridge event's envelope; what the event asks for is in its `detail`.
pub const ENVELOPE_FIELDS: [&str; 10] =
    ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail", "replay-name"];

/// The first field of an envelope that is not the envelope's own: refused rather than dropped, since
/// `"dry_run": true` or `"target": "orders"` there would otherwise act on every target for real.
pub fn field_beside_envelope(event: &Value) -> Option<String> {
    let beside = event.as_object()?.keys().find(|k| !ENVELOPE_FIELDS.contains(&k.as_str()))?;
    Some(format!(
        "`{beside}` is beside the fields of an EventBridge envelope: put what the event asks for in its `detail`"
    ))
}

/// The first field of `event` (an object) whose value is `null`, as a message. Refused rather than read as absent:
/// an absent `target` means every target, and a template that left `"target": null` did not mean that.
pub fn null_field(event: &Value) -> Option<String> {
    let (name, _) = event.as_object()?.iter().find(|(_, value)| value.is_null())?;
    Some(format!(
        "`{name}` is null: leave the field out for its default (every target, for `target`), or give it a value"
    ))
}

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
        if let Some(problem) = field_beside_envelope(event) {
            return Err(EventError(problem));
        }
        let id = event.get("id").and_then(Value::as_str).unwrap_or(request_id);
        let detail: ScheduledDetail = match event.get("detail") {
            None | Some(Value::Null) => ScheduledDetail::default(),
            Some(d) => {
                if let Some(problem) = null_field(d) {
                    return Err(EventError(format!("detail: {problem}")));
                }
                serde_json::from_value(d.clone()).map_err(|e| EventError(format!("detail: {e}")))?
            }
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
        if let Some(problem) = null_field(&event) {
            return Err(EventError(problem));
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
        if !valid_unit_name(target) {
            return Err(EventError(format!("target: {target:?} is not a target name (letters, digits, `-`, `_`; `<server>.<database>` for a database of a server target)")));
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
            // A null target is not "every target": a template that left it null meant one.
            (json!({"target": null, "dry_run": true}), "`target` is null"),
            (json!({"detail-type": "Scheduled Event", "id": "x", "detail": {"target": null}}), "`target` is null"),
            // A field beside the envelope is refused, not dropped (it would back up every target for real).
            (
                json!({"detail-type": "Scheduled Event", "id": "x", "detail": {}, "dry_run": true}),
                "`dry_run` is beside",
            ),
            (json!({"detail-type": "Scheduled Event", "id": "x", "target": "orders"}), "`target` is beside"),
        ] {
            let err = parse_backup_event(&event, "r").unwrap_err().to_string();
            assert!(err.contains(field), "{event}: {err}");
        }
    }

    #[test]
    fn the_state_machines_steps_are_told_apart_by_their_action() {
        let list = parse_backup_invocation(
            &json!({"action": "list_targets", "input": {"trigger": "schedule", "idempotency_key": "tick"}}),
            "r",
        )
        .unwrap();
        let expected =
            TargetList { targets: None, trigger: Some(Trigger::Schedule), idempotency_key: Some("tick".into()) };
        assert_eq!(list, BackupInvocation::ListTargets(expected));
        let stopped = parse_backup_invocation(
            &json!({"action": "fail_stopped", "target": "orders", "trigger": "schedule", "since": "2026-12-03T04:15:00Z",
                    "error": {"Error": "States.Timeout", "Cause": "timed out"}}),
            "r",
        )
        .unwrap();
        let BackupInvocation::FailStopped(stopped) = stopped else { panic!("{stopped:?}") };
        assert_eq!((stopped.target.as_str(), stopped.error.as_str()), ("orders", "States.Timeout"));
        assert_eq!((stopped.cause.as_deref(), stopped.trigger), (Some("timed out"), Trigger::Schedule));
        // Without an action, the events of old.
        assert!(matches!(parse_backup_invocation(&json!({"target": "orders"}), "r"), Ok(BackupInvocation::Run(_))));
    }

    #[test]
    fn the_state_machines_events_are_refused_by_name_when_wrong() {
        for (event, field) in [
            (json!({"action": "backup"}), "action"),
            (json!({"action": 3}), "action"),
            (json!({"action": "list_targets", "input": {"target": "orders"}}), "target"),
            (json!({"action": "list_targets", "input": {"targets": ["../x"]}}), "targets"),
            (json!({"action": "list_targets", "input": {"trigger": "cli"}}), "trigger"),
            (json!({"action": "fail_stopped", "target": "orders", "since": "2026-12-03T04:15:00Z"}), "error"),
            (
                json!({"action": "fail_stopped", "target": "orders", "error": {"Error": "x"}, "since": "yesterday"}),
                "since",
            ),
        ] {
            let err = parse_backup_invocation(&event, "r").unwrap_err().to_string();
            assert!(err.contains(field), "{event}: {err}");
        }
    }
}
