//! Where a unit of work runs: in one Lambda invocation or as an ECS task on Fargate, and why.
//!
//! [`decide`] is a pure function of the target's `runner` setting, the evidence of its recent runs (how long
//! they took, how many bytes of SQL they moved, whether they ran out of time) and its configured size. Like
//! retention it returns its reasons, which the fan-out logs and hands to the state machine, so an operator can
//! see why a target went where it did.
//!
//! # The `auto` rule
//!
//! A Lambda invocation has a hard limit (900 s, less the margin a backup keeps to clean up). A unit goes to
//! Fargate when its estimated time passes [`LAMBDA_SHARE`] of that budget: a database grows and runs vary, and
//! one that needs more than half the budget today is one bad day away from being stopped at the limit. So:
//!
//! 1. A recent run that did not finish after using most of the budget ([`OUT_OF_TIME_SHARE`]), which is how a
//!    run stopped at the limit, killed or abandoned looks: Fargate, whatever the estimate says.
//! 2. Otherwise the estimate: the newest size (the larger of the last finished run's bytes and the configured
//!    size) at the slowest throughput recent finished runs achieved, and never less than the longest of them.
//!    Without a finished run, the configured size at an assumed throughput ([`Work::assumed_bytes_per_second`]).
//! 3. No finished run and no configured size: Lambda, and the first run tells (if it runs out of time, rule 1
//!    moves the target to Fargate for the next one).
//!
//! A forced `lambda` or `fargate` is obeyed; a forced `lambda` whose estimate passes the whole budget says so.

use serde::{Deserialize, Serialize};

use super::backup::{BackupRecord, BackupStatus};
use super::drill::{DrillPhase, DrillRecord};

/// Of the Lambda budget, how much `auto` lets the estimate use before it chooses Fargate.
pub const LAMBDA_SHARE: f64 = 0.5;

/// A run that failed after using this much of the Lambda budget is taken to have run out of time.
pub const OUT_OF_TIME_SHARE: f64 = 0.9;

/// How many of a target's newest runs are weighed.
pub const RUNS_WEIGHED: usize = 5;

/// A target's `runner` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerSetting {
    #[default]
    Auto,
    Lambda,
    Fargate,
}

/// Where a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    Lambda,
    Fargate,
}

/// What the unit does: the estimate's assumed throughput differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Backup,
    /// The restore of a drill: the one step of a drill that cannot be split across invocations.
    Drill,
}

impl Work {
    /// Bytes of plain SQL per second assumed when a target has no finished run to measure. Half of what
    /// `../shared/BASELINES.md` measured on 2 cores (`pg_dump | zstd -3 -T2`: 109 MB/s; a restore: 880 MB of SQL
    /// in 16.4 s, 54 MB/s), since in AWS the bytes also cross the network to the database and to S3.
    pub fn assumed_bytes_per_second(self) -> f64 {
        match self {
            Work::Backup => 50e6,
            Work::Drill => 25e6,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Work::Backup => "backup",
            Work::Drill => "restore",
        }
    }
}

/// One recent run of the work, newest first in [`Evidence::recent`].
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    /// Wall time from its start to its end (or to when it was found dead).
    pub seconds: f64,
    /// Bytes of plain SQL it dumped (or restored); 0 when unknown.
    pub raw_bytes: u64,
    /// It finished; false for a failed run.
    pub finished: bool,
    /// It was stopped at the invocation's limit, however long it ran: a drill's restore begun with part of an
    /// invocation is cut off before [`OUT_OF_TIME_SHARE`] of the budget, and is out of time all the same.
    pub stopped_at_limit: bool,
}

/// What the decision weighs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// The newest runs first; only the first [`RUNS_WEIGHED`] count.
    pub recent: Vec<PastRun>,
    /// The target's configured size (`size_gb`), in bytes.
    pub configured_bytes: Option<u64>,
}

/// Where a unit runs, with the estimate and the sentences that explain it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerDecision {
    pub runner: Runner,
    /// Estimated seconds of the work, when there was anything to estimate from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_seconds: Option<f64>,
    pub reasons: Vec<String>,
}

impl Evidence {
    /// A target's backups, newest first, as evidence: each finished one with its time and bytes, each failed
    /// one with the time it ran (to when it was found dead, for one a stopped run left), and `size_gb`. Runs in
    /// progress say nothing yet; a purged record still says how long its backup took.
    pub fn of_backups(records: &[BackupRecord], size_gb: Option<f64>) -> Evidence {
        let recent = records
            .iter()
            .filter_map(|record| {
                let finished = match record.status {
                    BackupStatus::Completed
                    | BackupStatus::Verified
                    | BackupStatus::VerifyFailed
                    | BackupStatus::Purging
                    | BackupStatus::Purged
                    | BackupStatus::Lost => true,
                    BackupStatus::Failed => false,
                    BackupStatus::InProgress => return None,
                };
                let seconds = (record.finished_at? - record.started_at).num_milliseconds().max(0) as f64 / 1000.0;
                Some(PastRun { seconds, raw_bytes: record.raw_bytes, finished, stopped_at_limit: false })
            })
            .take(RUNS_WEIGHED)
            .collect();
        Evidence { recent, configured_bytes: size_gb.map(|gb| (gb * 1e9) as u64) }
    }
}

impl RunnerDecision {
    /// The decision where the stack has no Fargate runner (no image deployed): a unit for Fargate runs on
    /// Lambda, and its reasons say so and how to deploy the runner.
    pub fn without_fargate(mut self) -> RunnerDecision {
        if self.runner == Runner::Fargate {
            self.runner = Runner::Lambda;
            self.reasons.push(
                "but the Fargate runner is not deployed (the stack's BackupImageTag is empty), so it runs on \
                 Lambda: push the image and set BackupImageTag (docs/deploy.md#the-fargate-runner)"
                    .to_string(),
            );
        }
        self
    }
}

impl Evidence {
    /// A target's drills, newest first, as evidence for where its next drill runs: the restore is the one step
    /// of a drill that cannot be split across Lambda invocations, so each drill that restored counts with its
    /// restore's time and the SQL bytes of the backup it restored (from `backups`; 0 when that record is gone),
    /// and one whose restore began and never ended (it failed, or was killed and abandoned) counts as unfinished,
    /// for the time from the restore's start to the drill's end. Point-in-time drills (RDS restores its own
    /// instance, whatever the runner) and drills that never reached the restore say nothing.
    pub fn of_drills(drills: &[DrillRecord], backups: &[BackupRecord], size_gb: Option<f64>) -> Evidence {
        let recent = drills
            .iter()
            .filter(|drill| drill.point_in_time.is_none() && drill.phase == DrillPhase::Done)
            .filter_map(|drill| {
                let started = drill.restore_started_at?;
                let (ended, finished) = match (drill.restored_at, drill.finished_at) {
                    (Some(restored), _) => (restored, true),
                    (None, Some(finished)) => (finished, false),
                    (None, None) => return None,
                };
                let seconds = (ended - started).num_milliseconds().max(0) as f64 / 1000.0;
                let raw_bytes = backups.iter().find(|b| b.backup_id == drill.backup_id).map_or(0, |b| b.raw_bytes);
                let stopped_at_limit = drill
                    .report
                    .scratch_fault()
                    .is_some_and(|fault| fault.contains(crate::domain::scratch_fault::OUTLASTED_THE_INVOCATION));
                Some(PastRun { seconds, raw_bytes, finished, stopped_at_limit })
            })
            .take(RUNS_WEIGHED)
            .collect();
        Evidence { recent, configured_bytes: size_gb.map(|gb| (gb * 1e9) as u64) }
    }
}

/// Decides where a unit of `work` runs. `budget_seconds`: what one Lambda invocation gives the work.
pub fn decide(work: Work, setting: RunnerSetting, evidence: &Evidence, budget_seconds: f64) -> RunnerDecision {
    let recent = &evidence.recent[..evidence.recent.len().min(RUNS_WEIGHED)];
    let estimate = estimate(work, recent, evidence.configured_bytes);
    let out_of_time = recent
        .iter()
        .find(|run| !run.finished && (run.stopped_at_limit || run.seconds >= OUT_OF_TIME_SHARE * budget_seconds));
    let mut reasons = Vec::new();
    if let Some((seconds, how)) = &estimate {
        reasons.push(format!("estimated {} {}", duration(*seconds), how));
    }
    let estimate_seconds = estimate.map(|(seconds, _)| seconds);
    let runner = match setting {
        RunnerSetting::Lambda => {
            reasons.insert(0, "runner = \"lambda\" is configured".to_string());
            if let Some(seconds) = estimate_seconds.filter(|s| *s > budget_seconds) {
                reasons.push(format!(
                    "warning: that is more than the {} one Lambda invocation gives, so it will likely be stopped at \
                     the limit (set runner = \"auto\" or \"fargate\"); {} over",
                    duration(budget_seconds),
                    duration(seconds - budget_seconds)
                ));
            }
            Runner::Lambda
        }
        RunnerSetting::Fargate => {
            reasons.insert(0, "runner = \"fargate\" is configured".to_string());
            Runner::Fargate
        }
        RunnerSetting::Auto => {
            let allowed = LAMBDA_SHARE * budget_seconds;
            if let Some(run) = out_of_time {
                let reason = if run.stopped_at_limit {
                    format!(
                        "a recent {} was stopped at the Lambda invocation's limit after {}: it ran out of time",
                        work.noun(),
                        duration(run.seconds)
                    )
                } else {
                    format!(
                        "a recent {} did not finish after {}, {:.0}% or more of the {} one Lambda invocation gives: \
                         it ran out of time or was killed",
                        work.noun(),
                        duration(run.seconds),
                        OUT_OF_TIME_SHARE * 100.0,
                        duration(budget_seconds)
                    )
                };
                reasons.insert(0, reason);
                Runner::Fargate
            } else {
                match estimate_seconds {
                    Some(seconds) if seconds > allowed => {
                        reasons.push(format!(
                            "more than {:.0}% of the {} one Lambda invocation gives ({}): Fargate",
                            LAMBDA_SHARE * 100.0,
                            duration(budget_seconds),
                            duration(allowed)
                        ));
                        Runner::Fargate
                    }
                    Some(_) => {
                        reasons.push(format!(
                            "within {:.0}% of the {} one Lambda invocation gives ({}): Lambda",
                            LAMBDA_SHARE * 100.0,
                            duration(budget_seconds),
                            duration(allowed)
                        ));
                        Runner::Lambda
                    }
                    None => {
                        reasons.push(format!(
                            "no finished {} to measure and no size_gb configured: Lambda (a first run that runs out \
                             of time moves the target to Fargate; set size_gb or runner to decide sooner)",
                            work.noun()
                        ));
                        Runner::Lambda
                    }
                }
            }
        }
    };
    RunnerDecision { runner, estimate_seconds, reasons }
}

/// The estimate and how it was made, or nothing to make it from.
fn estimate(work: Work, recent: &[PastRun], configured_bytes: Option<u64>) -> Option<(f64, String)> {
    let finished: Vec<&PastRun> = recent.iter().filter(|run| run.finished).collect();
    let measured: Vec<&PastRun> =
        finished.iter().copied().filter(|run| run.raw_bytes > 0 && run.seconds > 0.0).collect();
    let newest_bytes = finished.first().map(|run| run.raw_bytes).unwrap_or(0);
    let bytes = newest_bytes.max(configured_bytes.unwrap_or(0));
    let size_source = if configured_bytes.is_some_and(|c| c >= newest_bytes) { "size_gb" } else { "the newest run" };
    let slowest = measured.iter().map(|run| run.raw_bytes as f64 / run.seconds).min_by(f64::total_cmp);
    let longest = finished.iter().map(|run| run.seconds).max_by(f64::total_cmp);
    let (noun, n) = (work.noun(), finished.len());
    let slowest_of = if n == 1 {
        format!("that of the last finished {noun}")
    } else {
        format!("the slowest of the last {n} finished {noun}s")
    };
    let longest_of = if n == 1 {
        format!("the last finished {noun}'s time")
    } else {
        format!("the longest of the last {n} finished {noun}s")
    };
    match (slowest, longest) {
        (Some(rate), Some(longest)) => {
            let projected = bytes as f64 / rate;
            let how = format!(
                "({} of SQL, from {size_source}, at {}/s, {slowest_of}; the longest took {})",
                size(bytes as f64),
                size(rate),
                duration(longest)
            );
            Some((projected.max(longest), how))
        }
        // Finished runs without a throughput to measure (no bytes recorded, or too quick for the clock).
        (None, Some(longest)) if configured_bytes.unwrap_or(0) == 0 => Some((longest, format!("({longest_of})"))),
        (_, longest) => configured_bytes.filter(|b| *b > 0).map(|b| {
            let rate = work.assumed_bytes_per_second();
            let seconds = (b.max(bytes) as f64 / rate).max(longest.unwrap_or(0.0));
            let how = format!(
                "({} from size_gb at an assumed {}/s; no finished {} to measure)",
                size(b as f64),
                size(rate),
                work.noun()
            );
            (seconds, how)
        }),
    }
}

/// Bytes in decimal units, as sizes of databases are usually said.
fn size(bytes: f64) -> String {
    match bytes {
        b if b < 1e6 => format!("{:.0} kB", b / 1e3),
        b if b < 1e7 => format!("{:.1} MB", b / 1e6),
        b if b < 1e9 => format!("{:.0} MB", b / 1e6),
        b => format!("{:.1} GB", b / 1e9),
    }
}

fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: f64 = 870.0;

    fn ran(seconds: f64, gb: f64) -> PastRun {
        PastRun { seconds, raw_bytes: (gb * 1e9) as u64, finished: true, stopped_at_limit: false }
    }

    fn died(seconds: f64) -> PastRun {
        PastRun { seconds, raw_bytes: 0, finished: false, stopped_at_limit: false }
    }

    fn evidence(recent: Vec<PastRun>, size_gb: Option<f64>) -> Evidence {
        Evidence { recent, configured_bytes: size_gb.map(|gb| (gb * 1e9) as u64) }
    }

    #[test]
    fn auto_decides_from_history_size_and_runs_that_ran_out_of_time() {
        use Runner::*;
        // (case, work, history, size_gb, runner, estimate in seconds, a reason contains)
        type Case = (&'static str, Work, Vec<PastRun>, Option<f64>, Runner, Option<f64>, &'static str);
        let cases: Vec<Case> = vec![
            ("nothing known", Work::Backup, vec![], None, Lambda, None, "no finished backup to measure"),
            ("small, fast", Work::Backup, vec![ran(60.0, 3.0)], None, Lambda, Some(60.0), "within 50%"),
            ("exactly half the budget", Work::Backup, vec![ran(435.0, 10.0)], None, Lambda, Some(435.0), "within"),
            ("just past half", Work::Backup, vec![ran(436.0, 10.0)], None, Fargate, Some(436.0), "more than 50%"),
            // 10 GB at 20 MB/s (the slower run) is 500 s, though the newest took 200 s.
            (
                "the slowest recent run counts",
                Work::Backup,
                vec![ran(200.0, 10.0), ran(400.0, 8.0)],
                None,
                Fargate,
                Some(500.0),
                "the slowest of the last 2 finished backups",
            ),
            // Grown: 30 GB configured, measured 100 MB/s: 300 s.
            (
                "configured size above history",
                Work::Backup,
                vec![ran(50.0, 5.0)],
                Some(30.0),
                Lambda,
                Some(300.0),
                "size_gb",
            ),
            (
                "configured size past the share",
                Work::Backup,
                vec![ran(50.0, 5.0)],
                Some(50.0),
                Fargate,
                Some(500.0),
                "size_gb",
            ),
            // No history: 10 GB at the assumed 50 MB/s is 200 s; 500 GB is 10,000 s.
            ("size only, 10 GB", Work::Backup, vec![], Some(10.0), Lambda, Some(200.0), "assumed 50 MB/s"),
            ("size only, 500 GB", Work::Backup, vec![], Some(500.0), Fargate, Some(10_000.0), "assumed"),
            ("a run that died at the limit", Work::Backup, vec![died(880.0)], None, Fargate, None, "ran out of time"),
            (
                "a death outweighs a fast run",
                Work::Backup,
                vec![ran(100.0, 1.0), died(900.0)],
                None,
                Fargate,
                Some(100.0),
                "did not finish after 15 min",
            ),
            ("a quick failure is not out of time", Work::Backup, vec![died(3.0)], None, Lambda, None, "no finished"),
            (
                "only the newest five count",
                Work::Backup,
                vec![ran(10.0, 1.0), ran(10.0, 1.0), ran(10.0, 1.0), ran(10.0, 1.0), ran(10.0, 1.0), died(900.0)],
                None,
                Lambda,
                Some(10.0),
                "within",
            ),
            (
                "no bytes recorded: the longest run",
                Work::Backup,
                vec![ran(500.0, 0.0)],
                None,
                Fargate,
                Some(500.0),
                "the last finished backup's time",
            ),
            // Drills: 25 MB/s assumed; 5 GB is 200 s, 20 GB is 800 s.
            ("drill, size only, small", Work::Drill, vec![], Some(5.0), Lambda, Some(200.0), "assumed 25 MB/s"),
            ("drill, size only, large", Work::Drill, vec![], Some(20.0), Fargate, Some(800.0), "restore"),
            (
                "drill from restore times",
                Work::Drill,
                vec![ran(600.0, 12.0)],
                None,
                Fargate,
                Some(600.0),
                "that of the last finished restore;",
            ),
        ];
        for (case, work, recent, size_gb, runner, estimate, reason) in cases {
            let decision = decide(work, RunnerSetting::Auto, &evidence(recent, size_gb), BUDGET);
            assert_eq!(decision.runner, runner, "{case}: {:?}", decision.reasons);
            match (decision.estimate_seconds, estimate) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 0.5, "{case}: estimated {got}, want {want}"),
                (got, want) => assert_eq!(got, want, "{case}"),
            }
            assert!(
                decision.reasons.iter().any(|r| r.contains(reason)),
                "{case}: {reason:?} in {:?}",
                decision.reasons
            );
        }
    }

    #[test]
    fn a_targets_drills_are_evidence_by_their_restores() {
        use crate::domain::backup::{BackupId, BackupRecord};
        use crate::domain::codec::Codec;
        use crate::domain::drill::{DrillRecord, PointInTimeDrill};
        use crate::domain::Trigger;
        let at = |minute: i64| chrono::DateTime::from_timestamp(1_764_000_000 + minute * 60, 0).unwrap();
        let mut backup =
            BackupRecord::in_progress("t", BackupId::new(at(0)), Trigger::Schedule, "r", at(0), Codec::Zstd);
        backup.raw_bytes = 10_000_000_000;
        let drill = |restore: Option<(i64, Option<i64>)>, finished: Option<i64>| {
            let mut d = DrillRecord::new("t", backup.backup_id.clone(), at(0));
            d.phase = if finished.is_some() { DrillPhase::Done } else { DrillPhase::Restoring };
            if let Some((start, end)) = restore {
                d.restore_started_at = Some(at(start));
                d.restored_at = end.map(at);
            }
            d.finished_at = finished.map(at);
            d
        };
        let mut point_in_time = drill(Some((0, Some(30))), Some(40));
        point_in_time.point_in_time = Some(PointInTimeDrill { source_instance: "db".into(), restore_time: None });
        let drills = [
            drill(Some((1, None)), None),       // still restoring: says nothing yet
            drill(Some((2, None)), Some(18)),   // killed at the limit, then abandoned
            drill(Some((2, Some(7))), Some(9)), // restored 10 GB in 5 minutes
            drill(None, Some(3)),               // failed before its restore (the object's checksum)
            point_in_time,
        ];
        let evidence = Evidence::of_drills(&drills, std::slice::from_ref(&backup), None);
        assert_eq!(
            evidence.recent,
            [
                PastRun { seconds: 960.0, raw_bytes: 10_000_000_000, finished: false, stopped_at_limit: false },
                PastRun { seconds: 300.0, raw_bytes: 10_000_000_000, finished: true, stopped_at_limit: false },
            ]
        );
        let decision = decide(Work::Drill, RunnerSetting::Auto, &evidence, 870.0);
        assert_eq!(decision.runner, Runner::Fargate, "{:?}", decision.reasons);
        assert!(decision.reasons[0].contains("a recent restore did not finish"), "{:?}", decision.reasons);
    }

    #[test]
    fn a_targets_backups_are_evidence_newest_first_without_those_in_progress() {
        use crate::domain::backup::{BackupId, BackupRecord};
        use crate::domain::codec::Codec;
        use crate::domain::Trigger;
        let at = |minute: i64| chrono::DateTime::from_timestamp(1_764_000_000 + minute * 60, 0).unwrap();
        let record = |status: BackupStatus, minutes: i64, gb: u64| {
            let started = at(0);
            let mut r =
                BackupRecord::in_progress("t", BackupId::new(started), Trigger::Schedule, "r", started, Codec::Zstd);
            r.status = status;
            r.finished_at = (status != BackupStatus::InProgress).then(|| at(minutes));
            r.raw_bytes = gb * 1_000_000_000;
            r
        };
        let records = [
            record(BackupStatus::InProgress, 0, 0),
            record(BackupStatus::Failed, 15, 0),
            record(BackupStatus::Verified, 5, 20),
            record(BackupStatus::Purged, 4, 18),
        ];
        let evidence = Evidence::of_backups(&records, Some(25.0));
        assert_eq!(
            evidence.recent,
            [
                PastRun { seconds: 900.0, raw_bytes: 0, finished: false, stopped_at_limit: false },
                PastRun { seconds: 300.0, raw_bytes: 20_000_000_000, finished: true, stopped_at_limit: false },
                PastRun { seconds: 240.0, raw_bytes: 18_000_000_000, finished: true, stopped_at_limit: false },
            ]
        );
        assert_eq!(evidence.configured_bytes, Some(25_000_000_000));
        // The failed run took 15 minutes of a 14.5-minute budget: it ran out of time.
        assert_eq!(decide(Work::Backup, RunnerSetting::Auto, &evidence, BUDGET).runner, Runner::Fargate);
    }

    /// A drill's restore begun with part of an invocation is stopped at its limit well before 90% of the budget;
    /// stopped at the limit, it ran out of time all the same.
    #[test]
    fn a_restore_stopped_at_the_limit_is_out_of_time_however_long_it_ran() {
        let cut_off = PastRun { seconds: 650.0, raw_bytes: 0, finished: false, stopped_at_limit: true };
        let decided = decide(Work::Drill, RunnerSetting::Auto, &evidence(vec![cut_off], None), BUDGET);
        assert_eq!(decided.runner, Runner::Fargate, "{decided:?}");
        assert!(decided.reasons[0].contains("stopped at the Lambda invocation's limit"), "{decided:?}");
        let failed = PastRun { seconds: 650.0, raw_bytes: 0, finished: false, stopped_at_limit: false };
        assert_eq!(
            decide(Work::Drill, RunnerSetting::Auto, &evidence(vec![failed], None), BUDGET).runner,
            Runner::Lambda
        );
    }

    #[test]
    fn a_forced_runner_is_obeyed_and_a_lambda_that_cannot_finish_is_warned_of() {
        let large = evidence(vec![], Some(500.0));
        let forced = decide(Work::Backup, RunnerSetting::Lambda, &large, BUDGET);
        assert_eq!(forced.runner, Runner::Lambda);
        assert_eq!(forced.reasons[0], "runner = \"lambda\" is configured");
        assert!(forced.reasons.iter().any(|r| r.starts_with("warning: ") && r.contains("stopped at the limit")));

        let small = evidence(vec![ran(5.0, 0.1)], None);
        let fargate = decide(Work::Backup, RunnerSetting::Fargate, &small, BUDGET);
        assert_eq!(fargate.runner, Runner::Fargate);
        assert_eq!(fargate.reasons[0], "runner = \"fargate\" is configured");
        let lambda = decide(Work::Backup, RunnerSetting::Lambda, &small, BUDGET);
        assert!(!lambda.reasons.iter().any(|r| r.starts_with("warning")), "{:?}", lambda.reasons);
    }

    #[test]
    fn the_setting_is_spelled_in_lowercase() {
        #[derive(Deserialize)]
        struct T {
            runner: RunnerSetting,
        }
        let parse = |s: &str| serde_json::from_str::<T>(s).map(|t| t.runner);
        assert_eq!(parse(r#"{"runner": "fargate"}"#).unwrap(), RunnerSetting::Fargate);
        assert!(parse(r#"{"runner": "ecs"}"#).unwrap_err().to_string().contains("auto"));
        assert_eq!(serde_json::to_value(Runner::Lambda).unwrap(), "lambda");
    }
}
