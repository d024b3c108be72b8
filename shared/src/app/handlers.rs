//! The Lambda handlers: each function's event parsed into its job's request, the job's result into the answer,
//! and every failure into a [`HandlerError`] whose [`ErrorType`] Lambda reports (and the template matches).

use std::time::Duration;

use serde_json::Value;

use crate::config::ConfigError;
use crate::domain::discovery::valid_unit_name;
use crate::domain::runner::Runner;
use crate::domain::Trigger;
use crate::event::{parse_backup_invocation, BackupInvocation, StoppedRunEvent, TargetList};
use crate::jobs::backup::{BackupJob, FanOutError, StoppedRunError};
use crate::jobs::monitor::{MonitorJob, MonitorRequest};
use crate::jobs::purge::{PurgeJob, PurgeRequest};
use crate::jobs::verify::{VerifyJob, VerifyJobError, VerifyRequest};
use crate::notify::{NotifyError, WebhookPoster};

/// The error types the handlers answer with. Each becomes Lambda's `errorType`, which logs, metric filters,
/// on-failure destinations and the verify state machine's `Retry`/`Catch` rules (`ErrorEquals`) see; the wiring
/// test holds every `ErrorEquals` in `template.yaml` to this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The event is wrong (bad JSON, an unknown target): never worth a retry.
    InvalidEvent,
    /// The configuration or the targets parameter is wrong or unreadable; no run was attempted.
    ConfigError,
    /// A target's backup failed (alerted already); a retry may succeed.
    BackupFailed,
    /// A target could not be purged (alerted already).
    PurgeFailed,
    /// A target could not be evaluated at all.
    MonitorFailed,
    /// The verify job could not reach its catalog; a new invocation resumes where this one stopped.
    Retryable,
    /// `abandon` (verify) or `fail_stopped` (backup) met a lease another (perhaps killed) invocation still
    /// holds; it lapses by itself.
    LeaseHeld,
    /// The Slack webhook refused the message: fix its configuration.
    SlackRejected,
    /// Slack could not be reached; a retry may succeed.
    SlackUnavailable,
}

impl ErrorType {
    pub const ALL: [ErrorType; 9] = [
        ErrorType::InvalidEvent,
        ErrorType::ConfigError,
        ErrorType::BackupFailed,
        ErrorType::PurgeFailed,
        ErrorType::MonitorFailed,
        ErrorType::Retryable,
        ErrorType::LeaseHeld,
        ErrorType::SlackRejected,
        ErrorType::SlackUnavailable,
    ];

    /// The name Lambda reports, and the template matches.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidEvent => "InvalidEvent",
            ErrorType::ConfigError => "ConfigError",
            ErrorType::BackupFailed => "BackupFailed",
            ErrorType::PurgeFailed => "PurgeFailed",
            ErrorType::MonitorFailed => "MonitorFailed",
            ErrorType::Retryable => "Retryable",
            ErrorType::LeaseHeld => "LeaseHeld",
            ErrorType::SlackRejected => "SlackRejected",
            ErrorType::SlackUnavailable => "SlackUnavailable",
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Lambda handler's failure: its type (Lambda's `errorType`) and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub error_type: ErrorType,
    pub message: String,
}

/// `ConfigError`: the configuration (or the targets parameter) is wrong or unreadable; no run was attempted.
/// `Retryable` when SSM did not answer or throttled: the state machines try again rather than give up the day's
/// backups or fail the running drills.
impl From<ConfigError> for HandlerError {
    fn from(e: ConfigError) -> Self {
        let error_type = match e {
            ConfigError::TargetsParameter { transient: true, .. } => ErrorType::Retryable,
            _ => ErrorType::ConfigError,
        };
        HandlerError { error_type, message: format!("configuration error: {e} (see docs/configuration.md)") }
    }
}

/// Time kept back from a Lambda's limit to abort, clean up, record and alert after stopping a backup.
pub const CLEANUP_MARGIN: Duration = Duration::from_secs(30);

/// The backup function's whole handler: parse, run, answer with the run record; fail if any target failed.
/// `time_left` is what the invocation has left (Lambda's deadline); backups stop `CLEANUP_MARGIN` before it.
pub async fn handle_backup_event(
    job: &BackupJob,
    event: &Value,
    request_id: &str,
    time_left: Option<Duration>,
) -> Result<Value, HandlerError> {
    let invalid = |message: String| HandlerError { error_type: ErrorType::InvalidEvent, message };
    let mut request = match parse_backup_invocation(event, request_id).map_err(|e| invalid(e.to_string()))? {
        BackupInvocation::Run(request) => request,
        BackupInvocation::ListTargets(list) => return list_targets(job, &list).await,
        BackupInvocation::FailStopped(stopped) => return fail_stopped(job, &stopped).await,
    };
    request.deadline = time_left.map(|left| tokio::time::Instant::now() + left.saturating_sub(CLEANUP_MARGIN));
    let run = job
        .run(&request)
        .await
        .map_err(|e| HandlerError { error_type: ErrorType::InvalidEvent, message: e.to_string() })?;
    let failed: Vec<String> =
        run.targets.iter().filter(|t| t.outcome.is_failure()).map(|t| format!("{}: {}", t.target, t.message)).collect();
    if failed.is_empty() {
        Ok(serde_json::to_value(&run).expect("run records serialize"))
    } else {
        Err(HandlerError {
            error_type: ErrorType::BackupFailed,
            message: format!("{} of {} targets failed: {}", failed.len(), run.targets.len(), failed.join("; ")),
        })
    }
}

/// The backup state machine's first step: one unit of work per target (every configured target, or those the
/// execution names, each checked), each the event its per-target run sends back to this function.
async fn list_targets(job: &BackupJob, list: &TargetList) -> Result<Value, HandlerError> {
    let units = job.fan_out(list.targets.as_deref()).await.map_err(|e| match e {
        FanOutError::UnknownTarget(e) => HandlerError { error_type: ErrorType::InvalidEvent, message: e.to_string() },
        e @ (FanOutError::History { .. } | FanOutError::Inventories(_)) => {
            HandlerError { error_type: ErrorType::Retryable, message: e.to_string() }
        }
    })?;
    // An execution started without a key gets one here, once: a redriven execution keeps this state's output,
    // so its retried units still share it.
    let key = list.idempotency_key.clone().unwrap_or_else(|| format!("execution-{}", uuid::Uuid::new_v4()));
    let mut out = Vec::new();
    for unit in units {
        tracing::info!(target = %unit.target, runner = ?unit.runner.runner, reasons = ?unit.runner.reasons, "planned a unit");
        out.push(serde_json::json!({
            "target": unit.target,
            "trigger": list.trigger.unwrap_or(Trigger::Console),
            // The same key for every target: a claim is per event *and* target.
            "idempotency_key": key,
            "runner": unit.runner.runner,
            "runner_reasons": unit.runner.reasons,
        }));
    }
    Ok(serde_json::json!({ "targets": out }))
}

/// The backup state machine's failure path for a run that died: fails what it left, or says it left nothing.
/// `LeaseHeld` while the dead run's lease has not lapsed (the state machine retries).
async fn fail_stopped(job: &BackupJob, stopped: &StoppedRunEvent) -> Result<Value, HandlerError> {
    let why = match &stopped.cause {
        Some(cause) if !cause.is_empty() => format!("{}: {}", stopped.error, describe_cause(cause)),
        _ => stopped.error.clone(),
    };
    match job.fail_stopped_run(&stopped.target, &why, stopped.since, stopped.trigger).await {
        Ok(Ok(done)) => Ok(serde_json::to_value(&done).expect("serializes")),
        Ok(Err(held)) => Err(HandlerError {
            error_type: ErrorType::LeaseHeld,
            message: format!(
                "the backup lease of {} is held by run {} until {}: the stopped run's lease lapses by then",
                stopped.target, held.owner, held.expires_at
            ),
        }),
        Err(StoppedRunError::UnknownTarget(e)) => {
            Err(HandlerError { error_type: ErrorType::InvalidEvent, message: e.to_string() })
        }
        Err(e @ StoppedRunError::Catalog(_)) => {
            Err(HandlerError { error_type: ErrorType::Retryable, message: e.to_string() })
        }
    }
}

/// What a caught error's cause says, briefly. A Fargate task's is the task as ECS describes it (JSON): its
/// stopped reason and its container's exit code and reason. Any other: the first line, at most 300 characters
/// (Step Functions' causes can be whole stack traces).
fn describe_cause(cause: &str) -> String {
    if let Ok(task) = serde_json::from_str::<Value>(cause) {
        if let Some(stopped) = task.get("StoppedReason").and_then(Value::as_str) {
            let container = &task["Containers"][0];
            let mut said = format!("the task stopped: {stopped}");
            if let Some(code) = container.get("ExitCode").and_then(Value::as_i64) {
                said.push_str(&format!("; its program exited with code {code}"));
            }
            if let Some(reason) = container.get("Reason").and_then(Value::as_str) {
                said.push_str(&format!(" ({reason})"));
            }
            return said.chars().take(300).collect();
        }
    }
    cause.lines().next().unwrap_or_default().chars().take(300).collect()
}

/// The verify function's handler: `{}` (every target), `{"target": "NAME"}`, or with `"backup_id"`; a loop
/// that invokes it again until `done` sends `"resume_only": true` after the first call (and, when it runs out
/// of patience, `"abandon": "why"` to fail and clean up what is unfinished), so drills that already
/// finished are not started again; `"exclude"` names targets the call leaves alone (drilled on Fargate). The
/// state machine's first call is `{"action": "plan", "input": <its input>}` ([`plan_drills`]). Fails (for Step
/// Functions' Catch) when the request itself is wrong.
pub async fn handle_verify_event(
    job: &VerifyJob,
    event: &Value,
    request_id: &str,
    time_left: Option<Duration>,
) -> Result<Value, HandlerError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VerifyEvent {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        backup_id: Option<String>,
        #[serde(default)]
        resume_only: bool,
        #[serde(default)]
        abandon: Option<String>,
        #[serde(default)]
        sweep_only: bool,
        /// `schedule` (the state machine's scheduled start) or `console` (the default: a person).
        #[serde(default)]
        trigger: Option<String>,
        /// `plan`: where each target's drill runs, and the payloads of the state machine's steps; nothing runs.
        #[serde(default)]
        action: Option<String>,
        /// Targets whose drills run elsewhere (on Fargate): left alone by this invocation.
        #[serde(default)]
        exclude: Vec<String>,
        /// With `action: plan`: the execution's input (`target`, `backup_id`, `trigger`, all optional).
        #[serde(default)]
        input: Option<Value>,
    }
    /// The verify state machine's input, as its first step passes it on.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExecutionInput {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        backup_id: Option<String>,
        #[serde(default)]
        trigger: Option<String>,
    }
    let invalid = |message: String| HandlerError { error_type: ErrorType::InvalidEvent, message };
    let event = if event.is_null() { Value::Object(Default::default()) } else { event.clone() };
    // `input` (the plan's execution input) is checked on its own below.
    let mut fields = event.clone();
    if let Some(object) = fields.as_object_mut() {
        object.remove("input");
    }
    if let Some(problem) = crate::event::null_field(&fields) {
        return Err(invalid(format!("the event is not valid: {problem}")));
    }
    let parsed: VerifyEvent = serde_json::from_value(event).map_err(|e| {
        invalid(format!("the event is not valid: {e}. Send {{}} or {{\"target\": \"NAME\", \"backup_id\": \"ID\"}}"))
    })?;
    let trigger_of = |trigger: Option<&str>| match trigger {
        None | Some("console") => Ok(Trigger::Console),
        Some("schedule") => Ok(Trigger::Schedule),
        Some(other) => Err(invalid(format!("trigger {other:?} is not `schedule` or `console`"))),
    };
    if let Some(name) = parsed.exclude.iter().find(|name| !valid_unit_name(name)) {
        return Err(invalid(format!("exclude: {name:?} is not a target name")));
    }
    match parsed.action.as_deref() {
        None if parsed.input.is_none() => {}
        None => return Err(invalid("input goes with action plan only".into())),
        Some("plan") => {
            let loop_fields = parsed.target.is_some()
                || parsed.backup_id.is_some()
                || parsed.trigger.is_some()
                || parsed.resume_only
                || parsed.abandon.is_some()
                || parsed.sweep_only
                || !parsed.exclude.is_empty();
            if loop_fields {
                return Err(invalid("action plan takes the execution's input in `input`, and nothing else".into()));
            }
            let input = match parsed.input {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(input) => input,
            };
            if let Some(problem) = crate::event::null_field(&input) {
                return Err(invalid(format!("the execution's input is not valid: {problem}")));
            }
            let input: ExecutionInput = serde_json::from_value(input).map_err(|e| {
                invalid(format!(
                    "the execution's input is not valid: {e}. Start it with {{}} or {{\"target\": \"NAME\"}}"
                ))
            })?;
            if input.backup_id.is_some() && input.target.is_none() {
                return Err(invalid("backup_id needs target: backup ids are per target".into()));
            }
            let trigger = trigger_of(input.trigger.as_deref())?;
            return plan_drills(job, input.target, input.backup_id, trigger).await;
        }
        Some(other) => return Err(invalid(format!("action {other:?} is not `plan` (leave it out to run drills)"))),
    }
    if parsed.backup_id.is_some() && parsed.target.is_none() {
        return Err(invalid("backup_id needs target: backup ids are per target".into()));
    }
    let trigger = trigger_of(parsed.trigger.as_deref())?;
    let abandoning = parsed.abandon.is_some();
    let request = VerifyRequest {
        target: parsed.target,
        backup_id: parsed.backup_id.map(crate::domain::BackupId),
        trigger,
        request_id: request_id.to_string(),
        deadline: time_left.map(|left| tokio::time::Instant::now() + left.saturating_sub(CLEANUP_MARGIN)),
        max_steps: None,
        resume_only: parsed.resume_only,
        abandon: parsed.abandon,
        sweep_only: parsed.sweep_only,
        exclude: parsed.exclude,
    };
    let run = job.run(&request).await.map_err(|e| match e {
        VerifyJobError::Catalog(_) => HandlerError { error_type: ErrorType::Retryable, message: e.to_string() },
        _ => invalid(e.to_string()),
    })?;
    if abandoning && !run.lease_held.is_empty() {
        // A killed invocation's lease still guards these drills: the state machine retries until it expires.
        return Err(HandlerError {
            error_type: ErrorType::LeaseHeld,
            message: format!(
                "cannot abandon the drills of {} yet: {}",
                run.lease_held.join(", "),
                run.skipped.join("; ")
            ),
        });
    }
    Ok(serde_json::to_value(&run).expect("runs serialize"))
}

/// The verify state machine's first step: where each target's drill runs (`VerifyJob::plan`), and the payloads
/// of the steps that follow, so the machine holds no logic of its own: `start`, `resume` and `abandon` for the
/// Lambda loop (each excluding the Fargate targets, whose drills that loop must not touch), and per Fargate
/// unit the command of its task (`backstop verify --target T …`, the same program as everywhere).
async fn plan_drills(
    job: &VerifyJob,
    target: Option<String>,
    backup_id: Option<String>,
    trigger: Trigger,
) -> Result<Value, HandlerError> {
    let units = job.plan(target.as_deref()).await.map_err(|e| match e {
        VerifyJobError::Catalog(_) => HandlerError { error_type: ErrorType::Retryable, message: e.to_string() },
        _ => HandlerError { error_type: ErrorType::InvalidEvent, message: e.to_string() },
    })?;
    let (fargate, lambda): (Vec<_>, Vec<_>) = units.into_iter().partition(|unit| unit.runner.runner == Runner::Fargate);
    let excluded: Vec<&str> = fargate.iter().map(|unit| unit.target.as_str()).collect();
    let tasks: Vec<Value> = fargate
        .iter()
        .map(|unit| {
            tracing::info!(target = %unit.target, reasons = ?unit.runner.reasons, "the drill runs on Fargate");
            let mut command = vec!["verify", "--target", &unit.target, "--trigger", trigger.as_str()];
            if let Some(id) = &backup_id {
                command.extend(["--backup", id]);
            }
            command.push("--emf");
            serde_json::json!({ "target": unit.target, "command": command, "runner_reasons": unit.runner.reasons })
        })
        .collect();
    let mut start = serde_json::json!({ "trigger": trigger.as_str(), "exclude": excluded });
    if let Some(target) = &target {
        start["target"] = target.clone().into();
    }
    if let Some(id) = &backup_id {
        start["backup_id"] = id.clone().into();
    }
    Ok(serde_json::json!({
        "lambda": lambda.iter().map(|unit| &unit.target).collect::<Vec<_>>(),
        "fargate": tasks,
        "start": start,
        "resume": { "resume_only": true, "exclude": excluded },
        "abandon": {
            "resume_only": true,
            "exclude": excluded,
            "abandon": "the verify state machine gave up (an error, or its time bound); see its execution history",
        },
    }))
}

/// The notifier function's handler: answers what was delivered and dropped; fails once when a message did not
/// reach Slack (so SNS's and Lambda's retry policies and the error metric take over), never for a record that
/// cannot be read.
pub async fn handle_notify_event(poster: &dyn WebhookPoster, event: &Value) -> Result<Value, HandlerError> {
    match crate::notify::deliver(event, poster).await {
        Ok(report) => Ok(serde_json::to_value(&report).expect("reports serialize")),
        Err(e @ NotifyError::NotAnSnsEvent(_)) => {
            Err(HandlerError { error_type: ErrorType::InvalidEvent, message: e.to_string() })
        }
        Err(e @ NotifyError::Undelivered { all_rejected: true, .. }) => {
            Err(HandlerError { error_type: ErrorType::SlackRejected, message: e.to_string() })
        }
        Err(e) => Err(HandlerError { error_type: ErrorType::SlackUnavailable, message: e.to_string() }),
    }
}

/// The purge function's handler: `{}` (every target), `{"target": "NAME"}`, `"dry_run": true` to only report,
/// `"force": true` past the deletion-fraction rail. Fails when a target could not be purged (alerted already).
pub async fn handle_purge_event(job: &PurgeJob, event: &Value, request_id: &str) -> Result<Value, HandlerError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PurgeEvent {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        force: bool,
    }
    let invalid = |message: String| HandlerError { error_type: ErrorType::InvalidEvent, message };
    let parsed: PurgeEvent = parse_manual_event(event).map_err(|e| {
        invalid(format!("the event is not valid: {e}. Send {{}}, or {{\"target\": \"NAME\", \"dry_run\": true}}"))
    })?;
    let request = PurgeRequest {
        target: parsed.target,
        force: parsed.force,
        dry_run: parsed.dry_run,
        trigger: crate::domain::Trigger::Console,
        request_id: request_id.to_string(),
    };
    let results = job.run(&request).await.map_err(|e| invalid(e.to_string()))?;
    let failed: Vec<String> =
        results.iter().filter(|r| r.failed()).map(|r| format!("{}: {}", r.target, r.summary())).collect();
    if failed.is_empty() {
        Ok(serde_json::to_value(&results).expect("purge results serialize"))
    } else {
        Err(HandlerError { error_type: ErrorType::PurgeFailed, message: failed.join("; ") })
    }
}

/// A hand-written or scheduled event: `null` and `{}` mean "defaults"; an EventBridge envelope (`source` and
/// `detail-type`) is read by its `detail` (`{}` for a schedule's), which must match `T` exactly, as must any other
/// event. A field beside the envelope's own is refused rather than dropped: `"dry_run": true` there would
/// otherwise purge for real.
fn parse_manual_event<T: serde::de::DeserializeOwned>(event: &Value) -> Result<T, serde_json::Error> {
    let envelope = event.get("detail-type").is_some() && event.get("source").is_some();
    let event = if event.is_null() {
        Value::Object(Default::default())
    } else if envelope {
        if let Some(problem) = crate::event::field_beside_envelope(event) {
            return Err(serde::de::Error::custom(problem));
        }
        match event.get("detail") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(detail) => detail.clone(),
        }
    } else {
        event.clone()
    };
    if let Some(problem) = crate::event::null_field(&event) {
        return Err(serde::de::Error::custom(problem));
    }
    serde_json::from_value(event)
}

/// The monitor function's handler: `{}` (every target) or `{"target": "NAME"}`. Alerts on changes of state;
/// answers with each target's checks. Fails only when a target could not be evaluated at all.
pub async fn handle_monitor_event(job: &MonitorJob, event: &Value) -> Result<Value, HandlerError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MonitorEvent {
        #[serde(default)]
        target: Option<String>,
    }
    let invalid = |message: String| HandlerError { error_type: ErrorType::InvalidEvent, message };
    let parsed: MonitorEvent = parse_manual_event(event)
        .map_err(|e| invalid(format!("the event is not valid: {e}. Send {{}} or {{\"target\": \"NAME\"}}")))?;
    let whole = parsed.target.is_none();
    let reports =
        job.run(&MonitorRequest { target: parsed.target, alert: true }).await.map_err(|e| invalid(e.to_string()))?;
    if whole {
        // The hourly page of every target. A failure is logged and leaves the previous page, whose date says how
        // old it is; the monitor's own checks and alerts above are what must not wait for it.
        match job.refresh_report(reports.clone()).await {
            Ok(key) => tracing::info!(key = %key, "report page refreshed"),
            Err(e) => tracing::error!(error = %e, "could not refresh the report page"),
        }
    }
    let unknown: Vec<String> =
        reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.target))).collect();
    if unknown.is_empty() {
        Ok(serde_json::to_value(&reports).expect("monitor reports serialize"))
    } else {
        Err(HandlerError { error_type: ErrorType::MonitorFailed, message: unknown.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        dry_run: bool,
    }

    fn envelope(detail: Value) -> Value {
        serde_json::json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-12-05T03:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
    }

    #[test]
    fn an_eventbridge_envelope_is_read_by_its_detail() {
        let asked: Asked = parse_manual_event(&envelope(serde_json::json!({}))).unwrap();
        assert_eq!(asked, Asked { target: None, dry_run: false });
        let asked: Asked =
            parse_manual_event(&envelope(serde_json::json!({"dry_run": true, "target": "orders"}))).unwrap();
        assert_eq!(asked, Asked { target: Some("orders".into()), dry_run: true }, "a dry run stays a dry run");
        assert!(
            parse_manual_event::<Asked>(&envelope(serde_json::json!({"dryrun": true}))).is_err(),
            "a misspelt field"
        );
    }

    #[test]
    fn a_field_beside_the_envelope_is_refused_not_dropped() {
        let mut event = envelope(serde_json::json!({}));
        event["dry_run"] = Value::Bool(true);
        let error = parse_manual_event::<Asked>(&event).unwrap_err().to_string();
        assert!(error.contains("`dry_run` is beside the fields of an EventBridge envelope"), "{error}");
        let minimal = serde_json::json!({"source": "console", "detail-type": "test", "dry_run": true});
        assert!(parse_manual_event::<Asked>(&minimal).is_err());
    }

    #[test]
    fn a_plain_event_must_match_exactly() {
        assert_eq!(parse_manual_event::<Asked>(&Value::Null).unwrap(), Asked { target: None, dry_run: false });
        assert!(parse_manual_event::<Asked>(&serde_json::json!({"dry_run": true})).unwrap().dry_run);
        assert!(parse_manual_event::<Asked>(&serde_json::json!({"dry-run": true})).is_err());
    }

    /// SSM not answering while the targets are read is worth another try; a parameter that is missing is not.
    #[test]
    fn an_unanswered_targets_parameter_is_retryable_a_missing_one_is_a_config_error() {
        let error = |transient| {
            HandlerError::from(ConfigError::TargetsParameter {
                name: "/backstop/targets".into(),
                message: "SSM GetParameter: …".into(),
                transient,
            })
        };
        assert_eq!(error(true).error_type, ErrorType::Retryable);
        assert_eq!(error(false).error_type, ErrorType::ConfigError);
    }

    /// `{"target": null, "force": true}` (a template whose variable was empty) must not purge every target.
    #[test]
    fn a_null_field_is_refused_not_read_as_absent() {
        for event in [serde_json::json!({"target": null}), envelope(serde_json::json!({"target": null}))] {
            let error = parse_manual_event::<Asked>(&event).unwrap_err().to_string();
            assert!(error.contains("`target` is null"), "{event}: {error}");
        }
    }
}
