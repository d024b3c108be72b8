//! A server as a target: its databases are discovered on a real PostgreSQL server at each backup run, each is
//! backed up (and drilled) as a target of its own through the deployed wiring (DynamoDB inventory, S3, SNS), a
//! database added later is backed up without a configuration change, and one dropped is said once and kept.

use std::sync::Arc;

use backstop::app;
use backstop::config::Config;
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop::metrics::NoMetrics;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

/// The configuration a new invocation runs with: the catalog's inventories read into it.
async fn invocation_config(aws: &AwsFixture, config: &Config) -> Config {
    app::with_discovered_on(config.clone(), &aws.clients).await.unwrap()
}

async fn planned(aws: &AwsFixture, config: &Config) -> Vec<String> {
    let job = app::backup_job(Arc::new(config.clone()), &aws.clients, Arc::new(NoMetrics));
    job.fan_out(None).await.unwrap().into_iter().map(|u| u.target).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_database_of_a_server_is_backed_up_as_its_own_target_and_new_ones_join_without_a_deploy() {
    let cluster = PgCluster::start();
    cluster.create_backup_role();
    for db in ["app_one", "app_two", "tmp_scratch", "\"My DB\"", "closed"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    cluster.psql("postgres", "ALTER DATABASE closed ALLOW_CONNECTIONS false");
    cluster
        .psql("app_one", "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500);");
    cluster.psql("app_two", "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('a'), ('b');");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = cluster.target("fleet", "postgres", BACKSTOP_PASSWORD, dir.path());
    server.databases = vec!["*".into()];
    server.exclude_databases = vec!["tmp_*".into(), "postgres".into()];
    let mut config = aws.config(vec![]);
    config.servers = vec![server];

    // The first run finds the two it can back up, and says which one it cannot.
    assert_eq!(planned(&aws, &config).await, ["fleet.app_one", "fleet.app_two"]);
    let alerts = aws.alerts_until_now().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].message.contains("\"My DB\"") && alerts[0].message.contains("NOT backed up"),
        "{}",
        alerts[0].message
    );

    // Each unit runs as the state machine runs it: an invocation of its own, its target from the inventory.
    let expanded = invocation_config(&aws, &config).await;
    for unit in ["fleet.app_one", "fleet.app_two"] {
        let run = job(&aws, expanded.clone()).run(&request(unit, Some("execution-1"))).await.unwrap();
        assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{unit}: {}", run.targets[0].message);
    }
    let one = records(&aws, "fleet.app_one").await;
    assert_eq!((one.len(), one[0].status), (1, BackupStatus::Completed));
    assert_eq!(manifest(&aws, &one[0]).await.fingerprint.table("public", "items").unwrap().rows, 500);
    let two = records(&aws, "fleet.app_two").await;
    assert_eq!(manifest(&aws, &two[0]).await.fingerprint.table("public", "notes").unwrap().rows, 2);
    // A discovered database's backup is drilled like any other.
    let drill = drill(&aws, &expanded, "fleet.app_one").await;
    assert_eq!(drill.outcome, Some(BackupStatus::Verified), "{drill:?}");

    // A database created later is backed up from the next run; one dropped is said once, and kept for purge.
    cluster.psql("postgres", "CREATE DATABASE app_three");
    cluster.psql("postgres", "DROP DATABASE app_two");
    assert_eq!(planned(&aws, &config).await, ["fleet.app_one", "fleet.app_three"]);
    let alerts = aws.alerts_until_now().await;
    let gone = alerts.iter().find(|a| a.message.contains("no longer backed up")).expect("the gone database's alert");
    assert!(gone.message.contains("\"app_two\""), "{}", gone.message);
    let expanded = invocation_config(&aws, &config).await;
    assert_eq!(expanded.target_names(), ["fleet.app_one", "fleet.app_three"]);
    assert_eq!(expanded.gone.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["fleet.app_two"]);
    let run = job(&aws, expanded).run(&request("fleet.app_three", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
}
