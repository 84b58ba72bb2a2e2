//! Opening a repository from where it is: the location's storage (a path or a URL), every
//! location of a multi-location repository, the metadata cache for remote storage, and the
//! settings of this process's locks, all set up here so that every front end gets the same.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::state::Open;
use super::{ConfigHeader, InitOptions, Repository};
use crate::backend::{self, Backend, FileType, Location, MirrorBackend, RemoteOptions};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::keys::KeySlot;
use crate::progress::{NoProgress, Notice, Progress};

/// Where the metadata cache of remote repositories lives.
#[derive(Debug, Clone, Default)]
pub enum CacheDir {
    /// `$XDG_CACHE_HOME/aeon`, else `~/.cache/aeon`.
    #[default]
    Default,
    At(PathBuf),
    /// No cache: every listing reads storage.
    Off,
}

impl CacheDir {
    fn base(&self) -> Option<PathBuf> {
        match self {
            CacheDir::At(d) => Some(d.clone()),
            CacheDir::Off => None,
            CacheDir::Default => {
                let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
                let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
                xdg.or(home).map(|d| d.join("aeon"))
            }
        }
    }
}

/// How to reach and run a repository, beyond its location and password.
#[derive(Clone)]
pub struct OpenOptions {
    pub storage: RemoteOptions,
    pub cache: CacheDir,
    /// The stale period this process's locks declare (default
    /// [`crate::lock::DEFAULT_STALE_AFTER`]).
    pub lock_stale_after: Option<Duration>,
    /// Where notices go (see [`crate::progress::Notice`]).
    pub observer: Arc<dyn Progress>,
    /// Delete and replace nothing (see [`Repository::set_append_only`]).
    pub append_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            storage: RemoteOptions::default(),
            cache: CacheDir::Default,
            lock_stale_after: None,
            observer: Arc::new(NoProgress),
            append_only: false,
        }
    }
}

/// A location known to hold an Aeon repository of a supported version: what is checked
/// before a password is asked for.
pub struct Located {
    backend: Arc<dyn Backend>,
    header: ConfigHeader,
    remote: bool,
    options: OpenOptions,
}

impl Repository<Open> {
    /// Finds the repository at `location` (a local path, or an `s3:`, `sftp:` or `webdav:`
    /// URL) and checks its config's public part.
    pub fn locate(location: &str, options: OpenOptions) -> Result<Located> {
        let backend = backend::open_location(location, &options.storage)?;
        let header = Repository::probe(backend.as_ref())?;
        Ok(Located { backend, header, remote: backend::is_remote(location), options })
    }
}

impl Located {
    /// The repository's format version, readable without a key.
    pub fn format_version(&self) -> u8 {
        self.header.format_version()
    }

    /// The location's storage, for work that needs no key and starts while the key is derived
    /// (such as [`crate::check::EarlyPackRead`]).
    pub fn storage(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// Unlocks the key with `password` and sets the repository up: all its locations, the
    /// metadata cache for remote storage, and this process's lock period.
    pub fn open(self, password: &[u8]) -> Result<Repository<Open>> {
        self.open_with(&crate::keys::Credential::password(password))
    }

    /// [`Located::open`] with any credential: a password, a key file or a secret key.
    pub fn open_with(self, credential: &crate::keys::Credential) -> Result<Repository<Open>> {
        let Located { backend, remote, options, .. } = self;
        let mut repo = Repository::open_with(backend, credential)?;
        repo.set_observer(options.observer.clone());
        for w in repo.open_warnings().to_vec() {
            repo.notify(Notice::warning(w));
        }
        if let Some(period) = options.lock_stale_after {
            repo.set_lock_stale_after(period);
        }
        let locations = repo.settings().locations.clone();
        if locations.len() > 1 {
            let m = Arc::new(mirror(&locations, &options.storage)?);
            match (repo.settings().layout.as_deref(), repo.settings().parity) {
                (Some(super::LAYOUT_STRIPE), Some(scheme)) => {
                    repo.set_stripe(Arc::new(crate::backend::StripeBackend::new(m, scheme)?))
                }
                (Some(other), _) if other != super::LAYOUT_STRIPE => {
                    return Err(Error::InvalidInput(format!(
                        "the repository's layout `{other}` is not known to this aeon: upgrade it"
                    )));
                }
                _ => repo.set_mirror(m),
            }
        }
        if options.append_only || repo.keyring().append_only {
            repo.set_append_only();
        }
        // A write-only client keeps its record of what it wrote there, even for local storage.
        let write_only = repo.keyring().is_write_only();
        if (remote || write_only)
            && let Some(base) = options.cache.base()
        {
            match Cache::open(&base, &repo.repository_id()) {
                Ok(c) => repo.set_cache(c),
                Err(e) => repo.notify(Notice::warning(format!(
                    "no metadata cache at {}: {e}",
                    base.display()
                ))),
            }
        }
        Ok(repo)
    }
}

impl Located {
    /// Every key slot, by name, decoded but not unlocked (`aeon cat keys`: no password needed).
    pub fn key_slots(&self) -> Result<Vec<(String, KeySlot)>> {
        let mut slots = Vec::new();
        for info in self.backend.list(FileType::Key)? {
            let slot = KeySlot::decode(&self.backend.read(FileType::Key, &info.name)?)?;
            slots.push((info.name, slot));
        }
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(slots)
    }
}

/// Where `init` makes a new repository: checked to be free before a password is asked for.
pub struct InitTarget {
    backend: Arc<dyn Backend>,
}

impl InitTarget {
    /// The place for a new repository at `location`, or at every one of `locations` when
    /// several are given (they then mirror each other; `location` is the first of them).
    pub fn new(
        location: &str,
        locations: &[String],
        storage: &RemoteOptions,
    ) -> Result<InitTarget> {
        let backend: Arc<dyn Backend> = match locations.len() {
            0 => backend::open_location(location, storage)?,
            1 => backend::open_location(&locations[0], storage)?,
            _ => Arc::new(mirror(locations, storage)?),
        };
        if backend.stat(FileType::Config, "config")?.is_some() {
            return Err(Error::AlreadyExists(backend.location()));
        }
        Ok(InitTarget { backend })
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Creates the repository (see [`Repository::init`]).
    pub fn create(self, password: &[u8], opts: InitOptions) -> Result<Repository<Open>> {
        Repository::init(self.backend, password, opts)
    }
}

/// A location as `init` records it: local paths absolute, so that the repository opens from
/// anywhere; URLs as given.
pub fn canonical_location(location: &str) -> String {
    if backend::is_remote(location) {
        return location.to_string();
    }
    match std::path::absolute(location) {
        Ok(p) => p.display().to_string(),
        Err(_) => location.to_string(),
    }
}

/// All `locations` as one mirrored storage.
pub fn mirror(locations: &[String], storage: &RemoteOptions) -> Result<MirrorBackend> {
    let mut v = Vec::new();
    for l in locations {
        v.push(Location::new(l.clone(), backend::open_location(l, storage)?));
    }
    Ok(MirrorBackend::new(v))
}
