//! Configuration: read once at start-up from an optional TOML file and environment variables, validated, typed.
//!
//! Precedence: an environment variable beats the file, the file beats the default. Every setting and its default
//! is documented in `docs/configuration.md`; an error names the variable or key that was wrong and what would
//! be right. Passwords are never part of the configuration itself, only where to find them ([`PasswordSource`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_errors::{json_error, toml_error};
pub use crate::domain::discovery::valid_target_name;
use crate::domain::discovery::{unit_name, DatabaseSelection, ServerInventory};
use crate::domain::health::MonitorThresholds;
use crate::domain::retention::RetentionPolicy;
use crate::domain::runner::RunnerSetting;
use crate::domain::Job;
use crate::pipeline::codec::Codec;

/// The whole configuration of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bucket: String,
    pub table: String,
    /// Alerts go nowhere when unset (the CLI on a laptop); Lambda deployments always set it.
    pub topic_arn: Option<String>,
    /// SSE-KMS key for dumps and manifests; unset leaves encryption to the bucket's default.
    pub kms_key_id: Option<String>,
    /// Prefix for every object key, e.g. `prod/`; empty by default.
    pub key_prefix: String,
    pub codec: Codec,
    pub compression_level: i32,
    pub notify_success: bool,
    pub lease: Duration,
    /// Where pg_dump, pg_dumpall and psql live; `None` searches the usual places.
    pub pg_bin_dir: Option<PathBuf>,
    pub targets: Vec<TargetConfig>,
    pub verify: VerifySettings,
    /// When the monitor calls a target's backups too old or odd.
    pub monitor: MonitorThresholds,
    /// Whether the stack deployed the Fargate runner (an image and its task definitions): without it a unit
    /// `auto` would send to Fargate runs on Lambda, with a warning among its reasons.
    pub fargate: bool,
    /// Where the repository's docs are published (e.g. `https://github.com/ORG/backstop/blob/main/`): alerts'
    /// runbook links become addresses under it. Empty: they stay repository paths.
    pub runbook_url: String,
    /// Targets that stand for a whole server (`databases` patterns): each database on it is a target of its own
    /// once discovered (see `domain::discovery`); [`Config::with_inventories`] adds them to `targets`.
    pub servers: Vec<TargetConfig>,
    /// Databases discovered earlier that their server no longer has (or that no pattern selects any more): purge
    /// keeps applying retention to their backups; nothing else runs on them unless a request names one.
    pub gone: Vec<TargetConfig>,
}

/// How restore drills run.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySettings {
    pub scratch: ScratchSettings,
    /// Besides the latest backup, also drill one randomly chosen older one: old backups rot too.
    pub older_backup: bool,
    /// Alert (warning) when a drill's RTO or the backup's RPO exceeds these.
    pub rto_budget: Option<Duration>,
    pub rpo_budget: Option<Duration>,
    /// Statement timeout of each user check.
    pub check_timeout: Duration,
    /// A scratch server older than this is destroyed by the sweeper whatever its drill is doing.
    pub scratch_lifetime: Duration,
    /// Read every row back and compare digests (the default), or count rows only (faster).
    pub rows: crate::domain::verification::RowCheck,
    /// Connections a restore and its read-back use side by side.
    pub restore_jobs: usize,
    /// Also check the restored copy physically with `amcheck` (every heap page and B-tree index).
    pub physical: bool,
    /// The verify lease on a target, renewed every quarter of it while a run advances the target's drills: how
    /// long a killed run keeps others off them.
    pub lease: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScratchSettings {
    /// Throwaway clusters under `dir`; without one, in `/dev/shm/backstop-scratch` when the restore fits in
    /// memory, else in `<temp dir>/backstop-scratch` (`adapters::local_scratch`).
    Local { dir: Option<PathBuf> },
    Rds {
        instance_class: String,
        subnet_group: String,
        security_group_ids: Vec<String>,
        parameter_group: Option<String>,
    },
}

/// A check from the configuration: SQL that must return true on the restored copy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCheck {
    pub name: String,
    pub sql: String,
}

/// One database to back up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database to back up; with `databases`, the one discovery connects to (default `postgres`).
    #[serde(default)]
    pub database: String,
    /// Makes the target a whole server: every database whose name matches one of these glob patterns (`*`, `?`),
    /// found at each backup run, becomes a target of its own named `<name>.<database>`.
    #[serde(default)]
    pub databases: Vec<String>,
    /// With `databases`: names matching one of these are left out.
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    pub user: String,
    pub password: PasswordSource,
    /// libpq `sslmode`; `prefer` when unset (RDS deployments should say `require` or `verify-full`).
    #[serde(default)]
    pub sslmode: Option<String>,
    /// CA bundle for `verify-ca` / `verify-full` (for RDS, the region's bundle from AWS, shipped with the
    /// function); libpq's `~/.postgresql/root.crt` when unset.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Run on every restored copy of this target, read-only; each must return true.
    #[serde(default)]
    pub checks: Vec<UserCheck>,
    /// The RDS instance identifier this target lives on. When set (and scratch is `rds`), each verify run also
    /// restores that instance to its latest restorable time (a point-in-time drill) and runs `checks` there.
    #[serde(default)]
    pub pitr_source_instance: Option<String>,
    /// Which backups purge keeps (default: 30 daily, 12 monthly, at least 3).
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// Where the state machines run this target's units: `auto` (default; decided from its recent runs and
    /// `size_gb`, see `domain::runner`), `lambda` or `fargate`.
    #[serde(default)]
    pub runner: RunnerSetting,
    /// The database's size in GB of plain SQL, roughly its `pg_database_size`; lets `auto` send a large
    /// database to Fargate before its first run.
    #[serde(default)]
    pub size_gb: Option<f64>,
}

impl TargetConfig {
    /// Whether this target is one of a server target's databases (its name is `<server>.<database>`, which a
    /// configured name cannot be).
    pub fn is_discovered(&self) -> bool {
        self.name.contains(crate::domain::discovery::UNIT_SEPARATOR)
    }

    /// Whether this target stands for a server's databases rather than one database.
    pub fn is_server(&self) -> bool {
        !self.databases.is_empty()
    }

    /// Which of its server's databases a server target stands for.
    pub fn selection(&self) -> DatabaseSelection {
        DatabaseSelection { include: self.databases.clone(), exclude: self.exclude_databases.clone() }
    }

    /// The target a server target's `database` becomes: everything the server target says (address,
    /// credentials, checks, retention, runner), for that one database, under its unit name.
    pub fn for_database(&self, unit_name: String, database: &str) -> TargetConfig {
        TargetConfig {
            name: unit_name,
            database: database.to_string(),
            databases: Vec::new(),
            exclude_databases: Vec::new(),
            ..self.clone()
        }
    }

    /// Where the target's database is, for the programs that connect to it.
    pub fn address(&self) -> crate::domain::DatabaseAddress {
        crate::domain::DatabaseAddress {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            user: self.user.clone(),
            sslmode: self.sslmode.clone(),
            sslrootcert: self.sslrootcert.clone(),
        }
    }
}

/// Where a target's password comes from. The password itself never sits in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PasswordSource {
    /// An AWS Secrets Manager secret id or ARN whose JSON has a `password` key (the shape RDS writes for
    /// managed master passwords: `{"username": "...", "password": "..."}`).
    SecretId(String),
    /// An environment variable holding the password.
    Env(String),
    /// A file holding the password (a trailing newline is ignored); it should be readable by its owner only.
    File(PathBuf),
}

fn default_port() -> u16 {
    5432
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {hint}")]
    Missing { name: &'static str, hint: &'static str },
    #[error("{name}={value:?} is not valid: {hint}")]
    Invalid { name: String, value: String, hint: String },
    #[error("cannot read the configuration file {path}: {cause}")]
    ReadFile { path: PathBuf, cause: std::io::Error },
    #[error("the configuration file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{origin} is not a valid JSON array of targets: {message}")]
    TargetsJson { origin: String, message: String },
    #[error("set BACKSTOP_TARGETS or BACKSTOP_TARGETS_PARAMETER, not both: the targets are read from one place")]
    TwoTargetSources,
    #[error(
        "cannot read the targets from the SSM parameter {name} (BACKSTOP_TARGETS_PARAMETER): {message}. Check that it \
         exists in this account and region and that this role may ssm:GetParameter it (docs/configuration.md#targets)"
    )]
    TargetsParameter {
        name: String,
        message: String,
        /// SSM did not answer or throttled: a later try may succeed (the state machines retry `Retryable`).
        transient: bool,
    },
    #[error("BACKSTOP_TARGETS_PARAMETER names {name}, but the targets were not read from it (load the configuration with app::load_config)")]
    TargetsParameterUnread { name: String },
    #[error("target #{index}: {message}")]
    Target { index: usize, message: String },
    #[error("no targets are configured: add [[targets]] to the configuration file, or set BACKSTOP_TARGETS (JSON) or BACKSTOP_TARGETS_PARAMETER (an SSM parameter holding it)")]
    NoTargets,
}

/// The configuration file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    bucket: Option<String>,
    table: Option<String>,
    topic_arn: Option<String>,
    kms_key_id: Option<String>,
    key_prefix: Option<String>,
    codec: Option<String>,
    compression_level: Option<i32>,
    notify_success: Option<bool>,
    fargate: Option<bool>,
    lease_seconds: Option<u64>,
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    targets: Vec<TargetConfig>,
    scratch: Option<String>,
    scratch_dir: Option<PathBuf>,
    rds_instance_class: Option<String>,
    rds_subnet_group: Option<String>,
    rds_security_group_ids: Option<Vec<String>>,
    rds_parameter_group: Option<String>,
    verify_older_backup: Option<bool>,
    rto_budget_seconds: Option<u64>,
    rpo_budget_seconds: Option<u64>,
    check_timeout_seconds: Option<u64>,
    scratch_lifetime_seconds: Option<u64>,
    verify_checks: Option<String>,
    verify_physical: Option<bool>,
    restore_jobs: Option<usize>,
    verify_lease_seconds: Option<u64>,
    monitor: Option<MonitorThresholds>,
    runbook_url: Option<String>,
}

/// An environment variable the configuration reads, and which jobs act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub jobs: &'static [Job],
    /// A deployed function of these jobs must set it (the CLI may leave it to the file or a default).
    pub required_in_lambda: bool,
}

const JOBS: &[Job] = &[Job::Backup, Job::Verify, Job::Purge, Job::Monitor];
const fn var(name: &'static str, jobs: &'static [Job], required_in_lambda: bool) -> Variable {
    Variable { name, jobs, required_in_lambda }
}

/// Every `BACKSTOP_*` variable [`Config`] reads (a test checks this list against the code, and the SAM
/// template's functions against it).
pub const VARIABLES: &[Variable] = &[
    var("BACKSTOP_CONFIG", JOBS, false),
    var("BACKSTOP_BUCKET", JOBS, true),
    var("BACKSTOP_TABLE", JOBS, true),
    // A deployed function reads its targets from SSM (Lambda's environment holds 4 KB in all); BACKSTOP_TARGETS
    // holds them inline for the CLI and local runs.
    var("BACKSTOP_TARGETS", JOBS, false),
    var("BACKSTOP_TARGETS_PARAMETER", JOBS, true),
    var("BACKSTOP_TOPIC_ARN", JOBS, true),
    var("BACKSTOP_RUNBOOK_URL", JOBS, false),
    var("BACKSTOP_KMS_KEY_ID", &[Job::Backup, Job::Verify], true),
    var("BACKSTOP_KEY_PREFIX", &[Job::Backup, Job::Purge], false),
    var("BACKSTOP_CODEC", &[Job::Backup], false),
    var("BACKSTOP_COMPRESSION_LEVEL", &[Job::Backup], false),
    var("BACKSTOP_NOTIFY_SUCCESS", &[Job::Backup, Job::Verify], false),
    var("BACKSTOP_FARGATE", &[Job::Backup, Job::Verify], false),
    var("BACKSTOP_LEASE_SECONDS", &[Job::Backup, Job::Purge], false),
    var("BACKSTOP_PG_BIN_DIR", &[Job::Backup, Job::Verify], true),
    var("BACKSTOP_MONITOR", &[Job::Monitor], false),
    var("BACKSTOP_SCRATCH", &[Job::Verify], true),
    var("BACKSTOP_SCRATCH_DIR", &[Job::Verify], false),
    var("BACKSTOP_RDS_SUBNET_GROUP", &[Job::Verify], false),
    var("BACKSTOP_RDS_SECURITY_GROUP_IDS", &[Job::Verify], false),
    var("BACKSTOP_RDS_INSTANCE_CLASS", &[Job::Verify], false),
    var("BACKSTOP_RDS_PARAMETER_GROUP", &[Job::Verify], false),
    var("BACKSTOP_VERIFY_OLDER_BACKUP", &[Job::Verify], false),
    var("BACKSTOP_VERIFY_CHECKS", &[Job::Verify], false),
    var("BACKSTOP_VERIFY_PHYSICAL", &[Job::Verify], false),
    var("BACKSTOP_VERIFY_LEASE_SECONDS", &[Job::Verify], false),
    var("BACKSTOP_RESTORE_JOBS", &[Job::Verify], false),
    var("BACKSTOP_RTO_BUDGET_SECONDS", &[Job::Verify], false),
    var("BACKSTOP_RPO_BUDGET_SECONDS", &[Job::Verify], false),
    var("BACKSTOP_CHECK_TIMEOUT_SECONDS", &[Job::Verify], false),
    var("BACKSTOP_SCRATCH_LIFETIME_SECONDS", &[Job::Verify], false),
];

/// The environment, as a map, so tests can pass one without touching the process's own.
pub type Env = BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// The targets' JSON and where it was read, so that an error names the place to fix.
#[derive(Debug, Clone)]
pub struct TargetsText {
    pub origin: String,
    pub json: String,
}

/// The SSM parameter `BACKSTOP_TARGETS_PARAMETER` names, if it names one; refused beside `BACKSTOP_TARGETS`, so
/// that nobody edits one place while the functions read the other.
pub fn targets_parameter(env: &Env) -> Result<Option<String>, ConfigError> {
    let set = |name: &str| env.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    match (set("BACKSTOP_TARGETS"), set("BACKSTOP_TARGETS_PARAMETER")) {
        (Some(_), Some(_)) => Err(ConfigError::TwoTargetSources),
        (_, parameter) => Ok(parameter),
    }
}

impl Config {
    /// Reads `BACKSTOP_CONFIG` (a TOML file) if set, then the `BACKSTOP_*` variables over it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&process_env(), None)
    }

    /// Reads the configuration with an explicit file (the CLI's `--config`) taking the place of `BACKSTOP_CONFIG`.
    /// Targets in an SSM parameter (`BACKSTOP_TARGETS_PARAMETER`) need [`crate::app::load_config`], which reads it.
    pub fn load(env: &Env, config_file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_targets(env, config_file, None)
    }

    /// As [`Config::load`], with the targets' JSON already read from the parameter [`targets_parameter`] named.
    pub fn load_with_targets(
        env: &Env,
        config_file: Option<&Path>,
        fetched: Option<TargetsText>,
    ) -> Result<Self, ConfigError> {
        let file_path = config_file.map(Path::to_path_buf).or_else(|| env.get("BACKSTOP_CONFIG").map(PathBuf::from));
        let file = match &file_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|cause| ConfigError::ReadFile { path: path.clone(), cause })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError::ParseFile { path: path.clone(), message: toml_error(&text, &e) })?
            }
            None => FileConfig::default(),
        };
        Self::merge(env, file, fetched)
    }

    fn merge(env: &Env, file: FileConfig, fetched: Option<TargetsText>) -> Result<Self, ConfigError> {
        let verify = verify_settings(env, &file)?;
        let var = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
        let bucket = var("BACKSTOP_BUCKET").or(file.bucket).ok_or(ConfigError::Missing {
            name: "BACKSTOP_BUCKET",
            hint: "name the S3 bucket that holds the backups (or set `bucket` in the configuration file)",
        })?;
        let table = var("BACKSTOP_TABLE").or(file.table).ok_or(ConfigError::Missing {
            name: "BACKSTOP_TABLE",
            hint: "name the DynamoDB table that holds the records (or set `table` in the configuration file)",
        })?;
        let codec_text = var("BACKSTOP_CODEC").or(file.codec).unwrap_or_else(|| Codec::default().name().to_string());
        let codec = Codec::from_name(&codec_text).ok_or_else(|| ConfigError::Invalid {
            name: "codec (BACKSTOP_CODEC)".into(),
            value: codec_text.clone(),
            hint: "use `zstd` or `gzip`".into(),
        })?;
        let compression_level = match var("BACKSTOP_COMPRESSION_LEVEL") {
            Some(v) => parse_number::<i32>("BACKSTOP_COMPRESSION_LEVEL", &v)?,
            None => file.compression_level.unwrap_or_else(|| codec.default_level()),
        };
        if !codec.levels().contains(&compression_level) {
            return Err(ConfigError::Invalid {
                name: "compression_level (BACKSTOP_COMPRESSION_LEVEL)".into(),
                value: compression_level.to_string(),
                hint: format!("{} accepts levels {} to {}", codec.name(), codec.levels().start(), codec.levels().end()),
            });
        }
        let notify_success = match var("BACKSTOP_NOTIFY_SUCCESS") {
            Some(v) => parse_bool("BACKSTOP_NOTIFY_SUCCESS", &v)?,
            None => file.notify_success.unwrap_or(false),
        };
        let fargate = match var("BACKSTOP_FARGATE") {
            Some(v) => parse_bool("BACKSTOP_FARGATE", &v)?,
            None => file.fargate.unwrap_or(false),
        };
        let lease_seconds = match var("BACKSTOP_LEASE_SECONDS") {
            Some(v) => parse_number::<u64>("BACKSTOP_LEASE_SECONDS", &v)?,
            None => file.lease_seconds.unwrap_or(3 * 3600),
        };
        if lease_seconds < 60 {
            return Err(ConfigError::Invalid {
                name: "lease_seconds (BACKSTOP_LEASE_SECONDS)".into(),
                value: lease_seconds.to_string(),
                hint: "a lease must outlast a backup: use at least 60 (the default is 10800)".into(),
            });
        }
        let inline = var("BACKSTOP_TARGETS").map(|json| TargetsText { origin: "BACKSTOP_TARGETS".into(), json });
        let text = match (targets_parameter(env)?, fetched) {
            (Some(_), Some(fetched)) => Some(fetched),
            (Some(name), None) => return Err(ConfigError::TargetsParameterUnread { name }),
            (None, _) => inline,
        };
        let targets = match text {
            Some(TargetsText { origin, json }) => serde_json::from_str::<Vec<TargetConfig>>(&json)
                .map_err(|e| ConfigError::TargetsJson { origin, message: json_error(&json, &e) })?,
            None => file.targets,
        };
        validate_targets(&targets)?;
        let (servers, targets): (Vec<TargetConfig>, Vec<TargetConfig>) = targets
            .into_iter()
            .map(|mut t| {
                if t.is_server() && t.database.trim().is_empty() {
                    t.database = "postgres".into();
                }
                t
            })
            .partition(TargetConfig::is_server);
        let monitor = match var("BACKSTOP_MONITOR") {
            Some(json) => serde_json::from_str::<MonitorThresholds>(&json).map_err(|e| ConfigError::Invalid {
                name: "BACKSTOP_MONITOR".into(),
                value: json.clone(),
                hint: format!("expected a JSON object of monitor thresholds (docs/configuration.md#monitoring): {e}"),
            })?,
            None => file.monitor.unwrap_or_default(),
        };
        monitor.validate().map_err(|e| ConfigError::Invalid {
            name: format!("monitor.{} (BACKSTOP_MONITOR or [monitor])", e.field),
            value: e.value.clone(),
            hint: e.reason.to_string(),
        })?;
        if let (ScratchSettings::Local { .. }, Some((index, t))) = (
            &verify.scratch,
            targets.iter().chain(&servers).enumerate().find(|(_, t)| t.pitr_source_instance.is_some()),
        ) {
            return Err(ConfigError::Target {
                index,
                message: format!(
                    "target {:?} sets pitr_source_instance, but point-in-time drills restore RDS instances: set scratch = \"rds\" (BACKSTOP_SCRATCH=rds) or remove it",
                    t.name
                ),
            });
        }
        let mut key_prefix = var("BACKSTOP_KEY_PREFIX").or(file.key_prefix).unwrap_or_default();
        let prefix_ok = !key_prefix.starts_with('/')
            && !key_prefix.contains("//")
            && key_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c));
        if !prefix_ok {
            return Err(ConfigError::Invalid {
                name: "key_prefix (BACKSTOP_KEY_PREFIX)".into(),
                value: key_prefix,
                hint:
                    "use letters, digits, `-`, `_`, `.` and single `/` separators, without a leading `/` (e.g. `prod/`)"
                        .into(),
            });
        }
        if !key_prefix.is_empty() && !key_prefix.ends_with('/') {
            key_prefix.push('/');
        }
        let runbook_url = var("BACKSTOP_RUNBOOK_URL").or(file.runbook_url).unwrap_or_default();
        if !(runbook_url.is_empty() || runbook_url.starts_with("https://") || runbook_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "runbook_url (BACKSTOP_RUNBOOK_URL)".into(),
                value: runbook_url,
                hint: "give the address the docs are published under, e.g. https://github.com/ORG/backstop/blob/main/ (or leave it empty)".into(),
            });
        }
        Ok(Config {
            verify,
            monitor,
            runbook_url,
            bucket,
            table,
            topic_arn: var("BACKSTOP_TOPIC_ARN").or(file.topic_arn),
            kms_key_id: var("BACKSTOP_KMS_KEY_ID").or(file.kms_key_id),
            key_prefix,
            codec,
            compression_level,
            notify_success,
            fargate,
            lease: Duration::from_secs(lease_seconds),
            pg_bin_dir: var("BACKSTOP_PG_BIN_DIR").map(PathBuf::from).or(file.pg_bin_dir),
            targets,
            servers,
            gone: Vec::new(),
        })
    }

    /// A target by name: a configured one, a discovered database, or one gone from its server.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().chain(&self.gone).find(|t| t.name == name)
    }

    /// The names of the targets runs act on (configured and discovered, not gone ones).
    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }

    /// The configuration with every server target's databases, as the catalog's `inventories` list them, added
    /// to `targets` (those present at the last discovery) or `gone` (the others), each server's in name order
    /// after the configured targets. A server never discovered adds nothing yet.
    pub fn with_inventories(mut self, inventories: &[ServerInventory]) -> Config {
        for server in &self.servers {
            let Some(inventory) = inventories.iter().find(|i| i.server == server.name) else { continue };
            for database in inventory.present() {
                if let Some(name) = unit_name(&server.name, &database.name) {
                    self.targets.push(server.for_database(name, &database.name));
                }
            }
            for database in inventory.gone() {
                if let Some(name) = unit_name(&server.name, &database.name) {
                    self.gone.push(server.for_database(name, &database.name));
                }
            }
        }
        self
    }
}

fn verify_settings(env: &Env, file: &FileConfig) -> Result<VerifySettings, ConfigError> {
    let var = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
    let seconds = |name: &'static str, from_file: Option<u64>| -> Result<Option<Duration>, ConfigError> {
        Ok(match var(name) {
            Some(v) => Some(Duration::from_secs(parse_number::<u64>(name, &v)?)),
            None => from_file.map(Duration::from_secs),
        })
    };
    let kind = var("BACKSTOP_SCRATCH").or(file.scratch.clone()).unwrap_or_else(|| "local".into());
    let scratch = match kind.as_str() {
        "local" => {
            ScratchSettings::Local { dir: var("BACKSTOP_SCRATCH_DIR").map(PathBuf::from).or(file.scratch_dir.clone()) }
        }
        "rds" => {
            let subnet_group =
                var("BACKSTOP_RDS_SUBNET_GROUP").or(file.rds_subnet_group.clone()).ok_or(ConfigError::Missing {
                    name: "BACKSTOP_RDS_SUBNET_GROUP",
                    hint: "RDS scratch instances need a DB subnet group (never the account's default)",
                })?;
            let security_group_ids: Vec<String> = match var("BACKSTOP_RDS_SECURITY_GROUP_IDS") {
                Some(v) => v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
                None => file.rds_security_group_ids.clone().unwrap_or_default(),
            };
            if security_group_ids.is_empty() {
                return Err(ConfigError::Missing {
                    name: "BACKSTOP_RDS_SECURITY_GROUP_IDS",
                    hint: "RDS scratch instances need at least one security group (never the VPC's default)",
                });
            }
            ScratchSettings::Rds {
                instance_class: var("BACKSTOP_RDS_INSTANCE_CLASS")
                    .or(file.rds_instance_class.clone())
                    .unwrap_or_else(|| "db.t4g.medium".into()),
                subnet_group,
                security_group_ids,
                parameter_group: var("BACKSTOP_RDS_PARAMETER_GROUP").or(file.rds_parameter_group.clone()),
            }
        }
        other => {
            return Err(ConfigError::Invalid {
                name: "scratch (BACKSTOP_SCRATCH)".into(),
                value: other.into(),
                hint: "use `local` or `rds`".into(),
            })
        }
    };
    let older_backup = match var("BACKSTOP_VERIFY_OLDER_BACKUP") {
        Some(v) => parse_bool("BACKSTOP_VERIFY_OLDER_BACKUP", &v)?,
        None => file.verify_older_backup.unwrap_or(false),
    };
    let physical = match var("BACKSTOP_VERIFY_PHYSICAL") {
        Some(v) => parse_bool("BACKSTOP_VERIFY_PHYSICAL", &v)?,
        None => file.verify_physical.unwrap_or(false),
    };
    let check_timeout =
        seconds("BACKSTOP_CHECK_TIMEOUT_SECONDS", file.check_timeout_seconds)?.unwrap_or(Duration::from_secs(30));
    if check_timeout.is_zero() {
        // PostgreSQL reads a statement timeout of 0 as "none": a check could then hang a drill.
        return Err(ConfigError::Invalid {
            name: "check_timeout_seconds (BACKSTOP_CHECK_TIMEOUT_SECONDS)".into(),
            value: "0".into(),
            hint: "use at least 1 (the default is 30)".into(),
        });
    }
    let rows_text = var("BACKSTOP_VERIFY_CHECKS").or(file.verify_checks.clone()).unwrap_or_else(|| "digests".into());
    let rows = match rows_text.trim().to_ascii_lowercase().as_str() {
        "digests" => crate::domain::verification::RowCheck::Digests,
        "counts" => crate::domain::verification::RowCheck::Counts,
        _ => {
            return Err(ConfigError::Invalid {
                name: "verify_checks (BACKSTOP_VERIFY_CHECKS)".into(),
                value: rows_text,
                hint: "use `digests` (read every row back and compare contents) or `counts` (compare row counts only)"
                    .into(),
            })
        }
    };
    // A scratch RDS instance of the default class has 2 vCPUs; a local cluster shares this machine's cores.
    let default_jobs = match scratch {
        ScratchSettings::Local { .. } => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8),
        ScratchSettings::Rds { .. } => 2,
    };
    let restore_jobs = match var("BACKSTOP_RESTORE_JOBS") {
        Some(v) => parse_number::<usize>("BACKSTOP_RESTORE_JOBS", &v)?,
        None => file.restore_jobs.unwrap_or(default_jobs),
    };
    if !(1..=32).contains(&restore_jobs) {
        return Err(ConfigError::Invalid {
            name: "restore_jobs (BACKSTOP_RESTORE_JOBS)".into(),
            value: restore_jobs.to_string(),
            hint: "use 1 to 32 connections (about the scratch server's vCPUs)".into(),
        });
    }
    let lease =
        seconds("BACKSTOP_VERIFY_LEASE_SECONDS", file.verify_lease_seconds)?.unwrap_or(Duration::from_secs(120));
    if lease < Duration::from_secs(20) {
        return Err(ConfigError::Invalid {
            name: "verify_lease_seconds (BACKSTOP_VERIFY_LEASE_SECONDS)".into(),
            value: lease.as_secs().to_string(),
            hint: "use at least 20 (the default is 120; the lease is renewed every quarter of it)".into(),
        });
    }
    Ok(VerifySettings {
        rows,
        restore_jobs,
        physical,
        lease,
        scratch,
        older_backup,
        rto_budget: seconds("BACKSTOP_RTO_BUDGET_SECONDS", file.rto_budget_seconds)?,
        rpo_budget: seconds("BACKSTOP_RPO_BUDGET_SECONDS", file.rpo_budget_seconds)?,
        check_timeout,
        scratch_lifetime: seconds("BACKSTOP_SCRATCH_LIFETIME_SECONDS", file.scratch_lifetime_seconds)?
            .unwrap_or(Duration::from_secs(6 * 3600)),
    })
}

fn validate_targets(targets: &[TargetConfig]) -> Result<(), ConfigError> {
    if targets.is_empty() {
        return Err(ConfigError::NoTargets);
    }
    let mut seen = HashSet::new();
    for (index, t) in targets.iter().enumerate() {
        let fail = |message: String| Err(ConfigError::Target { index, message });
        if !valid_target_name(&t.name) {
            return fail(format!(
                "name {:?} must be 1-63 characters of letters, digits, `-` or `_` (it becomes part of S3 keys)",
                t.name
            ));
        }
        if !seen.insert(&t.name) {
            return fail(format!("name {:?} is used by two targets; names must be unique", t.name));
        }
        if t.host.trim().is_empty() || t.user.trim().is_empty() {
            return fail(format!("target {:?} needs a host and a user", t.name));
        }
        if !t.is_server() && t.database.trim().is_empty() {
            return fail(format!(
                "target {:?} needs a database, or `databases` patterns to back up every matching database on its server",
                t.name
            ));
        }
        if !t.is_server() && !t.exclude_databases.is_empty() {
            return fail(format!(
                "target {:?} sets exclude_databases without databases: add `\"databases\": [\"*\"]` to back up the server's \
                 other databases, or remove it",
                t.name
            ));
        }
        if let Some(pattern) = t.databases.iter().chain(&t.exclude_databases).find(|p| p.trim().is_empty()) {
            return fail(format!(
                "target {:?}: database pattern {pattern:?} is empty; use `*` for every database",
                t.name
            ));
        }
        if t.is_server() && t.pitr_source_instance.is_some() {
            return fail(format!(
                "target {:?}: pitr_source_instance drills a single database's instance; configure that database as a \
                 target of its own to drill it point-in-time",
                t.name
            ));
        }
        if let Some(size) = t.size_gb.filter(|gb| !(gb.is_finite() && *gb > 0.0)) {
            return fail(format!("target {:?}: size_gb = {size} is not a positive number of gigabytes", t.name));
        }
        if let Err(why) = t.retention.validate() {
            return fail(format!("target {:?}: retention: {why}", t.name));
        }
        for check in &t.checks {
            if let Err(why) = single_statement(&check.sql) {
                return fail(format!(
                    "target {:?}: check {:?} must be one SQL statement that returns true ({why}); split it into several checks",
                    t.name, check.name
                ));
            }
        }
        if let Some(mode) = &t.sslmode {
            const MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
            if !MODES.contains(&mode.as_str()) {
                return fail(format!("target {:?}: sslmode {mode:?} is not one of {MODES:?}", t.name));
            }
        }
    }
    Ok(())
}

/// A user check is one statement (a trailing `;` optional): what psql would run as one, comments and quotes
/// read as psql reads them.
fn single_statement(sql: &str) -> Result<(), String> {
    let mut text = sql.trim().to_string();
    if !text.ends_with(';') {
        // On its own line: a trailing `-- comment` must not swallow it.
        text.push_str("\n;");
    }
    match crate::domain::sql::splitter::split_all(text.as_bytes()) {
        Ok(pieces) => match pieces.as_slice() {
            [crate::domain::sql::splitter::Piece::Statement(s)]
                if s.iter().any(|b| !b.is_ascii_whitespace() && *b != b';') =>
            {
                Ok(())
            }
            [] | [crate::domain::sql::splitter::Piece::Statement(_)] => Err("it is empty".into()),
            more => Err(format!("it holds {} statements or psql commands", more.len())),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        hint: "expected a whole number".into(),
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => {
            Err(ConfigError::Invalid { name: name.into(), value: value.into(), hint: "expected true or false".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_list_is_what_the_configuration_reads() {
        let source = include_str!("config.rs");
        let code = &source[..source.find("pub const VARIABLES").unwrap()];
        let rest = &source[source.find("/// The environment, as a map").unwrap()..source.find("#[cfg(test)]").unwrap()];
        let mut read: Vec<&str> = [code, rest]
            .iter()
            .flat_map(|part| part.match_indices("\"BACKSTOP_").map(|(i, _)| &part[i + 1..]))
            .map(|s| &s[..s.find(|c: char| !(c.is_ascii_uppercase() || c == '_')).unwrap()])
            .collect();
        read.sort();
        read.dedup();
        let mut listed: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        listed.sort();
        assert_eq!(listed, read);
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const TARGETS: &str =
        r#"[{"name":"orders","host":"db","database":"orders","user":"backup","password":{"env":"ORDERS_PW"}}]"#;

    fn load_targets(targets: &str) -> Result<Config, ConfigError> {
        Config::load(&env(&[("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", targets)]), None)
    }

    #[test]
    fn a_server_target_stands_apart_until_its_inventory_names_its_databases() {
        let targets = r#"[{"name":"orders","host":"db","database":"orders","user":"backup","password":{"env":"PW"}},
            {"name":"prod","host":"db2","user":"backup","password":{"env":"PW"},"databases":["*"],"exclude_databases":["tmp*"]}]"#;
        let c = load_targets(targets).unwrap();
        assert_eq!(c.target_names(), ["orders"]);
        assert_eq!(c.servers[0].database, "postgres", "discovery connects to `postgres` unless told");
        let t = |d: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, d, 0, 0, 0).unwrap();
        let (first, _) = crate::domain::discovery::merge_inventory(
            "prod",
            None,
            &["b".into(), "a".into()],
            &c.servers[0].selection(),
            t(1),
        );
        let (second, _) = crate::domain::discovery::merge_inventory(
            "prod",
            Some(&first),
            &["a".into()],
            &c.servers[0].selection(),
            t(2),
        );
        let c = c.with_inventories(&[second]);
        assert_eq!(c.target_names(), ["orders", "prod.a"]);
        let a = c.target("prod.a").unwrap();
        assert_eq!((a.host.as_str(), a.database.as_str(), a.databases.len()), ("db2", "a", 0));
        assert_eq!(c.gone[0].name, "prod.b");
        assert!(a.is_discovered() && !c.target("orders").unwrap().is_discovered());
    }

    #[test]
    fn a_server_targets_mistakes_are_named() {
        let base = r#""name":"prod","host":"db","user":"u","password":{"env":"PW"}"#;
        let cases = [
            (format!("[{{{base}}}]"), "needs a database, or `databases` patterns"),
            (
                format!(r#"[{{{base},"database":"d","exclude_databases":["x"]}}]"#),
                "exclude_databases without databases",
            ),
            (format!(r#"[{{{base},"databases":["*",""]}}]"#), "is empty; use `*`"),
            (format!(r#"[{{{base},"databases":["*"],"pitr_source_instance":"i"}}]"#), "target of its own"),
            (format!(r#"[{{{base},"databases":"*"}}]"#), "invalid type"),
        ];
        for (targets, expected) in cases {
            let err = load_targets(&targets).unwrap_err().to_string();
            assert!(err.contains(expected), "{targets}: {err}");
        }
    }

    #[test]
    fn a_point_in_time_drill_needs_rds_scratch_servers() {
        let targets = r#"[{"name":"orders","host":"db","database":"orders","user":"backup","password":{"env":"PW"},"pitr_source_instance":"orders-prod"}]"#;
        let base = [("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", targets)];
        let err = Config::load(&env(&base), None).unwrap_err().to_string();
        assert!(err.contains("pitr_source_instance") && err.contains("BACKSTOP_SCRATCH=rds"), "{err}");
        let rds = [
            ("BACKSTOP_SCRATCH", "rds"),
            ("BACKSTOP_RDS_SUBNET_GROUP", "drills"),
            ("BACKSTOP_RDS_SECURITY_GROUP_IDS", "sg-1"),
        ];
        let c = Config::load(&env(&[&base[..], &rds[..]].concat()), None).unwrap();
        assert_eq!(c.targets[0].pitr_source_instance.as_deref(), Some("orders-prod"));
    }

    #[test]
    fn given_the_minimum_variables_then_defaults_fill_the_rest() {
        let c = Config::load(
            &env(&[("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", TARGETS)]),
            None,
        )
        .unwrap();
        assert_eq!(c.codec, Codec::default());
        assert_eq!(c.compression_level, Codec::default().default_level());
        assert_eq!(c.targets[0].port, 5432);
        assert_eq!(c.targets[0].password, PasswordSource::Env("ORDERS_PW".into()));
        assert_eq!(c.lease, Duration::from_secs(10800));
    }

    #[test]
    fn given_a_missing_bucket_then_the_error_names_the_variable() {
        let err = Config::load(&env(&[("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", TARGETS)]), None).unwrap_err();
        assert!(err.to_string().contains("BACKSTOP_BUCKET"), "{err}");
    }

    #[test]
    fn given_bad_values_then_the_error_names_them() {
        let base = [("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", TARGETS)];
        for (name, value) in [
            ("BACKSTOP_CODEC", "lz77"),
            ("BACKSTOP_COMPRESSION_LEVEL", "99"),
            ("BACKSTOP_NOTIFY_SUCCESS", "perhaps"),
            ("BACKSTOP_LEASE_SECONDS", "5"),
            ("BACKSTOP_KEY_PREFIX", "/abs"),
            ("BACKSTOP_KEY_PREFIX", "a b"),
        ] {
            let mut e = env(&base);
            e.insert(name.into(), value.into());
            let err = Config::load(&e, None).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn given_an_unknown_target_field_then_it_is_refused_by_name() {
        let bad = r#"[{"name":"a","host":"h","database":"d","user":"u","password":{"env":"X"},"pasword":"oops"}]"#;
        let err =
            Config::load(&env(&[("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", bad)]), None)
                .unwrap_err()
                .to_string();
        assert!(err.contains("pasword"), "{err}");
    }

    #[test]
    fn given_duplicate_or_unsafe_target_names_then_they_are_refused() {
        for targets in [
            r#"[{"name":"a","host":"h","database":"d","user":"u","password":{"env":"X"}},{"name":"a","host":"h","database":"d","user":"u","password":{"env":"X"}}]"#,
            r#"[{"name":"a/b","host":"h","database":"d","user":"u","password":{"env":"X"}}]"#,
            "[]",
        ] {
            assert!(Config::load(
                &env(&[("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", targets)]),
                None
            )
            .is_err());
        }
    }

    #[test]
    fn a_user_check_is_one_statement() {
        let load = |sql: &str| {
            let targets = serde_json::json!([{"name":"a","host":"h","database":"d","user":"u","password":{"env":"X"},
                "checks":[{"name":"users","sql":sql}]}]);
            Config::load(
                &env(&[("BACKSTOP_BUCKET", "b"), ("BACKSTOP_TABLE", "t"), ("BACKSTOP_TARGETS", &targets.to_string())]),
                None,
            )
        };
        for one in
            ["SELECT count(*) > 0 FROM users", "SELECT true;", "SELECT ';' <> 'x' -- why not", "SELECT $$a;b$$ <> ''"]
        {
            assert!(load(one).is_ok(), "{one}");
        }
        for (bad, why) in [
            ("SELECT true; DELETE FROM users", "2 statements"),
            ("SELECT 'unterminated", "quoted string"),
            ("  ", "empty"),
            ("\\x", "psql commands"),
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains("check \"users\" must be one SQL statement") && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn given_a_file_and_a_variable_then_the_variable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backstop.toml");
        std::fs::write(
            &path,
            "bucket = \"from-file\"\ntable = \"t\"\ncodec = \"gzip\"\n[[targets]]\nname = \"a\"\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\npassword = { file = \"/run/pw\" }\n",
        )
        .unwrap();
        let c = Config::load(&env(&[("BACKSTOP_BUCKET", "from-env")]), Some(&path)).unwrap();
        assert_eq!(c.bucket, "from-env");
        assert_eq!(c.codec, Codec::Gzip);
        assert_eq!(c.compression_level, Codec::Gzip.default_level());
        assert_eq!(c.targets[0].password, PasswordSource::File("/run/pw".into()));
    }
}
