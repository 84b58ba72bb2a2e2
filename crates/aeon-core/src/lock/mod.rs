//! Locks: who is working on the repository right now.
//!
//! Locks never make a backup wait. Every process that reads or writes the repository holds a
//! *shared* lock; `prune` holds the one *exclusive* lock (two prunes never overlap). What the
//! shared locks are for is prune's two-phase deletion (see [`crate::prune`]): prune only deletes
//! packs once every process that could still refer to them — every lock that existed when they
//! were condemned — is gone.
//!
//! A crashed process must never block the repository forever, so every lock is refreshed while
//! its process lives and is *stale* when:
//! - it was taken on this host and its process is gone (pid not running, or running with another
//!   start time: the pid was reused), or
//! - it has not been refreshed for [`STALE_AFTER`] (another host, or no /proc).
//!
//! Stale locks are ignored by every decision and removed by the next prune, backup or `unlock`.
//! A process whose own lock could not be refreshed for nearly [`STALE_AFTER`] (suspended
//! laptop, lost network) stops before writing anything that others could rely on: its lock may
//! have been judged stale, so prune may have deleted data it meant to use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileType};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::id::Id;

/// How often a held lock is rewritten.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// A process stops writing when its own lock is this close to looking stale to others.
const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);

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
}

/// Whether a lock still counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Stale(String),
}

/// Judges a lock seen at `now` by a process on `this_host`.
pub fn liveness(info: &LockInfo, this_host: &str, now: DateTime<Utc>) -> Liveness {
    if info.hostname == this_host {
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
    let age = now.signed_duration_since(info.refreshed);
    if age.to_std().is_ok_and(|a| a > STALE_AFTER) {
        return Liveness::Stale(format!("not refreshed for {} minutes", age.num_minutes()));
    }
    Liveness::Live
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

/// Lists the locks and judges each. Unreadable lock objects (another repository's key, damage)
/// are reported as stale with the reason, so that they can never block anything forever.
pub fn judge_all(backend: &dyn Backend, cipher: &Cipher) -> Result<Vec<JudgedLock>> {
    let host = this_host();
    let now = Utc::now();
    let mut out = Vec::new();
    for l in list(backend, cipher)? {
        match l.info {
            Ok(info) => {
                let liveness = liveness(&info, &host, now);
                out.push(JudgedLock { id: l.id, info, liveness });
            }
            Err(e) => out.push(JudgedLock {
                id: l.id,
                info: LockInfo {
                    kind: LockKind::Shared,
                    operation: "unknown".into(),
                    hostname: "unknown".into(),
                    username: "unknown".into(),
                    pid: 0,
                    process_start: None,
                    created: now,
                    refreshed: now,
                },
                liveness: Liveness::Stale(format!("unreadable: {e}")),
            }),
        }
    }
    Ok(out)
}

/// Removes the stale locks among `judged` and returns a message for each one removed.
pub fn remove_stale(backend: &dyn Backend, judged: &[JudgedLock]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for l in judged {
        if let Liveness::Stale(why) = &l.liveness {
            match backend.remove(FileType::Lock, &l.id.to_hex()) {
                Ok(()) | Err(Error::ObjectNotFound { .. }) => {}
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
    last_refresh: Mutex<Instant>,
    lost: AtomicBool,
    description: String,
}

impl LockState {
    /// Fails if others may consider this lock stale (then prune may have deleted data this
    /// process relies on, so nothing that refers to such data may be written).
    pub fn ensure_held(&self) -> Result<()> {
        let since = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if self.lost.load(Ordering::SeqCst) || since + SAFETY_MARGIN > STALE_AFTER {
            return Err(Error::LockLost(self.description.clone()));
        }
        Ok(())
    }
}

/// A lock held by this process; released on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    id: Id,
    state: Arc<LockState>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    /// Takes a lock. An exclusive lock fails with [`Error::Locked`] while another live
    /// exclusive lock exists; stale locks in the way are removed (their messages are returned).
    pub fn acquire(
        backend: Arc<dyn Backend>,
        cipher: &Cipher,
        kind: LockKind,
        operation: &str,
    ) -> Result<(Lock, Vec<String>)> {
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
        };
        let mut raw = [0u8; 32];
        crate::crypto::fill_random(&mut raw)?;
        let id = Id(raw);
        backend.write(FileType::Lock, &id.to_hex(), &info.encode(cipher)?)?;
        let state = Arc::new(LockState {
            last_refresh: Mutex::new(Instant::now()),
            lost: AtomicBool::new(false),
            description: info.describe(),
        });
        let mut lock = Lock { backend: backend.clone(), id, state, stop: None, refresher: None };

        let mut messages = Vec::new();
        if kind == LockKind::Exclusive {
            let judged = judge_all(backend.as_ref(), cipher)?;
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
        let name = self.id.to_hex();
        let handle = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(REFRESH_INTERVAL)
            {
                // A lock someone removed (`aeon unlock --all`) is not silently re-created: the
                // remover may have acted on its absence.
                match backend.stat(FileType::Lock, &name) {
                    Ok(None) => {
                        state.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(Some(_)) => {}
                    Err(_) => continue,
                }
                info.refreshed = Utc::now();
                let written = info
                    .encode(&cipher)
                    .and_then(|data| backend.write(FileType::Lock, &name, &data));
                if written.is_ok() {
                    *state.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                }
            }
        });
        self.stop = Some(tx);
        self.refresher = Some(handle);
    }

    pub fn id(&self) -> Id {
        self.id
    }

    pub fn state(&self) -> Arc<LockState> {
        self.state.clone()
    }

    pub fn ensure_held(&self) -> Result<()> {
        self.state.ensure_held()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let _ = self.backend.remove(FileType::Lock, &self.id.to_hex());
    }
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
        }
    }

    #[test]
    fn staleness_rules() {
        let now = Utc::now();
        let me = std::process::id();
        // This process, on this host: live however old its refresh.
        assert_eq!(liveness(&info("h", me, 120), "h", now), Liveness::Live);
        // A pid that cannot exist on this host: stale at once.
        assert!(matches!(liveness(&info("h", u32::MAX - 1, 0), "h", now), Liveness::Stale(_)));
        // Our pid with another start time: reused, stale.
        let mut reused = info("h", me, 0);
        reused.process_start = process_start_time(me).map(|t| t + 1);
        assert!(matches!(liveness(&reused, "h", now), Liveness::Stale(_)));
        // Another host: live while refreshed, stale after STALE_AFTER.
        assert_eq!(liveness(&info("other", 1, 10), "h", now), Liveness::Live);
        assert!(matches!(liveness(&info("other", 1, 31), "h", now), Liveness::Stale(_)));
        // A clock ahead of ours never makes a lock stale.
        assert_eq!(liveness(&info("other", 1, -60), "h", now), Liveness::Live);
    }

    #[test]
    fn exclusive_excludes_exclusive_but_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        backend.create().unwrap();
        let cipher = Cipher::new(&Key::random().unwrap());
        let (shared, _) =
            Lock::acquire(backend.clone(), &cipher, LockKind::Shared, "backup").unwrap();
        let (excl, _) =
            Lock::acquire(backend.clone(), &cipher, LockKind::Exclusive, "prune").unwrap();
        let second = Lock::acquire(backend.clone(), &cipher, LockKind::Exclusive, "prune");
        assert!(matches!(second, Err(Error::Locked(_))));
        // The failed attempt left no lock behind.
        assert_eq!(list(backend.as_ref(), &cipher).unwrap().len(), 2);
        shared.ensure_held().unwrap();
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
        let mut dead = info(&this_host(), u32::MAX - 1, 0);
        dead.kind = LockKind::Exclusive;
        backend
            .write(FileType::Lock, &Id([7; 32]).to_hex(), &dead.encode(&cipher).unwrap())
            .unwrap();
        let (_l, messages) =
            Lock::acquire(backend.clone(), &cipher, LockKind::Exclusive, "prune").unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("no longer running"), "{messages:?}");
        assert_eq!(list(backend.as_ref(), &cipher).unwrap().len(), 1);
    }
}

#[cfg(test)]
mod lost_lock_tests {
    use super::*;

    fn state(refreshed_ago: Duration, lost: bool) -> LockState {
        LockState {
            last_refresh: Mutex::new(
                Instant::now().checked_sub(refreshed_ago).unwrap_or_else(Instant::now),
            ),
            lost: AtomicBool::new(lost),
            description: "backup on host h".into(),
        }
    }

    #[test]
    fn a_writer_stops_before_its_lock_could_look_stale() {
        assert!(state(Duration::from_secs(60), false).ensure_held().is_ok());
        let late = STALE_AFTER - SAFETY_MARGIN + Duration::from_secs(1);
        if Instant::now().checked_sub(late).is_some() {
            assert!(matches!(state(late, false).ensure_held(), Err(Error::LockLost(_))));
        }
        assert!(matches!(state(Duration::ZERO, true).ensure_held(), Err(Error::LockLost(_))));
    }
}
