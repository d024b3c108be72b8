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
//! - a good backup in [`DecideContext::hidden`] (a delete marker or a newer version hides a version it recorded):
//!   not a restore point either, since drills and restores refuse a version that is not current; kept for
//!   investigation exactly as long as a `verify_failed` backup.
//! - `lost` (purge found objects it recorded gone from the bucket): not a restore point either. It is kept, with
//!   whatever objects are left, until a person has looked: what is left may be the only copy of that day (a
//!   dump whose manifest was deleted still restores by hand), so no rule ever deletes it.
//! - `in_progress`: kept, always.
//! - `failed`: its stray objects are [`Action::CleanUp`]ed (the record stays, as history): always, whatever the rails say
//!   below, and they count for nothing (not live, not deletions).
//! - `purging`: an earlier purge stopped part-way; [`Action::Finish`] it.
//! - `purged`: nothing is left; [`Action::Skip`].
//!
//! # Safety rails: these win over the policy
//!
//! - The newest `verified` backup is never deleted: it is the one restore point proven to restore. (If it is
//!   dated in the future, the rail below keeps it, and this one protects the newest verified backup that is not.)
//! - A backup dated after `now` is kept, since one of the clocks is wrong and its age is unknown, and it is
//!   left out of the rules, so it cannot take the slot of a backup with a believable date.
//! - A backup in [`DecideContext::being_verified`] (a restore drill has not finished with it) is neither
//!   deleted, cleaned up nor finished until the drill ends.
//! - If the deletions outnumber `max_delete_fraction` × the live backups (all but `failed`, `purged` and `lost`), a
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
        RetentionPolicy {
            daily: 30,
            weekly: 0,
            monthly: 12,
            yearly: 0,
            min_keep: 3,
            time_zone: Tz::UTC,
            max_delete_fraction: 0.5,
        }
    }
}

fn time_zone_by_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse::<Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""
        ))
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
    /// Good backups whose recorded object versions a delete marker or a newer version hides: still in the bucket,
    /// but drills and `backstop restore` refuse a version that is not current, so they are not restore points.
    pub hidden: BTreeSet<BackupId>,
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

    fn unit(self) -> &'static str {
        match self {
            Rule::Daily => "day",
            Rule::Weekly => "week",
            Rule::Monthly => "month",
            Rule::Yearly => "year",
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

/// "3 later days have good backups", singular when it is one.
fn later_days(n: usize) -> String {
    if n == 1 {
        "1 later day has a good backup".into()
    } else {
        format!("{n} later days have good backups")
    }
}

fn is_good(status: BackupStatus) -> bool {
    matches!(status, BackupStatus::Completed | BackupStatus::Verified)
}

/// The retention plan for one target's records: see the module header for the rules and rails.
pub fn decide(
    records: &[BackupRecord],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    context: &DecideContext,
) -> RetentionPlan {
    let mut sorted: Vec<&BackupRecord> = records.iter().collect();
    // The status only breaks ties between duplicate records, so that no input order can change the plan.
    sorted.sort_by(|a, b| {
        (b.started_at, &b.backup_id, b.status.as_str()).cmp(&(a.started_at, &a.backup_id, a.status.as_str()))
    });

    let local_day = |r: &BackupRecord| r.started_at.with_timezone(&policy.time_zone).date_naive();
    let in_future = |r: &BackupRecord| r.started_at > now;

    // Indices into `sorted`, newest first, of the backups the rules choose among.
    let hidden = |r: &BackupRecord| context.hidden.contains(&r.backup_id);
    let points: Vec<usize> = (0..sorted.len())
        .filter(|&i| is_good(sorted[i].status) && !in_future(sorted[i]) && !hidden(sorted[i]))
        .collect();
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
                    passed_over[i].push(format!(
                        "{}: {period} has a newer backup ({})",
                        rule.name(),
                        sorted[*newest].backup_id
                    ));
                }
                _ => periods.push((period, i)),
            }
        }
        let Some((reach, _)) = periods.get(n.min(periods.len()).saturating_sub(1)) else { continue };
        for (rank, (period, i)) in periods.iter().enumerate() {
            if rank < n {
                kept_by[*i].push(format!("newest backup of {period} ({} {} of {n})", rule.name(), rank + 1));
            } else if n == 1 {
                passed_over[*i].push(format!(
                    "{}: {period} is older than {reach}, the most recent {} with backups",
                    rule.name(),
                    rule.unit()
                ));
            } else {
                passed_over[*i].push(format!(
                    "{}: {period} is older than the {n} most recent {}s with backups, which reach back to {reach}",
                    rule.name(),
                    rule.unit()
                ));
            }
        }
    }

    let min_keep = policy.min_keep as usize;
    if min_keep > 0 {
        let (kept, not_kept) = if min_keep == 1 {
            ("the newest good backup (min_keep)".to_string(), "min_keep: not the newest good backup".to_string())
        } else {
            (
                format!("among the {min_keep} newest good backups (min_keep)"),
                format!("min_keep: not among the {min_keep} newest good backups"),
            )
        };
        for (rank, &i) in points.iter().enumerate() {
            if rank < min_keep {
                kept_by[i].push(kept.clone());
            } else {
                passed_over[i].push(not_kept.clone());
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
    // A backup that is not a restore point, though it completed: kept while `investigation_days` later days have
    // no good backup, then deleted.
    let investigated = |r: &BackupRecord, not_a_restore_point: String| {
        let day = local_day(r);
        let later = good_days.iter().take_while(|d| **d > day).count();
        if later >= investigation_days {
            let past =
                format!("{}: it is past the {investigation_days}-day window kept for investigation", later_days(later));
            (Action::Delete, vec![not_a_restore_point, past])
        } else {
            let until = format!("kept for investigation until {} ({later} so far)", later_days(investigation_days));
            (Action::Keep, vec![not_a_restore_point, until])
        }
    };

    let mut decisions = Vec::with_capacity(sorted.len());
    for (i, r) in sorted.iter().enumerate() {
        let (mut action, mut reasons) = match r.status {
            BackupStatus::Purged => (Action::Skip, vec!["already purged: nothing left to delete".to_string()]),
            BackupStatus::Purging => {
                (Action::Finish, vec!["a previous purge stopped part-way: this run finishes it".into()])
            }
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
            BackupStatus::Lost => (
                Action::Keep,
                vec![
                    "lost: objects it recorded are gone from the bucket, so it is not a restore point".into(),
                    "what is left of it is kept until a person has looked: purge never deletes a lost backup".into(),
                ],
            ),
            BackupStatus::VerifyFailed => {
                investigated(r, "failed its restore drill, so it is not a restore point".into())
            }
            BackupStatus::Completed | BackupStatus::Verified if hidden(r) => investigated(
                r,
                "its recorded versions are hidden by a delete marker or a newer version, which drills and restores \
                 refuse, so it is not a restore point"
                    .into(),
            ),
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
        decisions.push(Decision {
            backup_id: r.backup_id.clone(),
            status: r.status,
            started_at: r.started_at,
            action,
            reasons,
        });
    }

    let deletions = decisions.iter().filter(|d| d.action == Action::Delete).count();
    // Lost backups are never deleted, so counting them would loosen the rail a little more with each one.
    let live = sorted
        .iter()
        .filter(|r| !matches!(r.status, BackupStatus::Failed | BackupStatus::Purged | BackupStatus::Lost))
        .count();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::codec::Codec;
    use crate::domain::run::Trigger;
    use chrono::NaiveDateTime;
    use BackupStatus::*;

    /// A minute in UTC: `2026-11-21 02:00`.
    fn at(minute: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(minute, "%Y-%m-%d %H:%M").unwrap_or_else(|e| panic!("{minute}: {e}")).and_utc()
    }

    /// A backup named by its UTC start (`2026-11-21 02:00`); a ` #2` suffix tells apart backups started in the
    /// same second (it becomes the id's random part).
    fn backup(name: &str, status: BackupStatus) -> BackupRecord {
        let (minute, n) = match name.split_once(" #") {
            Some((minute, n)) => (minute, n.parse::<u32>().unwrap()),
            None => (name, 0),
        };
        let started_at = at(minute);
        let id = BackupId(format!("{}-{n:08x}", started_at.format("%Y%m%dT%H%M%SZ")));
        let mut record = BackupRecord::in_progress("orders", id, Trigger::Schedule, "run-1", started_at, Codec::Zstd);
        record.status = status;
        record
    }

    /// The name [`backup`] was given.
    fn name(id: &BackupId) -> String {
        let (stamp, n) = id.as_str().split_once('-').unwrap();
        let minute =
            NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap().format("%Y-%m-%d %H:%M").to_string();
        match u32::from_str_radix(n, 16).unwrap() {
            0 => minute,
            n => format!("{minute} #{n}"),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn backups(list: &[(&str, BackupStatus)]) -> Vec<(String, BackupStatus)> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    /// One backup a day at 02:00 UTC from `first` to `last`, both included, oldest first.
    fn daily_at_two(first: &str, last: &str) -> Vec<String> {
        let first = NaiveDate::parse_from_str(first, "%Y-%m-%d").unwrap();
        let last = NaiveDate::parse_from_str(last, "%Y-%m-%d").unwrap();
        first.iter_days().take_while(|d| *d <= last).map(|d| format!("{d} 02:00")).collect()
    }

    /// Every count 0 (so invalid until a case sets one), UTC, the default fraction.
    fn bare() -> RetentionPolicy {
        RetentionPolicy { daily: 0, weekly: 0, monthly: 0, yearly: 0, min_keep: 0, ..RetentionPolicy::default() }
    }

    /// GIVEN `policy`, `backups`, `now` and the context, WHEN deciding, THEN exactly these backups get each
    /// action, `refused` is exactly this, and each listed backup carries the listed reason word for word.
    struct Case {
        name: &'static str,
        policy: RetentionPolicy,
        now: &'static str,
        backups: Vec<(String, BackupStatus)>,
        being_verified: Vec<&'static str>,
        hidden: Vec<&'static str>,
        force: bool,
        keep: Vec<String>,
        delete: Vec<String>,
        clean_up: Vec<String>,
        finish: Vec<String>,
        skip: Vec<String>,
        refused: Option<&'static str>,
        reasons: Vec<(&'static str, &'static str)>,
    }

    fn case(name: &'static str) -> Case {
        Case {
            name,
            policy: bare(),
            now: "2026-11-21 12:00",
            backups: Vec::new(),
            being_verified: Vec::new(),
            hidden: Vec::new(),
            force: false,
            keep: Vec::new(),
            delete: Vec::new(),
            clean_up: Vec::new(),
            finish: Vec::new(),
            skip: Vec::new(),
            refused: None,
            reasons: Vec::new(),
        }
    }

    fn records(case: &Case) -> Vec<BackupRecord> {
        case.backups.iter().map(|(n, s)| backup(n, *s)).collect()
    }

    fn plan(case: &Case, records: &[BackupRecord]) -> RetentionPlan {
        let being_verified = case.being_verified.iter().map(|n| backup(n, Completed).backup_id).collect();
        let hidden = case.hidden.iter().map(|n| backup(n, Completed).backup_id).collect();
        decide(records, &case.policy, at(case.now), &DecideContext { force: case.force, being_verified, hidden })
    }

    fn check(cases: Vec<Case>) {
        for case in &cases {
            let plan = plan(case, &records(case));
            assert_eq!(plan.decisions.len(), case.backups.len(), "{}: one decision per backup", case.name);
            let expected = [
                (Action::Keep, &case.keep),
                (Action::Delete, &case.delete),
                (Action::CleanUp, &case.clean_up),
                (Action::Finish, &case.finish),
                (Action::Skip, &case.skip),
            ];
            for (action, want) in expected {
                let got: BTreeSet<String> = plan.with_action(action).map(|d| name(&d.backup_id)).collect();
                let want: BTreeSet<String> = want.iter().cloned().collect();
                assert_eq!(got, want, "{}: the backups to {action}", case.name);
            }
            assert_eq!(plan.refused.as_deref(), case.refused, "{}: refused", case.name);
            for (backup, reason) in &case.reasons {
                let d = plan
                    .decisions
                    .iter()
                    .find(|d| name(&d.backup_id) == *backup)
                    .unwrap_or_else(|| panic!("{}: no {backup}", case.name));
                assert!(
                    d.reasons.iter().any(|r| r == reason),
                    "{}: {backup} ({}) has reasons {:?}, not {reason:?}",
                    case.name,
                    d.action,
                    d.reasons
                );
            }
            assert!(plan.decisions.iter().all(|d| !d.reasons.is_empty()), "{}: a decision without a reason", case.name);
            let newest_first = plan
                .decisions
                .windows(2)
                .all(|w| (w[0].started_at, &w[0].backup_id) > (w[1].started_at, &w[1].backup_id));
            assert!(newest_first, "{}: decisions are not newest first", case.name);
        }
    }

    fn calendar_cases() -> Vec<Case> {
        let history = daily_at_two("2025-06-01", "2026-11-30");
        let month_ends = [
            "2025-12-31",
            "2026-01-31",
            "2026-02-28",
            "2026-03-31",
            "2026-04-30",
            "2026-05-31",
            "2026-06-30",
            "2026-07-31",
            "2026-08-31",
            "2026-09-30",
            "2026-10-31",
        ];
        let kept: Vec<String> = daily_at_two("2026-11-01", "2026-11-30")
            .into_iter()
            .chain(month_ends.iter().map(|d| format!("{d} 02:00")))
            .collect();
        let expired: Vec<String> = history.iter().filter(|n| !kept.contains(n)).cloned().collect();
        assert_eq!((history.len(), kept.len(), expired.len()), (548, 41, 507));
        let eighteen_months = || history.iter().map(|n| (n.clone(), Completed)).collect::<Vec<_>>();
        let month_end_backups = || {
            let days = [
                "2027-01-30",
                "2027-01-31",
                "2027-02-27",
                "2027-02-28",
                "2027-04-29",
                "2027-04-30",
                "2028-02-28",
                "2028-02-29",
                "2028-03-30",
                "2028-03-31",
            ];
            days.iter().map(|d| (format!("{d} 02:00"), Completed)).collect::<Vec<_>>()
        };
        vec![
            Case {
                policy: RetentionPolicy::default(),
                now: "2026-11-30 12:00",
                backups: eighteen_months(),
                force: true,
                keep: kept.clone(),
                delete: expired,
                reasons: vec![
                    ("2026-11-30 02:00", "newest backup of 2026-11-30 (daily 1 of 30)"),
                    ("2026-11-30 02:00", "newest backup of 2026-11 (monthly 1 of 12)"),
                    ("2026-11-30 02:00", "among the 3 newest good backups (min_keep)"),
                    ("2026-11-21 02:00", "newest backup of 2026-11-21 (daily 10 of 30)"),
                    ("2026-02-28 02:00", "newest backup of 2026-02 (monthly 10 of 12)"),
                    ("2025-12-31 02:00", "newest backup of 2025-12 (monthly 12 of 12)"),
                    ("2026-10-30 02:00", "not kept by any rule"),
                    ("2026-10-30 02:00", "daily: 2026-10-30 is older than the 30 most recent days with backups, which reach back to 2026-11-01"),
                    ("2026-10-30 02:00", "monthly: 2026-10 has a newer backup (20261031T020000Z-00000000)"),
                    ("2026-10-30 02:00", "min_keep: not among the 3 newest good backups"),
                    ("2025-11-30 02:00", "monthly: 2025-11 is older than the 12 most recent months with backups, which reach back to 2025-12"),
                ],
                ..case("18 months of daily backups, default policy, --force: 30 dailies and 12 month ends")
            },
            Case {
                policy: RetentionPolicy::default(),
                now: "2026-11-30 12:00",
                backups: eighteen_months(),
                keep: history.clone(),
                refused: Some(
                    "this run would delete 507 of 548 live backups, more than max_delete_fraction = 0.5 allows (274); all 507 are kept. \
                     Check the retention policy, then re-run with --force to delete them",
                ),
                ..case("18 months of daily backups, default policy, no --force: the fraction rail holds all back")
            },
            Case {
                policy: RetentionPolicy { monthly: 12, ..bare() },
                now: "2028-04-01 12:00",
                backups: month_end_backups(),
                keep: names(&["2027-01-31 02:00", "2027-02-28 02:00", "2027-04-30 02:00", "2028-02-29 02:00", "2028-03-31 02:00"]),
                delete: names(&["2027-01-30 02:00", "2027-02-27 02:00", "2027-04-29 02:00", "2028-02-28 02:00", "2028-03-30 02:00"]),
                reasons: vec![
                    ("2028-02-29 02:00", "newest backup of 2028-02 (monthly 2 of 12)"),
                    ("2027-01-31 02:00", "newest backup of 2027-01 (monthly 5 of 12)"),
                    ("2027-02-27 02:00", "monthly: 2027-02 has a newer backup (20270228T020000Z-00000000)"),
                ],
                ..case("month ends: the 31st, the 30th, Feb 28 and leap Feb 29; 5 of 10 deletions is exactly the limit")
            },
            Case {
                policy: RetentionPolicy { monthly: 3, max_delete_fraction: 1.0, ..bare() },
                now: "2028-04-01 12:00",
                backups: month_end_backups(),
                keep: names(&["2027-04-30 02:00", "2028-02-29 02:00", "2028-03-31 02:00"]),
                delete: names(&[
                    "2027-01-30 02:00", "2027-01-31 02:00", "2027-02-27 02:00", "2027-02-28 02:00", "2027-04-29 02:00", "2028-02-28 02:00", "2028-03-30 02:00",
                ]),
                reasons: vec![
                    ("2027-04-30 02:00", "newest backup of 2027-04 (monthly 3 of 3)"),
                    ("2027-02-28 02:00", "monthly: 2027-02 is older than the 3 most recent months with backups, which reach back to 2027-04"),
                ],
                ..case("a gap of nine empty months does not count against monthly = 3")
            },
            Case {
                policy: RetentionPolicy { daily: 3, max_delete_fraction: 1.0, ..bare() },
                now: "2028-03-01 12:00",
                backups: backups(&[
                    ("2028-02-27 02:00", Completed),
                    ("2028-02-28 02:00", Completed),
                    ("2028-02-29 02:00", Completed),
                    ("2028-02-29 14:00", Completed),
                    ("2028-03-01 02:00", Completed),
                ]),
                keep: names(&["2028-03-01 02:00", "2028-02-29 14:00", "2028-02-28 02:00"]),
                delete: names(&["2028-02-29 02:00", "2028-02-27 02:00"]),
                reasons: vec![
                    ("2028-02-29 14:00", "newest backup of 2028-02-29 (daily 2 of 3)"),
                    ("2028-02-29 02:00", "daily: 2028-02-29 has a newer backup (20280229T140000Z-00000000)"),
                    ("2028-02-27 02:00", "daily: 2028-02-27 is older than the 3 most recent days with backups, which reach back to 2028-02-28"),
                ],
                ..case("leap day 2028-02-29 is a day of its own")
            },
            Case {
                policy: RetentionPolicy { weekly: 2, max_delete_fraction: 1.0, ..bare() },
                now: "2027-01-06 12:00",
                backups: backups(&[
                    ("2027-01-05 02:00", Completed),
                    ("2027-01-04 02:00", Completed),
                    ("2027-01-03 02:00", Completed),
                    ("2027-01-01 02:00", Completed),
                    ("2026-12-31 02:00", Completed),
                    ("2026-12-28 02:00", Completed),
                ]),
                keep: names(&["2027-01-05 02:00", "2027-01-03 02:00"]),
                delete: names(&["2027-01-04 02:00", "2027-01-01 02:00", "2026-12-31 02:00", "2026-12-28 02:00"]),
                reasons: vec![
                    ("2027-01-05 02:00", "newest backup of week 2027-W01 (weekly 1 of 2)"),
                    ("2027-01-03 02:00", "newest backup of week 2026-W53 (weekly 2 of 2)"),
                    ("2027-01-01 02:00", "weekly: week 2026-W53 has a newer backup (20270103T020000Z-00000000)"),
                ],
                ..case("ISO weeks: 2026-12-28 to 2027-01-03 is one week, 2026-W53")
            },
            Case {
                policy: RetentionPolicy { yearly: 2, max_delete_fraction: 1.0, ..bare() },
                now: "2026-06-01 12:00",
                backups: backups(&[
                    ("2024-06-01 02:00", Completed),
                    ("2025-03-01 02:00", Completed),
                    ("2025-12-31 23:30", Completed),
                    ("2026-01-01 00:30", Completed),
                ]),
                keep: names(&["2026-01-01 00:30", "2025-12-31 23:30"]),
                delete: names(&["2025-03-01 02:00", "2024-06-01 02:00"]),
                reasons: vec![
                    ("2025-12-31 23:30", "newest backup of 2025 (yearly 2 of 2)"),
                    ("2024-06-01 02:00", "yearly: 2024 is older than the 2 most recent years with backups, which reach back to 2025"),
                ],
                ..case("years in UTC")
            },
            Case {
                policy: RetentionPolicy { daily: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[("2026-11-21 02:00 #1", Completed), ("2026-11-21 02:00 #2", Completed)]),
                keep: names(&["2026-11-21 02:00 #2"]),
                delete: names(&["2026-11-21 02:00 #1"]),
                reasons: vec![("2026-11-21 02:00 #1", "daily: 2026-11-21 has a newer backup (20261121T020000Z-00000002)")],
                ..case("two backups started in the same second: the larger id counts as the newer")
            },
        ]
    }

    fn time_zone_cases() -> Vec<Case> {
        // 10:00, 11:30 and 23:30 UTC on 2026-11-20: one day in UTC; in Berlin (UTC+1) 23:30 is 00:30 on the 21st;
        // in Auckland (UTC+13 in November) 11:30 is 00:30 on the 21st and 10:00 is 23:00 on the 20th.
        let one_utc_day = || {
            backups(&[
                ("2026-11-20 10:00", Completed),
                ("2026-11-20 11:30", Completed),
                ("2026-11-20 23:30", Completed),
            ])
        };
        let daily_5 = |time_zone| RetentionPolicy { daily: 5, time_zone, max_delete_fraction: 1.0, ..bare() };
        let new_year = || {
            backups(&[
                ("2024-06-01 02:00", Completed),
                ("2025-03-01 02:00", Completed),
                ("2025-12-31 23:30", Completed),
                ("2026-01-01 00:30", Completed),
            ])
        };
        vec![
            Case {
                policy: daily_5(Tz::UTC),
                backups: one_utc_day(),
                keep: names(&["2026-11-20 23:30"]),
                delete: names(&["2026-11-20 10:00", "2026-11-20 11:30"]),
                ..case("UTC: 10:00, 11:30 and 23:30 are one day")
            },
            Case {
                policy: daily_5(chrono_tz::Europe::Berlin),
                backups: one_utc_day(),
                keep: names(&["2026-11-20 23:30", "2026-11-20 11:30"]),
                delete: names(&["2026-11-20 10:00"]),
                reasons: vec![
                    ("2026-11-20 23:30", "newest backup of 2026-11-21 (daily 1 of 5)"),
                    ("2026-11-20 11:30", "newest backup of 2026-11-20 (daily 2 of 5)"),
                ],
                ..case("Europe/Berlin: 23:30 UTC is the next local day")
            },
            Case {
                policy: daily_5(chrono_tz::Pacific::Auckland),
                backups: one_utc_day(),
                keep: names(&["2026-11-20 23:30", "2026-11-20 10:00"]),
                delete: names(&["2026-11-20 11:30"]),
                reasons: vec![
                    ("2026-11-20 23:30", "newest backup of 2026-11-21 (daily 1 of 5)"),
                    ("2026-11-20 10:00", "newest backup of 2026-11-20 (daily 2 of 5)"),
                ],
                ..case("Pacific/Auckland: 11:30 UTC is already the next local day, 10:00 UTC is not")
            },
            Case {
                // Berlin leaves summer time at 01:00 UTC: 00:30 and 01:30 UTC are both 02:30 local, one CEST, one CET.
                policy: RetentionPolicy {
                    daily: 3,
                    time_zone: chrono_tz::Europe::Berlin,
                    max_delete_fraction: 1.0,
                    ..bare()
                },
                now: "2026-10-26 12:00",
                backups: backups(&[
                    ("2026-10-24 21:30", Completed),
                    ("2026-10-24 22:30", Completed),
                    ("2026-10-25 00:30", Completed),
                    ("2026-10-25 01:30", Completed),
                    ("2026-10-25 22:30", Completed),
                    ("2026-10-25 23:30", Completed),
                ]),
                keep: names(&["2026-10-25 23:30", "2026-10-25 22:30", "2026-10-24 21:30"]),
                delete: names(&["2026-10-25 01:30", "2026-10-25 00:30", "2026-10-24 22:30"]),
                reasons: vec![
                    ("2026-10-25 23:30", "newest backup of 2026-10-26 (daily 1 of 3)"),
                    ("2026-10-25 22:30", "newest backup of 2026-10-25 (daily 2 of 3)"),
                    ("2026-10-24 21:30", "newest backup of 2026-10-24 (daily 3 of 3)"),
                    ("2026-10-25 00:30", "daily: 2026-10-25 has a newer backup (20261025T223000Z-00000000)"),
                    ("2026-10-25 01:30", "daily: 2026-10-25 has a newer backup (20261025T223000Z-00000000)"),
                ],
                ..case("Europe/Berlin, 2026-10-25 has 25 hours and 02:30 twice: still one day")
            },
            Case {
                policy: RetentionPolicy {
                    daily: 2,
                    time_zone: chrono_tz::Europe::Berlin,
                    max_delete_fraction: 1.0,
                    ..bare()
                },
                now: "2026-03-30 12:00",
                backups: backups(&[
                    ("2026-03-28 23:30", Completed),
                    ("2026-03-29 21:30", Completed),
                    ("2026-03-29 22:30", Completed),
                ]),
                keep: names(&["2026-03-29 22:30", "2026-03-29 21:30"]),
                delete: names(&["2026-03-28 23:30"]),
                reasons: vec![("2026-03-28 23:30", "daily: 2026-03-29 has a newer backup (20260329T213000Z-00000000)")],
                ..case("Europe/Berlin, 2026-03-29 has 23 hours: 23:30 UTC the day before is on it")
            },
            Case {
                policy: RetentionPolicy {
                    yearly: 2,
                    time_zone: chrono_tz::America::New_York,
                    max_delete_fraction: 1.0,
                    ..bare()
                },
                now: "2026-06-01 12:00",
                backups: new_year(),
                keep: names(&["2026-01-01 00:30", "2024-06-01 02:00"]),
                delete: names(&["2025-12-31 23:30", "2025-03-01 02:00"]),
                reasons: vec![
                    ("2026-01-01 00:30", "newest backup of 2025 (yearly 1 of 2)"),
                    ("2024-06-01 02:00", "newest backup of 2024 (yearly 2 of 2)"),
                ],
                ..case("America/New_York: 2026-01-01 00:30 UTC is still 2025")
            },
        ]
    }

    fn status_cases() -> Vec<Case> {
        vec![
            Case {
                policy: RetentionPolicy { daily: 2, min_keep: 1, ..bare() },
                backups: backups(&[
                    ("2026-11-21 03:00", InProgress),
                    ("2026-11-21 02:00", Failed),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", VerifyFailed),
                    ("2026-11-18 02:00", Verified),
                    ("2026-11-17 02:00", VerifyFailed),
                    ("2026-11-16 02:00", Completed),
                    ("2026-11-15 02:00", Purging),
                    ("2026-11-14 02:00", Purged),
                    ("2026-11-13 02:00", Failed),
                ]),
                keep: names(&["2026-11-21 03:00", "2026-11-20 02:00", "2026-11-19 02:00", "2026-11-18 02:00"]),
                delete: names(&["2026-11-17 02:00", "2026-11-16 02:00"]),
                clean_up: names(&["2026-11-21 02:00", "2026-11-13 02:00"]),
                finish: names(&["2026-11-15 02:00"]),
                skip: names(&["2026-11-14 02:00"]),
                reasons: vec![
                    ("2026-11-21 03:00", "in progress: never deleted"),
                    ("2026-11-21 02:00", "failed backup: its leftovers are cleaned up"),
                    ("2026-11-20 02:00", "newest backup of 2026-11-20 (daily 1 of 2)"),
                    ("2026-11-20 02:00", "the newest good backup (min_keep)"),
                    ("2026-11-19 02:00", "failed its restore drill, so it is not a restore point"),
                    ("2026-11-19 02:00", "kept for investigation until 2 later days have good backups (1 so far)"),
                    ("2026-11-18 02:00", "newest backup of 2026-11-18 (daily 2 of 2)"),
                    ("2026-11-18 02:00", "newest verified backup: never deleted"),
                    ("2026-11-17 02:00", "2 later days have good backups: it is past the 2-day window kept for investigation"),
                    ("2026-11-16 02:00", "daily: 2026-11-16 is older than the 2 most recent days with backups, which reach back to 2026-11-18"),
                    ("2026-11-15 02:00", "a previous purge stopped part-way: this run finishes it"),
                    ("2026-11-14 02:00", "already purged: nothing left to delete"),
                ],
                ..case("every status: in progress, failed, completed, verify_failed, verified, purging, purged")
            },
            Case {
                policy: RetentionPolicy { monthly: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", VerifyFailed),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", VerifyFailed),
                    ("2026-11-18 02:00", VerifyFailed),
                ]),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00"]),
                delete: names(&["2026-11-19 02:00", "2026-11-18 02:00"]),
                reasons: vec![
                    ("2026-11-21 02:00", "kept for investigation until 1 later day has a good backup (0 so far)"),
                    ("2026-11-20 02:00", "newest backup of 2026-11 (monthly 1 of 1)"),
                    ("2026-11-19 02:00", "1 later day has a good backup: it is past the 1-day window kept for investigation"),
                ],
                ..case("verify_failed with daily = 0: kept until a later day has a good backup, and fills no month")
            },
            Case {
                policy: RetentionPolicy { daily: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", Lost),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", Completed),
                    ("2026-10-01 02:00", Lost),
                ]),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00", "2026-10-01 02:00"]),
                delete: names(&["2026-11-19 02:00"]),
                reasons: vec![
                    ("2026-11-21 02:00", "lost: objects it recorded are gone from the bucket, so it is not a restore point"),
                    ("2026-11-20 02:00", "newest backup of 2026-11-20 (daily 1 of 1)"),
                    ("2026-10-01 02:00", "what is left of it is kept until a person has looked: purge never deletes a lost backup"),
                ],
                ..case("lost: fills no day, and what is left of it is never deleted, however old")
            },
            Case {
                policy: RetentionPolicy { daily: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", Verified),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", Completed),
                    ("2026-11-18 02:00", Completed),
                ]),
                hidden: vec!["2026-11-21 02:00", "2026-11-18 02:00"],
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00"]),
                delete: names(&["2026-11-19 02:00", "2026-11-18 02:00"]),
                reasons: vec![
                    ("2026-11-21 02:00", "kept for investigation until 1 later day has a good backup (0 so far)"),
                    ("2026-11-20 02:00", "newest backup of 2026-11-20 (daily 1 of 1)"),
                    ("2026-11-18 02:00", "2 later days have good backups: it is past the 1-day window kept for investigation"),
                ],
                ..case("hidden by a delete marker: no restore point (not even the newest verified), kept like a failed drill")
            },
            Case {
                policy: RetentionPolicy { daily: 3, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", VerifyFailed),
                    ("2026-11-20 02:00", VerifyFailed),
                    ("2026-11-19 02:00", VerifyFailed),
                    ("2026-11-18 02:00", VerifyFailed),
                    ("2026-11-17 02:00", Completed),
                ]),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00", "2026-11-19 02:00", "2026-11-18 02:00", "2026-11-17 02:00"]),
                ..case("a run of failed drills: nothing is deleted until good backups return")
            },
            Case {
                policy: RetentionPolicy { daily: 1, min_keep: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-23 02:00", Failed),
                    ("2026-11-22 03:00", VerifyFailed),
                    ("2026-11-22 02:00", Completed),
                    ("2026-11-21 02:00", Completed),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", Completed),
                ]),
                keep: names(&["2026-11-22 03:00", "2026-11-22 02:00", "2026-11-21 02:00"]),
                delete: names(&["2026-11-20 02:00", "2026-11-19 02:00"]),
                clean_up: names(&["2026-11-23 02:00"]),
                reasons: vec![
                    (
                        "2026-11-22 02:00",
                        "dated 2026-11-22 02:00:00 UTC, after now (2026-11-21 12:00:00 UTC): a clock is wrong, so it is kept and left out of the rules",
                    ),
                    ("2026-11-21 02:00", "newest backup of 2026-11-21 (daily 1 of 1)"),
                    ("2026-11-21 02:00", "the newest good backup (min_keep)"),
                ],
                ..case("clock skew: backups dated after now are kept and take no rule's slot")
            },
            Case {
                policy: RetentionPolicy { daily: 1, min_keep: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", Completed),
                    ("2026-11-20 02:00", Completed),
                    ("2026-11-19 02:00", Completed),
                    ("2026-11-18 02:00", Purging),
                    ("2026-11-17 02:00", VerifyFailed),
                ]),
                being_verified: vec!["2026-11-20 02:00", "2026-11-18 02:00", "2026-11-21 02:00"],
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00", "2026-11-18 02:00"]),
                delete: names(&["2026-11-19 02:00", "2026-11-17 02:00"]),
                reasons: vec![
                    ("2026-11-21 02:00", "being verified by a restore drill: kept until the drill ends"),
                    ("2026-11-20 02:00", "not kept by any rule"),
                    ("2026-11-20 02:00", "being verified by a restore drill: kept until the drill ends"),
                    ("2026-11-18 02:00", "a previous purge stopped part-way: this run finishes it"),
                    ("2026-11-18 02:00", "being verified by a restore drill: kept until the drill ends"),
                ],
                ..case("backups a restore drill is reading are neither deleted nor finished")
            },
            Case {
                policy: RetentionPolicy { daily: 1, min_keep: 1, max_delete_fraction: 1.0, ..bare() },
                backups: backups(&[
                    ("2026-11-21 02:00", Completed),
                    ("2026-11-20 02:00", Verified),
                    ("2026-11-19 02:00", Verified),
                    ("2026-11-18 02:00", Completed),
                ]),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00"]),
                delete: names(&["2026-11-19 02:00", "2026-11-18 02:00"]),
                reasons: vec![
                    ("2026-11-20 02:00", "newest verified backup: never deleted"),
                    ("2026-11-19 02:00", "daily: 2026-11-19 is older than 2026-11-21, the most recent day with backups"),
                    ("2026-11-19 02:00", "min_keep: not the newest good backup"),
                ],
                ..case("the newest verified backup is kept though the policy keeps only the newest, unverified one")
            },
        ]
    }

    fn rail_cases() -> Vec<Case> {
        // Four live backups; failed and purged ones are not live, so the limit at 0.5 is 2.
        let four_live = || {
            backups(&[
                ("2026-11-21 02:00", Completed),
                ("2026-11-20 02:00", Completed),
                ("2026-11-19 02:00", Completed),
                ("2026-11-18 02:00", Completed),
                ("2026-11-17 02:00", Failed),
                ("2026-11-16 02:00", Failed),
                ("2026-11-15 02:00", Purged),
            ])
        };
        let refusal = "this run would delete 3 of 4 live backups, more than max_delete_fraction = 0.5 allows (2); all 3 are kept. \
                       Check the retention policy, then re-run with --force to delete them";
        vec![
            Case {
                policy: RetentionPolicy { daily: 1, ..bare() },
                backups: four_live(),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00", "2026-11-19 02:00", "2026-11-18 02:00"]),
                clean_up: names(&["2026-11-17 02:00", "2026-11-16 02:00"]),
                skip: names(&["2026-11-15 02:00"]),
                refused: Some(refusal),
                reasons: vec![
                    ("2026-11-19 02:00", "not kept by any rule"),
                    (
                        "2026-11-19 02:00",
                        "held back: this run would delete 3 of 4 live backups, more than max_delete_fraction = 0.5 allows (2); all 3 are kept. \
                         Check the retention policy, then re-run with --force to delete them",
                    ),
                ],
                ..case("fraction rail: 3 deletions of 4 live backups without --force are held back; clean-ups go on")
            },
            Case {
                policy: RetentionPolicy { daily: 1, ..bare() },
                backups: four_live(),
                force: true,
                keep: names(&["2026-11-21 02:00"]),
                delete: names(&["2026-11-20 02:00", "2026-11-19 02:00", "2026-11-18 02:00"]),
                clean_up: names(&["2026-11-17 02:00", "2026-11-16 02:00"]),
                skip: names(&["2026-11-15 02:00"]),
                ..case("fraction rail: --force lets the 3 deletions through")
            },
            Case {
                policy: RetentionPolicy { daily: 2, ..bare() },
                backups: four_live(),
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00"]),
                delete: names(&["2026-11-19 02:00", "2026-11-18 02:00"]),
                clean_up: names(&["2026-11-17 02:00", "2026-11-16 02:00"]),
                skip: names(&["2026-11-15 02:00"]),
                ..case("fraction rail: 2 deletions of 4 live backups is at the limit, allowed")
            },
            Case {
                policy: bare(),
                backups: backups(&[("2026-11-21 02:00", Completed), ("2026-11-20 02:00", Verified), ("2026-11-19 02:00", Failed)]),
                force: true,
                keep: names(&["2026-11-21 02:00", "2026-11-20 02:00"]),
                clean_up: names(&["2026-11-19 02:00"]),
                refused: Some(
                    "the retention policy is not valid, so no backup is deleted: the policy keeps nothing: set at least one of daily, \
                     weekly, monthly, yearly or min_keep above 0 (for example daily = 30)",
                ),
                ..case("an empty policy deletes nothing, even with --force")
            },
        ]
    }

    #[test]
    fn calendar_periods() {
        check(calendar_cases());
    }

    #[test]
    fn time_zones_and_dst() {
        check(time_zone_cases());
    }

    #[test]
    fn statuses_and_safety_rails() {
        check(status_cases());
    }

    #[test]
    fn deletion_limit() {
        check(rail_cases());
    }

    /// A deterministic permutation (Fisher–Yates driven by xorshift64).
    fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        order
    }

    #[test]
    fn the_plan_does_not_depend_on_the_input_order() {
        let cases = [calendar_cases(), time_zone_cases(), status_cases(), rail_cases()].into_iter().flatten();
        for case in cases {
            let records = records(&case);
            let expected = plan(&case, &records);
            let reversed: Vec<BackupRecord> = records.iter().rev().cloned().collect();
            assert_eq!(plan(&case, &reversed), expected, "{}: reversed", case.name);
            let mut orders = BTreeSet::new();
            for seed in [1, 7, 42, 1234, 99991] {
                let order = shuffled(records.len(), seed);
                let permuted: Vec<BackupRecord> = order.iter().map(|&i| records[i].clone()).collect();
                assert_eq!(plan(&case, &permuted), expected, "{}: seed {seed}", case.name);
                orders.insert(order);
            }
            // A short list may come back unshuffled from one seed, but not from all of them.
            assert!(orders.len() >= records.len().min(3), "{}: the seeds gave only {} orders", case.name, orders.len());
        }
    }

    #[test]
    fn validate_refuses_empty_policies_and_meaningless_fractions() {
        let cases: Vec<(&str, RetentionPolicy, Result<(), &str>)> = vec![
            ("the defaults", RetentionPolicy::default(), Ok(())),
            ("min_keep alone", RetentionPolicy { min_keep: 1, ..bare() }, Ok(())),
            ("yearly alone", RetentionPolicy { yearly: 1, ..bare() }, Ok(())),
            (
                "every count 0",
                bare(),
                Err("the policy keeps nothing: set at least one of daily, weekly, monthly, yearly or min_keep above 0"),
            ),
            ("fraction 1", RetentionPolicy { max_delete_fraction: 1.0, ..RetentionPolicy::default() }, Ok(())),
            (
                "fraction 0",
                RetentionPolicy { max_delete_fraction: 0.0, ..RetentionPolicy::default() },
                Err("max_delete_fraction = 0 must be above 0 and at most 1"),
            ),
            (
                "fraction 1.5",
                RetentionPolicy { max_delete_fraction: 1.5, ..RetentionPolicy::default() },
                Err("max_delete_fraction = 1.5 must be"),
            ),
            (
                "fraction -0.1",
                RetentionPolicy { max_delete_fraction: -0.1, ..RetentionPolicy::default() },
                Err("max_delete_fraction = -0.1 must be"),
            ),
            (
                "fraction NaN",
                RetentionPolicy { max_delete_fraction: f64::NAN, ..RetentionPolicy::default() },
                Err("max_delete_fraction = NaN must be"),
            ),
        ];
        for (name, policy, expected) in cases {
            match (policy.validate(), expected) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{name}: {got:?} does not start with {want:?}"),
                (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn policy_reads_from_a_toml_table() {
        #[derive(Debug, Deserialize)]
        struct Target {
            retention: RetentionPolicy,
        }
        let berlin_weekly = RetentionPolicy {
            daily: 7,
            weekly: 4,
            monthly: 0,
            time_zone: chrono_tz::Europe::Berlin,
            max_delete_fraction: 0.25,
            ..RetentionPolicy::default()
        };
        let cases: Vec<(&str, &str, Result<RetentionPolicy, &str>)> = vec![
            ("empty table: the defaults", "", Ok(RetentionPolicy::default())),
            (
                "every key",
                "daily = 7\nweekly = 4\nmonthly = 0\ntime_zone = \"Europe/Berlin\"\nmax_delete_fraction = 0.25",
                Ok(berlin_weekly),
            ),
            ("misspelt key", "dayly = 7", Err("unknown field `dayly`")),
            (
                "unknown time zone",
                "time_zone = \"Europe/Berln\"",
                Err("unknown time zone \"Europe/Berln\": use an IANA name"),
            ),
        ];
        for (name, body, expected) in cases {
            let parsed = toml::from_str::<Target>(&format!("[retention]\n{body}\n")).map(|t| t.retention);
            match (parsed, expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(got), Err(want)) => {
                    assert!(got.to_string().contains(want), "{name}: {got} does not contain {want:?}")
                }
                (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
            }
        }
        assert_eq!(RetentionPolicy::default().time_zone.name(), "UTC");
    }
}
