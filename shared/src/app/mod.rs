//! Wiring: from a [`Config`] to ready jobs on AWS clients (the clients once per Lambda container or CLI process,
//! a job per invocation: see `serve`), and the configuration as a deployed function reads it.
//!
//! With `AWS_ENDPOINT_URL` set (the local emulator), S3 is addressed path-style: the emulator has no DNS for
//! `bucket.host` names. Against AWS, nothing here differs from production.

mod handlers;
mod serve;

pub use handlers::*;
pub use serve::{diagnostic, serve, Invocation};

use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::config::SharedInterceptor;
use secrecy::ExposeSecret;

use crate::adapters::dynamodb::DynamoCatalog;
use crate::adapters::local_scratch::LocalScratch;
use crate::adapters::postgres::PgDumper;
use crate::adapters::psql_restorer::PsqlRestorer;
use crate::adapters::rds::{RdsScratch, RdsScratchSettings};
use crate::adapters::s3::S3Store;
use crate::adapters::secrets::SecretsManager;
use crate::adapters::slack::SlackWebhook;
use crate::adapters::sns::{LogOnlyAlerts, SnsAlerts};
use crate::adapters::ssm::SsmParameters;
use crate::config::{process_env, targets_parameter, Config, ConfigError, Env, ScratchSettings, TargetsText};
use crate::jobs::backup::{BackupDeps, BackupJob};
use crate::jobs::monitor::{MonitorDeps, MonitorJob};
use crate::jobs::purge::{PurgeDeps, PurgeJob};
use crate::jobs::restore::{RestoreDeps, RestoreJob};
use crate::jobs::verify::{VerifyDeps, VerifyJob};
use crate::metrics::MetricsSink;
use crate::notify::retry::RetryPolicy;
use crate::notify::webhook_url::{WebhookSource, WebhookSourceError, WebhookUrlCache};
use crate::notify::SlackError;
use crate::passwords::PasswordResolver;
use crate::ports::{
    Alerts, CatalogError, Inventories, PointInTimeRestores, ScratchDatabases, SecretStore, SystemClock,
};

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
        let emulated =
            std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_sdk_config(&shared, emulated)
    }

    pub fn from_sdk_config(shared: &aws_config::SdkConfig, s3_path_style: bool) -> Self {
        Self::with_interceptors(shared, s3_path_style, &[])
    }

    /// The same clients with interceptors on every request (the wiring test records which calls each job makes,
    /// to hold the template's IAM policies to them).
    pub fn with_interceptors(
        shared: &aws_config::SdkConfig,
        s3_path_style: bool,
        interceptors: &[SharedInterceptor],
    ) -> Self {
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
pub async fn load_config(
    env: &Env,
    config_file: Option<&Path>,
    parameters: &dyn SecretStore,
) -> Result<Config, ConfigError> {
    let fetched = match targets_parameter(env)? {
        Some(name) => {
            let value = parameters.secret_string(&name).await.map_err(|e| ConfigError::TargetsParameter {
                name: name.clone(),
                message: e.message,
                transient: e.transient,
            })?;
            Some(TargetsText {
                origin: format!("the SSM parameter {name} (BACKSTOP_TARGETS_PARAMETER)"),
                json: value.expose_secret().to_string(),
            })
        }
        None => None,
    };
    Config::load_with_targets(env, config_file, fetched)
}

/// The configuration with its server targets' databases, as the catalog's inventories list them (one Query);
/// a configuration without server targets comes back as it was, without a read.
pub async fn with_discovered(config: Config, inventories: &dyn Inventories) -> Result<Config, CatalogError> {
    if config.servers.is_empty() {
        return Ok(config);
    }
    Ok(config.with_inventories(&inventories.inventories().await?))
}

/// [`with_discovered`] on the deployment's DynamoDB table.
pub async fn with_discovered_on(config: Config, clients: &AwsClients) -> Result<Config, CatalogError> {
    let catalog = DynamoCatalog::new(clients.dynamodb.clone(), config.table.clone());
    with_discovered(config, &catalog).await
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
        passwords: Arc::new(PasswordResolver::new(
            Arc::new(SecretsManager::new(clients.secrets.clone())),
            process_env(),
        )),
        clock: Arc::new(SystemClock),
        metrics,
    }
}

/// The verify job on AWS, with the configured scratch servers (local clusters, or RDS instances).
pub fn verify_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> VerifyJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let (scratch, point_in_time): (Arc<dyn ScratchDatabases>, Option<Arc<dyn PointInTimeRestores>>) = match &config
        .verify
        .scratch
    {
        ScratchSettings::Local { dir } => (Arc::new(LocalScratch::new(dir.clone(), config.pg_bin_dir.clone())), None),
        ScratchSettings::Rds { instance_class, subnet_group, security_group_ids, parameter_group } => {
            let mut settings =
                RdsScratchSettings::new(instance_class.clone(), subnet_group.clone(), security_group_ids.clone());
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

/// `backstop restore` on AWS: the store and catalog of the deployment, the drill's restorer.
pub fn restore_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> RestoreJob {
    let backup = backup_deps(&config, clients, metrics);
    let deps = RestoreDeps {
        store: backup.store,
        catalog: backup.catalog,
        restorer: Arc::new(PsqlRestorer::new(config.pg_bin_dir.clone(), config.verify.restore_jobs)),
        passwords: backup.passwords,
    };
    RestoreJob::new(config, deps)
}

/// The monitor job on AWS.
pub fn monitor_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> MonitorJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let deps = MonitorDeps {
        store: backup.store,
        catalog: backup.catalog,
        alerts: backup.alerts,
        clock: backup.clock,
        metrics,
    };
    MonitorJob::new(config, deps)
}

/// The purge job on AWS.
pub fn purge_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> PurgeJob {
    let backup = backup_deps(&config, clients, metrics.clone());
    let deps =
        PurgeDeps { store: backup.store, catalog: backup.catalog, alerts: backup.alerts, clock: backup.clock, metrics };
    PurgeJob::new(config, deps)
}

pub fn backup_job(config: Arc<Config>, clients: &AwsClients, metrics: Arc<dyn MetricsSink>) -> BackupJob {
    let deps = backup_deps(&config, clients, metrics);
    BackupJob::new(config, deps)
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
pub fn notifier(
    source: WebhookSource,
    shared: &aws_config::SdkConfig,
    policy: RetryPolicy,
) -> Result<SlackWebhook, SlackError> {
    let store: Arc<dyn SecretStore> = match &source {
        WebhookSource::SecretsManager { .. } => {
            Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(shared)))
        }
        WebhookSource::SsmParameter { .. } => Arc::new(SsmParameters::new(aws_sdk_ssm::Client::new(shared))),
    };
    SlackWebhook::new(Arc::new(WebhookUrlCache::new(source, store)), policy)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::adapters::memory::MemorySecrets;

    const TARGETS: &str =
        r#"[{"name":"orders","host":"db","database":"orders","user":"backup","password":{"env":"ORDERS_PW"}}]"#;
    const PARAMETER: &str = "/backstop/prod/targets";

    fn env(targets_variable: (&str, &str)) -> Env {
        [("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), targets_variable]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parameters(value: &str) -> MemorySecrets {
        MemorySecrets { secrets: HashMap::from([(PARAMETER.to_string(), value.to_string())]) }
    }

    #[tokio::test]
    async fn targets_are_read_from_the_parameter_the_environment_names() {
        let config =
            load_config(&env(("BACKSTOP_TARGETS_PARAMETER", PARAMETER)), None, &parameters(TARGETS)).await.unwrap();
        assert_eq!(config.target_names(), ["orders"]);
    }

    #[tokio::test]
    async fn a_parameter_that_cannot_be_read_is_named_with_what_to_check() {
        let err = load_config(&env(("BACKSTOP_TARGETS_PARAMETER", "/backstop/typo")), None, &parameters(TARGETS))
            .await
            .unwrap_err();
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
