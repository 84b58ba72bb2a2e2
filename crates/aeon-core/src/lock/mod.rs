//! Locks: who is working on the repository right now.
//!
//! Locks never make a backup wait. Every process that reads or writes the repository holds a
//! *shared* lock; `prune` holds the one *exclusive* lock (two prunes never overlap). What the
//! shared locks are for is prune's two-phase deletion (see [`crate::prune`]): prune only deletes
//! packs once every process that could still refer to them — every lock that existed when they
//! were condemned — is gone.
//!
//! A crashed process must never block the repository forever, so every lock is refreshed while
//! its process lives and becomes *stale*. What decides it (docs/FORMAT.md §11a has the argument):
//! - **Same machine**: only when the lock's machine identity (machine id, boot id and PID
//!   namespace, see [`machine_identity`]) is the judge's own may its pid be looked up; then a pid
//!   that is gone, or reused by a process started at another time, makes it stale at once. A
//!   hostname proves nothing: containers, cloned VMs and fleets of `ubuntu` hosts share one.
//! - **Anywhere else**: its age as *the storage* measures it, the modification time of the lock
//!   object against that of the judge's own lock just written, never the holder's or the
//!   judge's clock. It is stale after the period the holder declared in it (default
//!   [`DEFAULT_STALE_AFTER`]).
//!
//! The holder keeps its side on its own boot clock (which counts suspends and SIGSTOPs): once
//! five sixths of the period have passed since the start of its last successful refresh, its
//! lock counts as lost for good ([`LockState::ensure_held`]), and it writes no index file and no
//! recovery point; a recovery point it wrote is checked again afterwards and removed if the lock
//! was lost meanwhile. Stale locks are ignored by every decision and removed by the next prune,
//! backup or `unlock`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileType};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::id::Id;

/// A lock not refreshed for this long (by the storage's clock) is stale, unless its holder
/// declared another period.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// The shortest period a holder may declare (tests use a few seconds; a shorter one would make
/// a loaded machine lose its locks).
pub const MIN_STALE_AFTER: Duration = Duration::from_secs(4);
/// The longest: a crashed process must not hold back deletions for more than a day.
pub const MAX_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How often a lock with this stale period is rewritten, and how long before it would look
/// stale its holder stops writing: a sixth of the period each (5 minutes of 30).
fn refresh_interval(stale_after: Duration) -> Duration {
    stale_after / 6
}

fn safety_margin(stale_after: Duration) -> Duration {
    stale_after / 6
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    /// What the holder does: backup, prune, restore, check...
    pub operation: String,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (Linux /proc), to detect pid reuse.
    #[serde(default)]
    pub process_start: Option<u64>,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    /// Where `pid` means something: see [`machine_identity`]. Absent in locks of older
    /// versions, and where it cannot be known: such a lock goes stale by its age alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The stale period the holder keeps to, in seconds (absent: [`DEFAULT_STALE_AFTER`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<u64>,
    /// The name of the holder's first lock object, in the objects an append-only holder writes
    /// to refresh its lock: those who wait for a holder wait for that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Id>,
}

impl LockInfo {
    pub fn encode(&self, cipher: &Cipher) -> Result<Vec<u8>> {
        format::seal_record(cipher, ObjectKind::Lock, self)
    }

    pub fn decode(cipher: &Cipher, data: &[u8], what: &str) -> Result<LockInfo> {
        format::open_record(cipher, ObjectKind::Lock, data, what)
    }

    /// `backup on host web1 (pid 4242, user root) since 2026-11-21 10:00:00 UTC`
    pub fn describe(&self) -> String {
        format!(
            "{} on host {} (pid {}, user {}) since {}",
            self.operation,
            self.hostname,
            self.pid,
            self.username,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// The stale period this lock's holder keeps to, within the allowed bounds.
    pub fn stale_period(&self) -> Duration {
        self.stale_after
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_STALE_AFTER)
            .clamp(MIN_STALE_AFTER, MAX_STALE_AFTER)
    }
}

/// Whether a lock still counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Stale(String),
}

/// Judges a lock. `here` is the judge's [`machine_identity`]; `age` how long ago the storage
/// last saw the lock written, by the storage's own clock (`None`: it cannot tell).
pub fn liveness(info: &LockInfo, here: Option<&str>, age: Option<Duration>) -> Liveness {
    if let (Some(mine), Some(theirs)) = (here, info.machine.as_deref())
        && mine == theirs
    {
        match process_state(info.pid, info.process_start) {
            ProcessState::Gone => {
                return Liveness::Stale(format!("process {} is no longer running", info.pid));
            }
            ProcessState::Reused => {
                return Liveness::Stale(format!(
                    "process {} has exited (its pid now belongs to another process)",
                    info.pid
                ));
            }
            ProcessState::Running => return Liveness::Live,
            ProcessState::Unknown => {}
        }
    }
    match age {
        Some(age) if age > info.stale_period() => Liveness::Stale(format!(
            "not refreshed for {} by the storage's clock",
            describe_duration(age)
        )),
        _ => Liveness::Live,
    }
}

fn describe_duration(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", s / 60),
    }
}

enum ProcessState {
    Running,
    Gone,
    Reused,
    Unknown,
}

fn process_state(pid: u32, start: Option<u64>) -> ProcessState {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return ProcessState::Unknown;
    }
    match (process_start_time(pid), start) {
        (None, _) => ProcessState::Gone,
        (Some(now), Some(then)) if now != then => ProcessState::Reused,
        _ => ProcessState::Running,
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. `None`
/// for a process that does not exist or has exited (a zombie waiting for its parent).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z") | Some("X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Names the set of processes whose pids this process can look up: the machine (its
/// `/etc/machine-id`), the running kernel (its boot id, new at every boot, also of a cloned VM)
/// and the PID namespace (each container has its own). Two processes with the same identity see
/// the same pids. `None` when any part is unknown, or when `/proc` shows another PID namespace
/// than this process's own (`unshare --pid` without a new /proc): pids read there would mean
/// other processes.
pub fn machine_identity() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let pid_namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let proc_pid: u32 = std::fs::read_link("/proc/self").ok()?.to_str()?.parse().ok()?;
    if proc_pid != std::process::id() {
        return None;
    }
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    Some(format!("{}/{}/{}", machine.trim(), boot.trim(), pid_namespace.to_string_lossy()))
}

/// A clock that never goes back and counts the time a machine was suspended and a process was
/// stopped (CLOCK_BOOTTIME): what a holder measures its own lock's age with.
fn boot_clock() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // Not on Linux: the monotonic clock is the next best.
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// A lock object is a few hundred bytes; a larger one is not read (it could be anything).
const MAX_LOCK_LEN: u64 = 64 << 10;

/// A lock as listed: its name, and its content or why it could not be read.
#[derive(Debug)]
pub struct ListedLock {
    pub id: Id,
    pub info: Result<LockInfo>,
}

/// Every lock object in the repository. Locks that vanish while listed are left out.
pub fn list(backend: &dyn Backend, cipher: &Cipher) -> Result<Vec<ListedLock>> {
    let mut out = Vec::new();
    for o in backend.list(FileType::Lock)? {
        let Ok(id) = o.name.parse::<Id>() else {
            continue;
        };
        if o.size > MAX_LOCK_LEN {
            let why = format!("{} bytes, larger than any lock", o.size);
            out.push(ListedLock { id, info: Err(Error::corrupt(format!("lock {}", o.name), why)) });
            continue;
        }
        let info = match backend.read(FileType::Lock, &o.name) {
            Ok(data) => LockInfo::decode(cipher, &data, &format!("lock {}", o.name)),
            Err(Error::ObjectNotFound { .. }) => continue,
            Err(e) => Err(e),
        };
        out.push(ListedLock { id, info });
    }
    Ok(out)
}

/// A lock judged at one moment.
#[derive(Debug, Clone)]
pub struct JudgedLock {
    pub id: Id,
    pub info: LockInfo,
    pub liveness: Liveness,
}

impl JudgedLock {
    /// Who holds it: the name of the holder's first lock object (an append-only holder
    /// refreshes by writing new ones, which name the first as their origin).
    pub fn holder(&self) -> Id {
        self.info.origin.unwrap_or(self.id)
    }
}

/// How long before `reference` the storage last wrote `times`: each replica compared with its
/// own clock, and the youngest age counts. `None` when no replica has both times.
fn storage_age(reference: &[Option<SystemTime>], times: &[Option<SystemTime>]) -> Option<Duration> {
    reference
        .iter()
        .zip(times)
        .filter_map(|(r, t)| Some(r.as_ref()?.duration_since(*t.as_ref()?).unwrap_or_default()))
        .min()
}

/// Lists the locks and judges each. `reference` names a lock this process has just written
/// (its own): the storage's modification time of it is "now" on the storage's clock.
/// Unreadable lock objects (another repository's key, damage) go stale by their age like any
/// other, so that they can never block anything forever.
pub fn judge_all(
    backend: &dyn Backend,
    cipher: &Cipher,
    reference: &Id,
) -> Result<Vec<JudgedLock>> {
    let here = machine_identity();
    let now_on_storage = backend.modified(FileType::Lock, &reference.to_hex())?;
    let mut out = Vec::new();
    for l in list(backend, cipher)? {
        let age = match backend.modified(FileType::Lock, &l.id.to_hex()) {
            Ok(times) => storage_age(&now_on_storage, &times),
            Err(Error::ObjectNotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        match l.info {
            Ok(info) => {
                let liveness = liveness(&info, here.as_deref(), age);
                out.push(JudgedLock { id: l.id, info, liveness });
            }
            Err(e) => {
                let now = Utc::now();
                let info = LockInfo {
                    kind: LockKind::Shared,
                    operation: "unreadable lock".into(),
                    hostname: "unknown".into(),
                    username: "unknown".into(),
                    pid: 0,
                    process_start: None,
                    created: now,
                    refreshed: now,
                    machine: None,
                    stale_after: None,
                    origin: None,
                };
                let liveness = match liveness(&info, None, age) {
                    Liveness::Stale(why) => Liveness::Stale(format!("unreadable ({e}), {why}")),
                    Liveness::Live => Liveness::Live,
                };
                out.push(JudgedLock { id: l.id, info, liveness });
            }
        }
    }
    Ok(out)
}

/// Removes the stale locks among `judged` and returns a message for each one removed.
pub fn remove_stale(backend: &dyn Backend, judged: &[JudgedLock]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for l in judged {
        if let Liveness::Stale(why) = &l.liveness {
            // A process that released its lock and exited between the listing and the judging
            // looks crashed ("no longer running"), but its lock is gone: nothing to report.
            let name = l.id.to_hex();
            if backend.stat(FileType::Lock, &name)?.is_none() {
                continue;
            }
            match backend.remove(FileType::Lock, &name) {
                Ok(()) => {}
                Err(Error::ObjectNotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
            removed.push(format!("removed stale lock of {} ({why})", l.info.describe()));
        }
    }
    Ok(removed)
}

/// State shared between a held lock, its refresher thread and the writers that must stop when
/// the lock is lost.
#[derive(Debug)]
pub struct LockState {
    /// [`boot_clock`] when the last successful refresh began (the storage dates the lock no
    /// earlier than that).
    last_refresh: Mutex<Duration>,
    /// Latched: a lock once lost stays lost, even if a later refresh succeeds (a judge may
    /// have acted on its staleness meanwhile).
    lost: AtomicBool,
    stale_after: Duration,
    description: String,
}

impl LockState {
    fn new(stale_after: Duration, description: String) -> LockState {
        LockState {
            last_refresh: Mutex::new(boot_clock()),
            lost: AtomicBool::new(false),
            stale_after,
            description,
        }
    }

    /// Fails if others may consider this lock stale (then prune may have deleted data this
    /// process relies on, so nothing that refers to such data may be written).
    pub fn ensure_held(&self) -> Result<()> {
        self.held_at(boot_clock())
    }

    /// [`LockState::ensure_held`] at `now` on the boot clock.
    fn held_at(&self, now: Duration) -> Result<()> {
        let last = *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
        let since = now.saturating_sub(last);
        if since + safety_margin(self.stale_after) > self.stale_after {
            self.lost.store(true, Ordering::SeqCst);
        }
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LockLost(self.description.clone()));
        }
        Ok(())
    }
}

/// A lock held by this process; released on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    /// The lock object in force: an append-only holder writes a new one at each refresh.
    id: Arc<Mutex<Id>>,
    /// Never overwrite or remove: refreshes write new objects, and release leaves them to go
    /// stale (section 11a of docs/FORMAT.md).
    append_only: bool,
    state: Arc<LockState>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    /// Takes a lock that goes stale `stale_after` after its last refresh (clamped to
    /// [`MIN_STALE_AFTER`]..[`MAX_STALE_AFTER`]). An exclusive lock fails with
    /// [`Error::Locked`] while another live exclusive lock exists; stale locks in the way are
    /// removed (their messages are returned).
    pub fn acquire(
        backend: Arc<dyn Backend>,
        cipher: &Cipher,
        kind: LockKind,
        operation: &str,
        stale_after: Duration,
    ) -> Result<(Lock, Vec<String>)> {
        Lock::acquire_with(backend, cipher, kind, operation, stale_after, false)
    }

    /// [`Lock::acquire`]; with `append_only`, the lock is refreshed by writing new lock objects
    /// and is not removed on release (for storage that cannot delete).
    pub fn acquire_with(
        backend: Arc<dyn Backend>,
        cipher: &Cipher,
        kind: LockKind,
        operation: &str,
        stale_after: Duration,
        append_only: bool,
    ) -> Result<(Lock, Vec<String>)> {
        if append_only && kind == LockKind::Exclusive {
            return Err(Error::AppendOnly(format!(
                "an exclusive lock for {operation}: it removes what others may use"
            )));
        }
        let stale_after = stale_after.clamp(MIN_STALE_AFTER, MAX_STALE_AFTER);
        let now = Utc::now();
        let info = LockInfo {
            kind,
            operation: operation.to_string(),
            hostname: this_host(),
            username: std::env::var("USER").unwrap_or_else(|_| {
                // SAFETY: getuid has no preconditions.
                unsafe { libc::getuid() }.to_string()
            }),
            pid: std::process::id(),
            process_start: process_start_time(std::process::id()),
            created: now,
            refreshed: now,
            machine: machine_identity(),
            stale_after: Some(stale_after.as_secs()),
            origin: None,
        };
        let id = random_lock_id()?;
        let state = Arc::new(LockState::new(stale_after, info.describe()));
        backend.write(FileType::Lock, &id.to_hex(), &info.encode(cipher)?)?;
        let mut lock = Lock {
            backend: backend.clone(),
            id: Arc::new(Mutex::new(id)),
            append_only,
            state,
            stop: None,
            refresher: None,
        };

        let mut messages = Vec::new();
        if kind == LockKind::Exclusive {
            let judged = judge_all(backend.as_ref(), cipher, &id)?;
            let others: Vec<_> = judged.into_iter().filter(|l| l.id != id).collect();
            messages = remove_stale(backend.as_ref(), &others)?;
            if let Some(holder) = others
                .iter()
                .find(|l| l.liveness == Liveness::Live && l.info.kind == LockKind::Exclusive)
            {
                // Dropping `lock` removes ours again.
                return Err(Error::Locked(holder.info.describe()));
            }
        }
        lock.start_refresher(cipher.clone(), info);
        Ok((lock, messages))
    }

    fn start_refresher(&mut self, cipher: Cipher, mut info: LockInfo) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let backend = self.backend.clone();
        let state = self.state.clone();
        let current = self.id.clone();
        let append_only = self.append_only;
        if append_only {
            info.origin = Some(self.id());
        }
        let interval = refresh_interval(state.stale_after);
        let handle = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                // Too late (the process was stopped, the machine suspended, storage slow): a
                // judge may already count the lock as stale, and a refresh now would hide it.
                if state.ensure_held().is_err() {
                    return;
                }
                // A lock someone removed (`aeon unlock --all`, or a judge that found it stale)
                // is not silently re-created: the remover may have acted on its absence.
                let name = current.lock().unwrap_or_else(|p| p.into_inner()).to_hex();
                match backend.stat(FileType::Lock, &name) {
                    Ok(None) => {
                        state.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(Some(_)) => {}
                    Err(_) => continue,
                }
                let began = boot_clock();
                info.refreshed = Utc::now();
                // Append-only: a new object each time (the old ones go stale, for a client that
                // may delete to remove).
                let target = match append_only {
                    true => match random_lock_id() {
                        Ok(id) => id,
                        Err(_) => continue,
                    },
                    false => match name.parse() {
                        Ok(id) => id,
                        Err(_) => continue,
                    },
                };
                let written = info
                    .encode(&cipher)
                    .and_then(|data| backend.write(FileType::Lock, &target.to_hex(), &data));
                if written.is_ok() {
                    *current.lock().unwrap_or_else(|p| p.into_inner()) = target;
                    *state.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = began;
                }
            }
        });
        self.stop = Some(tx);
        self.refresher = Some(handle);
    }

    /// The lock object in force.
    pub fn id(&self) -> Id {
        *self.id.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> Arc<LockState> {
        self.state.clone()
    }

    pub fn ensure_held(&self) -> Result<()> {
        self.state.ensure_held()
    }

    /// [`Lock::ensure_held`], and the lock object is still on storage: what a writer checks
    /// after it committed something, to withdraw it if a judge removed the lock meanwhile.
    pub fn confirm(&self) -> Result<()> {
        self.state.ensure_held()?;
        match self.backend.stat(FileType::Lock, &self.id().to_hex())? {
            Some(_) => self.state.ensure_held(),
            None => {
                self.state.lost.store(true, Ordering::SeqCst);
                Err(Error::LockLost(self.state.description.clone()))
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if !self.append_only {
            let _ = self.backend.remove(FileType::Lock, &self.id().to_hex());
        }
    }
}

fn random_lock_id() -> Result<Id> {
    let mut raw = [0u8; 32];
    crate::crypto::fill_random(&mut raw)?;
    Ok(Id(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::crypto::Key;

    fn info(host: &str, pid: u32, refreshed_min_ago: i64) -> LockInfo {
        let t = Utc::now() - chrono::Duration::minutes(refreshed_min_ago);
        LockInfo {
            kind: LockKind::Shared,
            operation: "backup".into(),
            hostname: host.into(),
            username: "u".into(),
            pid,
            process_start: None,
            created: t,
            refreshed: t,
            machine: None,
            stale_after: None,
            origin: None,
        }
    }

    fn on(machine: &str, mut i: LockInfo) -> LockInfo {
        i.machine = Some(machine.into());
        i
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_pid_is_looked_up_only_on_the_same_machine_identity() {
        let me = std::process::id();
        let gone = u32::MAX - 1;
        // Same identity: the pid decides at once, whatever the age.
        assert_eq!(
            liveness(&on("m", info("h", me, 120)), Some("m"), Some(120 * MIN)),
            Liveness::Live
        );
        assert!(matches!(
            liveness(&on("m", info("h", gone, 0)), Some("m"), None),
            Liveness::Stale(_)
        ));
        let mut reused = on("m", info("h", me, 0));
        reused.process_start = process_start_time(me).map(|t| t + 1);
        assert!(matches!(liveness(&reused, Some("m"), Some(Duration::ZERO)), Liveness::Stale(_)));
        // Same hostname, other PID namespace or machine: a missing pid proves nothing.
        assert_eq!(
            liveness(&on("other", info("h", gone, 0)), Some("m"), Some(MIN)),
            Liveness::Live
        );
        // A lock without an identity (older versions), or a judge without one: age alone.
        assert_eq!(liveness(&info("h", gone, 0), Some("m"), Some(MIN)), Liveness::Live);
        assert_eq!(liveness(&on("m", info("h", gone, 0)), None, Some(MIN)), Liveness::Live);
    }

    #[test]
    fn age_is_the_storages_and_the_period_the_holders() {
        // The content's refresh time plays no part: 40 minutes "old" by a slow clock is live,
        // a lock dated in the future is stale once storage says so.
        assert_eq!(liveness(&info("x", 1, 40), None, Some(MIN)), Liveness::Live);
        assert!(matches!(liveness(&info("x", 1, -60), None, Some(31 * MIN)), Liveness::Stale(_)));
        assert_eq!(liveness(&info("x", 1, 0), None, Some(29 * MIN)), Liveness::Live);
        // Unknown age: never stale by time.
        assert_eq!(liveness(&info("x", 1, 600), None, None), Liveness::Live);
        // A declared period is honoured, within bounds.
        let mut short = info("x", 1, 0);
        short.stale_after = Some(10);
        assert!(matches!(
            liveness(&short, None, Some(Duration::from_secs(11))),
            Liveness::Stale(_)
        ));
        assert_eq!(liveness(&short, None, Some(Duration::from_secs(9))), Liveness::Live);
        short.stale_after = Some(0);
        assert_eq!(short.stale_period(), MIN_STALE_AFTER);
        short.stale_after = Some(u64::MAX);
        assert_eq!(short.stale_period(), MAX_STALE_AFTER);
    }

    #[test]
    fn storage_age_compares_each_replica_with_its_own_clock() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s| Some(t - Duration::from_secs(s));
        assert_eq!(storage_age(&[Some(t)], &[ago(90)]), Some(Duration::from_secs(90)));
        // The youngest age counts; a replica without either time is left out.
        assert_eq!(
            storage_age(&[Some(t), Some(t), None], &[ago(90), ago(30), ago(5)]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(storage_age(&[None], &[ago(90)]), None);
        // Written after the reference: age zero, never negative.
        assert_eq!(storage_age(&[ago(10)], &[Some(t)]), Some(Duration::ZERO));
    }

    #[test]
    fn judge_reads_ages_from_storage_not_from_lock_content() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path());
        local.create().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(local);
        let cipher = Cipher::new(&Key::random().unwrap());
        let write = |name: u8, i: &LockInfo, age: Duration| {
            let id = Id([name; 32]);
            backend.write(FileType::Lock, &id.to_hex(), &i.encode(&cipher).unwrap()).unwrap();
            let path = dir.path().join("locks").join(id.to_hex());
            let f = std::fs::File::options().write(true).open(path).unwrap();
            f.set_modified(SystemTime::now() - age).unwrap();
            id
        };
        // A clock 40 minutes slow wrote this one just now.
        let skewed = write(1, &info("other", 1, 40), Duration::ZERO);
        // A clock 2 hours fast wrote this one 31 minutes ago.
        let old = write(2, &info("other", 1, -120), 31 * MIN);
        // Damaged, but recent: not stale yet.
        let id = Id([3; 32]);
        backend.write(FileType::Lock, &id.to_hex(), b"AEON garbage").unwrap();
        let (me, _) =
            Lock::acquire(backend.clone(), &cipher, LockKind::Shared, "t", DEFAULT_STALE_AFTER)
                .unwrap();
        let judged = judge_all(backend.as_ref(), &cipher, &me.id()).unwrap();
        let of = |id: Id| judged.iter().find(|l| l.id == id).unwrap().liveness.clone();
        assert_eq!(of(skewed), Liveness::Live);
        assert!(matches!(of(old), Liveness::Stale(w) if w.contains("31 minutes")));
        assert_eq!(of(id), Liveness::Live);
        assert_eq!(of(me.id()), Liveness::Live);
    }

    /// A lock judged stale because its process is gone, but released by that process before
    /// the judge acted, is not reported as "removed stale lock": it was an orderly exit.
    #[test]
    fn a_lock_released_before_removal_is_not_reported_stale() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path());
        local.create().unwrap();
        let cipher = Cipher::new(&Key::random().unwrap());
        let (kept, released) = (Id([1; 32]), Id([2; 32]));
        let gone = info("h", u32::MAX - 1, 0);
        local.write(FileType::Lock, &kept.to_hex(), &gone.encode(&cipher).unwrap()).unwrap();
        let judged: Vec<JudgedLock> = [kept, released]
            .into_iter()
            .map(|id| JudgedLock {
                id,
                info: gone.clone(),
                liveness: Liveness::Stale("process is no longer running".into()),
            })
            .collect();
        let removed = remove_stale(&local, &judged).unwrap();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(local.list(FileType::Lock).unwrap().is_empty());
    }

    #[test]
    fn exclusive_excludes_exclusive_but_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        backend.create().unwrap();
        let cipher = Cipher::new(&Key::random().unwrap());
        let take =
            |kind, op| Lock::acquire(backend.clone(), &cipher, kind, op, DEFAULT_STALE_AFTER);
        let (shared, _) = take(LockKind::Shared, "backup").unwrap();
        let (excl, _) = take(LockKind::Exclusive, "prune").unwrap();
        let second = take(LockKind::Exclusive, "prune");
        assert!(matches!(second, Err(Error::Locked(_))));
        // The failed attempt left no lock behind.
        assert_eq!(list(backend.as_ref(), &cipher).unwrap().len(), 2);
        shared.ensure_held().unwrap();
        shared.confirm().unwrap();
        drop(excl);
        drop(shared);
        assert!(list(backend.as_ref(), &cipher).unwrap().is_empty());
    }

    #[test]
    fn stale_exclusive_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        backend.create().unwrap();
        let cipher = Cipher::new(&Key::random().unwrap());
        let Some(here) = machine_identity() else {
            panic!("the test machine has /proc, a boot id and its own PID namespace's /proc");
        };
        let mut dead = on(&here, info(&this_host(), u32::MAX - 1, 0));
        dead.kind = LockKind::Exclusive;
        backend
            .write(FileType::Lock, &Id([7; 32]).to_hex(), &dead.encode(&cipher).unwrap())
            .unwrap();
        let (_l, messages) = Lock::acquire(
            backend.clone(),
            &cipher,
            LockKind::Exclusive,
            "prune",
            DEFAULT_STALE_AFTER,
        )
        .unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("no longer running"), "{messages:?}");
        assert_eq!(list(backend.as_ref(), &cipher).unwrap().len(), 1);
    }

    #[test]
    fn a_removed_lock_is_lost_and_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        backend.create().unwrap();
        let cipher = Cipher::new(&Key::random().unwrap());
        let (l, _) =
            Lock::acquire(backend.clone(), &cipher, LockKind::Shared, "backup", MIN_STALE_AFTER)
                .unwrap();
        backend.remove(FileType::Lock, &l.id().to_hex()).unwrap();
        assert!(matches!(l.confirm(), Err(Error::LockLost(_))));
        // Latched: the refresher (every MIN_STALE_AFTER / 6) does not bring it back.
        std::thread::sleep(refresh_interval(MIN_STALE_AFTER) * 2);
        assert!(matches!(l.ensure_held(), Err(Error::LockLost(_))));
        assert_eq!(backend.stat(FileType::Lock, &l.id().to_hex()).unwrap(), None);
    }
}

#[cfg(test)]
mod lost_lock_tests {
    use super::*;

    #[test]
    fn a_writer_stops_before_its_lock_could_look_stale_and_stays_stopped() {
        let s = LockState::new(DEFAULT_STALE_AFTER, "backup on host h".into());
        *s.last_refresh.lock().unwrap() = Duration::ZERO;
        assert!(s.held_at(Duration::from_secs(60)).is_ok());
        let margin = safety_margin(DEFAULT_STALE_AFTER);
        let late = DEFAULT_STALE_AFTER - margin + Duration::from_secs(1);
        assert!(matches!(s.held_at(late), Err(Error::LockLost(_))));
        // A refresh that succeeds afterwards does not bring it back: a judge may have acted.
        *s.last_refresh.lock().unwrap() = late;
        assert!(matches!(s.held_at(late), Err(Error::LockLost(_))));
    }

    #[test]
    fn an_append_only_lock_is_never_removed_and_never_exclusive() {
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::AppendOnly::new(Arc::new(
            crate::backend::MemoryBackend::new(),
        )));
        let cipher = Cipher::new(&crate::crypto::Key([3; 32]));
        let err = Lock::acquire_with(
            backend.clone(),
            &cipher,
            LockKind::Exclusive,
            "prune",
            MIN_STALE_AFTER,
            true,
        )
        .err()
        .expect("refused");
        assert!(matches!(err, Error::AppendOnly(_)), "{err}");
        let (lock, _) = Lock::acquire_with(
            backend.clone(),
            &cipher,
            LockKind::Shared,
            "backup",
            MIN_STALE_AFTER,
            true,
        )
        .unwrap();
        let name = lock.id().to_hex();
        lock.confirm().unwrap();
        drop(lock);
        assert!(backend.stat(FileType::Lock, &name).unwrap().is_some(), "left to go stale");
    }

    #[test]
    fn a_refresh_object_of_an_append_only_holder_names_its_first_lock() {
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::MemoryBackend::new());
        let cipher = Cipher::new(&crate::crypto::Key([3; 32]));
        let first = Id([1; 32]);
        let now = Utc::now();
        let refresh = LockInfo {
            kind: LockKind::Shared,
            operation: "backup".into(),
            hostname: "elsewhere".into(),
            username: "u".into(),
            pid: 7,
            process_start: None,
            created: now,
            refreshed: now,
            machine: None,
            stale_after: None,
            origin: Some(first),
        };
        let second = Id([2; 32]);
        backend.write(FileType::Lock, &second.to_hex(), &refresh.encode(&cipher).unwrap()).unwrap();
        let me = Id([3; 32]);
        backend.write(FileType::Lock, &me.to_hex(), &refresh.encode(&cipher).unwrap()).unwrap();
        let judged = judge_all(backend.as_ref(), &cipher, &me).unwrap();
        let other = judged.iter().find(|l| l.id == second).unwrap();
        // Whoever waits for the holder's first lock waits while this one is live.
        assert_eq!(other.holder(), first);
        assert_eq!(other.liveness, Liveness::Live);
    }
}
