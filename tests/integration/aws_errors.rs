//! The adapters classify what AWS answers (here, the emulator): a missing object or table is `NotFound`, not a
//! string that looks like every other failure; jobs choose their hints and retries by that kind.

use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::adapters::s3::S3Store;
use backstop::domain::BackupId;
use backstop::ports::{AwsErrorKind, Backups, ObjectStore};
use backstop_tests::aws::AwsFixture;

#[tokio::test(flavor = "multi_thread")]
async fn the_adapters_classify_the_services_failures() {
    let aws = AwsFixture::new().await;
    let store = S3Store::new(aws.clients.s3.clone(), aws.bucket.clone(), None);
    let Err(missing) = store.get("no/such/key.sql.zst", None).await else { panic!("a missing key was read") };
    assert_eq!(missing.service_kind(), Some(AwsErrorKind::NotFound), "{missing}");
    assert!(missing.to_string().contains("NoSuchKey"), "{missing}");

    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), format!("{}-missing", aws.table));
    let gone = catalog.get_backup("shop", &BackupId("20261122T020000Z-00000000".into())).await.unwrap_err();
    assert_eq!(gone.service_kind(), Some(AwsErrorKind::NotFound), "{gone}");
}
