//! Hostile identifiers (quotes, spaces, dots, unicode, mixed case, reserved words, newlines, `\.`, text shaped
//! like COPY statements and pg_dump's comments) back up with a fingerprint that names every table correctly
//! with its true row count, drill as `verified` through the parallel restore, and restore with the runbook's
//! command to a database whose schema-only and data-only dumps equal the source's. The
//! password comes from Secrets Manager, in the JSON shape RDS writes for managed master passwords.

use backstop::config::{PasswordSource, ScratchSettings};
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

/// (schema, table, rows) for every ordinary table, straight from the catalog and count(*).
fn tables_with_counts(cluster: &PgCluster, db: &str) -> Vec<(String, String, u64)> {
    let json = cluster.psql(
        db,
        "SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, \
           (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint) \
           ORDER BY n.nspname, c.relname), '[]') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    );
    serde_json::from_str(json.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_back_up_with_a_correct_fingerprint_and_restore_to_it() {
    let source = PgCluster::start();
    source.seed_hostile("weird");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_arn = aws
        .clients
        .secrets
        .create_secret()
        .name(format!("rds!db-{}", aws.table))
        .secret_string(serde_json::json!({"username": "backstop", "password": BACKSTOP_PASSWORD}).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let mut target = source.target("weird", "weird", "not-used", dir.path());
    target.password = PasswordSource::SecretId(secret_arn);
    let config = aws.config(vec![target]);

    let run = job(&aws, config.clone()).run(&request("weird", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let manifest = manifest(&aws, &only_record(&aws, &run).await).await;

    let mut expected = tables_with_counts(&source, "weird");
    expected.sort();
    let mut fingerprinted: Vec<_> =
        manifest.fingerprint.tables.iter().map(|t| (t.schema.clone(), t.name.clone(), t.rows)).collect();
    fingerprinted.sort();
    assert_eq!(fingerprinted, expected);
    for name in ["with \"quotes\"", "a.b", "日本語", "Mixed Case", "order"] {
        assert!(expected.iter().any(|(_, t, _)| t == name), "the seed has a table named {name:?}: {expected:?}");
    }
    assert!(expected.iter().any(|(s, _, _)| s == "select"), "the seed has a schema named like a keyword");
    assert!(
        expected.iter().any(|(s, t, _)| s == "evil\nschema" && t == "COPY x (a) FROM stdin;"),
        "the seed has names with newlines: {expected:?}"
    );

    // The drill restores it in parallel (no fallback to one stream) and finds every table as dumped.
    let scratch = tempfile::tempdir().unwrap();
    let mut config = config;
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch.path().to_path_buf()) };
    config.verify.physical = true;
    let drilled = drill(&aws, &config, "weird").await;
    let report = latest_drill_report(&aws, "weird").await;
    assert_eq!(
        drilled.outcome,
        Some(BackupStatus::Verified),
        "{:?}: {}\n{:#?}",
        drilled.failed_checks,
        drilled.message,
        report.checks
    );
    let outcome = |label: &str| {
        report.checks.iter().find(|c| c.name.label() == label).map(|c| format!("{:?}", c.outcome)).unwrap_or_default()
    };
    assert!(outcome("restore").contains("in parallel"), "names with newlines need no fallback: {}", outcome("restore"));
    assert!(
        outcome("restore").contains("builds started as their tables' rows came in"),
        "the dump's tail, read ahead, names these tables too: {}",
        outcome("restore")
    );
    assert!(outcome("physical (amcheck)").contains("no problem"), "{}", outcome("physical (amcheck)"));
    for (schema, name, _) in &expected {
        let label = format!("table {schema}.{name}");
        assert!(outcome(&label).contains("digest equal"), "{label}: {}", outcome(&label));
    }

    // Restore into a new database on the same server (the roles are there) with the runbook's own command.
    let dump_file = dir.path().join("weird.sql.zst");
    std::fs::write(&dump_file, aws.object(&manifest.dump.key).await).unwrap();
    let command = backstop::jobs::backup::restore_command(
        backstop::pipeline::codec::Codec::Zstd,
        &format!("'{}'", dump_file.display()),
        "restored",
        "UTF8",
    );
    let restore = source.shell(&format!("{command} >/dev/null"));
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(fingerprint(&source.dump("restored")).fingerprint, manifest.fingerprint);
    assert_same_dumps(&source, "weird", "restored", "the runbook's restore of the hostile seed");
}
