//! What the agent runs and when: jobs from the profiles' schedules, when each is due (with
//! catch-up of a missed run, once), retries with backoff, and the order in which jobs of one
//! repository wait for each other. Pure functions of the time given: tests pass any clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Local};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Profile};
use crate::schedule::Schedule;

/// Attempts after a failure before the job waits for its next scheduled time.
pub const RETRIES: u32 = 3;
/// The first retry's delay; each further one doubles it.
pub const FIRST_RETRY: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Forget,
    Check,
    /// A disaster-recovery drill (`dr drill`): a measured, proven restore.
    Drill,
}

impl JobKind {
    /// The `aeon` arguments of the run (after `--profile NAME --json`).
    pub fn arguments(self) -> &'static [&'static str] {
        match self {
            JobKind::Backup => &["backup"],
            JobKind::Forget => &["forget", "--prune"],
            JobKind::Check => &["check", "--scrub"],
            JobKind::Drill => &["dr", "drill"],
        }
    }
}

/// One scheduled job: a profile and what to do with it.
#[derive(Debug, Clone)]
pub struct Job {
    pub profile: String,
    pub kind: JobKind,
    pub schedules: Vec<Schedule>,
    /// Jobs of one repository run one at a time.
    pub repository: String,
    /// `--category emergency` jumps ahead of a repository's queue.
    pub urgent: bool,
    /// Scheduled runs start up to this much after their time (see [`jitter_of`]).
    pub jitter: Duration,
}

impl Job {
    /// Whether it runs only when its profile's watch sees changes.
    pub fn on_changes_only(&self) -> bool {
        self.schedules.is_empty()
    }
}

impl Job {
    pub fn key(&self) -> String {
        job_key(&self.profile, self.kind)
    }
}

pub fn job_key(profile: &str, kind: JobKind) -> String {
    format!(
        "{profile}:{}",
        serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    )
}

/// What the agent remembers of a job between runs (and restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobState {
    pub last_start: Option<DateTime<Local>>,
    pub last_end: Option<DateTime<Local>>,
    /// `ok`, `failed: …`, `skipped: …`.
    pub last_outcome: Option<String>,
    pub last_seconds: Option<f64>,
    /// The recovery point the last successful backup wrote.
    pub last_point: Option<String>,
    pub last_success: Option<DateTime<Local>>,
    /// Failures in a row; reset by a success.
    #[serde(default)]
    pub failures: u32,
    pub retry_at: Option<DateTime<Local>>,
    #[serde(default)]
    pub successes: u64,
    #[serde(default)]
    pub failed_runs: u64,
    /// Figures of the last backup run (from its summary).
    #[serde(default)]
    pub last_bytes_read: u64,
    #[serde(default)]
    pub last_bytes_added: u64,
    #[serde(default)]
    pub last_files: u64,
    #[serde(default)]
    pub last_errors: u64,
    /// Lateness was reported and no success came since (reported once per episode).
    #[serde(default)]
    pub late_notified: bool,
}

/// Every job the configuration schedules, in profile order.
pub fn jobs(config: &Config) -> anyhow::Result<Vec<Job>> {
    let mut out = Vec::new();
    for name in config.profiles.keys() {
        let profile: Profile = config.resolve(name)?;
        let repository = profile.repository.clone().unwrap_or_default();
        let urgent = profile.category.as_ref().is_some_and(|c| c.get_ref() == "emergency");
        let watched = profile.watch == Some(true);
        let jitter = match &profile.jitter {
            Some(j) => Duration::from_std(crate::config::parse_duration(j.get_ref())?)?,
            None => Duration::zero(),
        };
        for (kind, schedules) in [
            (JobKind::Backup, &profile.schedule),
            (JobKind::Forget, &profile.forget_schedule),
            (JobKind::Check, &profile.check_schedule),
            (JobKind::Drill, &profile.drill_schedule),
        ] {
            // A watched profile's backups run on changes, with or without a schedule.
            if schedules.is_none() && !(kind == JobKind::Backup && watched) {
                continue;
            }
            let parsed = schedules
                .iter()
                .flat_map(|s| s.get_ref().all())
                .map(Schedule::parse)
                .collect::<anyhow::Result<Vec<_>>>()?;
            out.push(Job {
                profile: name.clone(),
                kind,
                schedules: parsed,
                repository: repository.clone(),
                urgent,
                jitter,
            });
        }
    }
    Ok(out)
}

/// When `job` is next due, given what it did before. A run missed while the agent was not
/// running (its time passed since the last start) is due at once, and only once: the next time
/// is counted from that run.
pub fn due_at(job: &Job, state: &JobState, now: DateTime<Local>) -> DateTime<Local> {
    let scheduled = job
        .schedules
        .iter()
        .map(|s| match (s, state.last_start) {
            // Never run: an interval runs at once, a cron expression at its next time.
            (Schedule::Every(_), None) => now,
            (Schedule::Cron(_), None) => jitter_of(job, s.next_after(now, None)),
            (_, Some(last)) => jitter_of(job, s.next_after(last, Some(last))),
        })
        .min()
        .unwrap_or(now + Duration::days(366));
    match state.retry_at {
        Some(retry) if retry < scheduled => retry,
        _ => scheduled,
    }
}

/// `time` delayed by the job's jitter: an offset below it drawn from the job and the time, so
/// that every look at the same scheduled run gives the same answer (no state to keep), while
/// jobs of different machines and profiles spread out.
fn jitter_of(job: &Job, time: DateTime<Local>) -> DateTime<Local> {
    let span = job.jitter.num_milliseconds();
    if span <= 0 {
        return time;
    }
    let mut h = blake3::Hasher::new();
    h.update(aeon_core::lock::this_host().as_bytes());
    h.update(job.key().as_bytes());
    h.update(&time.timestamp().to_le_bytes());
    let draw = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default());
    time + Duration::milliseconds((draw % span as u64) as i64)
}

/// The state after a run that ended at `end` with `ok`: a failure schedules a retry with
/// backoff (1, 2, 4 minutes) up to [`RETRIES`] times.
pub fn after_run(state: &mut JobState, ok: bool, end: DateTime<Local>) {
    state.last_end = Some(end);
    if ok {
        state.failures = 0;
        state.retry_at = None;
        state.successes += 1;
        state.last_success = Some(end);
        state.late_notified = false;
    } else {
        state.failures += 1;
        state.failed_runs += 1;
        state.retry_at = (state.failures <= RETRIES)
            .then(|| end + FIRST_RETRY * 2i32.pow(state.failures.saturating_sub(1)));
    }
}

/// The jobs to start now: due, not running, and at most one per repository (none for a
/// repository already busy); an urgent job first, then the one due longest.
pub fn to_start<'a>(
    jobs: &'a [Job],
    states: &BTreeMap<String, JobState>,
    running_repositories: &[String],
    now: DateTime<Local>,
) -> Vec<&'a Job> {
    let mut due: Vec<(&Job, DateTime<Local>)> = jobs
        .iter()
        .filter(|j| !running_repositories.contains(&j.repository))
        .map(|j| (j, due_at(j, &states.get(&j.key()).cloned().unwrap_or_default(), now)))
        .filter(|(_, at)| *at <= now)
        .collect();
    due.sort_by_key(|(j, at)| (!j.urgent, *at));
    let mut taken: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (job, _) in due {
        if !taken.contains(&job.repository.as_str()) {
            taken.push(&job.repository);
            out.push(job);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap()
    }

    fn job(profile: &str, schedule: &str, repository: &str, urgent: bool) -> Job {
        Job {
            profile: profile.into(),
            kind: JobKind::Backup,
            schedules: vec![Schedule::parse(schedule).unwrap()],
            repository: repository.into(),
            urgent,
            jitter: Duration::zero(),
        }
    }

    #[test]
    fn missed_runs_are_caught_up_once_and_failures_back_off() {
        let j = job("home", "0 */6 * * *", "/r", false);
        let mut s = JobState { last_start: Some(at(0, 0)), ..JobState::default() };
        // The agent was off from 1:00 to 13:00: two runs missed, one is due now.
        assert_eq!(due_at(&j, &s, at(13, 0)), at(6, 0));
        s.last_start = Some(at(13, 0));
        after_run(&mut s, true, at(13, 5));
        assert_eq!(due_at(&j, &s, at(13, 6)), at(18, 0), "then its schedule again");
        // Failures: retried after 1, 2, 4 minutes, then only at the schedule.
        for (n, wait) in [(1, 1), (2, 2), (3, 4)] {
            after_run(&mut s, false, at(14, 0));
            assert_eq!(s.failures, n);
            assert_eq!(due_at(&j, &s, at(14, 0)), at(14, wait));
        }
        after_run(&mut s, false, at(14, 0));
        assert_eq!(due_at(&j, &s, at(14, 0)), at(18, 0));
        after_run(&mut s, true, at(14, 30));
        assert_eq!((s.failures, s.retry_at), (0, None));
    }

    #[test]
    fn jitter_delays_a_run_by_less_than_its_span_and_the_same_on_every_look() {
        let mut j = job("home", "0 */6 * * *", "/r", false);
        j.jitter = Duration::minutes(10);
        let s = JobState { last_start: Some(at(0, 0)), ..JobState::default() };
        let due = due_at(&j, &s, at(1, 0));
        assert!(due >= at(6, 0) && due < at(6, 10), "{due}");
        assert_eq!(due_at(&j, &s, at(2, 0)), due, "stable while waiting");
        let mut other = j.clone();
        other.profile = "work".into();
        let spread: std::collections::BTreeSet<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|p| {
                other.profile = p.to_string();
                due_at(&other, &s, at(1, 0))
            })
            .collect();
        assert!(spread.len() > 1, "profiles spread out: {spread:?}");
        // A retry is not delayed by the jitter.
        let mut failed = s.clone();
        after_run(&mut failed, false, at(3, 0));
        assert_eq!(due_at(&j, &failed, at(3, 0)), at(3, 1));
    }

    #[test]
    fn one_run_per_repository_and_emergencies_first() {
        let jobs = vec![
            job("regular", "every 6h", "/r", false),
            job("emergency", "every 1h", "/r", true),
            job("other", "every 1h", "/s", false),
        ];
        let states = BTreeMap::new();
        let now = at(9, 0);
        let names = |v: Vec<&Job>| v.iter().map(|j| j.profile.clone()).collect::<Vec<_>>();
        assert_eq!(names(to_start(&jobs, &states, &[], now)), ["emergency", "other"]);
        assert_eq!(names(to_start(&jobs, &states, &["/r".into()], now)), ["other"]);
    }
}
