//! A backup restores, with the runbook's commands and no Backstop, into a brand-new server, and the restored
//! database yields the fingerprint recorded in the manifest; so does the manifest's `restore_hint`, run as
//! written (the AWS CLI against the emulator, `sha256sum -c`, psql).

use backstop::domain::{BackupStatus, TargetOutcome};
use backstop::pipeline::codec::Codec;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_with_the_runbook_commands_into_a_new_server_with_the_same_fingerprint() {
    let source = PgCluster::start();
    source.seed_sample("shop");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();

    for codec in [Codec::Zstd, Codec::Gzip] {
        let target = source.target(&format!("shop-{}", codec.name()), "shop", BACKSTOP_PASSWORD, dir.path());
        let mut config = aws.config(vec![target.clone()]);
        config.codec = codec;
        config.compression_level = codec.default_level();
        let run = job(&aws, config).run(&request(&target.name, None)).await.unwrap();
        assert_eq!(run.targets[0].outcome, TargetOutcome::Completed, "{codec:?}: {}", run.targets[0].message);

        let record = only_record(&aws, &run).await;
        assert_eq!(record.status, BackupStatus::Completed);
        let manifest = manifest(&aws, &record).await;
        assert_eq!(manifest.dump, *record.dump.as_ref().unwrap());
        assert!(manifest.dump.version_id.is_some(), "versioned bucket");
        assert_eq!(manifest.fingerprint.tables.len(), 9, "{:#?}", manifest.fingerprint.tables);
        assert_eq!(manifest.fingerprint.table("sales", "order_items").unwrap().rows, 44_940);
        assert_eq!(manifest.fingerprint.table("sales", "refunds").unwrap().rows, 0);
        assert!(manifest.roles.passwords_included);

        // Downloaded as `aws s3 cp` would; everything after this is the runbook, with stock tools only.
        let dump_file = dir.path().join(format!("dump.{}", codec.extension()));
        let roles_file = dir.path().join(format!("roles-{}.sql", codec.name()));
        let stored = aws.object(&manifest.dump.key).await;
        assert_eq!(sha256_hex(&stored), manifest.dump.sha256, "the manifest's SHA-256 is the object's");
        std::fs::write(&dump_file, stored).unwrap();
        std::fs::write(&roles_file, aws.object(&manifest.roles.object.key).await).unwrap();

        let fresh = PgCluster::start();
        let roles = fresh.shell(&format!("psql -X -d postgres -f '{}'", roles_file.display()));
        let roles_errors = String::from_utf8_lossy(&roles.stderr);
        assert!(
            roles_errors.lines().all(|l| l.contains("already exists")),
            "only the bootstrap role may already exist: {roles_errors}"
        );
        let restore = fresh.shell(&format!(
            "createdb restored && {} '{}' | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d restored >/dev/null",
            codec.decompress_command(),
            dump_file.display()
        ));
        assert!(restore.status.success(), "{codec:?} restore failed: {}", String::from_utf8_lossy(&restore.stderr));

        let restored = fingerprint(&fresh.dump("restored"));
        assert_eq!(restored.fingerprint, manifest.fingerprint, "{codec:?}: the restored copy matches the manifest");

        // The manifest's own restore_hint, as written, with the AWS CLI against the emulator: the version ids it
        // names, `sha256sum -c` of both files, the roles, and the all-or-nothing restore into a new database.
        let work = tempfile::tempdir().unwrap();
        let aws_cli = backstop_tests::repo_root().join(".venv/bin");
        let hint = manifest.restore_hint.replace("NEW_DB", "from_hint");
        let ran = fresh.shell(&format!(
            "export PATH='{}':\"$PATH\" AWS_ENDPOINT_URL='{}' AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
             AWS_DEFAULT_REGION=us-east-1 && cd '{}' && {hint}",
            aws_cli.display(),
            aws.endpoint,
            work.path().display()
        ));
        let stdout = String::from_utf8_lossy(&ran.stdout);
        assert!(ran.status.success(), "{codec:?}: {hint}\n{stdout}\n{}", String::from_utf8_lossy(&ran.stderr));
        assert_eq!(stdout.matches(": OK").count(), 2, "sha256sum -c checked both files: {stdout}");
        let from_hint = fingerprint(&fresh.dump("from_hint"));
        assert_eq!(from_hint.fingerprint, manifest.fingerprint, "{codec:?}: the hint's restore matches the manifest");
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
