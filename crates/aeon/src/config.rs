//! The configuration file: named profiles in TOML, in the style of rustic's profiles and
//! resticprofile. A profile says where a repository is and how to open it, what to back up,
//! how long to keep it, and (for `aeon agent`) when. Command-line flags and environment
//! variables override it.
//!
//! ```toml
//! [default]
//! repository = "/srv/backup"
//! password_file = "/etc/aeon/password"
//!
//! [home]
//! inherit = "default"
//! sources = ["/home"]
//! exclude = ["*.tmp"]
//! keep_daily = 7
//! schedule = "every 6h"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";
/// Most profiles one may inherit through (a loop is an error well before).
const MAX_INHERIT_DEPTH: usize = 16;

/// One profile as written in the file (every key optional; `inherit` fills in the rest).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Another profile whose keys this one starts from.
    pub inherit: Option<Spanned<String>>,
    pub repository: Option<String>,
    /// The password itself (prefer `password_file` or `password_command`).
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub iexclude: Vec<String>,
    #[serde(default)]
    pub exclude_file: Vec<PathBuf>,
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    pub exclude_caches: Option<bool>,
    pub exclude_larger_than: Option<Spanned<String>>,
    pub one_file_system: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub category: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub compression: Option<Spanned<String>>,
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Spanned<String>>,
    pub keep_within_hourly: Option<Spanned<String>>,
    pub keep_within_daily: Option<Spanned<String>>,
    pub keep_within_weekly: Option<Spanned<String>>,
    pub keep_within_monthly: Option<Spanned<String>>,
    pub keep_within_yearly: Option<Spanned<String>>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    pub max_points: Option<u32>,
    /// When `aeon agent` backs up: `every 6h` or a cron expression (5 fields), or a list.
    pub schedule: Option<Spanned<Schedules>>,
    /// When the agent applies the retention policy (`forget --prune`).
    pub forget_schedule: Option<Spanned<Schedules>>,
    /// When the agent checks the repository (a rolling scrub).
    pub check_schedule: Option<Spanned<Schedules>>,
    /// When the agent runs a disaster-recovery drill (`dr drill`).
    pub drill_schedule: Option<Spanned<Schedules>>,
    /// Scheduled runs start up to this much later than their time (`"10m"`), so that many
    /// machines on one schedule do not reach their storage at the same second.
    pub jitter: Option<Spanned<String>>,
    /// Continuous data protection: back up what changed within `watch_delay` of a change.
    pub watch: Option<bool>,
    pub watch_delay: Option<Spanned<String>>,
    /// `inotify` (the default: a watch per folder) or `fanotify` (as root: whole file systems,
    /// no per-folder limit).
    pub watch_method: Option<Spanned<String>>,
    /// Lateness: no successful backup for longer than this is reported.
    pub max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub notify: Notify,
    #[serde(default)]
    pub limits: Limits,
}

/// One schedule or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Schedules {
    One(String),
    Many(Vec<String>),
}

impl Schedules {
    pub fn all(&self) -> Vec<&str> {
        match self {
            Schedules::One(s) => vec![s.as_str()],
            Schedules::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Shell commands run around a backup, with its outcome in `AEON_*` environment variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    pub before: Option<String>,
    pub after: Option<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// Where failures, lateness and damage are reported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub webhook: Option<Spanned<String>>,
    #[serde(default)]
    pub email: Vec<String>,
    pub email_from: Option<String>,
    /// `host:port` of the SMTP server (default `127.0.0.1:25`).
    pub smtp: Option<String>,
    pub on_success: Option<bool>,
}

/// Resources a run may use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub threads: Option<u16>,
    pub upload_kibps: Option<u64>,
    pub download_kibps: Option<u64>,
    /// CPU priority (nice, 0 to 19).
    pub nice: Option<Spanned<i32>>,
    /// IO priority class: `idle`, `best-effort` or `realtime`-free `best-effort:N`.
    pub ionice: Option<Spanned<String>>,
}

/// A configuration file read and checked.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    text: String,
    pub profiles: BTreeMap<String, Profile>,
}

/// A problem in a configuration file, with its line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl Config {
    /// The file to read: `--config` / `AEON_CONFIG`, else the first of
    /// `~/.config/aeon/aeon.toml` (or `$XDG_CONFIG_HOME/aeon/aeon.toml`) and
    /// `/etc/aeon/aeon.toml` that exists; `None` when there is none.
    pub fn locate(given: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = given {
            return Some(p.to_path_buf());
        }
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("aeon").join("aeon.toml"));
        user.into_iter().chain([PathBuf::from("/etc/aeon/aeon.toml")]).find(|p| p.exists())
    }

    /// Reads and parses `path`; syntax errors and unknown keys come back with their line.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Config::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<Config> {
        match toml::from_str::<BTreeMap<String, Profile>>(&text) {
            Ok(profiles) => Ok(Config { path: path.to_path_buf(), text, profiles }),
            Err(e) => {
                let line = e.span().map_or(1, |s| line_of(&text, s.start));
                bail!("{}:{line}: {}", path.display(), friendly(e.message().trim_end()))
            }
        }
    }

    fn line(&self, span: Range<usize>) -> usize {
        line_of(&self.text, span.start)
    }

    /// Where the table of profile `name` starts in the text (for problems of a whole profile).
    fn header_offset(&self, name: &str) -> usize {
        let header = format!("[{name}]");
        self.text
            .lines()
            .scan(0, |at, l| {
                let start = *at;
                *at += l.len() + 1;
                Some((start, l))
            })
            .find(|(_, l)| l.trim() == header)
            .map_or(0, |(start, _)| start)
    }

    /// Everything wrong with the profiles that the syntax does not show: unknown profiles
    /// inherited, loops, values that do not parse, sources that are not absolute, more than one
    /// password source. Each with its line.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (name, p) in &self.profiles {
            let mut say = |span: Range<usize>, message: String| {
                out.push(Problem { line: self.line(span), message: format!("[{name}] {message}") })
            };
            if let Some(parent) = &p.inherit {
                if !self.profiles.contains_key(parent.get_ref()) {
                    say(
                        parent.span(),
                        format!("inherits from unknown profile {:?}", parent.get_ref()),
                    );
                } else if let Err(e) = self.resolve(name) {
                    say(parent.span(), e.to_string());
                }
            }
            for s in &p.sources {
                if !Path::new(s.get_ref()).is_absolute() {
                    say(s.span(), format!("source {:?} is not an absolute path", s.get_ref()));
                }
            }
            let checks: [(&Option<Spanned<String>>, Check); 14] = [
                (&p.category, check_category),
                (&p.kind, check_kind),
                (&p.compression, check_compression),
                (&p.exclude_larger_than, check_size),
                (&p.watch_delay, check_duration),
                (&p.max_age, check_duration),
                (&p.jitter, check_duration),
                (&p.watch_method, check_watch_method),
                (&p.keep_within, check_span),
                (&p.keep_within_hourly, check_span),
                (&p.keep_within_daily, check_span),
                (&p.keep_within_weekly, check_span),
                (&p.keep_within_monthly, check_span),
                (&p.keep_within_yearly, check_span),
            ];
            for (value, check) in checks {
                if let Some(v) = value
                    && let Err(e) = check(v.get_ref())
                {
                    say(v.span(), e.to_string());
                }
            }
            if let Some(v) = &p.limits.ionice
                && let Err(e) = check_ionice(v.get_ref())
            {
                say(v.span(), e.to_string());
            }
            if let Some(nice) = &p.limits.nice
                && !(0..=19).contains(nice.get_ref())
            {
                say(nice.span(), format!("limits.nice {} is outside 0 to 19", nice.get_ref()));
            }
            for schedules in [&p.schedule, &p.forget_schedule, &p.check_schedule, &p.drill_schedule]
                .into_iter()
                .flatten()
            {
                for s in schedules.get_ref().all() {
                    if let Err(e) = crate::schedule::Schedule::parse(s) {
                        say(schedules.span(), e.to_string());
                    }
                }
            }
            if let Some(url) = &p.notify.webhook
                && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
            {
                say(url.span(), format!("webhook {:?} is not an http(s) URL", url.get_ref()));
            }
            let sources =
                [p.password.is_some(), p.password_file.is_some(), p.password_command.is_some()];
            if sources.iter().filter(|s| **s).count() > 1 {
                let at = self.header_offset(name);
                say(at..at, "give one of password, password_file and password_command".into());
            }
        }
        out.sort_by_key(|p| p.line);
        out
    }

    /// Profile `name` with what it inherits filled in.
    pub fn resolve(&self, name: &str) -> Result<Profile> {
        let mut chain = vec![name.to_string()];
        let mut current = self.profiles.get(name).with_context(|| {
            format!(
                "no profile [{name}] in {} (it has: {})",
                self.path.display(),
                self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let mut merged = current.clone();
        while let Some(parent) = &current.inherit {
            let parent = parent.get_ref();
            if chain.contains(parent) || chain.len() > MAX_INHERIT_DEPTH {
                chain.push(parent.clone());
                bail!("profiles inherit in a loop: {}", chain.join(" -> "));
            }
            chain.push(parent.clone());
            current = self
                .profiles
                .get(parent)
                .with_context(|| format!("profile [{name}] inherits unknown [{parent}]"))?;
            merged = merged.over(current);
        }
        Ok(merged)
    }
}

impl Profile {
    /// This profile over `base`: what this one sets wins, the rest comes from `base`.
    fn over(self, base: &Profile) -> Profile {
        fn pick<T: Clone>(mine: Option<T>, theirs: &Option<T>) -> Option<T> {
            mine.or_else(|| theirs.clone())
        }
        fn list<T: Clone>(mine: Vec<T>, theirs: &[T]) -> Vec<T> {
            if mine.is_empty() { theirs.to_vec() } else { mine }
        }
        let b = base;
        Profile {
            inherit: b.inherit.clone(),
            repository: pick(self.repository, &b.repository),
            password: pick(self.password, &b.password),
            password_file: pick(self.password_file, &b.password_file),
            password_command: pick(self.password_command, &b.password_command),
            key_file: pick(self.key_file, &b.key_file),
            sources: list(self.sources, &b.sources),
            exclude: list(self.exclude, &b.exclude),
            iexclude: list(self.iexclude, &b.iexclude),
            exclude_file: list(self.exclude_file, &b.exclude_file),
            exclude_if_present: list(self.exclude_if_present, &b.exclude_if_present),
            exclude_caches: pick(self.exclude_caches, &b.exclude_caches),
            exclude_larger_than: pick(self.exclude_larger_than, &b.exclude_larger_than),
            one_file_system: pick(self.one_file_system, &b.one_file_system),
            tags: list(self.tags, &b.tags),
            host: pick(self.host, &b.host),
            category: pick(self.category, &b.category),
            kind: pick(self.kind, &b.kind),
            compression: pick(self.compression, &b.compression),
            keep_last: pick(self.keep_last, &b.keep_last),
            keep_hourly: pick(self.keep_hourly, &b.keep_hourly),
            keep_daily: pick(self.keep_daily, &b.keep_daily),
            keep_weekly: pick(self.keep_weekly, &b.keep_weekly),
            keep_monthly: pick(self.keep_monthly, &b.keep_monthly),
            keep_yearly: pick(self.keep_yearly, &b.keep_yearly),
            keep_within: pick(self.keep_within, &b.keep_within),
            keep_within_hourly: pick(self.keep_within_hourly, &b.keep_within_hourly),
            keep_within_daily: pick(self.keep_within_daily, &b.keep_within_daily),
            keep_within_weekly: pick(self.keep_within_weekly, &b.keep_within_weekly),
            keep_within_monthly: pick(self.keep_within_monthly, &b.keep_within_monthly),
            keep_within_yearly: pick(self.keep_within_yearly, &b.keep_within_yearly),
            keep_tags: list(self.keep_tags, &b.keep_tags),
            max_points: pick(self.max_points, &b.max_points),
            schedule: pick(self.schedule, &b.schedule),
            forget_schedule: pick(self.forget_schedule, &b.forget_schedule),
            check_schedule: pick(self.check_schedule, &b.check_schedule),
            drill_schedule: pick(self.drill_schedule, &b.drill_schedule),
            jitter: pick(self.jitter, &b.jitter),
            watch: pick(self.watch, &b.watch),
            watch_delay: pick(self.watch_delay, &b.watch_delay),
            watch_method: pick(self.watch_method, &b.watch_method),
            max_age: pick(self.max_age, &b.max_age),
            hooks: Hooks {
                before: pick(self.hooks.before, &b.hooks.before),
                after: pick(self.hooks.after, &b.hooks.after),
                on_success: pick(self.hooks.on_success, &b.hooks.on_success),
                on_failure: pick(self.hooks.on_failure, &b.hooks.on_failure),
            },
            notify: Notify {
                webhook: pick(self.notify.webhook, &b.notify.webhook),
                email: list(self.notify.email, &b.notify.email),
                email_from: pick(self.notify.email_from, &b.notify.email_from),
                smtp: pick(self.notify.smtp, &b.notify.smtp),
                on_success: pick(self.notify.on_success, &b.notify.on_success),
            },
            limits: Limits {
                threads: pick(self.limits.threads, &b.limits.threads),
                upload_kibps: pick(self.limits.upload_kibps, &b.limits.upload_kibps),
                download_kibps: pick(self.limits.download_kibps, &b.limits.download_kibps),
                nice: pick(self.limits.nice, &b.limits.nice),
                ionice: pick(self.limits.ionice, &b.limits.ionice),
            },
        }
    }

    /// The profile's retention policy flags, as `forget` takes them.
    pub fn policy_flags(&self) -> crate::cli::PolicyFlags {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        crate::cli::PolicyFlags {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: text(&self.keep_within),
            keep_within_hourly: text(&self.keep_within_hourly),
            keep_within_daily: text(&self.keep_within_daily),
            keep_within_weekly: text(&self.keep_within_weekly),
            keep_within_monthly: text(&self.keep_within_monthly),
            keep_within_yearly: text(&self.keep_within_yearly),
            keep_tags: self.keep_tags.clone(),
            max_points: self.max_points,
        }
    }

    pub fn sources(&self) -> Vec<PathBuf> {
        self.sources.iter().map(|s| PathBuf::from(s.get_ref())).collect()
    }
}

/// The profile this run uses: `--profile` / `AEON_PROFILE` (which must exist), else
/// `[default]` if the file has one; `None` without a file or a matching profile.
pub fn active_profile(global: &crate::cli::GlobalOpts) -> Result<Option<(String, Profile)>> {
    let Some(path) = Config::locate(global.config.as_deref()) else {
        if let Some(name) = &global.profile {
            bail!(
                "profile [{name}] asked for, but there is no configuration file (give --config FILE, or create ~/.config/aeon/aeon.toml)"
            );
        }
        return Ok(None);
    };
    let config = Config::read(&path)?;
    let name = match &global.profile {
        Some(name) => name.clone(),
        None if config.profiles.contains_key(DEFAULT_PROFILE) => DEFAULT_PROFILE.to_string(),
        None => return Ok(None),
    };
    if let Some(first) = config.problems().first() {
        bail!(
            "{}:{}: {} (run `aeon config check` for every problem)",
            path.display(),
            first.line,
            first.message
        );
    }
    Ok(Some((name.clone(), config.resolve(&name)?)))
}

/// Fills the global options that neither a flag nor an environment variable gave from the
/// profile.
pub fn apply_global(g: &mut crate::cli::GlobalOpts, p: &Profile) {
    if g.repo.is_none() {
        g.repo = p.repository.clone();
    }
    let password_given = std::env::var_os("AEON_PASSWORD").is_some()
        || g.password_file.is_some()
        || g.password_command.is_some();
    if !password_given {
        g.password_file = p.password_file.clone();
        g.password_command = p.password_command.clone();
        g.profile_password = p.password.clone();
    }
    if g.key_file.is_none() && std::env::var_os("AEON_KEY_FILE").is_none() {
        g.key_file = p.key_file.clone();
    }
    if g.threads.is_none() {
        g.threads = p.limits.threads;
    }
    if g.limit_upload.is_none() {
        g.limit_upload = p.limits.upload_kibps;
    }
    if g.limit_download.is_none() {
        g.limit_download = p.limits.download_kibps;
    }
}

/// Lowers this process's CPU and IO priority as the profile's `limits.nice` and
/// `limits.ionice` ask (a backup that must not slow the machine down). Best effort: a refusal
/// is a warning.
pub fn apply_priorities(p: &Profile) {
    if let Some(nice) = &p.limits.nice {
        // SAFETY: setpriority has no memory preconditions.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, *nice.get_ref()) } != 0 {
            eprintln!(
                "warning: limits.nice {} not applied: {}",
                nice.get_ref(),
                std::io::Error::last_os_error()
            );
        }
    }
    if let Some(class) = &p.limits.ionice {
        // ioprio_set(IOPRIO_WHO_PROCESS, self, class << 13 | level): class 2 best-effort, 3 idle.
        let value = match class.get_ref().split_once(':') {
            None if class.get_ref() == "idle" => 3 << 13,
            None => (2 << 13) | 4,
            Some((_, level)) => (2 << 13) | level.parse::<i32>().unwrap_or(4),
        };
        // SAFETY: a plain system call with integer arguments.
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
            eprintln!(
                "warning: limits.ionice {} not applied: {}",
                class.get_ref(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Fills what a backup's flags leave open from the profile: paths (its `sources`), excludes,
/// tags, host, category, kind, compression.
pub fn apply_backup(a: &mut crate::cli::BackupArgs, p: &Profile) {
    let streaming = a.stdin || a.stdin_from_command;
    if a.paths.is_empty() && a.files_from.is_empty() && !streaming {
        a.paths = p.sources();
    }
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
    if a.excludes.is_empty() {
        a.excludes = p.exclude.clone();
    }
    if a.iexcludes.is_empty() {
        a.iexcludes = p.iexclude.clone();
    }
    if a.exclude_files.is_empty() {
        a.exclude_files = p.exclude_file.clone();
    }
    if a.exclude_if_present.is_empty() {
        a.exclude_if_present = p.exclude_if_present.clone();
    }
    a.exclude_caches |= p.exclude_caches.unwrap_or(false);
    a.one_file_system |= p.one_file_system.unwrap_or(false);
    if a.exclude_larger_than.is_none() {
        a.exclude_larger_than = text(&p.exclude_larger_than);
    }
    if a.tags.is_empty() {
        a.tags = p.tags.clone();
    }
    if a.host.is_none() {
        a.host = p.host.clone();
    }
    if a.category.is_none() {
        a.category = text(&p.category);
    }
    if a.kind.is_none() {
        a.kind = text(&p.kind);
    }
    if a.compression.is_none() {
        a.compression = text(&p.compression);
    }
}

/// A `forget` given neither ids nor `--keep-*` flags uses the profile's `keep_*` keys.
pub fn apply_forget(a: &mut crate::cli::ForgetArgs, p: &Profile) {
    let flags = p.policy_flags();
    let given = &a.policy;
    let none_given = given.keep_last.is_none()
        && given.keep_hourly.is_none()
        && given.keep_daily.is_none()
        && given.keep_weekly.is_none()
        && given.keep_monthly.is_none()
        && given.keep_yearly.is_none()
        && given.keep_within.is_none()
        && given.keep_within_hourly.is_none()
        && given.keep_within_daily.is_none()
        && given.keep_within_weekly.is_none()
        && given.keep_within_monthly.is_none()
        && given.keep_within_yearly.is_none()
        && given.keep_tags.is_empty()
        && given.max_points.is_none();
    if a.ids.is_empty() && none_given {
        a.policy = flags;
    }
}

/// serde's "unknown field `x`, expected one of …" (forty keys) as "unknown key `x` (did you
/// mean `y`?)".
fn friendly(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((key, expected)) = rest.split_once("`, expected one of ") else {
        return message.to_string();
    };
    let closest = expected
        .split(", ")
        .map(|k| k.trim_matches('`'))
        .min_by_key(|k| edit_distance(key, k))
        .filter(|k| edit_distance(key, k) <= 3);
    match closest {
        Some(k) => format!("unknown key `{key}` (did you mean `{k}`?)"),
        None => format!("unknown key `{key}` (`aeon config check` lists the keys in the README)"),
    }
}

/// Levenshtein distance (for suggestions only; keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Checks one value of a profile; the error says what is wrong with it.
type Check = fn(&str) -> Result<()>;

const CATEGORIES: [&str; 7] =
    ["full", "config", "critical", "incremental", "emergency", "pre-deploy", "post-deploy"];
const KINDS: [&str; 5] = ["system", "config", "data", "application", "database"];

fn check_category(v: &str) -> Result<()> {
    if !CATEGORIES.contains(&v) {
        bail!("category {v:?} is not one of {}", CATEGORIES.join(", "));
    }
    Ok(())
}

fn check_kind(v: &str) -> Result<()> {
    if !KINDS.contains(&v) {
        bail!("kind {v:?} is not one of {}", KINDS.join(", "));
    }
    Ok(())
}

fn check_compression(v: &str) -> Result<()> {
    v.parse::<aeon_core::blob::Compression>()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("compression {v:?}: {e}"))
}

fn check_size(v: &str) -> Result<()> {
    crate::commands::backup::parse_size(v).map(|_| ())
}

fn check_duration(v: &str) -> Result<()> {
    parse_duration(v).map(|_| ())
}

fn check_watch_method(v: &str) -> Result<()> {
    match v {
        "inotify" | "fanotify" => Ok(()),
        _ => anyhow::bail!("watch_method {v:?}: use \"inotify\" or \"fanotify\""),
    }
}

fn check_span(v: &str) -> Result<()> {
    v.parse::<aeon_core::retention::Span>().map(|_| ()).map_err(|e| anyhow::anyhow!("{v:?}: {e}"))
}

fn check_ionice(v: &str) -> Result<()> {
    match v.split_once(':') {
        None if v == "idle" || v == "best-effort" => Ok(()),
        Some(("best-effort", n)) if n.parse::<u8>().is_ok_and(|n| n <= 7) => Ok(()),
        _ => bail!("ionice {v:?} is not idle, best-effort or best-effort:0 to best-effort:7"),
    }
}

/// A duration such as `60s`, `15m`, `6h`, `1d` or `1h 30m`.
pub fn parse_duration(v: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(v).map_err(|e| anyhow::anyhow!("duration {v:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("aeon.toml"), text.to_string())
    }

    #[test]
    fn profiles_inherit_and_override() {
        let c = parse(
            "[default]\nrepository = \"/srv/r\"\npassword_file = \"/p\"\ntags = [\"a\"]\n\n\
             [home]\ninherit = \"default\"\nsources = [\"/home\"]\ntags = [\"h\"]\nkeep_daily = 7\n",
        )
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let home = c.resolve("home").unwrap();
        assert_eq!(home.repository.as_deref(), Some("/srv/r"));
        assert_eq!(home.tags, vec!["h".to_string()]);
        assert_eq!(home.sources(), vec![PathBuf::from("/home")]);
        assert_eq!(home.policy_flags().keep_daily, Some(7));
        assert!(c.resolve("nope").unwrap_err().to_string().contains("it has: default, home"));
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let err = parse("[home]\nrepository = \"/r\"\nsourcs = [\"/home\"]\n").unwrap_err();
        assert!(err.to_string().starts_with("aeon.toml:3:"), "{err}");
        assert!(err.to_string().contains("did you mean `sources`"), "{err}");
        let c = parse(
            "[a]\ninherit = \"b\"\n[b]\ninherit = \"a\"\n[c]\nsources = [\"relative\"]\n\
             category = \"weekly\"\nschedule = \"every banana\"\nwatch_delay = \"soon\"\n",
        )
        .unwrap();
        let problems = c.problems();
        let text: Vec<String> =
            problems.iter().map(|p| format!("{}: {}", p.line, p.message)).collect();
        assert!(text.iter().any(|t| t.starts_with("2: [a]") && t.contains("loop")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("6: [c]") && t.contains("absolute")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("7: [c]") && t.contains("weekly")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("8: [c]") && t.contains("banana")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("9: [c]") && t.contains("soon")), "{text:?}");
    }
}
