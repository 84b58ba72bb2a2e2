//! Continuous data protection: the sources of a `watch = true` profile are watched (inotify,
//! through `notify`, or with `watch_method = "fanotify"` their whole file systems, as root), and
//! `watch_delay` after the first change a backup of the changed paths
//! runs (`backup --changed-paths`: the rest is carried over from the parent, not walked). When
//! events may have been lost (a queue overflow, a watcher error, the agent's own start) the
//! next run is a normal incremental backup instead, and the log says so.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher as _};

/// The default `watch_delay`.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(60);

/// What a watcher reports.
pub enum Event {
    /// These paths changed.
    Paths(Vec<PathBuf>),
    /// Events may have been lost, for this reason.
    Lost(String),
}

/// How the sources are watched (held, not read: dropping it stops the watch).
enum Watcher {
    Inotify { _watcher: notify::RecommendedWatcher },
    Fanotify { _watch: super::fanotify::FanotifyWatch },
}

pub struct Watch {
    pub profile: String,
    pub delay: Duration,
    // Kept alive: dropping it stops the watch.
    _watcher: Watcher,
    events: Receiver<Event>,
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
    /// Watches `sources` with `method` (`inotify` or `fanotify`).
    pub fn start(
        profile: &str,
        sources: &[PathBuf],
        delay: Duration,
        method: &str,
    ) -> Result<Watch> {
        let (tx, events) = channel();
        let watcher = if method == "fanotify" {
            Watcher::Fanotify { _watch: super::fanotify::start(sources, tx)? }
        } else {
            let mut watcher =
                notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
                    let _ = tx.send(match e {
                        Ok(e) if e.need_rescan() => {
                            Event::Lost("the kernel's event queue overflowed".into())
                        }
                        Ok(e) if e.kind.is_access() => return,
                        Ok(e) => Event::Paths(e.paths),
                        Err(e) => Event::Lost(format!("the watcher failed: {e}")),
                    });
                })
                .context("cannot start a file-system watcher")?;
            for source in sources {
                watcher.watch(source, RecursiveMode::Recursive).with_context(|| {
                    format!(
                        "cannot watch {} (fs.inotify.max_user_watches may be too low; \
                         watch_method = \"fanotify\" watches whole file systems, as root)",
                        source.display()
                    )
                })?;
            }
            Watcher::Inotify { _watcher: watcher }
        };
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
                Event::Lost(why) => self.lost = Some(why),
                Event::Paths(paths) => {
                    if !paths.is_empty() && self.first_change.is_none() {
                        self.first_change = Some(Instant::now());
                    }
                    self.changed.extend(paths);
                }
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
