//! Hostile identifiers (quotes, spaces, dots, unicode, mixed case, reserved words) back up with a fingerprint
//! that names every table correctly with its true row count, and restore to the same fingerprint. The
//! password comes from Secrets Manager, in the JSON shape RDS writes for managed master passwords.

use backstop::config::PasswordSource;
use backstop::domain::TargetOutcome;
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

    let run = job(&aws, config).run(&request("weird", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let manifest = manifest(&aws, &only_record(&aws, &run).await).await;

    let mut expected = tables_with_counts(&source, "weird");
    expected.sort();
    let mut fingerprinted: Vec<_> = manifest.fingerprint.tables.iter().map(|t| (t.schema.clone(), t.name.clone(), t.rows)).collect();
    fingerprinted.sort();
    assert_eq!(fingerprinted, expected);
    for name in ["with \"quotes\"", "a.b", "日本語", "Mixed Case", "order"] {
        assert!(expected.iter().any(|(_, t, _)| t == name), "the seed has a table named {name:?}: {expected:?}");
    }
    assert!(expected.iter().any(|(s, _, _)| s == "select"), "the seed has a schema named like a keyword");

    // Restore into a new database on the same server (the roles are there) with the runbook's pipeline.
    let dump_file = dir.path().join("weird.sql.zst");
    std::fs::write(&dump_file, aws.object(&manifest.dump.key).await).unwrap();
    let restore = source.shell(&format!(
        "createdb restored && zstd -dc '{}' | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d restored >/dev/null",
        dump_file.display()
    ));
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(fingerprint(&source.dump("restored")).fingerprint, manifest.fingerprint);
}
