//! What every job does the same way, so that each job's module holds only its own decisions: choosing the
//! targets a request names, a lease on a target (taken, kept renewed, released), expiry arithmetic, an alert's
//! subject line, publishing an alert or recording a run without letting a failure stop the run, and the dependencies the
//! simpler jobs share. Each job's alert texts are in its own folder (`alerts.rs`, `texts.rs` for verify).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::config::{Config, TargetConfig};
use crate::domain::discovery::UNIT_SEPARATOR;
use crate::domain::{Job, RunRecord};
use crate::metrics::MetricsSink;
use crate::ports::{
    Alert, Alerts, Catalog, CatalogError, Clock, LeaseOutcome, LeaseRequest, Leases, ObjectStore, Runs,
};

/// What a job that reads the store and the catalog, alerts and emits metrics runs on (purge and monitor; the
/// backup and verify jobs add their own programs and servers to the same five).
#[derive(Clone)]
pub struct JobDeps {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    pub alerts: Arc<dyn Alerts>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn MetricsSink>,
}

/// A request named a target the configuration does not have (an `InvalidEvent` for the Lambda handlers, exit
/// code 2 for the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target {name:?}; configured targets: {known}")]
pub struct UnknownTarget {
    pub name: String,
    pub known: String,
}

/// Every target runs act on (configured ones in the configuration's order, then each server's databases), or
/// those `requested` names: one target, a database of a server target (`<server>.<database>`, as its last
/// discovery found it), or a server target's name for all of its databases.
pub fn select_targets<'a>(config: &'a Config, requested: Option<&str>) -> Result<Vec<&'a TargetConfig>, UnknownTarget> {
    let Some(name) = requested else { return Ok(config.targets.iter().collect()) };
    if let Some(target) = config.target(name) {
        return Ok(vec![target]);
    }
    if config.servers.iter().any(|s| s.name == name) {
        let prefix = format!("{name}{UNIT_SEPARATOR}");
        return Ok(config.targets.iter().filter(|t| t.name.starts_with(&prefix)).collect());
    }
    Err(unknown_target(config, name))
}

/// The error for a name no target has, listing the names that would do.
pub fn unknown_target(config: &Config, name: &str) -> UnknownTarget {
    let mut known: Vec<&str> = config.target_names();
    known.extend(config.servers.iter().map(|s| s.name.as_str()));
    let mut listed = known.join(", ");
    if name.contains(UNIT_SEPARATOR) {
        listed.push_str(" (a database added to a server target is known from the next backup run's discovery)");
    }
    UnknownTarget { name: name.to_string(), known: listed }
}

/// SNS wants subjects shorter than 100 characters, without control characters.
pub fn subject_line(text: &str) -> String {
    const MAX: usize = 99;
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= MAX {
        clean
    } else {
        format!("{}…", clean.chars().take(MAX - 1).collect::<String>())
    }
}

/// Records a finished run. A failure is logged: what the run did is recorded elsewhere (its backups, its
/// alerts); a lost run record is worth a warning, not a failure.
pub async fn record_run_or_warn(runs: &dyn Runs, run: &RunRecord) {
    if let Err(e) = runs.put_run(run).await {
        warn!(error = %e, run_id = %run.run_id, job = run.job.as_str(), "could not record the run");
    }
}

/// Publishes `alert`. A failure is logged and the run goes on: nothing else can carry the message now, and the
/// run's result, its record and the function's error metric still say what happened.
pub async fn publish_or_warn(alerts: &dyn Alerts, alert: &Alert) {
    if let Err(e) = alerts.publish(alert).await {
        warn!(error = %e, subject = %alert.subject, "could not publish the alert");
    }
}

/// A run's lease on one target for one job, taken with [`Lease::take`]. While held it can be kept renewed in
/// the background, so a run that is killed keeps other runs off the target for at most one lease length;
/// [`Lease::release`] gives it back (a lease that cannot be released expires by itself).
pub struct Lease {
    leases: Arc<dyn Leases>,
    target: String,
    job: Job,
    owner: String,
    expires_at: DateTime<Utc>,
    renewing: Option<JoinHandle<()>>,
}

/// Another run holds the lease, until `expires_at` unless it renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Takes `job`'s lease on `target` for `owner` (a run id), for `length` from `now`. `Ok(Err(held))`: another
    /// run holds it.
    pub async fn take(
        leases: Arc<dyn Leases>,
        target: &str,
        job: Job,
        owner: &str,
        now: DateTime<Utc>,
        length: Duration,
    ) -> Result<Result<Lease, HeldBy>, CatalogError> {
        let request = lease_request(target, job, owner, now, length);
        Ok(match leases.acquire_lease(&request).await? {
            LeaseOutcome::Acquired => Ok(Lease {
                leases,
                target: target.to_string(),
                job,
                owner: owner.to_string(),
                expires_at: request.expires_at,
                renewing: None,
            }),
            LeaseOutcome::HeldBy { owner, expires_at } => Err(HeldBy { owner, expires_at }),
        })
    }

    /// When the lease ends unless renewed.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Renews the lease every quarter of `length` until it is released (or dropped). A renewal that fails is
    /// tried again; one that finds the lease taken (only after renewals failed for a whole lease) stops, loudly:
    /// the job's conditional writes then fail, so two runs cannot both act on the target.
    pub fn keep_renewed(&mut self, clock: Arc<dyn Clock>, length: Duration) {
        let (leases, target, job, owner) = (self.leases.clone(), self.target.clone(), self.job, self.owner.clone());
        self.renewing = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(length / 4).await;
                match leases.acquire_lease(&lease_request(&target, job, &owner, clock.now(), length)).await {
                    Ok(LeaseOutcome::Acquired) => {}
                    Ok(LeaseOutcome::HeldBy { owner: other, .. }) => {
                        warn!(target = %target, job = %job.as_str(), other = %other, "lost the lease to another run");
                        return;
                    }
                    Err(e) => {
                        warn!(target = %target, job = %job.as_str(), error = %e, "could not renew the lease; trying again")
                    }
                }
            }
        }));
    }

    /// Stops renewing and gives the lease back. A failure is logged: the lease then expires by itself.
    pub async fn release(mut self) {
        if let Some(renewing) = self.renewing.take() {
            renewing.abort();
        }
        if let Err(e) = self.leases.release_lease(&self.target, self.job, &self.owner).await {
            warn!(error = %e, job = %self.job.as_str(), "could not release the lease; it expires by itself");
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("target", &self.target)
            .field("job", &self.job)
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .field("renewed", &self.renewing.is_some())
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A lease dropped without `release` (a panic, a cancelled run) stops renewing, then expires by itself.
        if let Some(renewing) = self.renewing.take() {
            renewing.abort();
        }
    }
}

/// The request for `job`'s lease on `target`, ending `length` after `now`.
pub fn lease_request(target: &str, job: Job, owner: &str, now: DateTime<Utc>, length: Duration) -> LeaseRequest {
    LeaseRequest { target: target.to_string(), job, owner: owner.to_string(), now, expires_at: expiry(now, length) }
}

/// `now + length`, for leases, claims and scratch servers. A length too long for a date (it cannot be, from
/// a valid configuration) saturates at the far future rather than wrapping into the past.
pub fn expiry(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(length).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryCatalog};
    use chrono::TimeZone;

    const LENGTH: Duration = Duration::from_secs(120);

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_lease_is_one_runs_until_released_then_anothers() {
        let catalog = Arc::new(MemoryCatalog::default());
        let take = |owner: &'static str, at| Lease::take(catalog.clone(), "shop", Job::Backup, owner, at, LENGTH);
        let first = take("run-a", start()).await.unwrap().expect("a free lease is taken");
        assert_eq!(first.expires_at(), start() + chrono::Duration::seconds(120));
        let held = take("run-b", start()).await.unwrap().expect_err("a held lease is refused");
        assert_eq!(held, HeldBy { owner: "run-a".into(), expires_at: first.expires_at() });
        // Another job's lease on the same target is another lease.
        assert!(Lease::take(catalog.clone(), "shop", Job::Verify, "run-b", start(), LENGTH).await.unwrap().is_ok());
        first.release().await;
        assert!(take("run-b", start()).await.unwrap().is_ok(), "a released lease is free");
    }

    #[tokio::test]
    async fn a_lease_not_released_expires_by_itself() {
        let catalog = Arc::new(MemoryCatalog::default());
        let crashed = Lease::take(catalog.clone(), "shop", Job::Backup, "run-a", start(), LENGTH).await.unwrap();
        drop(crashed);
        let later = start() + chrono::Duration::seconds(121);
        assert!(Lease::take(catalog.clone(), "shop", Job::Backup, "run-b", later, LENGTH).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_renewed_lease_outlives_its_first_length_and_stops_renewing_once_released() {
        // Short in real time (renewals every 50 ms); the clock jumps far past the first expiry.
        const SHORT: Duration = Duration::from_millis(200);
        let catalog = Arc::new(MemoryCatalog::default());
        let clock = FixedClock::at(start());
        let mut lease =
            Lease::take(catalog.clone(), "shop", Job::Verify, "run-a", start(), SHORT).await.unwrap().unwrap();
        lease.keep_renewed(Arc::new(clock.clone()), SHORT);
        clock.advance(chrono::Duration::seconds(60));
        // Many renewal periods: on a loaded machine the first few may come late.
        tokio::time::sleep(SHORT * 5).await;
        let now = clock.now();
        let held = Lease::take(catalog.clone(), "shop", Job::Verify, "run-b", now, SHORT).await.unwrap();
        assert!(held.is_err(), "without renewals the lease would have ended at {}", lease.expires_at());
        lease.release().await;
        tokio::time::sleep(SHORT).await;
        assert!(Lease::take(catalog.clone(), "shop", Job::Verify, "run-b", now, SHORT).await.unwrap().is_ok());
    }

    #[test]
    fn subjects_fit_sns_limits() {
        let long = "x".repeat(300) + "\nsecond line";
        let s = subject_line(&long);
        assert!(s.chars().count() < 100 && !s.contains('\n'));
    }

    #[test]
    fn an_expiry_too_far_for_a_date_saturates_instead_of_wrapping() {
        assert_eq!(expiry(start(), Duration::from_secs(60)), start() + chrono::Duration::seconds(60));
        assert_eq!(expiry(start(), Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
