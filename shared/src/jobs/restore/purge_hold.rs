//! A restore's hold on its target's purge: while `backstop restore` reads a backup, a purge must not delete it
//! (an incident restore of an old backup can take hours, and the daily purge may roll that very backup out of
//! retention meanwhile).
//!
//! The restore takes the target's purge lease, as a second purge would, for at most [`HOLD_FOR`]: a purge that
//! starts meanwhile finds it held and leaves the target alone, quietly (for [`QUIET_FOR`]; a hold older than that
//! is more likely a restore that was killed, and the purge says so). A purge already running is waited for
//! (purges of one target take seconds), so the backup is chosen after it and not among what it deletes. A second
//! restore of the same target rides on the first's hold and takes the lease over when the first lets it go. When
//! the lease cannot be taken (the catalog does not answer), the restore goes on and says what it could not
//! prevent: an incident restore must not wait on the catalog.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::RestoreJob;
use crate::domain::Job;
use crate::jobs::kernel::lease_request;
use crate::ports::{Catalog, LeaseOutcome};

/// Long enough for the longest restore; a restore that dies leaves the lease to expire by itself.
pub const HOLD_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a restore waits for a purge that is running.
const WAIT_FOR_PURGE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(2);
/// How often a restore riding on another's hold tries to take the lease over: the gap between the other's end and
/// this one's hold, in which a purge could start.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(5);
/// How long a purge keeps quiet about a restore's hold: past it, the hold is more likely a killed restore's.
pub const QUIET_FOR: chrono::Duration = chrono::Duration::hours(6);

/// Owners that are restores, not purges: how a purge tells the two apart in what it reports.
pub const OWNER_PREFIX: &str = "restore-";

/// The hold, released by [`PurgeHold::release`].
pub struct PurgeHold {
    target: String,
    /// The owner this restore holds (or will hold) the lease as. Released whatever this process believes it holds:
    /// a take-over cancelled just after the catalog granted it must not leave the lease behind, and a release
    /// by an owner that does not hold it changes nothing.
    owner: String,
    /// Takes the lease over once another restore lets it go.
    taking_over: Option<tokio::task::JoinHandle<()>>,
    /// Why there is no hold, for the operator.
    pub note: Option<String>,
}

impl RestoreJob {
    /// Holds the target's purge off until [`PurgeHold::release`].
    pub async fn hold_off_purge(&self, target: &str) -> PurgeHold {
        self.hold_off_purge_waiting(target, WAIT_FOR_PURGE).await
    }

    pub(super) async fn hold_off_purge_waiting(&self, target: &str, patience: Duration) -> PurgeHold {
        let owner = format!("{OWNER_PREFIX}{}", uuid::Uuid::new_v4());
        let waited_since = tokio::time::Instant::now();
        loop {
            let request = lease_request(target, Job::Purge, &owner, Utc::now(), HOLD_FOR);
            let outcome = self.deps.catalog.acquire_lease(&request).await;
            let (taking_over, note) = match outcome {
                Ok(LeaseOutcome::Acquired) => (None, None),
                Ok(LeaseOutcome::HeldBy { owner: other, .. }) if other.starts_with(OWNER_PREFIX) => {
                    // Another restore's hold covers this one until it ends; then this one takes the lease over.
                    let task = take_over(self.deps.catalog.clone(), target.to_string(), owner.clone());
                    (Some(task), None)
                }
                Ok(LeaseOutcome::HeldBy { owner: other, expires_at }) => {
                    if waited_since.elapsed() < patience {
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    let note = format!(
                        "a purge of {target} ({other}) still holds its lease (until {expires_at}) after {} s: \
                         restoring anyway; if it deletes the backup being read, the restore fails and says so",
                        patience.as_secs()
                    );
                    (None, Some(note))
                }
                Err(e) => {
                    let note = format!(
                        "could not hold off {target}'s purge ({e}): a purge that runs during this restore could \
                         delete an old backup it reads"
                    );
                    (None, Some(note))
                }
            };
            return PurgeHold { target: target.to_string(), owner, taking_over, note };
        }
    }
}

/// Tries the lease every [`TAKE_OVER_EVERY`] until it is free, then holds it as `owner`.
fn take_over(catalog: Arc<dyn Catalog>, target: String, owner: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TAKE_OVER_EVERY).await;
            let request = lease_request(&target, Job::Purge, &owner, Utc::now(), HOLD_FOR);
            if let Ok(LeaseOutcome::Acquired) = catalog.acquire_lease(&request).await {
                return;
            }
        }
    })
}

impl PurgeHold {
    /// Lets purges run again (when this restore holds the lease: another's is left alone). A release that fails
    /// leaves the lease to expire by itself.
    pub async fn release(self, job: &RestoreJob) {
        if let Some(task) = &self.taking_over {
            task.abort();
        }
        if let Err(e) = job.deps.catalog.release_lease(&self.target, Job::Purge, &self.owner).await {
            tracing::warn!(error = %e, target = %self.target, "could not release the restore's hold on purge");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::memory::{MemoryCatalog, MemoryStore};
    use crate::jobs::restore::RestoreDeps;
    use crate::jobs::test_support::{target, test_config};
    use crate::ports::{LeaseRequest, Leases};

    fn job(catalog: &MemoryCatalog) -> RestoreJob {
        let deps = RestoreDeps {
            store: Arc::new(MemoryStore::default()),
            catalog: Arc::new(catalog.clone()),
            restorer: Arc::new(crate::adapters::memory::ScriptedRestorer::default()),
            passwords: Arc::new(crate::passwords::PasswordResolver::new(
                Arc::new(crate::adapters::memory::MemorySecrets::default()),
                Default::default(),
            )),
        };
        RestoreJob::new(Arc::new(test_config(vec![target("orders")])), deps)
    }

    #[tokio::test]
    async fn a_restore_holds_the_purge_lease_until_it_releases_it() {
        let catalog = MemoryCatalog::default();
        let job = job(&catalog);
        let hold = job.hold_off_purge("orders").await;
        assert!(hold.note.is_none());
        let holder = catalog.lease_holder("orders", Job::Purge).expect("held");
        assert!(holder.starts_with(OWNER_PREFIX), "{holder}");
        // A second restore rides on the first's hold.
        let second = job.hold_off_purge("orders").await;
        assert!(second.taking_over.is_some() && second.note.is_none());
        second.release(&job).await;
        assert_eq!(catalog.lease_holder("orders", Job::Purge).as_deref(), Some(holder.as_str()));
        hold.release(&job).await;
        assert_eq!(catalog.lease_holder("orders", Job::Purge), None);
    }

    /// A second restore of the target takes the lease over when the first lets it go, so its backup stays held.
    #[tokio::test(start_paused = true)]
    async fn a_second_restore_takes_the_hold_over_when_the_first_ends() {
        let catalog = MemoryCatalog::default();
        let job = job(&catalog);
        let first = job.hold_off_purge("orders").await;
        let second = job.hold_off_purge("orders").await;
        first.release(&job).await;
        assert_eq!(catalog.lease_holder("orders", Job::Purge), None);
        tokio::time::sleep(TAKE_OVER_EVERY * 2).await;
        let holder = catalog.lease_holder("orders", Job::Purge).expect("taken over");
        assert_eq!(second.owner, holder);
        second.release(&job).await;
        assert_eq!(catalog.lease_holder("orders", Job::Purge), None);
    }

    #[tokio::test]
    async fn a_purge_that_outlasts_the_wait_and_a_silent_catalog_are_said() {
        let catalog = MemoryCatalog::default();
        let job = job(&catalog);
        let now = Utc::now();
        let purge = LeaseRequest {
            target: "orders".into(),
            job: Job::Purge,
            owner: "purge-run".into(),
            now,
            expires_at: now + chrono::Duration::minutes(5),
        };
        catalog.acquire_lease(&purge).await.unwrap();
        let hold = job.hold_off_purge_waiting("orders", Duration::ZERO).await;
        assert!(hold.note.as_deref().is_some_and(|n| n.contains("purge-run")), "{:?}", hold.note);
        catalog.release_lease("orders", Job::Purge, "purge-run").await.unwrap();

        catalog.faults.fail("acquire_lease");
        let hold = job.hold_off_purge("orders").await;
        assert!(hold.note.as_deref().is_some_and(|n| n.contains("could not hold off")), "{:?}", hold.note);
    }
}
