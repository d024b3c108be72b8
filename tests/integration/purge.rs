//! The purge job against moto with a versioned bucket: the dry run changes nothing; the fraction rail refuses
//! (with an alert) until forced; purged backups lose every object version (re-written versions and delete
//! markers included) while kept ones stay intact; a purge cut off between deletions finishes on the next run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backstop::adapters::dynamodb::DynamoCatalog;
use backstop::adapters::s3::S3Store;
use backstop::config::{Config, PasswordSource, TargetConfig};
use backstop::domain::backup::ObjectKeys;
use backstop::domain::retention::RetentionPolicy;
use backstop::domain::{BackupId, BackupRecord, BackupStatus, ObjectRef, Trigger};
use backstop::jobs::purge::{PurgeDeps, PurgeJob, PurgeRequest, PurgeStep, TargetPurge};
use backstop::metrics::NoMetrics;
use backstop::pipeline::codec::Codec;
use backstop::ports::*;
use backstop_tests::aws::AwsFixture;
use bytes::Bytes;
use chrono::{Duration as Days, Utc};

pub(crate) const TARGET: &str = "shop";

fn target() -> TargetConfig {
    TargetConfig {
        name: TARGET.into(),
        host: "db.example.invalid".into(),
        port: 5432,
        database: "shop".into(),
        user: "backup".into(),
        password: PasswordSource::Env("UNUSED".into()),
        sslmode: None,
        sslrootcert: None,
        checks: vec![],
        pitr_source_instance: None,
        // Two dailies, nothing else: of five daily backups, the three oldest go.
        retention: RetentionPolicy {
            daily: 2,
            weekly: 0,
            monthly: 0,
            yearly: 0,
            min_keep: 2,
            ..RetentionPolicy::default()
        },
        runner: Default::default(),
        size_gb: None,
        databases: Vec::new(),
        exclude_databases: Vec::new(),
    }
}

pub(crate) struct Fixture {
    pub(crate) aws: AwsFixture,
    pub(crate) config: Config,
    pub(crate) store: S3Store,
    catalog: DynamoCatalog,
}

impl Fixture {
    pub(crate) async fn new() -> Fixture {
        let aws = AwsFixture::new().await;
        let config = aws.config(vec![target()]);
        let store = S3Store::new(aws.clients.s3.clone(), aws.bucket.clone(), Some(aws.kms_key_arn.clone()));
        let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
        Fixture { aws, config, store, catalog }
    }

    /// A completed backup `days_ago`, with its three objects in the bucket.
    pub(crate) async fn backup(&self, days_ago: i64) -> BackupRecord {
        let started_at = Utc::now() - Days::days(days_ago);
        let id = BackupId::new(started_at);
        let keys = ObjectKeys::new("", TARGET, &id, started_at, Codec::Zstd);
        let mut record = BackupRecord::in_progress(TARGET, id, Trigger::Schedule, "seed", started_at, Codec::Zstd);
        let put = async |key: &str| {
            let stored = self
                .store
                .put_object(key, Bytes::from(format!("contents of {key}")), "application/octet-stream")
                .await
                .unwrap();
            ObjectRef { key: key.to_string(), version_id: stored.version_id, size: 1, sha256: String::new() }
        };
        record.dump = Some(put(&keys.dump).await);
        record.manifest = Some(put(&keys.manifest).await);
        record.roles = Some(put(&keys.roles).await);
        record.status = BackupStatus::Completed;
        record.finished_at = Some(started_at + Days::minutes(1));
        self.catalog.create_backup(&record).await.unwrap();
        record
    }

    fn job(&self, store: Arc<dyn ObjectStore>) -> PurgeJob {
        let config = Arc::new(self.config.clone());
        let backup = backstop::app::backup_deps(&config, &self.aws.clients, Arc::new(NoMetrics));
        PurgeJob::new(
            config,
            PurgeDeps {
                store,
                catalog: backup.catalog,
                alerts: backup.alerts,
                clock: backup.clock,
                metrics: Arc::new(NoMetrics),
            },
        )
    }

    async fn purge(&self, store: Arc<dyn ObjectStore>, dry_run: bool, force: bool) -> TargetPurge {
        let request = PurgeRequest {
            target: Some(TARGET.into()),
            force,
            dry_run,
            trigger: Trigger::Cli,
            request_id: "test".into(),
        };
        self.job(store).run(&request).await.unwrap().remove(0)
    }

    async fn status(&self, record: &BackupRecord) -> BackupStatus {
        self.catalog.get_backup(TARGET, &record.backup_id).await.unwrap().unwrap().status
    }

    /// Every version and delete marker under this backup's keys.
    async fn versions_of(&self, record: &BackupRecord) -> Vec<String> {
        let prefix = backstop::domain::backup::attempt_prefix(record, "");
        self.aws.versions().await.into_iter().filter(|v| v.starts_with(&prefix)).collect()
    }
}

fn deleted_ids(result: &TargetPurge) -> Vec<BackupId> {
    result.steps.iter().filter(|s| s.action == "delete").filter_map(|s| s.backup_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_refuses_past_the_rail_then_deletes_every_version_of_what_the_policy_drops() {
    let f = Fixture::new().await;
    let mut backups = Vec::new();
    for days_ago in [5, 4, 3, 2, 1] {
        backups.push(f.backup(days_ago).await);
    }
    let (old, kept) = backups.split_at(3);
    // A re-written version and a delete marker on an old backup's dump: purge removes versions, not keys.
    let dump_key = old[0].dump.as_ref().unwrap().key.clone();
    f.store.put_object(&dump_key, Bytes::from_static(b"second version"), "application/octet-stream").await.unwrap();
    f.aws.clients.s3.delete_object().bucket(&f.aws.bucket).key(&dump_key).send().await.unwrap();
    let before = f.aws.versions().await;
    let store: Arc<dyn ObjectStore> = Arc::new(f.store.clone());

    let dry = f.purge(store.clone(), true, false).await;
    assert!(dry.refused.is_some(), "3 of 5 is past the default 0.5 rail: {dry:?}");
    let forced_dry = f.purge(store.clone(), true, true).await;
    let mut would: Vec<BackupId> = deleted_ids(&forced_dry);
    would.sort();
    assert_eq!(would, old.iter().map(|b| b.backup_id.clone()).collect::<Vec<_>>(), "{forced_dry:?}");
    assert!(forced_dry.steps.iter().all(|s| !s.reasons.is_empty()), "every decision has its reasons");
    assert_eq!(f.aws.versions().await, before, "dry runs change nothing in the bucket");
    for b in &backups {
        assert_eq!(f.status(b).await, BackupStatus::Completed, "dry runs change nothing in the catalog");
    }

    let refused = f.purge(store.clone(), false, false).await;
    assert!(refused.refused.as_deref().is_some_and(|r| r.contains("--force")), "{refused:?}");
    assert!(deleted_ids(&refused).is_empty());
    assert_eq!(f.aws.versions().await, before, "a refused purge deletes nothing");
    // The held-back backup's dump is hidden by a marker, so a noncurrent-version rule would delete it: warned of.
    let mut alerts = f.aws.alerts(2, Duration::from_secs(10)).await;
    alerts.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts[0].subject.contains("hidden by a delete marker"), "{}", alerts[0].subject);
    assert!(alerts[0].message.contains(&dump_key), "{}", alerts[0].message);
    assert!(alerts[1].subject.contains("REFUSED"), "{}", alerts[1].subject);

    let forced = f.purge(store.clone(), false, true).await;
    assert!(!forced.failed(), "{forced:?}");
    assert_eq!(deleted_ids(&forced).len(), 3);
    for b in old {
        assert_eq!(f.status(b).await, BackupStatus::Purged);
        assert_eq!(f.versions_of(b).await, Vec::<String>::new(), "every version and delete marker is gone");
    }
    for b in kept {
        assert_eq!(f.status(b).await, BackupStatus::Completed);
        assert_eq!(f.versions_of(b).await.len(), 3, "kept backups are intact");
        let dump = b.dump.as_ref().unwrap();
        let fetched = f.store.get(&dump.key, dump.version_id.as_deref()).await.unwrap();
        assert_eq!(fetched.head.version_id, dump.version_id);
    }

    let again = f.purge(store, false, false).await;
    assert!(deleted_ids(&again).is_empty() && again.refused.is_none(), "a second run has nothing to do: {again:?}");
}

/// The newest backup's dump version is deleted for good, outside Backstop, and the second's is hidden by a delete
/// marker (nothing lost yet, but no drill or restore takes it). Trusting the catalog, the purge would keep the newest as a restore point and delete an older one
/// that restores; it marks the newest `lost` instead, keeps one more older backup in its place, and pages.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_dump_version_was_deleted_is_marked_lost_and_an_older_one_kept_in_its_place() {
    let f = Fixture::new().await;
    let mut backups = Vec::new();
    for days_ago in [1, 2, 3, 4, 5] {
        backups.push(f.backup(days_ago).await);
    }
    let gone = backups[0].dump.clone().unwrap();
    f.aws
        .clients
        .s3
        .delete_object()
        .bucket(&f.aws.bucket)
        .key(&gone.key)
        .set_version_id(gone.version_id.clone())
        .send()
        .await
        .unwrap();
    let hidden = &backups[1].dump.as_ref().unwrap().key;
    f.aws.clients.s3.delete_object().bucket(&f.aws.bucket).key(hidden).send().await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(f.store.clone());

    let result = f.purge(store, false, false).await;
    assert!(!result.failed() && result.refused.is_none(), "{result:?}");
    let lost: Vec<&BackupId> = result.lost().iter().filter_map(|s| s.backup_id.as_ref()).collect();
    assert_eq!(lost, vec![&backups[0].backup_id], "{result:?}");
    let record = f.catalog.get_backup(TARGET, &backups[0].backup_id).await.unwrap().unwrap();
    assert_eq!(record.status, BackupStatus::Lost);
    assert!(record.error.as_deref().is_some_and(|e| e.contains(&gone.key)), "{record:?}");
    // The second's dump is hidden by a marker: no restore point either (drills refuse it), so one more is kept.
    for kept in &backups[1..4] {
        assert_eq!(f.status(kept).await, BackupStatus::Completed, "{result:?}");
    }
    for dropped in &backups[4..] {
        assert_eq!(f.status(dropped).await, BackupStatus::Purged, "{result:?}");
    }
    assert_eq!(f.versions_of(&backups[0]).await.len(), 2, "what is left of a lost backup stays");
    assert_eq!(result.at_risk.len(), 1, "the dump behind a marker will expire: {result:?}");
    assert!(result.at_risk[0].contains(hidden.as_str()), "{:?}", result.at_risk);
    let mut alerts = f.aws.alerts(2, Duration::from_secs(10)).await;
    alerts.sort_by_key(|a| !a.subject.contains("LOST"));
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts[0].subject.contains("LOST") && alerts[0].message.contains(&gone.key), "{alerts:?}");
    assert_eq!(alerts[0].attributes["severity"]["Value"], "critical", "{}", alerts[0].raw);
    assert!(alerts[1].subject.contains("hidden by a delete marker"), "{alerts:?}");
    assert_eq!(alerts[1].attributes["severity"]["Value"], "warning", "{}", alerts[1].raw);
}

/// The bucket, failing every version delete after the first `allowed`: a purge cut off midway.
struct FailingDeletes {
    inner: S3Store,
    allowed: usize,
    done: AtomicUsize,
}

#[async_trait]
impl ObjectStore for FailingDeletes {
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        self.inner.create_multipart(key, content_type).await
    }
    async fn put_object(&self, key: &str, body: Bytes, content_type: &str) -> Result<StoredVersion, StoreError> {
        self.inner.put_object(key, body, content_type).await
    }
    async fn versions(&self, prefix: &str) -> Result<Vec<ListedVersion>, StoreError> {
        self.inner.versions(prefix).await
    }
    async fn delete_version(&self, version: &StoredVersion) -> Result<(), StoreError> {
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(StoreError {
                operation: "DeleteObject",
                key: version.key.clone(),
                cause: "injected: the purge was cut off".into(),
            });
        }
        self.inner.delete_version(version).await
    }
    async fn head(&self, key: &str) -> Result<ObjectHead, StoreError> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<FetchedObject, StoreError> {
        self.inner.get(key, version_id).await
    }
    async fn get_range(
        &self,
        key: &str,
        version_id: Option<&str>,
        start: u64,
        len: u64,
    ) -> Result<FetchedObject, StoreError> {
        self.inner.get_range(key, version_id, start, len).await
    }
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        self.inner.open_uploads(prefix).await
    }
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        self.inner.abort_upload(upload).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_cut_off_between_deletions_is_finished_by_the_next_run() {
    let f = Fixture::new().await;
    let old = f.backup(3).await;
    let kept = [f.backup(2).await, f.backup(1).await];

    let cut = Arc::new(FailingDeletes { inner: f.store.clone(), allowed: 1, done: AtomicUsize::new(0) });
    let first = f.purge(cut, false, false).await;
    assert!(first.failed(), "{first:?}");
    assert_eq!(f.status(&old).await, BackupStatus::Purging, "the record says a purge is under way");
    assert_eq!(f.versions_of(&old).await.len(), 2, "one of three versions went before the cut");
    let alerts = f.aws.alerts(1, Duration::from_secs(10)).await;
    assert!(alerts.iter().any(|a| a.subject.contains("purge of shop FAILED")), "{alerts:?}");

    let second = f.purge(Arc::new(f.store.clone()), false, false).await;
    assert!(!second.failed(), "{second:?}");
    let finished: Vec<_> = second.steps.iter().filter(|s| s.action == "finish").collect();
    assert_eq!(finished.len(), 1, "{second:?}");
    assert_eq!(finished[0].versions, 2);
    assert_eq!(f.status(&old).await, BackupStatus::Purged);
    assert!(f.versions_of(&old).await.is_empty());
    for b in &kept {
        assert_eq!(f.status(b).await, BackupStatus::Completed);
        assert_eq!(f.versions_of(b).await.len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_cut_off_after_marking_or_after_deleting_is_finished_by_the_next_run() {
    let f = Fixture::new().await;
    let marked_only = f.backup(4).await;
    let kept = [f.backup(2).await, f.backup(1).await];
    // Cut off before the first delete: the oldest is marked `purging`, every version still there.
    let cut = Arc::new(FailingDeletes { inner: f.store.clone(), allowed: 0, done: AtomicUsize::new(0) });
    let first = f.purge(cut, false, false).await;
    assert!(first.failed(), "{first:?}");
    assert_eq!(f.status(&marked_only).await, BackupStatus::Purging);
    assert_eq!(f.versions_of(&marked_only).await.len(), 3, "nothing deleted before the cut");
    // Cut off after the last delete, before `purged` was written: what a crash there leaves behind.
    let deleted_unmarked = f.backup(3).await;
    let mut purging = deleted_unmarked.clone();
    purging.status = BackupStatus::Purging;
    f.catalog.update_backup(&purging, BackupStatus::Completed).await.unwrap();
    for version in f.store.versions(&backstop::domain::backup::attempt_prefix(&deleted_unmarked, "")).await.unwrap() {
        f.store.delete_version(&version.stored()).await.unwrap();
    }

    let second = f.purge(Arc::new(f.store.clone()), false, false).await;
    assert!(!second.failed(), "{second:?}");
    let finished: Vec<(&BackupId, usize)> = second
        .steps
        .iter()
        .filter(|s| s.action == "finish")
        .filter_map(|s| s.backup_id.as_ref().map(|id| (id, s.versions)))
        .collect();
    assert_eq!(finished.len(), 2, "both interrupted purges are finished: {second:?}");
    assert!(
        finished.contains(&(&marked_only.backup_id, 3)) && finished.contains(&(&deleted_unmarked.backup_id, 0)),
        "{finished:?}"
    );
    for b in [&marked_only, &deleted_unmarked] {
        assert_eq!(f.status(b).await, BackupStatus::Purged);
        assert!(f.versions_of(b).await.is_empty());
    }
    for b in &kept {
        assert_eq!(f.status(b).await, BackupStatus::Completed);
        assert_eq!(f.versions_of(b).await.len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_abandoned_for_a_day_are_aborted_and_younger_ones_left_alone() {
    let f = Fixture::new().await;
    f.backup(1).await;
    let ours =
        f.store.create_multipart(&format!("{TARGET}/2026/11/01/abandoned.sql.zst"), "application/zstd").await.unwrap();
    let elsewhere = f.store.create_multipart("other-target/2026/11/01/x.sql.zst", "application/zstd").await.unwrap();
    let open_keys = async || {
        let mut keys: Vec<String> = f.store.open_uploads("").await.unwrap().into_iter().map(|u| u.key).collect();
        keys.sort();
        keys
    };
    let initiated =
        f.store.open_uploads(TARGET).await.unwrap()[0].initiated.expect("the store says when an upload started");
    let purge_at = async |hours: i64| {
        let config = Arc::new(f.config.clone());
        let backup = backstop::app::backup_deps(&config, &f.aws.clients, Arc::new(NoMetrics));
        let clock = Arc::new(backstop::adapters::memory::FixedClock::at(initiated + Days::hours(hours)));
        let job = PurgeJob::new(
            config,
            PurgeDeps {
                store: Arc::new(f.store.clone()),
                catalog: backup.catalog,
                alerts: backup.alerts,
                clock,
                metrics: Arc::new(NoMetrics),
            },
        );
        let request = PurgeRequest {
            target: Some(TARGET.into()),
            force: false,
            dry_run: false,
            trigger: Trigger::Cli,
            request_id: "test".into(),
        };
        job.run(&request).await.unwrap().remove(0)
    };

    let early = purge_at(12).await;
    assert!(
        early.steps.iter().all(|s| s.action != "abort_upload"),
        "12 hours old may be a running backup's: {early:?}"
    );
    assert_eq!(open_keys().await.len(), 2);

    let late = purge_at(25).await;
    let aborted: Vec<&PurgeStep> = late.steps.iter().filter(|s| s.action == "abort_upload").collect();
    assert_eq!(aborted.len(), 1, "{late:?}");
    assert!(aborted[0].error.is_none() && aborted[0].reasons[0].contains(ours.key()), "{aborted:?}");
    assert_eq!(open_keys().await, vec![elsewhere.key().to_string()], "only the target's day-old upload is aborted");
}

/// A backup item edited by hand with a typo (a status that is not one) is left out of the target's records with
/// an error in the log, instead of failing every read of them: the purge still decides on the others, and a read
/// of the newest N still gives N records when there are that many (the monitor reads on while it gets all it
/// asked for).
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_item_that_cannot_be_read_is_left_out_not_fatal() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let f = Fixture::new().await;
    let good = [f.backup(1).await, f.backup(2).await];
    let s = |v: &str| AttributeValue::S(v.to_string());
    f.aws
        .clients
        .dynamodb
        .put_item()
        .table_name(&f.aws.table)
        .item("pk", s(&format!("TARGET#{TARGET}")))
        // Newest of all: a read of the two newest records reads one more in its place.
        .item("sk", s("BACKUP#20991201T020000Z-0badbad0"))
        .item("target", s(TARGET))
        .item("backup_id", s("20991201T020000Z-0badbad0"))
        .item("status", s("Completed"))
        .send()
        .await
        .unwrap();
    let read = f.catalog.recent_backups(TARGET, 2).await.unwrap();
    let mut ids: Vec<&BackupId> = read.iter().map(|b| &b.backup_id).collect();
    ids.sort();
    let mut expected: Vec<&BackupId> = good.iter().map(|b| &b.backup_id).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let result = f.purge(Arc::new(f.store.clone()), false, false).await;
    assert!(result.skipped.is_none() && !result.failed(), "{result:?}");
    assert_eq!(result.steps.len(), 2, "{result:?}");
}
