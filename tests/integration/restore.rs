//! `backstop restore`, run as an operator runs it (the CLI against a real server and the emulator): a whole
//! restore equals its source; each refusal (a database that holds something, the backup's own source, roles
//! the server lacks, an object whose bytes are not the recorded ones) changes nothing; `--clean` replaces;
//! `--to-file` writes the dump's SQL.

use std::path::Path;
use std::process::Output;

use backstop::config::ScratchSettings;
use backstop::domain::{BackupStatus, TargetOutcome};
use backstop::pipeline::codec::Codec;
use backstop::ports::Backups;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD, SUPERUSER_PASSWORD};

use crate::common::*;

struct Restores {
    aws: AwsFixture,
    source: PgCluster,
    config_file: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Restores {
    /// `backstop restore --target shop …` with the destination's password in PGPASSWORD.
    fn run(&self, args: &[&str]) -> (Output, String) {
        let out = cli_command(&cli_binary(), &self.aws, &self.config_file)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .args(["restore", "--target", "shop"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out, text)
    }
}

fn into(cluster: &PgCluster, database: &str) -> String {
    format!("postgresql://postgres@127.0.0.1:{}/{database}?sslmode=disable", cluster.port)
}

/// The sample database backed up and drilled (so it is the newest verified backup).
async fn verified_backup() -> Restores {
    let source = PgCluster::start();
    source.seed_sample("shop");
    // What the dump leaves out: the database's comment, privileges and a role's setting in it (its owner is
    // app_owner).
    source.psql(
        "postgres",
        "COMMENT ON DATABASE shop IS 'the shop''s data'; REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC; \
         GRANT CONNECT ON DATABASE shop TO app_reader, backstop; \
         ALTER ROLE app_reader IN DATABASE shop SET search_path = sales, public",
    );
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let target = source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path());
    let mut config = aws.config(vec![target.clone()]);
    config.verify.scratch = ScratchSettings::Local { dir: Some(scratch.path().to_path_buf()) };
    let run = job(&aws, config.clone()).run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let drilled = drill(&aws, &config, "shop").await;
    assert_eq!(drilled.outcome, Some(BackupStatus::Verified), "{drilled:?}");
    let config_file = dir.path().join("backstop.toml");
    write_cli_config(&config_file, &aws, &target, &backstop_tests::pg::bin_dir(), "");
    Restores { aws, source, config_file, dir }
}

fn databases(cluster: &PgCluster) -> String {
    cluster.psql("postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
}

fn assert_same(source: &PgCluster, restored: &PgCluster, database: &str) {
    for part in ["--schema-only", "--data-only"] {
        let (mut a, mut b) =
            (comparable(&source.dump_with("shop", &[part])), comparable(&restored.dump_with(database, &[part])));
        if part == "--data-only" {
            // A parallel restore loads a table's chunks side by side: the same rows, in another physical order.
            let sorted = |text: &str| {
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort_unstable();
                lines.join("\n")
            };
            (a, b) = (sorted(&a), sorted(&b));
        }
        if a != b {
            let at = a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "{part} dumps of the source and the restored copy differ at line {}:\n  source:   {:?}\n  restored: {:?}",
                at + 1,
                a.lines().nth(at),
                b.lines().nth(at)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_restore_equals_its_source_and_every_refusal_changes_nothing() {
    let r = verified_backup().await;
    let fresh = PgCluster::start();
    // A role the backup also has, set up differently here: the restore must not alter it.
    fresh.psql("postgres", "CREATE ROLE app_reader LOGIN CONNECTION LIMIT 7");

    let (out, text) = r.run(&["--into", &into(&fresh, "shop_copy"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        fresh
            .psql("postgres", "SELECT rolcanlogin || ' ' || rolconnlimit FROM pg_roles WHERE rolname = 'app_reader'")
            .trim(),
        "true 7",
        "an existing role was altered by the backup's roles script"
    );
    assert_eq!(fresh.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'").trim(), "1");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["passed"], true, "{text}");
    let checks = outcome["report"]["checks"].as_array().unwrap();
    assert!(checks.len() > 9, "the drill's checks ran on the copy: {checks:?}");
    assert_same(&r.source, &fresh, "shop_copy");
    assert!(
        text.contains("the source database's owner (app_owner), comment, privileges and role settings applied"),
        "{text}"
    );
    let properties = "SELECT pg_get_userbyid(d.datdba), shobj_description(d.oid, 'pg_database'), \
         has_database_privilege('app_reader', d.datname, 'CONNECT'), has_database_privilege('app_owner', d.datname, 'TEMPORARY'), \
         (SELECT array_agg(c) FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setdatabase = d.oid AND s.setrole <> 0) \
         FROM pg_database d WHERE d.datname = ";
    fresh.psql("postgres", "CREATE ROLE nobody_else");
    assert_eq!(
        fresh.psql("postgres", &format!("{properties} 'shop_copy'")),
        r.source.psql("postgres", &format!("{properties} 'shop'")),
        "owner, comment, privileges and role settings as the source has them"
    );
    assert_eq!(
        fresh.psql("postgres", "SELECT has_database_privilege('nobody_else', 'shop_copy', 'CONNECT')").trim(),
        "f"
    );

    // A database that holds something is refused, and left as it was.
    fresh.psql("shop_copy", "DELETE FROM sales.refunds");
    let before = comparable(&fresh.dump("shop_copy"));
    let (out, text) = r.run(&["--into", &into(&fresh, "shop_copy")]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("is not empty") && text.contains("--clean"), "{text}");
    assert_eq!(comparable(&fresh.dump("shop_copy")), before, "the refused restore changed the database");

    // --clean (no terminal to ask on) drops it and restores anew.
    fresh.psql("shop_copy", "DELETE FROM sales.order_items WHERE quantity % 2 = 0");
    let (out, text) = r.run(&["--into", &into(&fresh, "shop_copy"), "--clean"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("dropped and recreated (--clean)"), "{text}");
    assert_same(&r.source, &fresh, "shop_copy");

    // Never into the backup's own database by accident, by whatever name the host is given.
    let source_before = comparable(&r.source.dump("shop"));
    let source_by_alias = format!("postgresql://postgres@localhost:{}/shop?sslmode=disable", r.source.port);
    let (out, text) = r.run(&["--into", &source_by_alias, "--clean"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("the database backup") && text.contains("--allow-source"), "{text}");
    assert_eq!(comparable(&r.source.dump("shop")), source_before);

    // Roles the server lacks, with --no-roles: named, and nothing made.
    let bare = PgCluster::start();
    let databases_before = databases(&bare);
    let (out, text) = r.run(&["--into", &into(&bare, "shop"), "--no-roles"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("app_owner") && text.contains("app_reader"), "{text}");
    assert_eq!(databases(&bare), databases_before);
    assert_eq!(bare.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'").trim(), "0");

    // Once they exist, --no-roles restores with the server's own roles (the database name is the backup's). No
    // sslmode: libpq's default, prefer, on a server without TLS, every connection of the restore falling back
    // to none (psql's, and the parallel restore's and read-back's own).
    bare.psql("postgres", "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN; CREATE ROLE backstop LOGIN");
    let (out, text) = r.run(&["--into", &format!("postgresql://postgres@127.0.0.1:{}", bare.port), "--no-roles"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("into shop on 127.0.0.1"), "{text}");
    assert_same(&r.source, &bare, "shop");

    // With TLS, the server's certificate verified as libpq verifies it, against ~/.postgresql/root.crt, by every
    // connection of the restore: verify-full by the name it was made for, verify-ca by an address it was not.
    bare.serve_tls();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/ca.crt");
    let run_at_home = |into: &str| {
        let out = cli_command(&cli_binary(), &r.aws, &r.config_file)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("HOME", home.path())
            .args(["restore", "--target", "shop", "--into", into, "--clean"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let verified = |mode: &str, host: &str| format!("postgresql://postgres@{host}:{}/shop?sslmode={mode}", bare.port);
    let (code, text) = run_at_home(&verified("verify-full", "localhost"));
    assert_ne!(code, Some(0), "no root certificate to verify against: {text}");
    assert!(text.contains("root.crt"), "{text}");
    std::fs::copy(&ca, home.path().join(".postgresql/root.crt")).unwrap();
    for (mode, host) in [("verify-full", "localhost"), ("verify-ca", "127.0.0.1")] {
        let (code, text) = run_at_home(&verified(mode, host));
        assert_eq!(code, Some(0), "{mode} to {host}: {text}");
        assert_same(&r.source, &bare, "shop");
    }
    let (code, text) = run_at_home(&verified("verify-full", "127.0.0.1"));
    assert_ne!(code, Some(0), "a certificate made for localhost, not for 127.0.0.1: {text}");

    // The restore's own connections alone (psql refuses the cases above before they are tried): verify-full
    // checks the name; with a root file, every TLS mode checks the chain (libpq's `require` then acts as
    // verify-ca); without one, `require` takes any certificate.
    let endpoint = |host: &str, sslmode: &str| backstop::ports::ScratchEndpoint {
        host: host.into(),
        port: bare.port,
        user: "postgres".into(),
        password: secrecy::SecretString::from(SUPERUSER_PASSWORD),
        maintenance_db: "postgres".into(),
        sslmode: sslmode.into(),
    };
    let roots = home.path().join(".postgresql/root.crt");
    let another_ca = home.path().join("another-root.crt");
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/server.crt"), &another_ca)
        .unwrap();
    for (host, sslmode, roots, connects) in [
        ("localhost", "verify-full", Some(&roots), true),
        ("127.0.0.1", "verify-full", Some(&roots), false),
        ("127.0.0.1", "verify-ca", Some(&roots), true),
        ("127.0.0.1", "require", Some(&another_ca), false),
        ("localhost", "prefer", Some(&another_ca), false),
        ("127.0.0.1", "require", None, true),
        ("127.0.0.1", "verify-ca", None, false),
    ] {
        let connected = backstop::adapters::pg_wire::connect_verifying_with(
            &endpoint(host, sslmode),
            "postgres",
            roots.map(|p| p.as_path()),
        )
        .await;
        match (connected, connects) {
            (Ok(client), true) => {
                let ssl = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await;
                assert!(ssl.unwrap().get::<_, bool>(0), "{sslmode} to {host}: encrypted");
            }
            (Err(e), false) => assert!(e.to_string().contains("certificate") || e.to_string().contains("root"), "{e}"),
            (connected, _) => panic!("{sslmode} to {host} with {roots:?}: {:?}", connected.map(|_| "connected")),
        }
    }

    // A password in the connection is refused before anything, and not repeated.
    let (out, text) = r.run(&["--into", &format!("postgresql://postgres:hunter2@127.0.0.1:{}/x", fresh.port)]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_bytes_are_not_the_recorded_ones_is_refused_before_any_row_is_written() {
    let r = verified_backup().await;
    let catalog = backstop::adapters::dynamodb::DynamoCatalog::new(r.aws.clients.dynamodb.clone(), r.aws.table.clone());
    let mut record = catalog.recent_backups("shop", 1).await.unwrap().remove(0);
    let dump = record.dump.clone().unwrap();

    // Rot: the record now names a version of the key whose bytes differ in one place.
    let mut bytes = r.aws.object(&dump.key).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let put = r
        .aws
        .clients
        .s3
        .put_object()
        .bucket(&r.aws.bucket)
        .key(&dump.key)
        .body(bytes.into())
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(&r.aws.kms_key_arn)
        .send()
        .await
        .unwrap();
    record.dump.as_mut().unwrap().version_id = put.version_id().map(str::to_string);
    catalog.update_backup(&record, record.status).await.unwrap();

    let fresh = PgCluster::start();
    let databases_before = databases(&fresh);
    let (out, text) = r.run(&["--into", &into(&fresh, "shop_copy")]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not intact") && text.contains("SHA-256"), "{text}");
    assert_eq!(databases(&fresh), databases_before, "a database was made for a damaged backup");
    assert_eq!(fresh.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'").trim(), "0");

    // --to-file refuses it too, and leaves no file behind.
    let file = r.dir.path().join("shop.sql");
    let (out, text) = r.run(&["--to-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!file.exists() && !Path::new(&format!("{}.partial", file.display())).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_file_writes_the_dumps_sql_and_does_not_overwrite() {
    let r = verified_backup().await;
    let file = r.dir.path().join("shop.sql");
    let (out, text) = r.run(&["--to-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let record = records(&r.aws, "shop").await.remove(0);
    let sql = std::fs::read(&file).unwrap();
    assert_eq!(sql.len() as u64, record.raw_bytes);
    assert_eq!(fingerprint(&sql).fingerprint, manifest(&r.aws, &record).await.fingerprint);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the SQL holds the data: readable by its owner only");

    let (out, text) = r.run(&["--to-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("exists"), "{text}");
}

/// `SELECT` of a table's rows in key order, folded to one line: equal rows, equal text.
fn rows_of(cluster: &PgCluster, table: &str) -> String {
    cluster.psql(
        "shop",
        &format!(
            "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM {table} t"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_table_restores_beside_the_live_one_and_refusals_change_nothing() {
    let r = verified_backup().await;
    let original = rows_of(&r.source, "sales.orders");
    // The accident: someone deleted orders (and, by the cascade, their items).
    r.source.psql("shop", "DELETE FROM sales.orders WHERE id % 3 = 0");
    let damaged = rows_of(&r.source, "sales.orders");
    assert_ne!(original, damaged);

    let live = into(&r.source, "shop");
    let (out, text) = r.run(&["--into", &live, "--table", "sales.orders", "--as", "sales.orders_restored", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["passed"], true, "{text}");
    assert_eq!(outcome["tables"][0]["restored"], "sales.orders_restored");
    assert_eq!(outcome["tables"][0]["digest_matches"], true);
    assert_eq!(rows_of(&r.source, "sales.orders_restored"), original, "the copy holds the rows before the accident");
    assert_eq!(rows_of(&r.source, "sales.orders"), damaged, "the live table is left alone");
    let left_out = outcome["left_out"].to_string();
    assert!(left_out.contains("orders_customer_id_fkey") && left_out.contains("sales.customers"), "{left_out}");
    // What it owns came with it, under names of its own: its indexes, key and sequence (at the backup's value).
    let owned = r.source.psql(
        "shop",
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'orders_restored%'",
    );
    assert_eq!(
        owned.trim(),
        "orders_restored,orders_restored_customer_id_idx,orders_restored_order_number_seq,\
         orders_restored_pending_ordered_at_idx,orders_restored_pkey"
    );
    assert_eq!(
        r.source.psql("shop", "SELECT last_value FROM sales.orders_restored_order_number_seq").trim(),
        r.source.psql("shop", "SELECT last_value FROM sales.order_number_seq").trim()
    );

    // Again: the name is taken now, so nothing happens.
    let before = comparable(&r.source.dump("shop"));
    let (out, text) = r.run(&["--into", &live, "--table", "sales.orders", "--as", "sales.orders_restored"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("already exist") && text.contains("--as"), "{text}");
    // Under its own name into the backup's own database: refused without --allow-source.
    let (out, text) = r.run(&["--into", &live, "--table", "sales.orders"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--allow-source"), "{text}");
    // A pattern that matches nothing says what the backup has.
    let (out, text) = r.run(&["--into", &live, "--table", "sales.nope*", "--as", "sales.x"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no table of the backup matches") && text.contains("sales."), "{text}");
    assert_eq!(comparable(&r.source.dump("shop")), before, "a refused table restore changed the database");

    // Into a server without the backup's roles: the owner change fails, the transaction rolls back whole.
    let bare = PgCluster::start();
    bare.psql("postgres", "CREATE DATABASE shop");
    let (out, text) = r.run(&["--into", &into(&bare, "shop"), "--table", "sales.orders"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("rolled back") && text.contains("app_owner"), "{text}");
    assert_eq!(bare.psql("shop", "SELECT count(*) FROM pg_class WHERE relname LIKE 'orders%'").trim(), "0");
    // With the roles there, several tables by pattern: their keys to each other kept, the schema made.
    bare.psql("postgres", "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN; CREATE ROLE backstop LOGIN");
    let (out, text) = r.run(&["--into", &into(&bare, "shop"), "--table", "sales.order*", "--table", "sales.customers"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("created    schema sales"), "{text}");
    assert_eq!(rows_of(&bare, "sales.orders"), original);
    let keys =
        bare.psql("shop", "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f'");
    assert_eq!(keys.trim(), "order_items_order_id_fkey,orders_customer_id_fkey", "keys among the three are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_table_of_a_multi_gigabyte_corpus_reads_a_small_fraction_of_the_object() {
    // About 2 GiB of SQL (BACKSTOP_TEST_CORPUS_MB to change it): the sample database beside one big table of
    // 100 KB values, each 10 KB of hex no two alike and 90 KB that compress to nothing: a stored object of
    // about 100 MB, made in seconds.
    let megabytes: u64 = std::env::var("BACKSTOP_TEST_CORPUS_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    let source = PgCluster::start();
    source.seed_sample("shop");
    source.psql(
        "shop",
        &format!(
            "CREATE SCHEMA bulk; CREATE TABLE bulk.pages (id int PRIMARY KEY, body text); \
             INSERT INTO bulk.pages SELECT g, (SELECT string_agg(md5(g || ':' || i), '') FROM generate_series(1, 320) i) \
             || repeat('x', 92160) FROM generate_series(1, {}) g; \
             GRANT SELECT ON ALL TABLES IN SCHEMA bulk TO backstop",
            megabytes * 1024 * 1024 / (320 * 32 + 92160)
        ),
    );
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let target = source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path());
    let config = aws.config(vec![target.clone()]);
    let run = job(&aws, config).run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = records(&aws, "shop").await.remove(0);
    assert!(record.raw_bytes >= megabytes * 1024 * 1024, "the corpus holds {} bytes of SQL", record.raw_bytes);
    let config_file = dir.path().join("backstop.toml");
    write_cli_config(&config_file, &aws, &target, &backstop_tests::pg::bin_dir(), "");
    let r = Restores { aws, source, config_file, dir };

    let fresh = PgCluster::start();
    fresh.psql("postgres", "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN; CREATE ROLE backstop LOGIN");
    let backup = ["--backup", record.backup_id.0.as_str()];
    let (out, text) =
        r.run(&[&backup[..], &["--into", &into(&fresh, "shop"), "--table", "sales.orders", "--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{text}");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (read, size) = (outcome["stored_bytes_read"].as_u64().unwrap(), outcome["object_size"].as_u64().unwrap());
    let fraction = read as f64 / size as f64;
    eprintln!(
        "one table of {:.2} GB of SQL: read {read} of {size} stored bytes ({:.3} %)",
        record.raw_bytes as f64 / 1e9,
        100.0 * fraction
    );
    assert!(fraction < 0.02, "a table restore read {read} of {size} bytes");
    assert_eq!(rows_of(&fresh, "sales.orders"), rows_of(&r.source, "sales.orders"));

    // --to-file of the same table: its SQL only, checked against the backup on the way.
    let file = r.dir.path().join("orders.sql");
    let (out, text) = r.run(&[&backup[..], &["--table", "sales.orders", "--to-file", file.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(0), "{text}");
    let sql = std::fs::read_to_string(&file).unwrap();
    assert!(sql.contains("CREATE TABLE sales.orders (") && sql.contains("COPY sales.orders ("), "{text}");
    assert!(!sql.contains("bulk.pages") && !sql.contains("CREATE TABLE sales.customers"));
    assert!((sql.len() as u64) < record.raw_bytes / 100, "{} bytes written", sql.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_of_the_hostile_database_restores_alone_under_a_new_name_from_gzip_members() {
    let source = PgCluster::start();
    source.seed_hostile("shop");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let target = source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path());
    // gzip members here (the other tests use zstd frames): ranged reads decompress either.
    let mut config = aws.config(vec![target.clone()]);
    config.codec = Codec::Gzip;
    config.compression_level = Codec::Gzip.default_level();
    let run = job(&aws, config).run(&request("shop", None)).await.unwrap();
    assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{}", run.targets[0].message);
    let record = records(&aws, "shop").await.remove(0);
    let config_file = dir.path().join("backstop.toml");
    write_cli_config(&config_file, &aws, &target, &backstop_tests::pg::bin_dir(), "");
    let r = Restores { aws, source, config_file, dir };

    // Each table, named exactly (quoted), restored beside itself in the live database.
    let tables = manifest(&r.aws, &record).await.fingerprint.tables;
    assert!(tables.len() >= 11);
    for (i, t) in tables.iter().enumerate() {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let pattern = format!("{}.{}", quote(&t.schema), quote(&t.name));
        let copy = format!("public.zz_copy_{i}");
        let (out, text) = r.run(&[
            "--backup",
            &record.backup_id.0,
            "--into",
            &into(&r.source, "shop"),
            "--table",
            &pattern,
            "--as",
            &copy,
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{pattern}: {text}");
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(outcome["tables"][0]["rows"], t.rows, "{pattern}: {text}");
        assert_eq!(outcome["tables"][0]["digest_matches"], true, "{pattern}: {text}");
        let count = r.source.psql("shop", &format!("SELECT count(*) FROM {copy}"));
        assert_eq!(count.trim(), t.rows.to_string(), "{pattern}");
    }
}

/// A year of hourly backups leaves a retained monthly backup far behind the newest thousand records: it is still
/// found by its id, and by a time just after it (DynamoDB read from that time back, not from the newest).
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_older_than_the_newest_thousand_records_is_found_by_id_and_by_time() {
    use backstop::domain::{BackupId, BackupRecord, Trigger};
    use backstop::jobs::restore::Pick;

    let aws = AwsFixture::new().await;
    let config = std::sync::Arc::new(aws.config(Vec::new()));
    let catalog = backstop::adapters::dynamodb::DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let newest = chrono::Utc::now() - chrono::Duration::hours(1);
    let records: Vec<BackupRecord> = (0..1_100)
        .map(|hours_ago| {
            let at = newest - chrono::Duration::hours(hours_ago);
            let mut record =
                BackupRecord::in_progress("shop", BackupId::new(at), Trigger::Schedule, "seed", at, Codec::Zstd);
            record.status = BackupStatus::Completed;
            record
        })
        .collect();
    for record in &records {
        catalog.create_backup(record).await.unwrap();
    }
    let job = backstop::app::restore_job(config, &aws.clients, std::sync::Arc::new(backstop::metrics::NoMetrics));
    let oldest = records.last().unwrap();
    let by_id = job.choose("shop", &Pick::Named(oldest.backup_id.clone())).await.unwrap();
    assert_eq!(by_id.backup_id, oldest.backup_id);
    let by_time = job.choose("shop", &Pick::Before(oldest.started_at + chrono::Duration::minutes(30))).await.unwrap();
    assert_eq!(by_time.backup_id, oldest.backup_id);
    // A time inside a backup's second but before its start passes it over for the one before.
    let second_oldest = &records[records.len() - 2];
    let just_before = job.choose("shop", &Pick::Before(second_oldest.started_at)).await.unwrap();
    assert_eq!(just_before.backup_id, oldest.backup_id);
    let none = job.choose("shop", &Pick::Before(oldest.started_at)).await.unwrap_err().to_string();
    assert!(none.contains("no restorable backup that started before"), "{none}");
}
