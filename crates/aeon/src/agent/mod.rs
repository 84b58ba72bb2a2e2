//! `aeon agent`: runs the configuration file's schedules (backups, forget + prune, checks).
//!
//! Each run is a child `aeon --profile NAME --json …` process: a crash or a leak in one run
//! cannot take the agent down, the profile's limits apply per run, and a SIGTERM to the agent
//! reaches the run, which leaves what it stored resumable (the next backup adopts its packs).
//! The agent keeps what it knows of each job in a state file, so that a restart catches up a
//! missed run once and `aeon agent status` can tell the last and next runs.

pub mod dashboard;
mod fanotify;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod watch;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Local};
use serde_json::json;

use crate::Ctx;
use crate::cli::{AgentAction, AgentArgs};
use crate::config::{Config, Profile};
use plan::{Job, JobKind, JobState};

/// How often the loop looks at signals and finished runs while nothing is due.
const TICK: Duration = Duration::from_millis(250);

pub fn run(ctx: &Ctx, args: AgentArgs) -> Result<u8> {
    let state_file = state_file(args.state_dir.as_deref())?;
    match args.action {
        Some(AgentAction::Status) => status(ctx, &state_file),
        None => {
            let mut agent =
                Agent::start(ctx, state_file.clone(), args.log_format.as_deref() == Some("json"))?;
            if let Some(address) = args.listen {
                let token_file = match &args.token_file {
                    Some(f) => f.clone(),
                    None => state_file.with_file_name("dashboard.token"),
                };
                let settings = dashboard::Settings {
                    address,
                    token: dashboard::token(&token_file)?,
                    restore_under: args.restore_under.clone(),
                };
                dashboard::serve(settings, agent.board.clone(), agent.metrics.clone())?;
                agent.log(
                    "info",
                    "serving metrics and the dashboard",
                    json!({"url": format!("http://{address}/"), "token_file": token_file}),
                );
                agent.refresh_reports(None);
            }
            agent.run()
        }
    }
}

/// `--state-dir`, else `$XDG_STATE_HOME/aeon`, else `~/.local/state/aeon`: `agent.json` in it.
fn state_file(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .map(|d| d.join("aeon"))
            .context("no state folder: give --state-dir DIR (or set HOME or XDG_STATE_HOME)")?,
    };
    Ok(dir.join("agent.json"))
}

fn load_states(path: &Path) -> BTreeMap<String, JobState> {
    std::fs::read(path).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default()
}

fn save_states(path: &Path, states: &BTreeMap<String, JobState>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(states)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

struct Running {
    job: Job,
    child: Child,
    started: DateTime<Local>,
    /// The run's stdout (its JSON summary), read as it comes: a run whose output filled the
    /// pipe would otherwise wait for the agent forever.
    output: std::thread::JoinHandle<String>,
}

struct Agent {
    /// The agent's own options: the repositories' reports are opened with them.
    global: crate::cli::GlobalOpts,
    config_path: PathBuf,
    jobs: Vec<Job>,
    profiles: BTreeMap<String, Profile>,
    states: BTreeMap<String, JobState>,
    state_file: PathBuf,
    running: Vec<Running>,
    json_log: bool,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    /// What `/metrics` serves, rebuilt after every change (once `--listen` asks).
    metrics: metrics::Shared,
    /// What the dashboard shows, rewritten with the metrics; it also holds the latest
    /// compliance report of each repository, which the metrics are made from.
    board: dashboard::Shared,
    serving: bool,
    started: DateTime<Local>,
    /// The watches of `watch = true` profiles.
    watches: Vec<watch::Watch>,
}

impl Agent {
    fn start(ctx: &Ctx, state_file: PathBuf, json_log: bool) -> Result<Agent> {
        let config_path = Config::locate(ctx.global.config.as_deref()).context(
            "no configuration file: the agent runs the schedules of its profiles (give --config FILE)",
        )?;
        // Absolute: the runs, and a reload, must find the same file wherever they start.
        let config_path = std::fs::canonicalize(&config_path)
            .with_context(|| format!("cannot read configuration file {}", config_path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, stop.clone())?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
        let mut agent = Agent {
            global: ctx.global.clone(),
            config_path,
            jobs: Vec::new(),
            profiles: BTreeMap::new(),
            states: load_states(&state_file),
            state_file,
            running: Vec::new(),
            json_log,
            stop,
            reload,
            metrics: Arc::default(),
            board: Arc::default(),
            serving: false,
            started: Local::now(),
            watches: Vec::new(),
        };
        agent.load()?;
        Ok(agent)
    }

    /// Reads the configuration: a file with problems is refused (at start) or kept as it was
    /// (on SIGHUP), with the problem logged.
    fn load(&mut self) -> Result<()> {
        let config = Config::read(&self.config_path)?;
        if let Some(p) = config.problems().first() {
            anyhow::bail!("{}:{}: {}", self.config_path.display(), p.line, p.message);
        }
        let jobs = plan::jobs(&config)?;
        let mut profiles = BTreeMap::new();
        for name in config.profiles.keys() {
            profiles.insert(name.clone(), config.resolve(name)?);
        }
        self.log("info", "configuration loaded", json!({"file": self.config_path, "jobs": jobs.iter().map(Job::key).collect::<Vec<_>>()}));
        self.jobs = jobs;
        self.profiles = profiles;
        self.publish_repositories();
        self.start_watches();
        Ok(())
    }

    /// Tells the dashboard each repository and how to open it (as the first profile naming it
    /// says).
    fn publish_repositories(&self) {
        let mut repositories = BTreeMap::new();
        for profile in self.profiles.values() {
            let Some(repository) = &profile.repository else { continue };
            repositories.entry(repository.clone()).or_insert_with(|| {
                let mut global = self.global.clone();
                crate::config::apply_global(&mut global, profile);
                global
            });
        }
        let mut board = dashboard::lock(&self.board);
        board.repositories = repositories;
        board.config_file = self.config_path.clone();
        board.started = self.started.to_rfc3339();
    }

    /// (Re)starts a watch for every profile with `watch = true`.
    fn start_watches(&mut self) {
        self.watches.clear();
        for (name, profile) in self.profiles.clone() {
            if profile.watch != Some(true) {
                continue;
            }
            let delay = profile
                .watch_delay
                .as_ref()
                .and_then(|d| crate::config::parse_duration(d.get_ref()).ok())
                .unwrap_or(watch::DEFAULT_DELAY);
            let method = profile.watch_method.as_ref().map_or("inotify", |m| m.get_ref().as_str());
            match watch::Watch::start(&name, &profile.sources(), delay, method) {
                Ok(w) => {
                    self.log(
                        "info",
                        "watching",
                        json!({"profile": name, "delay_seconds": delay.as_secs_f64(), "method": method}),
                    );
                    self.watches.push(w);
                }
                Err(e) => self.log(
                    "error",
                    "cannot watch",
                    json!({"profile": name, "error": format!("{e:#}")}),
                ),
            }
        }
    }

    /// Starts the backups the watches ask for, where their repository is free.
    fn run_watches(&mut self, now: DateTime<Local>) -> Result<()> {
        for i in 0..self.watches.len() {
            self.watches[i].drain();
            let Some(due) = self.watches[i].take_due() else { continue };
            let name = self.watches[i].profile.clone();
            let Some(profile) = self.profiles.get(&name).cloned() else { continue };
            let repository = profile.repository.clone().unwrap_or_default();
            if self.running.iter().any(|r| r.job.repository == repository) {
                self.watches[i].put_back(due);
                continue;
            }
            let job = Job {
                profile: name.clone(),
                kind: JobKind::Backup,
                schedules: Vec::new(),
                repository,
                urgent: false,
                jitter: chrono::Duration::zero(),
            };
            let extra = match due {
                watch::Due::Everything(why) => {
                    self.log(
                        "warning",
                        "events may be missing: a full incremental backup",
                        json!({"profile": name, "why": why}),
                    );
                    Vec::new()
                }
                watch::Due::Changed(paths) => {
                    let list = self.state_file.with_file_name(format!("changed-{name}.txt"));
                    if let Some(dir) = list.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let text: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
                    std::fs::write(&list, text)?;
                    self.log(
                        "info",
                        "changes seen",
                        json!({"profile": name, "paths": paths.len()}),
                    );
                    vec!["--changed-paths".to_string(), list.display().to_string()]
                }
            };
            self.launch_with(job, now, &extra)?;
        }
        Ok(())
    }

    /// Reads the compliance report of `repository` again (of every repository with `None`),
    /// through the first profile that names it; then rebuilds the metrics.
    fn refresh_reports(&mut self, repository: Option<&str>) {
        self.serving = true;
        let mut seen = Vec::new();
        for job in self.jobs.clone() {
            if seen.contains(&job.repository) || repository.is_some_and(|r| r != job.repository) {
                continue;
            }
            seen.push(job.repository.clone());
            let Some(profile) = self.profiles.get(&job.profile) else { continue };
            match metrics::profile_report(&self.global, profile) {
                Ok(report) => {
                    let mut board = dashboard::lock(&self.board);
                    board.reports.insert(job.repository.clone(), report);
                    *board.generation.entry(job.repository.clone()).or_default() += 1;
                }
                Err(e) => self.log(
                    "warning",
                    "repository metrics not read",
                    json!({"repository": job.repository, "error": e.to_string()}),
                ),
            }
        }
        self.rebuild_metrics();
    }

    fn rebuild_metrics(&self) {
        if !self.serving {
            return;
        }
        let mut e = aeon_core::report::metrics::Exposition::default();
        let running: Vec<String> = self.running.iter().map(|r| r.job.key()).collect();
        metrics::add_jobs(&mut e, &self.jobs, &self.states, &running);
        let mut board = dashboard::lock(&self.board);
        for report in board.reports.values() {
            e.add_report(report);
        }
        if let Ok(mut shared) = self.metrics.lock() {
            *shared = e.render();
        }
        board.jobs = job_rows(&self.jobs, &self.states, &running, Local::now());
    }

    fn log(&self, level: &str, message: &str, fields: serde_json::Value) {
        if level != "info" {
            let mut notice =
                json!({"time": Local::now().to_rfc3339(), "level": level, "message": message});
            if let (Some(n), Some(f)) = (notice.as_object_mut(), fields.as_object()) {
                n.extend(f.clone());
            }
            dashboard::lock(&self.board).push_notice(notice);
        }
        log_line(self.json_log, level, message, fields);
    }

    /// Sends `event` about `job` as its profile's `notify` says, in a thread of its own (a slow
    /// server never holds up the schedule); what fails to go out is logged.
    fn notify(&self, event: &'static str, job: &Job, outcome: &str, exit_code: Option<i32>) {
        let Some(profile) = self.profiles.get(&job.profile) else { return };
        let settings = profile.notify.clone();
        if settings.webhook.is_none() && settings.email.is_empty() {
            return;
        }
        let state = self.states.get(&job.key()).cloned().unwrap_or_default();
        let notice = notify::Notice {
            event,
            profile: job.profile.clone(),
            job: job.kind.arguments()[0].to_string(),
            repository: job.repository.clone(),
            outcome: outcome.to_string(),
            exit_code,
            point: state.last_point,
            host: aeon_core::lock::this_host(),
            time: Local::now().to_rfc3339(),
        };
        let json_log = self.json_log;
        std::thread::spawn(move || {
            for problem in notify::send(&settings, &notice) {
                log_line(
                    json_log,
                    "error",
                    "notification not delivered",
                    json!({"problem": problem}),
                );
            }
        });
    }

    /// Reports each backup job whose last success is older than its profile's `max_age` (once
    /// until it succeeds again; a job never successful counts from the agent's start).
    fn check_lateness(&mut self, now: DateTime<Local>) {
        for job in self.jobs.clone() {
            if job.kind != JobKind::Backup {
                continue;
            }
            let Some(max_age) = self
                .profiles
                .get(&job.profile)
                .and_then(|p| p.max_age.as_ref())
                .and_then(|a| crate::config::parse_duration(a.get_ref()).ok())
                .and_then(|a| chrono::Duration::from_std(a).ok())
            else {
                continue;
            };
            let state = self.states.entry(job.key()).or_default();
            let since = state.last_success.unwrap_or(self.started);
            if state.late_notified || now - since <= max_age {
                continue;
            }
            state.late_notified = true;
            let outcome = format!("no successful backup since {}", since.to_rfc3339());
            self.log("warning", "late", json!({"job": job.key(), "since": since.to_rfc3339()}));
            self.notify("late", &job, &outcome, None);
            let _ = save_states(&self.state_file, &self.states);
        }
    }

    fn run(mut self) -> Result<u8> {
        loop {
            if self.reload.swap(false, Ordering::SeqCst)
                && let Err(e) = self.load()
            {
                self.log("error", "configuration not reloaded", json!({"error": e.to_string()}));
            }
            self.reap()?;
            if self.stop.load(Ordering::SeqCst) {
                return self.shut_down();
            }
            let now = Local::now();
            self.check_lateness(now);
            let busy: Vec<String> = self.running.iter().map(|r| r.job.repository.clone()).collect();
            let starting: Vec<Job> =
                plan::to_start(&self.jobs, &self.states, &busy, now).into_iter().cloned().collect();
            for job in starting {
                self.launch(job, now)?;
            }
            self.run_watches(now)?;
            std::thread::sleep(TICK);
        }
    }

    fn launch(&mut self, job: Job, now: DateTime<Local>) -> Result<()> {
        self.launch_with(job, now, &[])
    }

    /// Runs the before-hook, then starts the job's child process with `extra` arguments (or
    /// records why not).
    fn launch_with(&mut self, job: Job, now: DateTime<Local>, extra: &[String]) -> Result<()> {
        let key = job.key();
        let profile = self.profiles.get(&job.profile).cloned().unwrap_or_default();
        let state = self.states.entry(key.clone()).or_default();
        state.last_start = Some(now);
        if job.kind == JobKind::Backup
            && let Some(before) = &profile.hooks.before
        {
            let code = hook(before, &job, None);
            if code != Some(0) {
                let outcome = format!("skipped: the before hook failed ({})", describe(code));
                state.last_outcome = Some(outcome.clone());
                plan::after_run(state, false, Local::now());
                self.log("warning", "run skipped", json!({"job": key, "reason": outcome}));
                self.notify("failure", &job, &outcome, code);
                return save_states(&self.state_file, &self.states);
            }
        }
        let exe = std::env::current_exe().context("cannot find the aeon binary to run")?;
        let mut command = Command::new(exe);
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(["--profile", &job.profile, "--json", "--quiet"])
            .args(job.kind.arguments())
            .args(extra)
            .env_remove("AEON_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().context("cannot start a run")?;
        self.log("info", "run started", json!({"job": key, "pid": child.id()}));
        let mut stdout = child.stdout.take();
        let output = std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.read_to_string(&mut out);
            }
            out
        });
        self.running.push(Running { job, child, started: now, output });
        self.rebuild_metrics();
        save_states(&self.state_file, &self.states)
    }

    /// Records every run that ended, and runs its hooks.
    fn reap(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.running.len() {
            let Some(status) = self.running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let done = self.running.swap_remove(i);
            let out = done.output.join().unwrap_or_default();
            let summary: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let code = status.code();
            // A backup that could not read some files wrote its point: a success with a warning.
            let ok = code == Some(0) || (done.job.kind == JobKind::Backup && code == Some(3));
            let end = Local::now();
            let key = done.job.key();
            let state = self.states.entry(key.clone()).or_default();
            state.last_seconds = Some((end - done.started).num_milliseconds() as f64 / 1000.0);
            state.last_outcome =
                Some(if ok { "ok".to_string() } else { format!("failed ({})", describe(code)) });
            if let Some(point) = summary["snapshot_id"].as_str() {
                state.last_point = Some(point.to_string());
                let figure = |k: &str| summary[k].as_u64().unwrap_or(0);
                state.last_bytes_read = figure("bytes_read");
                state.last_bytes_added = figure("data_added_stored");
                state.last_files = figure("total_files");
                state.last_errors = figure("errors");
            }
            plan::after_run(state, ok, end);
            let fields = json!({"job": key, "exit_code": code, "seconds": state.last_seconds,
                "point": state.last_point, "retry_at": state.retry_at});
            let outcome = state.last_outcome.clone().unwrap_or_default();
            self.log(if ok { "info" } else { "error" }, "run finished", fields);
            let profile = self.profiles.get(&done.job.profile).cloned().unwrap_or_default();
            let event = match (ok, done.job.kind, code) {
                (false, JobKind::Check | JobKind::Drill, Some(4)) => Some("damage"),
                (false, _, _) => Some("failure"),
                (true, _, _) if profile.notify.on_success == Some(true) => Some("success"),
                (true, _, _) => None,
            };
            if let Some(event) = event {
                self.notify(event, &done.job, &outcome, code);
            }
            if done.job.kind == JobKind::Backup {
                let then = if ok { &profile.hooks.on_success } else { &profile.hooks.on_failure };
                for h in [then, &profile.hooks.after].into_iter().flatten() {
                    hook(h, &done.job, Some((ok, code)));
                }
            }
            save_states(&self.state_file, &self.states)?;
            if self.serving && !self.stop.load(Ordering::SeqCst) {
                self.refresh_reports(Some(&done.job.repository));
            }
        }
        Ok(())
    }

    /// SIGTERM: passes it on to the runs, waits for them, records them, exits 0.
    fn shut_down(mut self) -> Result<u8> {
        for r in &self.running {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        while !self.running.is_empty() {
            self.reap()?;
            std::thread::sleep(TICK);
        }
        self.log("info", "stopped", json!({}));
        Ok(0)
    }
}

fn log_line(json: bool, level: &str, message: &str, fields: serde_json::Value) {
    let time = Local::now().to_rfc3339();
    if json {
        let mut line = json!({"time": time, "level": level, "message": message});
        if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
            line.extend(fields.clone());
        }
        eprintln!("{line}");
    } else {
        eprintln!("{time} {level} {message} {fields}");
    }
}

/// Runs a hook with the job (and, after a run, its outcome) in `AEON_*` variables; its exit
/// code (`None`: it could not run, or a signal ended it).
fn hook(command: &str, job: &Job, outcome: Option<(bool, Option<i32>)>) -> Option<i32> {
    let mut c = Command::new("sh");
    c.arg("-c").arg(command).stdin(Stdio::null());
    c.env("AEON_PROFILE", &job.profile).env("AEON_JOB", job.key());
    if let Some((ok, code)) = outcome {
        c.env("AEON_OUTCOME", if ok { "success" } else { "failure" });
        c.env("AEON_EXIT_CODE", code.map_or_else(|| "signal".to_string(), |c| c.to_string()));
    }
    c.status().ok().and_then(|s| s.code())
}

fn describe(code: Option<i32>) -> String {
    code.map_or_else(|| "ended by a signal".to_string(), |c| format!("exit code {c}"))
}

/// Each job with its last run and when it is next due, as `aeon agent status --json` prints
/// them (`running` lists the keys of jobs under way).
fn job_rows(
    jobs: &[Job],
    states: &BTreeMap<String, JobState>,
    running: &[String],
    now: DateTime<Local>,
) -> Vec<serde_json::Value> {
    jobs.iter()
        .map(|j| {
            let s = states.get(&j.key()).cloned().unwrap_or_default();
            json!({
                "job": j.key(),
                "profile": j.profile,
                "kind": j.kind,
                "repository": j.repository,
                "running": running.contains(&j.key()),
                "last_start": s.last_start.map(|t| t.to_rfc3339()),
                "last_outcome": s.last_outcome,
                "last_seconds": s.last_seconds,
                "last_point": s.last_point,
                "last_success": s.last_success.map(|t| t.to_rfc3339()),
                "failures_in_a_row": s.failures,
                "next_run": (!j.on_changes_only()).then(|| plan::due_at(j, &s, now).to_rfc3339()),
                "on_changes": j.on_changes_only(),
            })
        })
        .collect()
}

/// `aeon agent status`: each job's last run and when it is next due.
fn status(ctx: &Ctx, state_file: &Path) -> Result<u8> {
    let path = Config::locate(ctx.global.config.as_deref())
        .context("no configuration file (give --config FILE)")?;
    let config = Config::read(&path)?;
    let jobs = plan::jobs(&config)?;
    let rows = job_rows(&jobs, &load_states(state_file), &[], Local::now());
    if ctx.global.json {
        ctx.print_json(&rows)?;
        return Ok(0);
    }
    println!(
        "{:<24} {:<22} {:<22} {:<28} next run",
        "job", "last start", "last success", "last outcome"
    );
    for r in &rows {
        let short = |v: &serde_json::Value| {
            v.as_str().map_or("-".to_string(), |t| t.get(..19).unwrap_or(t).replace('T', " "))
        };
        println!(
            "{:<24} {:<22} {:<22} {:<28} {}",
            r["job"].as_str().unwrap_or_default(),
            short(&r["last_start"]),
            short(&r["last_success"]),
            r["last_outcome"].as_str().unwrap_or("-"),
            if r["on_changes"] == true { "on changes".to_string() } else { short(&r["next_run"]) },
        );
    }
    Ok(0)
}
