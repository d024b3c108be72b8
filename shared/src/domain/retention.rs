//! Retention: which of a target's backups the purge job keeps, deletes or cleans up, and why.
//!
//! [`decide`] is a pure function of the target's backup records, its [`RetentionPolicy`], the clock and a little
//! context (is `--force` given, which backups a restore drill is reading). It returns one [`Decision`] per
//! record, newest first, each with the sentences `backstop purge --dry-run` prints, so an operator can check a
//! plan before anything goes. The purge job carries the plan out; nothing here touches storage.
//!
//! # What the policy keeps
//!
//! Good backups (status `completed` or `verified`) are the restore points the rules choose among. Like restic's
//! `forget --keep-daily` and friends:
//!
//! - `daily = N`: for each of the N most recent local days that have a good backup, that day's newest good
//!   backup. `weekly` (ISO weeks, Monday to Sunday), `monthly` and `yearly` do the same with longer periods.
//!   Only periods with a good backup count, so a gap in the history (a paused schedule, a week of failures)
//!   never pushes an old backup out by itself: the window reaches further back instead.
//! - `min_keep = N`: the N newest good backups, whatever their days.
//! - Days, weeks, months and years are those of the policy's `time_zone` (IANA name, UTC by default): a backup
//!   at 23:30 UTC belongs to the next day in Berlin, and a 23- or 25-hour day at a DST change is still one day.
//!
//! A backup kept by several rules lists every one in its reasons. A good backup no rule keeps is
//! [`Action::Delete`]d, with a reason per rule saying why that rule passed it over.
//!
//! # Other statuses
//!
//! - `verify_failed`: it failed its restore drill, so it is not a restore point: it never satisfies a rule and
//!   never fills a period. It is kept for investigation while it is inside the daily window, i.e. until
//!   `max(daily, 1)` later local days have a good backup, then deleted. So it is never deleted before a good
//!   backup has replaced it, and a run of failing drills deletes none of them until good backups return.
//! - `in_progress`: kept, always.
//! - `failed`: its leftovers (record, stray objects) are [`Action::CleanUp`]: always, whatever the rails say
//!   below, and they count for nothing (not live, not deletions).
//! - `purging`: an earlier purge stopped part-way; [`Action::Finish`] it.
//! - `purged`: nothing is left; [`Action::Skip`].
//!
//! # Safety rails: these win over the policy
//!
//! - The newest `verified` backup is never deleted: it is the one restore point proven to restore.
//! - A backup dated after `now` is kept, since one of the clocks is wrong and its age is unknown, and it is
//!   left out of the rules, so it cannot take the slot of a backup with a believable date.
//! - A backup in [`DecideContext::being_verified`] (a restore drill has not finished with it) is neither
//!   deleted, cleaned up nor finished until the drill ends.
//! - If the deletions outnumber `max_delete_fraction` × the live backups (all but `failed` and `purged`), a
//!   policy edit or a bad clock is the likelier story than genuine expiry: unless `force`, every `Delete`
//!   becomes `Keep` and [`RetentionPlan::refused`] says why. Clean-ups and finishes still go ahead.
//! - A policy that fails [`RetentionPolicy::validate`] deletes nothing, even with `force`.
//!
//! The plan does not depend on the order of the records: they are sorted newest first, ties broken on the
//! backup id.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};

use super::backup::{BackupId, BackupRecord, BackupStatus};

/// How many backups a target keeps: its `[targets.retention]` table. Every key is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// The newest good backup of each of this many most recent days that have one.
    pub daily: u32,
    /// The same for ISO weeks.
    pub weekly: u32,
    /// The same for calendar months.
    pub monthly: u32,
    /// The same for calendar years.
    pub yearly: u32,
    /// This many newest good backups are kept whatever the rules above say.
    pub min_keep: u32,
    /// Where days begin: an IANA name such as `Europe/Berlin`.
    #[serde(deserialize_with = "time_zone_by_name")]
    pub time_zone: Tz,
    /// The largest share of a target's live backups one run may delete without `--force`; in (0, 1].
    pub max_delete_fraction: f64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy { daily: 30, weekly: 0, monthly: 12, yearly: 0, min_keep: 3, time_zone: Tz::UTC, max_delete_fraction: 0.5 }
    }
}

fn time_zone_by_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse::<Tz>().map_err(|_| {
        serde::de::Error::custom(format!("unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""))
    })
}

impl RetentionPolicy {
    /// Refuses a policy that would keep nothing or whose deletion limit means nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.daily == 0 && self.weekly == 0 && self.monthly == 0 && self.yearly == 0 && self.min_keep == 0 {
            return Err("the policy keeps nothing: set at least one of daily, weekly, monthly, yearly or min_keep \
                        above 0 (for example daily = 30)"
                .into());
        }
        // Written so that NaN fails too.
        let in_range = self.max_delete_fraction > 0.0 && self.max_delete_fraction <= 1.0;
        if !in_range {
            return Err(format!(
                "max_delete_fraction = {} must be above 0 and at most 1: it is the largest share of a target's live \
                 backups one run may delete without --force (default 0.5)",
                self.max_delete_fraction
            ));
        }
        Ok(())
    }

    /// How many deletions one run may make among `live` backups without `--force`.
    fn deletion_limit(&self, live: usize) -> usize {
        // The epsilon stops 0.29 × 100 = 28.999… from costing a deletion.
        (self.max_delete_fraction * live as f64 + 1e-9).floor() as usize
    }
}

/// What [`decide`] needs besides the records, the policy and the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecideContext {
    /// `--force`: delete even past `max_delete_fraction`.
    pub force: bool,
    /// Backups with an unfinished restore drill.
    pub being_verified: BTreeSet<BackupId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    /// A live backup the policy no longer keeps: its objects go, then its record becomes `purged`.
    Delete,
    /// A failed backup's leftovers; never counted as a deletion.
    CleanUp,
    /// A `purging` backup whose purge an earlier run did not finish.
    Finish,
    /// A `purged` backup: nothing left to do.
    Skip,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
            Action::CleanUp => "clean_up",
            Action::Finish => "finish",
            Action::Skip => "skip",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub backup_id: BackupId,
    pub status: BackupStatus,
    pub started_at: DateTime<Utc>,
    pub action: Action,
    /// Sentences for the operator, every one that applies.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionPlan {
    /// One per input record, newest first.
    pub decisions: Vec<Decision>,
    /// Set when deletions were held back (too many without `--force`, or an invalid policy), saying why.
    pub refused: Option<String>,
}

impl RetentionPlan {
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(move |d| d.action == action)
    }
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    const ALL: [Rule; 4] = [Rule::Daily, Rule::Weekly, Rule::Monthly, Rule::Yearly];

    fn name(self) -> &'static str {
        match self {
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    fn count(self, policy: &RetentionPolicy) -> usize {
        let n = match self {
            Rule::Daily => policy.daily,
            Rule::Weekly => policy.weekly,
            Rule::Monthly => policy.monthly,
            Rule::Yearly => policy.yearly,
        };
        n as usize
    }

    fn units(self) -> &'static str {
        match self {
            Rule::Daily => "days",
            Rule::Weekly => "weeks",
            Rule::Monthly => "months",
            Rule::Yearly => "years",
        }
    }

    /// The period a local date falls in, named as the operator reads it; the name is also its identity.
    fn period(self, date: NaiveDate) -> String {
        match self {
            Rule::Daily => date.format("%Y-%m-%d").to_string(),
            Rule::Weekly => {
                // The ISO year, not the calendar one: 2027-01-01 is in week 2026-W53.
                let week = date.iso_week();
                format!("week {}-W{:02}", week.year(), week.week())
            }
            Rule::Monthly => date.format("%Y-%m").to_string(),
            Rule::Yearly => date.format("%Y").to_string(),
        }
    }
}

fn is_good(status: BackupStatus) -> bool {
    matches!(status, BackupStatus::Completed | BackupStatus::Verified)
}

/// The retention plan for one target's records: see the module header for the rules and rails.
pub fn decide(records: &[BackupRecord], policy: &RetentionPolicy, now: DateTime<Utc>, context: &DecideContext) -> RetentionPlan {
    let mut sorted: Vec<&BackupRecord> = records.iter().collect();
    // The status only breaks ties between duplicate records, so that no input order can change the plan.
    sorted.sort_by(|a, b| (b.started_at, &b.backup_id, b.status.as_str()).cmp(&(a.started_at, &a.backup_id, a.status.as_str())));

    let local_day = |r: &BackupRecord| r.started_at.with_timezone(&policy.time_zone).date_naive();
    let in_future = |r: &BackupRecord| r.started_at > now;

    // Indices into `sorted`, newest first, of the backups the rules choose among.
    let points: Vec<usize> = (0..sorted.len()).filter(|&i| is_good(sorted[i].status) && !in_future(sorted[i])).collect();
    let mut kept_by: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    let mut passed_over: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];

    for rule in Rule::ALL {
        let n = rule.count(policy);
        if n == 0 {
            continue;
        }
        // (period, index of its newest backup), newest period first: walking newest first, the first backup met
        // in a period is its newest, and a period's backups are consecutive because local time only moves on.
        let mut periods: Vec<(String, usize)> = Vec::new();
        for &i in &points {
            let period = rule.period(local_day(sorted[i]));
            match periods.last() {
                Some((last, newest)) if *last == period => {
                    passed_over[i].push(format!("{}: {period} has a newer backup ({})", rule.name(), sorted[*newest].backup_id));
                }
                _ => periods.push((period, i)),
            }
        }
        let Some((reach, _)) = periods.get(n.min(periods.len()).saturating_sub(1)) else { continue };
        for (rank, (period, i)) in periods.iter().enumerate() {
            if rank < n {
                kept_by[*i].push(format!("newest backup of {period} ({} {} of {n})", rule.name(), rank + 1));
            } else {
                passed_over[*i].push(format!(
                    "{}: {period} is older than the {n} most recent {} with backups, which reach back to {reach}",
                    rule.name(),
                    rule.units()
                ));
            }
        }
    }

    let min_keep = policy.min_keep as usize;
    if min_keep > 0 {
        for (rank, &i) in points.iter().enumerate() {
            if rank < min_keep {
                kept_by[i].push(format!("among the {min_keep} newest good backups (min_keep)"));
            } else {
                passed_over[i].push(format!("min_keep: not among the {min_keep} newest good backups"));
            }
        }
    }

    if let Some(&i) = points.iter().find(|&&i| sorted[i].status == BackupStatus::Verified) {
        kept_by[i].push("newest verified backup: never deleted".into());
    }

    // Local days with a good backup, newest first: how far a verify_failed backup has fallen behind.
    let mut good_days: Vec<NaiveDate> = points.iter().map(|&i| local_day(sorted[i])).collect();
    good_days.dedup();
    let investigation_days = policy.daily.max(1) as usize;

    let mut decisions = Vec::with_capacity(sorted.len());
    for (i, r) in sorted.iter().enumerate() {
        let (mut action, mut reasons) = match r.status {
            BackupStatus::Purged => (Action::Skip, vec!["already purged: nothing left to delete".to_string()]),
            BackupStatus::Purging => (Action::Finish, vec!["a previous purge stopped part-way: this run finishes it".into()]),
            BackupStatus::Failed => (Action::CleanUp, vec!["failed backup: its leftovers are cleaned up".into()]),
            BackupStatus::InProgress => (Action::Keep, vec!["in progress: never deleted".into()]),
            _ if in_future(r) => (
                Action::Keep,
                vec![format!(
                    "dated {}, after now ({}): a clock is wrong, so it is kept and left out of the rules",
                    r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    now.format("%Y-%m-%d %H:%M:%S UTC")
                )],
            ),
            BackupStatus::VerifyFailed => {
                let day = local_day(r);
                let later = good_days.iter().take_while(|d| **d > day).count();
                let not_a_restore_point = "failed its restore drill, so it is not a restore point".to_string();
                if later >= investigation_days {
                    let past = format!("{later} later days have good backups: it is past the {investigation_days}-day window kept for investigation");
                    (Action::Delete, vec![not_a_restore_point, past])
                } else {
                    let until = format!("kept for investigation until {investigation_days} later days have good backups ({later} so far)");
                    (Action::Keep, vec![not_a_restore_point, until])
                }
            }
            BackupStatus::Completed | BackupStatus::Verified => {
                if kept_by[i].is_empty() {
                    let mut why = vec!["not kept by any rule".to_string()];
                    why.append(&mut passed_over[i]);
                    (Action::Delete, why)
                } else {
                    (Action::Keep, std::mem::take(&mut kept_by[i]))
                }
            }
        };
        if action != Action::Skip && context.being_verified.contains(&r.backup_id) {
            reasons.push("being verified by a restore drill: kept until the drill ends".into());
            action = Action::Keep;
        }
        decisions.push(Decision { backup_id: r.backup_id.clone(), status: r.status, started_at: r.started_at, action, reasons });
    }

    let deletions = decisions.iter().filter(|d| d.action == Action::Delete).count();
    let live = sorted.iter().filter(|r| !matches!(r.status, BackupStatus::Failed | BackupStatus::Purged)).count();
    let refused = match policy.validate() {
        Err(problem) => Some(format!("the retention policy is not valid, so no backup is deleted: {problem}")),
        Ok(()) => {
            let limit = policy.deletion_limit(live);
            (deletions > limit && !context.force).then(|| {
                format!(
                    "this run would delete {deletions} of {live} live backups, more than max_delete_fraction = {} allows \
                     ({limit}); all {deletions} are kept. Check the retention policy, then re-run with --force to delete them",
                    policy.max_delete_fraction
                )
            })
        }
    };
    // Only a plan that held deletions back is refused; an invalid policy that deletes nothing harms nothing.
    let refused = refused.filter(|_| deletions > 0);
    if let Some(why) = &refused {
        for d in decisions.iter_mut().filter(|d| d.action == Action::Delete) {
            d.action = Action::Keep;
            d.reasons.push(format!("held back: {why}"));
        }
    }

    RetentionPlan { decisions, refused }
}
