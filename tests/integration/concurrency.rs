//! Two runs for one target at once make one backup (the lease); the same event delivered twice makes one
//! backup (the idempotency claim) — against DynamoDB's conditional writes on the emulator.

use backstop::domain::TargetOutcome;
use backstop_tests::aws::AwsFixture;
use backstop_tests::pg::{PgCluster, BACKSTOP_PASSWORD};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_for_one_target_make_exactly_one_backup() {
    let source = PgCluster::start();
    source.seed_sample("shop");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = aws.config(vec![source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path())]);
    let (a, b) = (job(&aws, config.clone()), job(&aws, config));

    let req = request("shop", None);
    let (ra, rb) = tokio::join!(a.run(&req), b.run(&req));
    let mut outcomes = vec![ra.unwrap().targets[0].outcome, rb.unwrap().targets[0].outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, vec![TargetOutcome::Completed, TargetOutcome::SkippedLeaseHeld]);
    assert_eq!(records(&aws, "shop").await.len(), 1);
    assert!(aws.alerts_until_now().await.is_empty(), "losing the lease is not alerted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_twice_makes_one_backup() {
    let source = PgCluster::start();
    source.seed_sample("shop");
    let aws = AwsFixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = aws.config(vec![source.target("shop", "shop", BACKSTOP_PASSWORD, dir.path())]);
    let job = job(&aws, config);

    // One after the other: a retry after the first delivery finished.
    let first = job.run(&request("shop", Some("event-1"))).await.unwrap();
    let again = job.run(&request("shop", Some("event-1"))).await.unwrap();
    assert_eq!(first.targets[0].outcome, TargetOutcome::Completed);
    assert_eq!(again.targets[0].outcome, TargetOutcome::SkippedDuplicate);
    assert_eq!(again.targets[0].backup_id, first.targets[0].backup_id);

    // At the same time: a duplicate delivery while the first is still running.
    let req = request("shop", Some("event-2"));
    let (x, y) = tokio::join!(job.run(&req), job.run(&req));
    let mut outcomes = vec![x.unwrap().targets[0].outcome, y.unwrap().targets[0].outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    // The claim is a conditional write, atomic on DynamoDB (and on the tests' emulator, see infra/moto_server.py):
    // the second delivery finds the first's claim, whether it is still running or done.
    assert_eq!(outcomes, vec![TargetOutcome::Completed, TargetOutcome::SkippedDuplicate]);

    assert_eq!(records(&aws, "shop").await.len(), 2, "one backup per event");
}

/// The claim's conditional writes on DynamoDB: a run whose claim expired and was taken over cannot mark the
/// taker's claim done (a `Conflict`, which the backup reports, where the adapter used to drop the failed write)
/// nor delete it; the taker's claim still stops a third delivery.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_taken_over_stays_the_takers() {
    use backstop::adapters::dynamodb::DynamoCatalog;
    use backstop::domain::BackupId;
    use backstop::ports::{CatalogError, ClaimOutcome, ClaimSettlement, Claims, IdempotencyClaim};

    let aws = AwsFixture::new().await;
    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let now = chrono::Utc::now();
    let claim = |owner: &str, expires_in: chrono::Duration| IdempotencyClaim {
        key: "event-9".into(),
        target: "shop".into(),
        owner: owner.into(),
        now,
        expires_at: now + expires_in,
    };
    let expired = claim("crashed", chrono::Duration::seconds(-5));
    assert_eq!(catalog.claim_idempotency(&expired).await.unwrap(), ClaimOutcome::Claimed);
    let taker = claim("taker", chrono::Duration::hours(1));
    assert_eq!(catalog.claim_idempotency(&taker).await.unwrap(), ClaimOutcome::Claimed);

    let done =
        ClaimSettlement::Completed { backup_id: BackupId("b-1".into()), keep_until: now + chrono::Duration::days(7) };
    let err = catalog.settle_idempotency(&expired, done).await.unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    catalog.settle_idempotency(&expired, ClaimSettlement::Released).await.unwrap();
    let third = catalog.claim_idempotency(&claim("third", chrono::Duration::hours(1))).await.unwrap();
    assert_eq!(third, ClaimOutcome::InProgress { owner: "taker".into() });

    // The taker settles its own claim; the event is then known as handled.
    let done =
        ClaimSettlement::Completed { backup_id: BackupId("b-2".into()), keep_until: now + chrono::Duration::days(7) };
    catalog.settle_idempotency(&taker, done).await.unwrap();
    let later = catalog.claim_idempotency(&claim("fourth", chrono::Duration::hours(1))).await.unwrap();
    assert_eq!(later, ClaimOutcome::AlreadyDone { backup_id: BackupId("b-2".into()) });
}

/// A verify run looks for drills to resume among a target's 20 newest: DynamoDB reads those 20 and sends back
/// only the unfinished (a Query's `Limit` counts items read, before its filter), newest first; an unfinished
/// drill older than the 20 newest, or another target's, is not among them.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_drills_are_the_unfinished_among_the_newest() {
    use backstop::adapters::dynamodb::DynamoCatalog;
    use backstop::domain::drill::{DrillPhase, DrillRecord};
    use backstop::domain::BackupId;
    use backstop::ports::Drills;

    let aws = AwsFixture::new().await;
    let catalog = DynamoCatalog::new(aws.clients.dynamodb.clone(), aws.table.clone());
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut drill = DrillRecord::new("shop", BackupId(format!("b-{i}")), start + chrono::Duration::seconds(i));
        drill.phase = match i {
            0 => DrillPhase::Restoring,
            23 => DrillPhase::Checking,
            _ => DrillPhase::Done,
        };
        catalog.create_drill(&drill).await.unwrap();
        ids.push(drill.drill_id);
    }
    let other = DrillRecord::new("other", BackupId("b-x".into()), start);
    catalog.create_drill(&other).await.unwrap();

    let unfinished = |among| {
        let catalog = &catalog;
        async move {
            catalog.unfinished_drills("shop", among).await.unwrap().into_iter().map(|d| d.drill_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(unfinished(20).await, vec![ids[23].clone()], "the oldest unfinished drill is not among the 20 newest");
    assert_eq!(unfinished(25).await, vec![ids[23].clone(), ids[0].clone()]);
    assert_eq!(unfinished(1).await, Vec::<String>::new(), "the newest drill is done");
    let resumed = catalog.unfinished_drills("shop", 100).await.unwrap();
    assert_eq!(resumed[0].phase, DrillPhase::Checking, "the records come back whole");
    assert_eq!(resumed[0].backup_id, BackupId("b-23".into()));
}
