//! `aeon`: the command-line front end of aeon-core.

mod agent;
mod cli;
mod commands;
mod config;
mod password;
mod progress;
mod schedule;
mod timefmt;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use aeon_core::keys::{Credential, KeyMaterial};
use aeon_core::repository::state::{Locked, Open};
use aeon_core::repository::{CacheDir, Located, OpenOptions};
use aeon_core::{Error, Repository};
use anyhow::{Context as _, Result};
use clap::Parser;

use cli::{Cli, Command, GlobalOpts};

/// Exit codes, documented in the README and in `aeon --help`.
pub mod exit {
    pub const ERROR: u8 = 1;
    /// A command line that cannot be run as given (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    pub const INCOMPLETE: u8 = 3;
    pub const DAMAGE: u8 = 4;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    pub const STORAGE_FULL: u8 = 13;
}

/// What every command needs: the global options and a way to open the repository.
pub struct Ctx {
    pub global: GlobalOpts,
    /// The command's name, recorded in the locks it takes.
    pub operation: &'static str,
}

impl Ctx {
    /// The repository location given (--repo, AEON_REPOSITORY).
    pub fn location(&self) -> Result<&str> {
        self.global
            .repo
            .as_deref()
            .filter(|r| !r.is_empty())
            .context("no repository given: use --repo PATH or set AEON_REPOSITORY")
    }

    /// This run's storage options (credentials from the standard variables).
    pub fn storage_options(&self) -> aeon_core::backend::RemoteOptions {
        let g = &self.global;
        aeon_core::backend::RemoteOptions {
            limit_upload: g.limit_upload.map(|k| k * 1024),
            limit_download: g.limit_download.map(|k| k * 1024),
            s3_virtual_host: g.s3_virtual_host,
            s3_access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
            s3_secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            s3_region: std::env::var("AWS_DEFAULT_REGION")
                .or_else(|_| std::env::var("AWS_REGION"))
                .ok(),
            sftp_key: g.sftp_key.clone(),
            sftp_known_hosts: g.sftp_known_hosts.clone(),
            webdav_user: g.webdav_user.clone(),
            webdav_password: std::env::var("AEON_WEBDAV_PASSWORD").ok(),
            ..Default::default()
        }
    }

    fn open_options(&self) -> Result<OpenOptions> {
        let cache = match (&self.global.cache_dir, self.global.no_cache) {
            (_, true) => CacheDir::Off,
            (Some(d), false) => CacheDir::At(d.clone()),
            (None, false) => CacheDir::Default,
        };
        Ok(OpenOptions {
            storage: self.storage_options(),
            cache,
            lock_stale_after: lock_stale_after()?,
            append_only: self.global.append_only,
            observer: Arc::new(progress::Notices {
                json: self.global.json,
                verbose: self.global.verbose > 0,
            }),
        })
    }

    /// Finds the repository at `location` (checking it exists and its version, before any
    /// password is asked for).
    pub fn locate_at(&self, location: &str) -> Result<Located> {
        Ok(Repository::locate(location, self.open_options()?)?)
    }

    /// [`Ctx::locate_at`] the repository given.
    pub fn locate(&self) -> Result<Located> {
        self.locate_at(self.location()?)
    }

    /// Opens the repository given, with its key file (--key-file, AEON_KEY_FILE) or else its
    /// password.
    pub fn open(&self) -> Result<Repository<Open>> {
        let located = self.locate()?;
        let credential = self.credential(self.global.key_file.as_deref())?;
        Ok(located.open_with(&credential)?)
    }

    /// Opens the repository given with `credential`.
    pub fn open_with(&self, credential: Credential) -> Result<Repository<Open>> {
        Ok(self.locate()?.open_with(&credential)?)
    }

    /// The key file to open with: `flag` (a command line's --key-file), else AEON_KEY_FILE;
    /// without either, the password.
    pub fn credential(&self, flag: Option<&std::path::Path>) -> Result<Credential> {
        let env = std::env::var_os("AEON_KEY_FILE").filter(|v| !v.is_empty());
        let Some(path) = flag.map(std::path::PathBuf::from).or(env.map(Into::into)) else {
            let password = password::get(&self.global, false)?;
            return Ok(Credential::password(password.as_bytes()));
        };
        match KeyMaterial::read(&path)? {
            KeyMaterial::KeyFile(k) => Ok(Credential::KeyFile(k)),
            KeyMaterial::SecretKey(k) => Ok(Credential::SecretKey(Box::new(k))),
            // A write-only slot's public file: the client adds recovery points, reads none.
            KeyMaterial::PublicKey(k) => Ok(Credential::PublicKey(Box::new(k))),
        }
    }

    /// Opens the repository with a shared lock (or none, with --no-lock).
    pub fn open_locked(&self) -> Result<Repository<Locked>> {
        self.lock_shared(self.open()?)
    }

    /// Opens the repository with a shared lock (unless --no-lock) and its index loaded. The
    /// lock is taken before the index is read: that is what prune relies on.
    pub fn open_with_index(&self) -> Result<Repository> {
        Ok(self.open_locked()?.load_index()?)
    }

    pub fn lock_shared(&self, repo: Repository<Open>) -> Result<Repository<Locked>> {
        if self.global.no_lock {
            return Ok(repo.without_lock());
        }
        Ok(repo.lock(aeon_core::lock::LockKind::Shared, self.operation)?)
    }

    pub fn threads(&self) -> usize {
        self.global
            .threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }

    /// Progress bars go to a terminal only; without one, a backup also skips the scan ahead
    /// that would give the bar its totals (a second walk of every source tree).
    pub fn progress_visible(&self) -> bool {
        !self.global.quiet && !self.global.json && std::io::stderr().is_terminal()
    }

    /// Prints a line of normal output unless --quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.global.quiet {
            println!("{}", line.as_ref());
        }
    }

    /// Prints `value` as JSON; an object gains `audit_head`, the audit log's head after this
    /// command's record, when it wrote one.
    pub fn print_json<T: serde::Serialize>(&self, value: &T) -> Result<()> {
        let mut value = serde_json::to_value(value)?;
        match (&mut value, progress::audit_head()) {
            (serde_json::Value::Object(map), Some(head)) => {
                map.insert("audit_head".into(), serde_json::Value::String(head));
            }
            // A listing stays a list (scripts index it): the head goes to stderr, as JSON.
            (_, Some(head)) => eprintln!("{}", serde_json::json!({ "audit_head": head })),
            _ => {}
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    }
}

/// Chunk buffers (up to 8 MiB) are allocated by reader threads and freed by compressor
/// threads. With glibc's defaults every thread gets an arena that keeps such memory after it is
/// freed, so peak RSS grows with the thread count: two arenas keep it in check at the same
/// speed. The trim threshold stays at its default, since the bytes of chunks in flight are
/// bounded (the archiver's `IN_FLIGHT_BYTES`). The figures are in bench/results/HISTORY.md,
/// "Measurements behind the code".
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    // A fixed mmap threshold turns off glibc's sliding one, which after the first 16 MiB pack
    // buffer is freed would serve every buffer below that size from arenas that keep freed
    // memory.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let mut cli = Cli::parse_from(version_aware_args());
    // The profile fills in what flags and environment variables leave open; `config` reports
    // the file's problems itself.
    let own_config = matches!(
        cli.command,
        Command::Agent(_) | Command::Config(_) | Command::Completions(_) | Command::Man(_)
    );
    if !own_config {
        match config::active_profile(&cli.global) {
            Ok(Some((_, profile))) => {
                config::apply_global(&mut cli.global, &profile);
                config::apply_priorities(&profile);
                match &mut cli.command {
                    Command::Backup(a) => config::apply_backup(a, &profile),
                    Command::Forget(a) => config::apply_forget(a, &profile),
                    _ => {}
                }
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("aeon: error: {}", one_line(&e));
                return ExitCode::from(exit::ERROR);
            }
        }
    }
    if let Command::Backup(a) = &cli.command
        && a.paths.is_empty()
        && a.files_from.is_empty()
        && !(a.stdin || a.stdin_from_command)
    {
        eprintln!("aeon: error: nothing to back up: give the paths");
        eprintln!("hint: or a profile with `sources` (--profile NAME; see `aeon config show`)");
        return ExitCode::from(exit::USAGE);
    }
    let operation = operation_name(&cli.command);
    let ctx = Ctx { global: cli.global, operation };
    if ctx.global.no_lock && writes_data(&cli.command) {
        eprintln!(
            "aeon: error: --no-lock is refused by `{}`: a command that writes or deletes data \
             without a lock could lose a recovery point to a concurrent prune",
            ctx.operation
        );
        eprintln!("hint: leave out --no-lock; it is for reading a repository on read-only storage");
        return ExitCode::from(exit::USAGE);
    }
    // The recursive walks of deep trees need more stack than the main thread has.
    let command = cli.command;
    let result = std::thread::scope(|s| {
        aeon_core::parallel::spawn_deep(s, "aeon", || run_command(&ctx, command))
            .map(|thread| thread.join())
    });
    let result = match result {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => {
            eprintln!("aeon: error: the command stopped unexpectedly (a panic)");
            return ExitCode::from(exit::ERROR);
        }
        Err(e) => {
            eprintln!("aeon: error: no thread could be started to run the command: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    finish(result, operation)
}

fn run_command(ctx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Init(a) => commands::init::run(ctx, a),
        Command::Backup(a) => commands::backup::run(ctx, a),
        Command::Snapshots(a) => commands::snapshots::run(ctx, a),
        Command::Restore(a) => commands::restore::run(ctx, a),
        Command::Mount(a) => commands::mount::run(ctx, a),
        Command::Dr(a) => commands::dr::run(ctx, a),
        Command::Ls(a) => commands::ls::run(ctx, a),
        Command::Cat(a) => commands::cat::run(ctx, a),
        Command::Check(a) => commands::check::run(ctx, a),
        Command::Find(a) => commands::find::run(ctx, a),
        Command::Diff(a) => commands::diff::run(ctx, a),
        Command::Dump(a) => commands::dump::run(ctx, a),
        Command::Forget(a) => commands::forget::run(ctx, a),
        Command::Prune(a) => commands::prune::run(ctx, a),
        Command::Protect(a) => commands::protect::run(ctx, a, true),
        Command::Unprotect(a) => commands::protect::run(ctx, a, false),
        Command::Tag(a) => commands::protect::run_tag(ctx, a),
        Command::Unlock(a) => commands::unlock::run(ctx, a),
        Command::Stats(a) => commands::stats::run(ctx, a),
        Command::Policy(a) => commands::policy::run(ctx, a),
        Command::Quota(a) => commands::policy::run_quota(ctx, a),
        Command::Copy(a) => commands::copy::run(ctx, a),
        Command::Import(a) => commands::import::run(ctx, a),
        Command::Locations(a) => commands::locations::run(ctx, a),
        Command::Parity(a) => commands::parity::run(ctx, a),
        Command::Repair(a) => commands::repair::run(ctx, a),
        Command::Verify(a) => commands::verify::run(ctx, a),
        Command::Key(a) => commands::key::run(ctx, a),
        Command::Audit(a) => commands::audit::run(ctx, a),
        Command::Report(a) => commands::report::run(ctx, a),
        Command::Agent(a) => agent::run(ctx, a),
        Command::Metrics(a) => agent::metrics::run(ctx, a),
        Command::Config(a) => commands::config::run(ctx, a),
        Command::Completions(a) => commands::config::completions(&a.shell),
        Command::Man(a) => commands::config::man_pages(&a.dir),
    }
}

/// The exit code of a command's outcome, with its error and hint printed.
fn finish(result: Result<u8>, operation: &str) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (code, hint) = classify(&e, operation);
            eprintln!("aeon: error: {}", one_line(&e));
            if let Some(h) = hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(code)
        }
    }
}

fn operation_name(c: &Command) -> &'static str {
    match c {
        Command::Init(_) => "init",
        Command::Backup(_) => "backup",
        Command::Snapshots(_) => "snapshots",
        Command::Restore(_) => "restore",
        Command::Mount(_) => "mount",
        Command::Dr(_) => "dr",
        Command::Ls(_) => "ls",
        Command::Cat(_) => "cat",
        Command::Check(_) => "check",
        Command::Find(_) => "find",
        Command::Diff(_) => "diff",
        Command::Dump(_) => "dump",
        Command::Forget(_) => "forget",
        Command::Prune(_) => "prune",
        Command::Protect(_) => "protect",
        Command::Unprotect(_) => "unprotect",
        Command::Tag(_) => "tag",
        Command::Unlock(_) => "unlock",
        Command::Stats(_) => "stats",
        Command::Policy(_) => "policy",
        Command::Quota(_) => "quota",
        Command::Copy(_) => "copy",
        Command::Import(_) => "import",
        Command::Locations(_) => "locations",
        Command::Parity(_) => "parity",
        Command::Repair(_) => "repair",
        Command::Verify(_) => "verify",
        Command::Key(_) => "key",
        Command::Audit(_) => "audit",
        Command::Report(_) => "report",
        Command::Agent(_) => "agent",
        Command::Metrics(_) => "metrics",
        Command::Config(_) => "config",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
    }
}

/// AEON_LOCK_STALE_AFTER: seconds after which this process's locks go stale if it stops
/// refreshing them (default 1800). Judges read the period from each lock.
fn lock_stale_after() -> Result<Option<std::time::Duration>> {
    let Ok(value) = std::env::var("AEON_LOCK_STALE_AFTER") else { return Ok(None) };
    let secs: u64 = value.trim().parse().map_err(|_| {
        anyhow::anyhow!("AEON_LOCK_STALE_AFTER={value:?} is not a number of seconds")
    })?;
    let period = std::time::Duration::from_secs(secs);
    if period < aeon_core::lock::MIN_STALE_AFTER || period > aeon_core::lock::MAX_STALE_AFTER {
        anyhow::bail!(
            "AEON_LOCK_STALE_AFTER={secs} is outside {}..{} seconds",
            aeon_core::lock::MIN_STALE_AFTER.as_secs(),
            aeon_core::lock::MAX_STALE_AFTER.as_secs()
        );
    }
    Ok(Some(period))
}

/// Commands whose work prune must know about: they hold a lock, always.
fn writes_data(c: &Command) -> bool {
    matches!(
        c,
        Command::Backup(_)
            | Command::Forget(_)
            | Command::Prune(_)
            | Command::Protect(_)
            | Command::Unprotect(_)
            | Command::Tag(_)
            | Command::Copy(_)
            | Command::Import(_)
            | Command::Unlock(_)
    )
}

/// `aeon --version` must print `aeon X.Y.Z` even without a subcommand.
fn version_aware_args() -> Vec<std::ffi::OsString> {
    let args: Vec<_> = std::env::args_os().collect();
    if args.len() == 2 && (args[1] == "--version" || args[1] == "-V") {
        println!("aeon {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    args
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn classify(e: &anyhow::Error, operation: &str) -> (u8, Option<&'static str>) {
    let Some(core) = e.chain().find_map(|c| c.downcast_ref::<Error>()) else {
        return (exit::ERROR, None);
    };
    if core.is_storage_full() {
        let hint = match operation {
            "backup" | "copy" => {
                "the repository is unchanged and consistent; free space and run the command again (it reuses what was stored)"
            }
            "prune" => {
                "the repository is unchanged and consistent; prune writes new packs before deleting old ones: free some space (or forget fewer points at a time) and run prune again"
            }
            _ => "the repository is unchanged and consistent; free space and run the command again",
        };
        return (exit::STORAGE_FULL, Some(hint));
    }
    let local = match core {
        Error::Storage { location, .. } => !aeon_core::backend::is_remote(location),
        _ => true,
    };
    if let Error::Storage { source, .. } | Error::Io { source, .. } = core
        && source.kind() == std::io::ErrorKind::PermissionDenied
        && local
    {
        return (
            exit::ERROR,
            Some(
                "this user may not read or write there: check the permissions of the repository folder and its locks/ folder (every command writes a lock; --no-lock reads a repository on read-only storage)",
            ),
        );
    }
    match core {
        Error::Protected(_) => (exit::ERROR, Some("`aeon unprotect ID` first, if it is to go")),
        Error::Locked(_) => (
            exit::LOCKED,
            Some(
                "wait for it to finish; a lock left by a crashed process goes stale (at once on the same host, after 30 minutes elsewhere) and `aeon unlock` removes it",
            ),
        ),
        Error::LockLost(_) => (exit::ERROR, Some("nothing was committed; run the command again")),
        Error::QuotaExceeded { .. } => (
            exit::STORAGE_FULL,
            Some(
                "forget and prune old recovery points, or raise the limit with `aeon quota set SIZE`; what was stored is kept and reused by the next backup",
            ),
        ),
        Error::RepositoryNotFound(_) => (
            exit::NO_REPOSITORY,
            Some("create one with `aeon init --repo PATH`, or check --repo / AEON_REPOSITORY"),
        ),
        Error::NotARepository(..) => {
            (exit::NO_REPOSITORY, Some("--repo must name the folder that `aeon init` created"))
        }
        Error::WrongPassword | Error::WrongPasswordWithSkipped(_) => (
            exit::WRONG_PASSWORD,
            Some("check AEON_PASSWORD, AEON_PASSWORD_FILE or AEON_PASSWORD_COMMAND"),
        ),
        Error::UnsupportedVersion { .. } => (
            exit::ERROR,
            Some("this repository was written by a newer aeon; install it to read it"),
        ),
        Error::Corrupt { .. } => {
            (exit::DAMAGE, Some("run `aeon check --read-data` to list everything that is damaged"))
        }
        Error::NoMatch { .. } | Error::Ambiguous { .. } => {
            (exit::ERROR, Some("`aeon snapshots` lists the recovery point ids"))
        }
        Error::AlreadyExists(_) => (exit::ERROR, Some("choose an empty or new folder")),
        Error::NotEmpty { .. } => (
            exit::ERROR,
            Some(
                "choose an empty or new folder; if this held a repository whose config was lost, put back a copy of its config instead (a new key beside old data would make neither readable as one repository)",
            ),
        ),
        Error::Storage { .. } => (
            exit::ERROR,
            Some(
                "check the repository URL, the credentials and that the server is reachable (transient errors were retried)",
            ),
        ),
        _ => (exit::ERROR, None),
    }
}
