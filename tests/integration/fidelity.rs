//! A drill never fails a backup that stock psql restores:
//!
//! - the differential test: databases generated from seeds (random Unicode names up to 63 bytes, random column
//!   types, NULLs and escapes in the data) back up, drill as `verified`, and restore with the runbook's command
//!   to a database whose schema-only and data-only dumps equal the source's. `BACKSTOP_DIFF_SEEDS=N` runs N
//!   seeds (default 5), `BACKSTOP_DIFF_SEED=S` starts at seed S (default: one drawn from the clock, printed);
//! - the runbook's restore is all or nothing, even for a dump whose large objects carry pg_dump's own
//!   `BEGIN`/`COMMIT`: a restore that fails after them leaves no database behind, where plain
//!   `psql --single-transaction` leaves one half-restored; the drill fails the same dump, naming psql's error,
//!   and says which checks it could not run instead of calling them failed.

use backstop::config::{Config, ScratchSettings};
use backstop::domain::verification::{CheckName, CheckOutcome};
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop::jobs::backup::restore_command;
use backstop::pipeline::codec::Codec;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

fn seeds() -> (u64, u64) {
    let count = std::env::var("BACKSTOP_DIFF_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let first = std::env::var("BACKSTOP_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() % 1_000_000).unwrap_or(1)
    });
    (first, count)
}

/// Prints the seed if the test fails while checking it.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "differential test FAILED on seed {0}: rerun with BACKSTOP_DIFF_SEED={0} BACKSTOP_DIFF_SEEDS=1",
                self.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_databases_drill_verified_and_restore_equal_to_the_source() {
    let (first, count) = seeds();
    let source = PgCluster::start();
    source.create_backup_role();
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (mut ran, mut tables, mut multi_line_copies) = (0, 0, 0);
    for seed in first..first + count {
        let _guard = SeedGuard(seed);
        let (db, name) = (format!("random_{seed}"), format!("seed-{seed}"));
        source.psql("postgres", &format!("CREATE DATABASE {db}"));
        let script = backstop_tests::random_db::script(seed);
        if let Err(e) = source.try_psql_script(&db, &script) {
            panic!("seed {seed}: the generated database does not load: {e}");
        }
        source.psql(&db, "GRANT pg_read_all_data TO backstop");
        let mut config: Config = aws.config(vec![source.target(&name, &db, BACKSTOP_PASSWORD, dir.path())]);
        config.verify.scratch = ScratchSettings::Local { dir: Some(scratch.path().to_path_buf()) };

        let run = job(&aws, config.clone()).run(&request(&name, None)).await.unwrap();
        assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "seed {seed}: {}", run.targets[0].message);
        let record = only_record(&aws, &run).await;
        let manifest = manifest(&aws, &record).await;
        for segment in &manifest.layout.as_ref().expect("a framed backup").segments {
            if let backstop::domain::dump_layout::SegmentKind::Copy { statement, .. } = &segment.kind {
                tables += 1;
                multi_line_copies += usize::from(statement.contains('\n'));
            }
        }

        let drilled = drill(&aws, &config, &name).await;
        let report = latest_drill_report(&aws, &name).await;
        assert_eq!(
            drilled.outcome,
            Some(BackupStatus::Verified),
            "seed {seed}: {:?}: {}\n{:#?}",
            drilled.failed_checks,
            drilled.message,
            report.checks
        );
        let restore = report.checks.iter().find(|c| c.name == CheckName::Restore).unwrap();
        assert!(
            matches!(&restore.outcome, CheckOutcome::Ok { detail } if detail.contains("in parallel")),
            "seed {seed}: {restore:?}"
        );

        let file = dir.path().join(format!("{db}.sql.zst"));
        std::fs::write(&file, aws.object(&manifest.dump.key).await).unwrap();
        let restored = format!("restored_{seed}");
        let out = source.shell(&format!(
            "{} >/dev/null",
            restore_command(Codec::Zstd, &format!("'{}'", file.display()), &restored)
        ));
        assert!(
            out.status.success(),
            "seed {seed}: the runbook's restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_dumps(&source, &db, &restored, &format!("seed {seed}"));
        ran += 1;
    }
    let summary = format!(
        "differential test: {ran} seeds ran ({first}..{}), {tables} tables ({multi_line_copies} with a COPY statement over several lines), \
         each backed up, drilled `verified` and restored equal",
        first + count
    );
    println!("{summary}");
    // cargo test shows a passing test's output to nobody: infra/test.sh prints this file after the tests.
    let _ = std::fs::write(backstop_tests::repo_root().join("target/differential-seeds.txt"), format!("{summary}\n"));
}

/// A database whose dump has large objects (pg_dump wraps their data in BEGIN/COMMIT) and fails late: an
/// expression index whose function reads a table without naming its schema, as pg_dump's empty search_path
/// cannot resolve. The index comes after the large objects in the dump; the large objects are readable by the
/// backup role.
fn fails_late_with_large_objects(source: &PgCluster) {
    source.psql("postgres", "CREATE DATABASE late");
    source.psql(
        "late",
        "CREATE TABLE lookup (k integer); INSERT INTO lookup VALUES (10); \
         CREATE FUNCTION public.plus_lookup(a integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT a + (SELECT max(k) FROM lookup)'; \
         CREATE TABLE items (a integer); INSERT INTO items SELECT generate_series(1, 100); \
         CREATE INDEX items_plus ON items (public.plus_lookup(a)); \
         SELECT lo_from_bytea(0, '\\x00010203'::bytea); SELECT lo_from_bytea(0, 'second'::bytea);",
    );
    // The backup role reads everything but large objects (pg_read_all_data does not cover them).
    source.psql("late", "DO $$ DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', o); END LOOP; END $$");
    source.create_backup_role();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_restore_is_all_or_nothing_and_the_drill_fails_the_same_dump() {
    let source = PgCluster::start();
    fails_late_with_large_objects(&source);
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut config = aws.config(vec![source.target("late", "late", BACKSTOP_PASSWORD, dir.path())]);
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch.path().to_path_buf()) };
    config.verify.physical = true;
    let run = job(&aws, config.clone()).run(&request("late", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = only_record(&aws, &run).await;
    let manifest = manifest(&aws, &record).await;
    assert_eq!(manifest.fingerprint.large_objects, 2);
    let file = dir.path().join("late.sql.zst");
    std::fs::write(&file, aws.object(&manifest.dump.key).await).unwrap();
    let file = format!("'{}'", file.display());

    // What the runbook used to say: psql's one transaction is ended early by the dump's own COMMIT, and the
    // failure after it leaves a half-restored database.
    let naive = source.shell(&format!(
        "createdb naive && zstd -dc {file} | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d naive >/dev/null"
    ));
    assert!(!naive.status.success(), "the dump fails late");
    let stderr = String::from_utf8_lossy(&naive.stderr);
    assert!(stderr.contains("there is already a transaction in progress") && stderr.contains("lookup"), "{stderr}");
    assert_eq!(
        source.psql("naive", "SELECT count(*) FROM items").trim(),
        "100",
        "plain --single-transaction is not all or nothing"
    );

    // The runbook's command: the failed restore drops the database it made, and says so.
    let runbook = source.shell(&format!("{} >/dev/null", restore_command(Codec::Zstd, &file, "restored")));
    assert!(!runbook.status.success(), "the runbook's restore reports the failure");
    let stderr = String::from_utf8_lossy(&runbook.stderr);
    assert!(stderr.contains("restored dropped"), "{stderr}");
    assert_eq!(
        source.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'restored'").trim(),
        "0",
        "nothing half-restored is left"
    );
    // …and an existing database is never dropped by it: createdb fails first, and nothing else runs.
    let existing = source.shell(&format!("{} >/dev/null", restore_command(Codec::Zstd, &file, "naive")));
    assert!(!existing.status.success());
    assert_eq!(
        source.psql("naive", "SELECT count(*) FROM items").trim(),
        "100",
        "a database that existed is left as it was"
    );

    // The drill fails the same dump: the parallel restore stops at the index, psql on one connection too, and
    // the report names the restore as failed and the checks it could not run as not run.
    let drilled = drill(&aws, &config, "late").await;
    assert_eq!(drilled.outcome, Some(BackupStatus::VerifyFailed));
    assert_eq!(drilled.failed_checks, vec!["restore".to_string()], "only the restore failed: {}", drilled.message);
    let report = latest_drill_report(&aws, "late").await;
    let restore = report.checks.iter().find(|c| c.name == CheckName::Restore).unwrap();
    let CheckOutcome::Error { message } = &restore.outcome else { panic!("{restore:?}") };
    assert!(
        message.contains("lookup") && message.contains("psql"),
        "psql's own error, after the parallel restore's: {message}"
    );
    for check in [CheckName::ObjectChecksum, CheckName::ObjectEncryption] {
        let found = report.checks.iter().find(|c| c.name == check).unwrap();
        assert!(matches!(found.outcome, CheckOutcome::Ok { .. }), "the object was read whole and is intact: {found:?}");
    }
    for check in [CheckName::TableSet, CheckName::SchemaDigest, CheckName::Physical] {
        let found =
            report.checks.iter().find(|c| c.name == check).unwrap_or_else(|| panic!("{check:?} is in the report"));
        assert!(
            matches!(&found.outcome, CheckOutcome::NotRun { reason } if reason.contains("stopped at restore")),
            "{found:?}"
        );
    }
    // The person paged reads the same: one failed check, the rest listed apart as not checked.
    let alert = aws
        .alerts(1, std::time::Duration::from_secs(20))
        .await
        .into_iter()
        .find(|a| a.subject.contains("restore drill"))
        .expect("the drill's alert");
    assert!(alert.subject.ends_with("FAILED: restore"), "{}", alert.subject);
    assert!(alert.message.contains("Failed checks (1):"), "{}", alert.message);
    let not_checked = alert.message.split("Not checked").nth(1).unwrap_or_else(|| panic!("{}", alert.message));
    assert!(not_checked.contains("table_set") && !not_checked.contains("object_checksum"), "{}", alert.message);
}

/// amcheck finds what a logical comparison cannot: an index whose entries no longer match its table (here, an
/// expression index over a function declared immutable that is not, the classic way to corrupt one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_physical_check_finds_an_index_that_does_not_match_its_table() {
    let cluster = PgCluster::start();
    cluster.psql("postgres", "CREATE DATABASE physical");
    cluster.psql(
        "physical",
        "CREATE TABLE lookup (k integer); INSERT INTO lookup VALUES (1); \
         CREATE FUNCTION plus_lookup(a integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT a + (SELECT max(k) FROM public.lookup)'; \
         CREATE TABLE items (a integer PRIMARY KEY, b text); INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 1000) g; \
         CREATE INDEX items_plus ON items (plus_lookup(a));",
    );
    let endpoint = backstop::ports::ScratchEndpoint {
        host: "127.0.0.1".into(),
        port: cluster.port,
        user: "postgres".into(),
        password: secrecy::SecretString::from(backstop_tests::pg::SUPERUSER_PASSWORD),
        maintenance_db: "postgres".into(),
        sslmode: "disable".into(),
    };
    let sound = backstop::adapters::physical_check::physical_check(&endpoint, "physical", 2).await.unwrap();
    assert_eq!((sound.problem_count, sound.tables, sound.indexes), (0, 2, 2), "{:?}", sound.problems);
    assert!(sound.heap_checked);

    cluster.psql("physical", "UPDATE lookup SET k = 2");
    let broken = backstop::adapters::physical_check::physical_check(&endpoint, "physical", 2).await.unwrap();
    assert!(broken.problem_count > 0, "{broken:?}");
    assert!(
        broken.problems.iter().any(|p| p.contains("items_plus")),
        "the problem names the index: {:?}",
        broken.problems
    );
}
