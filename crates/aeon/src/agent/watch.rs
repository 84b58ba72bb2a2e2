//! Continuous data protection: the sources of a `watch = true` profile are watched (inotify,
//! through `notify`), and `watch_delay` after the first change a backup of the changed paths
//! runs (`backup --changed-paths`: the rest is carried over from the parent, not walked). When
//! events may have been lost (a queue overflow, a watcher error, the agent's own start) the
//! next run is a normal incremental backup instead, and the log says so.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// The default `watch_delay`.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(60);

pub struct Watch {
    pub profile: String,
    pub delay: Duration,
    // Kept alive: dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
    events: Receiver<notify::Result<notify::Event>>,
    changed: BTreeSet<PathBuf>,
    first_change: Option<Instant>,
    /// Why the next run must walk everything, if it must.
    lost: Option<String>,
}

/// What a due watch asks for.
pub enum Due {
    /// These paths changed (written to the file the backup reads).
    Changed(Vec<PathBuf>),
    /// Events may be missing: a normal incremental backup, for this reason.
    Everything(String),
}

impl Watch {
    pub fn start(profile: &str, sources: &[PathBuf], delay: Duration) -> Result<Watch> {
        let (tx, events) = channel();
        let mut watcher = notify::recommended_watcher(move |e| {
            let _ = tx.send(e);
        })
        .context("cannot start a file-system watcher")?;
        for source in sources {
            watcher.watch(source, RecursiveMode::Recursive).with_context(|| {
                format!(
                    "cannot watch {} (fs.inotify.max_user_watches may be too low)",
                    source.display()
                )
            })?;
        }
        Ok(Watch {
            profile: profile.to_string(),
            delay,
            _watcher: watcher,
            events,
            changed: BTreeSet::new(),
            first_change: None,
            // Whatever changed while no one watched is unknown.
            lost: Some("the watch started: what changed before is not known".into()),
        })
    }

    /// Takes in the events that arrived.
    pub fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Ok(e) if e.need_rescan() => {
                    self.lost = Some("the kernel's event queue overflowed".into());
                }
                Ok(e) => {
                    if e.kind.is_access() {
                        continue;
                    }
                    if !e.paths.is_empty() && self.first_change.is_none() {
                        self.first_change = Some(Instant::now());
                    }
                    self.changed.extend(e.paths);
                }
                Err(e) => self.lost = Some(format!("the watcher failed: {e}")),
            }
        }
    }

    /// What to back up now, if the delay after the first change has passed (or events were
    /// lost); resets the watch.
    pub fn take_due(&mut self) -> Option<Due> {
        if let Some(why) = self.lost.take() {
            self.changed.clear();
            self.first_change = None;
            return Some(Due::Everything(why));
        }
        let first = self.first_change?;
        if first.elapsed() < self.delay {
            return None;
        }
        self.first_change = None;
        Some(Due::Changed(std::mem::take(&mut self.changed).into_iter().collect()))
    }

    /// A run could not start (its repository is busy): keep what is due for the next tick.
    pub fn put_back(&mut self, due: Due) {
        match due {
            Due::Everything(why) => self.lost = Some(why),
            Due::Changed(paths) => {
                self.changed.extend(paths);
                self.first_change.get_or_insert_with(Instant::now);
            }
        }
    }
}
