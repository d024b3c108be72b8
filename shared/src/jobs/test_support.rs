//! What the jobs' unit tests share: a target and a whole configuration, with nothing real behind them.

use chrono::{DateTime, TimeZone, Utc};

use crate::config::{Config, PasswordSource, TargetConfig};
use crate::pipeline::codec::Codec;

/// A target whose password is the variable `ORDERS_PW`.
pub fn target(name: &str) -> TargetConfig {
    TargetConfig {
        name: name.into(),
        host: "db.internal".into(),
        port: 5432,
        database: "orders".into(),
        user: "backup".into(),
        password: PasswordSource::Env("ORDERS_PW".into()),
        sslmode: None,
        sslrootcert: None,
        checks: vec![],
        pitr_source_instance: None,
        retention: Default::default(),
        runner: Default::default(),
        size_gb: None,
        databases: Vec::new(),
        exclude_databases: Vec::new(),
    }
}

/// A configuration of `targets`: bucket `bucket`, table `table`, a topic, local scratch servers.
pub fn test_config(targets: Vec<TargetConfig>) -> Config {
    Config {
        bucket: "bucket".into(),
        table: "table".into(),
        topic_arn: Some("arn:topic".into()),
        kms_key_id: None,
        key_prefix: String::new(),
        codec: Codec::Zstd,
        compression_level: 3,
        notify_success: false,
        lease: std::time::Duration::from_secs(3600),
        pg_bin_dir: None,
        targets,
        verify: crate::config::VerifySettings {
            scratch: crate::config::ScratchSettings::Local { dir: None },
            older_backup: false,
            rto_budget: None,
            rpo_budget: None,
            check_timeout: std::time::Duration::from_secs(30),
            scratch_lifetime: std::time::Duration::from_secs(3600),
            rows: crate::domain::verification::RowCheck::Digests,
            restore_jobs: 2,
            physical: false,
            lease: std::time::Duration::from_secs(120),
        },
        monitor: Default::default(),
        runbook_url: String::new(),
        fargate: false,
        servers: Vec::new(),
        gone: Vec::new(),
    }
}

/// The tests' "now": 2026-11-22 02:00 UTC.
pub fn test_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
}
