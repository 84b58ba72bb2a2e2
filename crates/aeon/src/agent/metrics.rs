//! The agent's metrics: its jobs (from their state) and the repositories of its profiles (from
//! their compliance reports, refreshed after each run), served at `/metrics` on `--listen`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aeon_core::report::metrics::Exposition;
use anyhow::{Context, Result};
use chrono::Local;

use super::plan::{self, Job, JobState};

/// Adds the samples of the agent's jobs.
pub fn add_jobs(
    e: &mut Exposition,
    jobs: &[Job],
    states: &BTreeMap<String, JobState>,
    running: &[String],
) {
    let now = Local::now();
    for job in jobs {
        let key = job.key();
        let s = states.get(&key).cloned().unwrap_or_default();
        let kind = job.kind.arguments()[0];
        let l = [("profile", job.profile.as_str()), ("job", kind)];
        e.sample(
            "aeon_job_running",
            "1 while a run of the job is in progress.",
            &l,
            if running.contains(&key) { 1.0 } else { 0.0 },
        );
        e.sample(
            "aeon_job_success_total",
            "Runs of the job that succeeded.",
            &l,
            s.successes as f64,
        );
        e.sample(
            "aeon_job_failure_total",
            "Runs of the job that failed or were skipped.",
            &l,
            s.failed_runs as f64,
        );
        e.sample(
            "aeon_job_failures_in_a_row",
            "Failures since the job last succeeded.",
            &l,
            s.failures as f64,
        );
        if !job.on_changes_only() {
            e.sample(
                "aeon_job_next_run_timestamp_seconds",
                "When the job is next due (Unix time).",
                &l,
                plan::due_at(job, &s, now).timestamp() as f64,
            );
        }
        if let Some(t) = s.last_success {
            e.sample(
                "aeon_job_last_success_timestamp_seconds",
                "When the job last succeeded (Unix time).",
                &l,
                t.timestamp() as f64,
            );
        }
        if let Some(seconds) = s.last_seconds {
            e.sample(
                "aeon_job_last_duration_seconds",
                "How long the job's last run took.",
                &l,
                seconds,
            );
        }
        if job.kind == plan::JobKind::Backup && s.last_point.is_some() {
            e.sample(
                "aeon_backup_last_read_bytes",
                "Bytes the last backup read.",
                &l,
                s.last_bytes_read as f64,
            );
            e.sample(
                "aeon_backup_last_added_bytes",
                "Bytes the last backup added to the repository.",
                &l,
                s.last_bytes_added as f64,
            );
            e.sample(
                "aeon_backup_last_files",
                "Files in the last backup.",
                &l,
                s.last_files as f64,
            );
            e.sample(
                "aeon_backup_last_errors",
                "Files the last backup could not read.",
                &l,
                s.last_errors as f64,
            );
        }
    }
}

/// The compliance report of the repository `ctx` opens (the profile's, when it has one).
pub fn repository_report(ctx: &crate::Ctx) -> Result<aeon_core::report::ComplianceReport> {
    let repo = ctx.open_with_index()?;
    Ok(aeon_core::report::compliance(&repo)?)
}

/// The report of `profile`'s repository, opened as the profile says (the agent's own flags
/// and environment still win, as for any command).
pub fn profile_report(
    global: &crate::cli::GlobalOpts,
    profile: &crate::config::Profile,
) -> Result<aeon_core::report::ComplianceReport> {
    let mut global = global.clone();
    crate::config::apply_global(&mut global, profile);
    repository_report(&crate::Ctx { global, operation: "metrics" })
}

/// `aeon metrics`: the repository's metrics and, where the agent keeps state, its jobs'.
pub fn run(ctx: &crate::Ctx, args: crate::cli::MetricsArgs) -> Result<u8> {
    let mut e = Exposition::default();
    e.add_report(&repository_report(ctx)?);
    // The agent's jobs, where it keeps state (no state folder at all: no job metrics).
    let state_file = super::state_file(args.state_dir.as_deref()).ok();
    if let Some(path) = crate::config::Config::locate(ctx.global.config.as_deref())
        && let Some(state_file) = state_file.filter(|f| f.exists())
    {
        let config = crate::config::Config::read(&path)?;
        let jobs = plan::jobs(&config)?;
        add_jobs(&mut e, &jobs, &super::load_states(&state_file), &[]);
    }
    let text = e.render();
    match &args.textfile {
        None => print!("{text}"),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Renamed into place: the collector never reads half a file.
            let tmp = dir.join(format!(".aeon.prom.{}", std::process::id()));
            std::fs::write(&tmp, &text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, dir.join("aeon.prom"))?;
            ctx.say(format!("metrics written to {}", dir.join("aeon.prom").display()));
        }
    }
    Ok(0)
}

/// What `/metrics` serves: rebuilt by the agent loop, read by the server.
pub type Shared = Arc<Mutex<String>>;
