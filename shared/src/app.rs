//! Wiring: from a [`Config`] to ready jobs on AWS clients. Built once per Lambda container or CLI process.
//!
//! With `AWS_ENDPOINT_URL` set (the local emulator), S3 is addressed path-style: the emulator has no DNS for
//! `bucket.host` names. Against AWS, nothing here differs from production.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::SharedInterceptor;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::adapters::dynamodb::DynamoCatalog;
use crate::adapters::local_scratch::LocalScratch;
use crate::adapters::psql_restorer::PsqlRestorer;
use crate::adapters::rds::{RdsScratch, RdsScratchSettings};
use crate::adapters::postgres::PgDumper;
use crate::adapters::s3::S3Store;
use crate::adapters::secrets::SecretsManager;
use crate::adapters::slack::SlackWebhook;
use crate::adapters::sns::{LogOnlyAlerts, SnsAlerts};
use crate::adapters::ssm::SsmParameters;
use crate::config::{process_env, targets_parameter, Config, ConfigError, Env, ScratchSettings, TargetsText};
use crate::event::parse_backup_event;
use crate::jobs::backup::{BackupDeps, BackupJob, BackupJobError};
use crate::jobs::monitor::{MonitorDeps, MonitorJob, MonitorJobError, MonitorRequest};
use crate::jobs::purge::{PurgeDeps, PurgeJob, PurgeJobError, PurgeRequest};
use crate::jobs::verify::{VerifyDeps, VerifyJob, VerifyJobError, VerifyRequest};
use crate::metrics::MetricsSink;
use crate::notify::retry::RetryPolicy;
use crate::notify::webhook_url::{WebhookSource, WebhookSourceError, WebhookUrlCache};
use crate::notify::{NotifyError, SlackError, WebhookPoster};
use crate::passwords::PasswordResolver;
use crate::ports::{Alerts, PointInTimeRestores, ScratchDatabases, SecretStore, SystemClock};

/// The AWS clients every job shares.
#[derive(Clone)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub rds: aws_sdk_rds::Client,
    /// Parameter Store: the targets, when `BACKSTOP_TARGETS_PARAMETER` names where they are.
    pub ssm: aws_sdk_ssm::Client,
}

impl AwsClients {
    /// The default credential and region chain; path-style S3 when an endpoint override is set.
    pub async fn from_env() -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let emulated = std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_sdk_config(&shared, emulated)
    }

    pub fn from_sdk_config(shared: &aws_config::SdkConfig, s3_path_style: bool) -> Self {
        Self::with_interceptors(shared, s3_path_style, &[])
    }

    /// The same clients with interceptors on every request (the wiring test records which calls each job makes,
    /// to hold the template's IAM policies to them).
    pub fn with_interceptors(shared: &aws_config::SdkConfig, s3_path_style: bool, interceptors: &[SharedInterceptor]) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(s3_path_style)
            // Drills hash every byte they read against the recorded SHA-256 themselves; the SDK cannot validate a
            // multipart object's composite checksum anyway (and warns on every read if asked to).
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(shared);
        let mut sns = aws_sdk_sns::config::Builder::from(shared);
        let mut secrets = aws_sdk_secretsmanager::config::Builder::from(shared);
        let mut rds = aws_sdk_rds::config::Builder::from(shared);
        let mut ssm = aws_sdk_ssm::config::Builder::from(shared);
        for interceptor in interceptors {
            s3.push_interceptor(interceptor.clone());
            dynamodb.push_interceptor(interceptor.clone());
            sns.push_interceptor(interceptor.clone());
            secrets.push_interceptor(interceptor.clone());
            rds.push_interceptor(interceptor.clone());
            ssm.push_interceptor(interceptor.clone());
        }
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
            rds: aws_sdk_rds::Client::from_conf(rds.build()),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
        }
    }
}

/// The configuration a deployed function runs with: its environment, with the targets read from the SSM
/// parameter `BACKSTOP_TARGETS_PARAMETER` names (a function's environment holds 4 KB in all, too little for
/// more than a few targets).
pub async fn config_from_env(clients: &AwsClients) -> Result<Config, ConfigError> {
    load_config(&process_env(), None, &SsmParameters::new(clients.ssm.clone())).await
}

/// [`Config::load`], reading the targets from `parameters` first when the environment names a parameter. The
/// parameter's text then goes through the same parsing and validation as `BACKSTOP_TARGETS`, and its errors name
/// the parameter.
pub async fn load_config(env: &Env, config_file: Option<&Path>, parameters: &dyn SecretStore) -> Result<Config, ConfigError> {
    let fetched = match targets_parameter(env)? {
        Some(name) => {
            let value = parameters
                .secret_string(&name)
                .await
                .map_err(|e| ConfigError::TargetsParameter { name: name.clone(), message: e.message })?;
            Some(TargetsText {
                origin: format!("the SSM parameter {name} (BACKSTOP_TARGETS_PARAMETER)"),
                json: value.expose_secret().to_string(),
            })
        }
        None => None,
    };
    Config::load_with_targets(env, config_file, fetched)
}

/// Builds the backup job's dependencies on AWS and PostgreSQL's programs.
pub fn backup_deps(config: &Config, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> BackupDeps {
    let alerts: Arc<dyn Alerts> = match &config.topic_arn {
        Some(arn) => Arc::new(SnsAlerts::new(clients.sns.clone(), arn.clone(), config.runbook_url.clone())),
        None => Arc::new(LogOnlyAlerts { runbook_url: config.runbook_url.clone() }),
    };
    BackupDeps {
        store: Arc::new(S3Store::new(clients.s3.clone(), config.bucket.clone(), config.kms_key_id.clone())),
        catalog: Arc::new(DynamoCatalog::new(clients.dynamodb.clone(), config.table.clone())),
        alerts,
        dumper: Arc::new(PgDumper::new(config.pg_bin_dir.clone())),
        passwords: Arc::new(PasswordResolver::new(Arc::new(SecretsManager::new(clients.secrets.clone())), process_env())),
        clock: Arc::new(SystemClock),
        metrics,
    }
}

/// The verify job on AWS, with the configured scratch servers (local clusters, or RDS instances).
pub fn verify_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> VerifyJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let (scratch, point_in_time): (Arc<dyn ScratchDatabases>, Option<Arc<dyn PointInTimeRestores>>) = match &config.verify.scratch {
        ScratchSettings::Local { dir } => (Arc::new(LocalScratch::new(dir.clone(), config.pg_bin_dir.clone())), None),
        ScratchSettings::Rds { instance_class, subnet_group, security_group_ids, parameter_group } => {
            let mut settings = RdsScratchSettings::new(instance_class.clone(), subnet_group.clone(), security_group_ids.clone());
            settings.parameter_group = parameter_group.clone();
            settings.kms_key_id = config.kms_key_id.clone();
            let rds = Arc::new(RdsScratch::new(clients.rds.clone(), clients.secrets.clone(), settings));
            (rds.clone(), Some(rds))
        }
    };
    let deps = VerifyDeps {
        store: backup.store,
        catalog: backup.catalog,
        alerts: backup.alerts,
        scratch,
        restorer: Arc::new(PsqlRestorer::new(config.pg_bin_dir.clone(), config.verify.restore_jobs)),
        point_in_time,
        passwords: backup.passwords,
        clock: backup.clock,
        metrics,
    };
    VerifyJob::new(config, deps)
}

/// The monitor job on AWS.
pub fn monitor_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> MonitorJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let deps = MonitorDeps { store: backup.store, catalog: backup.catalog, alerts: backup.alerts, clock: backup.clock, metrics };
    MonitorJob::new(config, deps)
}

/// The purge job on AWS.
pub fn purge_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> PurgeJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let deps = PurgeDeps { store: backup.store, catalog: backup.catalog, alerts: backup.alerts, clock: backup.clock, metrics };
    PurgeJob::new(config, deps)
}

pub fn backup_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> BackupJob {
    let deps = backup_deps(&config, clients, metrics);
    BackupJob::new(config, deps)
}

/// A Lambda handler's failure. `error_type` becomes Lambda's `errorType`, which logs, metrics filters and
/// on-failure destinations see; Lambda's own retries of asynchronous invocations do not look at it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// `InvalidEvent` (never worth a retry), `BackupFailed` (alerted already; a retry may succeed),
    /// `SlackRejected` (the webhook refused: fix its configuration), `SlackUnavailable` (a retry may succeed).
    pub error_type: &'static str,
    pub message: String,
}

/// `ConfigError`: the configuration (or the targets parameter) is wrong or unreadable; no run was attempted.
impl From<ConfigError> for HandlerError {
    fn from(e: ConfigError) -> Self {
        HandlerError { error_type: "ConfigError", message: format!("configuration error: {e} (see docs/configuration.md)") }
    }
}

/// Time kept back from a Lambda's limit to abort, clean up, record and alert after stopping a backup.
pub const CLEANUP_MARGIN: Duration = Duration::from_secs(30);

/// The backup function's whole handler: parse, run, answer with the run record; fail if any target failed.
/// `time_left` is what the invocation has left (Lambda's deadline); backups stop `CLEANUP_MARGIN` before it.
pub async fn handle_backup_event(job: &BackupJob, event: &Value, request_id: &str, time_left: Option<Duration>) -> Result<Value, HandlerError> {
    let mut request = parse_backup_event(event, request_id).map_err(|e| HandlerError { error_type: "InvalidEvent", message: e.to_string() })?;
    request.deadline = time_left.map(|left| tokio::time::Instant::now() + left.saturating_sub(CLEANUP_MARGIN));
    let run = job.run(&request).await.map_err(|e| match e {
        BackupJobError::UnknownTarget { .. } => HandlerError { error_type: "InvalidEvent", message: e.to_string() },
    })?;
    let failed: Vec<String> = run.targets.iter().filter(|t| t.outcome.is_failure()).map(|t| format!("{}: {}", t.target, t.message)).collect();
    if failed.is_empty() {
        Ok(serde_json::to_value(&run).expect("run records serialize"))
    } else {
        Err(HandlerError { error_type: "BackupFailed", message: format!("{} of {} targets failed: {}", failed.len(), run.targets.len(), failed.join("; ")) })
    }
}

/// The verify function's handler: `{}` (every target), `{"target": "NAME"}`, or with `"backup_id"`; a loop
/// that invokes it again until `done` sends `"resume_only": true` after the first call (and, when it runs out
/// of patience, `"abandon": "why"` to fail and clean up what is unfinished), so drills that already
/// finished are not started again. Fails (for Step Functions' Catch) when the request itself is wrong.
pub async fn handle_verify_event(job: &VerifyJob, event: &Value, request_id: &str, time_left: Option<Duration>) -> Result<Value, HandlerError> {
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
    }
    let invalid = |message: String| HandlerError { error_type: "InvalidEvent", message };
    let event = if event.is_null() { Value::Object(Default::default()) } else { event.clone() };
    let parsed: VerifyEvent = serde_json::from_value(event).map_err(|e| invalid(format!("the event is not valid: {e}. Send {{}} or {{\"target\": \"NAME\", \"backup_id\": \"ID\"}}")))?;
    if parsed.backup_id.is_some() && parsed.target.is_none() {
        return Err(invalid("backup_id needs target: backup ids are per target".into()));
    }
    let trigger = match parsed.trigger.as_deref() {
        None | Some("console") => crate::domain::Trigger::Console,
        Some("schedule") => crate::domain::Trigger::Schedule,
        Some(other) => return Err(invalid(format!("trigger {other:?} is not `schedule` or `console`"))),
    };
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
    };
    let run = job.run(&request).await.map_err(|e| match e {
        VerifyJobError::Catalog(_) => HandlerError { error_type: "Retryable", message: e.to_string() },
        _ => invalid(e.to_string()),
    })?;
    if abandoning && !run.lease_held.is_empty() {
        // A killed invocation's lease still guards these drills: the state machine retries until it expires.
        return Err(HandlerError {
            error_type: "LeaseHeld",
            message: format!("cannot abandon the drills of {} yet: {}", run.lease_held.join(", "), run.skipped.join("; ")),
        });
    }
    Ok(serde_json::to_value(&run).expect("runs serialize"))
}

/// Why the Slack notifier cannot start.
#[derive(thiserror::Error)]
pub enum NotifierSetupError {
    #[error(transparent)]
    Source(#[from] WebhookSourceError),
    #[error(transparent)]
    Slack(#[from] SlackError),
}

/// The message itself: a failed start prints the error's `Debug` form, and that should say what to set.
impl std::fmt::Debug for NotifierSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The Slack notifier as the Lambda function runs it: the webhook source from the environment, the default
/// AWS credential chain, the default retry policy.
pub async fn notifier_from_env() -> Result<SlackWebhook, NotifierSetupError> {
    let source = WebhookSource::from_env(&process_env())?;
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(notifier(source, &shared, RetryPolicy::default())?)
}

/// The Slack notifier reading its webhook URL from Secrets Manager or SSM (on first use, then kept).
pub fn notifier(source: WebhookSource, shared: &aws_config::SdkConfig, policy: RetryPolicy) -> Result<SlackWebhook, SlackError> {
    let store: Arc<dyn SecretStore> = match &source {
        WebhookSource::SecretsManager { .. } => Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(shared))),
        WebhookSource::SsmParameter { .. } => Arc::new(SsmParameters::new(aws_sdk_ssm::Client::new(shared))),
    };
    SlackWebhook::new(Arc::new(WebhookUrlCache::new(source, store)), policy)
}

/// The notifier function's handler: answers what was delivered and dropped; fails once when a message did not
/// reach Slack (so SNS's and Lambda's retry policies and the error metric take over), never for a record that
/// cannot be read.
pub async fn handle_notify_event(poster: &dyn WebhookPoster, event: &Value) -> Result<Value, HandlerError> {
    match crate::notify::deliver(event, poster).await {
        Ok(report) => Ok(serde_json::to_value(&report).expect("reports serialize")),
        Err(e @ NotifyError::NotAnSnsEvent(_)) => Err(HandlerError { error_type: "InvalidEvent", message: e.to_string() }),
        Err(e @ NotifyError::Undelivered { all_rejected: true, .. }) => Err(HandlerError { error_type: "SlackRejected", message: e.to_string() }),
        Err(e) => Err(HandlerError { error_type: "SlackUnavailable", message: e.to_string() }),
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
    let invalid = |message: String| HandlerError { error_type: "InvalidEvent", message };
    let parsed: PurgeEvent = parse_manual_event(event)
        .map_err(|e| invalid(format!("the event is not valid: {e}. Send {{}}, or {{\"target\": \"NAME\", \"dry_run\": true}}")))?;
    let request = PurgeRequest {
        target: parsed.target,
        force: parsed.force,
        dry_run: parsed.dry_run,
        trigger: crate::domain::Trigger::Console,
        request_id: request_id.to_string(),
    };
    let results = job.run(&request).await.map_err(|e| match e {
        PurgeJobError::UnknownTarget { .. } => invalid(e.to_string()),
    })?;
    let failed: Vec<String> =
        results.iter().filter(|r| r.failed()).map(|r| format!("{}: {}", r.target, r.summary())).collect();
    if failed.is_empty() {
        Ok(serde_json::to_value(&results).expect("purge results serialize"))
    } else {
        Err(HandlerError { error_type: "PurgeFailed", message: failed.join("; ") })
    }
}

/// A hand-written or scheduled event: `null` and `{}` mean "defaults"; a scheduled EventBridge envelope
/// (`"detail-type": "Scheduled Event"`) does too; anything else must match `T` exactly.
fn parse_manual_event<T: serde::de::DeserializeOwned>(event: &Value) -> Result<T, serde_json::Error> {
    let scheduled = event.get("detail-type").is_some() && event.get("source").is_some();
    let event = if event.is_null() || scheduled { Value::Object(Default::default()) } else { event.clone() };
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
    let invalid = |message: String| HandlerError { error_type: "InvalidEvent", message };
    let parsed: MonitorEvent =
        parse_manual_event(event).map_err(|e| invalid(format!("the event is not valid: {e}. Send {{}} or {{\"target\": \"NAME\"}}")))?;
    let reports = job.run(&MonitorRequest { target: parsed.target, alert: true }).await.map_err(|e| match e {
        MonitorJobError::UnknownTarget { .. } => invalid(e.to_string()),
    })?;
    let unknown: Vec<String> = reports.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.target))).collect();
    if unknown.is_empty() {
        Ok(serde_json::to_value(&reports).expect("monitor reports serialize"))
    } else {
        Err(HandlerError { error_type: "MonitorFailed", message: unknown.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::adapters::memory::MemorySecrets;

    const TARGETS: &str = r#"[{"name":"orders","host":"db","database":"orders","user":"backup","password":{"env":"ORDERS_PW"}}]"#;
    const PARAMETER: &str = "/backstop/prod/targets";

    fn env(targets_variable: (&str, &str)) -> Env {
        [("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), targets_variable].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parameters(value: &str) -> MemorySecrets {
        MemorySecrets { secrets: HashMap::from([(PARAMETER.to_string(), value.to_string())]) }
    }

    #[tokio::test]
    async fn targets_are_read_from_the_parameter_the_environment_names() {
        let config = load_config(&env(("BACKSTOP_TARGETS_PARAMETER", PARAMETER)), None, &parameters(TARGETS)).await.unwrap();
        assert_eq!(config.target_names(), ["orders"]);
    }

    #[tokio::test]
    async fn a_parameter_that_cannot_be_read_is_named_with_what_to_check() {
        let err = load_config(&env(("BACKSTOP_TARGETS_PARAMETER", "/backstop/typo")), None, &parameters(TARGETS)).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::TargetsParameter { .. }), "{text}");
        assert!(text.contains("/backstop/typo") && text.contains("ssm:GetParameter"), "{text}");
    }

    #[tokio::test]
    async fn the_parameters_text_is_validated_as_the_variables_is_and_its_errors_name_the_parameter() {
        let e = env(("BACKSTOP_TARGETS_PARAMETER", PARAMETER));
        let text = load_config(&e, None, &parameters("[{\"name\": ")).await.unwrap_err().to_string();
        assert!(text.contains(PARAMETER) && text.contains("not a valid JSON array of targets"), "{text}");
        let bad_name = TARGETS.replace("\"orders\",\"host\"", "\"no spaces allowed\",\"host\"");
        let err = load_config(&e, None, &parameters(&bad_name)).await.unwrap_err();
        assert!(matches!(err, ConfigError::Target { index: 0, .. }), "{err}");
    }

    #[tokio::test]
    async fn both_sources_at_once_are_refused() {
        let mut e = env(("BACKSTOP_TARGETS", TARGETS));
        e.insert("BACKSTOP_TARGETS_PARAMETER".into(), PARAMETER.into());
        let err = load_config(&e, None, &parameters(TARGETS)).await.unwrap_err();
        assert!(matches!(err, ConfigError::TwoTargetSources), "{err}");
        // The synchronous loader cannot read SSM, and says so instead of running without the targets.
        let mut e = env(("BACKSTOP_TARGETS_PARAMETER", PARAMETER));
        e.insert("BACKSTOP_TARGETS".into(), " ".into());
        assert!(matches!(Config::load(&e, None).unwrap_err(), ConfigError::TargetsParameterUnread { .. }));
    }
}
