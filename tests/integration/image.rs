//! The container image the Fargate runner runs, for real: its arm64 `backstop`, started from the image's own
//! root filesystem under qemu-user, backs up a real PostgreSQL server to the emulator with the image's own
//! client programs and libraries, and drills that backup. `infra/image/test.sh` unpacks the image, registers
//! qemu with binfmt_misc (so the arm64 program's children run too) and runs this test with
//! `BACKSTOP_IMAGE_ROOTFS`; the ordinary test run skips it (ignored), having no image to test.

use std::path::Path;
use std::process::Output;

use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::domain::BackupStatus;
use backstop::ports::Backups;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};
use serde_json::Value;

use crate::common::{cli_command, write_cli_config};

/// The image's `backstop` with `args`, as the task runs it: the configuration and AWS from the environment.
fn backstop(rootfs: &Path, config: &Path, aws: &AwsFixture, args: &[&str]) -> Output {
    cli_command(&rootfs.join("usr/local/bin/backstop"), aws, config)
        .args(args)
        // Where qemu-user finds the image's loader and libraries (absolute paths inside the image).
        .env("QEMU_LD_PREFIX", rootfs)
        .env("SSL_CERT_FILE", rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .output()
        .expect("the image's backstop starts (is binfmt_misc registered for aarch64?)")
}

fn said(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the image's root filesystem: infra/image/test.sh runs it"]
async fn the_images_backstop_backs_up_a_real_server_and_drills_the_backup() {
    let rootfs = std::path::PathBuf::from(
        std::env::var("BACKSTOP_IMAGE_ROOTFS")
            .expect("BACKSTOP_IMAGE_ROOTFS: the unpacked image (infra/image/test.sh)"),
    );
    let source = PgCluster::start();
    source.psql("postgres", "CREATE DATABASE app");
    source.psql(
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[]);
         INSERT INTO items SELECT g, 'item ' || g, g * 1.25, ARRAY['a' || g % 7] FROM generate_series(1, 5000) g;
         CREATE INDEX items_name ON items (name);",
    );
    source.create_backup_role();
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let target = source.target("app", "app", BACKSTOP_PASSWORD, dir.path());
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let config = dir.path().join("backstop.toml");
    let local_scratch = format!("scratch = \"local\"\nscratch_dir = \"{}\"\n", scratch.display());
    write_cli_config(&config, &aws, &target, &rootfs.join("opt/bin"), &local_scratch);

    // The command the state machine gives the task.
    let backup = backstop(
        &rootfs,
        &config,
        &aws,
        &["backup", "--target", "app", "--trigger", "schedule", "--idempotency-key", "tick-1", "--emf", "--json"],
    );
    assert!(backup.status.success(), "{}", said(&backup));
    let run: Value = serde_json::from_slice(&backup.stdout).unwrap_or_else(|e| panic!("{e}: {}", said(&backup)));
    assert_eq!(run["targets"][0]["outcome"], "completed", "{run}");
    // The metrics a task reports go to its log as EMF lines.
    assert!(String::from_utf8_lossy(&backup.stderr).contains("\"BackupSuccess\""), "{}", said(&backup));

    // The same key again: a duplicate, nothing dumped.
    let again =
        backstop(&rootfs, &config, &aws, &["backup", "--target", "app", "--idempotency-key", "tick-1", "--json"]);
    assert!(again.status.success(), "{}", said(&again));
    let run: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(run["targets"][0]["outcome"], "skipped_duplicate", "{run}");

    // A drill of it, with the image's client programs (the scratch server is the host's).
    let drill = backstop(&rootfs, &config, &aws, &["verify", "--target", "app", "--json"]);
    assert!(drill.status.success(), "{}", said(&drill));

    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let records = catalog.recent_backups("app", 5).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, BackupStatus::Verified, "{:?}", records[0]);
    assert_eq!(records[0].trigger.as_str(), "schedule");
    assert_eq!(records[0].row_count, 5000);
    let tool = records[0].pg_dump_version.clone().unwrap_or_default();
    assert!(tool.starts_with("15.") || tool.starts_with("17."), "the image's pg_dump: {tool}");
}
