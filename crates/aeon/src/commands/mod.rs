pub mod audit;
pub mod backup;
pub mod cat;
pub mod check;
pub mod config;
pub mod copy;
pub mod diff;
pub mod dr;
pub mod dump;
pub mod find;
pub mod forget;
pub mod import;
pub mod init;
pub mod key;
pub mod locations;
pub mod ls;
pub mod mount;
pub mod parity;
pub mod policy;
pub mod protect;
pub mod prune;
pub mod repair;
pub mod report;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod unlock;
pub mod verify;

use aeon_core::Repository;
use aeon_core::snapshot::SnapshotEntry;
use aeon_core::tree::Node;
use anyhow::{Context, Result, bail};

/// Splits `ID[:PATH]`, resolves the recovery point, and finds the node at PATH.
pub fn resolve_target(repo: &Repository, spec: &str) -> Result<(SnapshotEntry, String, Node)> {
    resolve_target_at(repo, Some(spec), &crate::cli::AtArgs { at: None, host: None, path: None })
}

/// Like [`resolve_target`], where `--at TIME` may stand for the id: the newest recovery point
/// taken at or before TIME (of `--host`, including `--path`).
pub fn resolve_target_at(
    repo: &Repository,
    spec: Option<&str>,
    at: &crate::cli::AtArgs,
) -> Result<(SnapshotEntry, String, Node)> {
    let spec = spec.unwrap_or("");
    let (id, path) = match spec.split_once(':') {
        Some((id, path)) => (id, path.to_string()),
        None => (spec, String::new()),
    };
    let entry = match (&at.at, id) {
        (Some(time), "" | "latest") => {
            let when = crate::timefmt::parse(time)?;
            let (entries, unreadable) = repo.list_snapshots()?;
            aeon_core::snapshot::refuse_unreadable(
                unreadable.iter(),
                &format!(
                    "which point was taken at or before {when} cannot be told while it is \
                     unreadable: name a recovery point by id"
                ),
            )?;
            entries
                .into_iter()
                .filter(|e| at.host.as_ref().is_none_or(|h| &e.snapshot.hostname == h))
                .filter(|e| {
                    at.path.as_ref().is_none_or(|p| e.snapshot.paths.iter().any(|sp| sp == p))
                })
                .filter(|e| e.snapshot.time <= when)
                .max_by_key(|e| e.snapshot.time)
                .with_context(|| format!("no recovery point was taken at or before {when}"))?
        }
        (Some(_), _) => bail!("give either a recovery point id or --at, not both"),
        (None, "") => bail!("name a recovery point (ID, ID prefix or \"latest\") or use --at TIME"),
        (None, id) => repo.find_snapshot(id)?,
    };
    let node = repo.find_node(&entry.snapshot.tree, &path)?;
    Ok((entry, path, node))
}

pub fn host_name() -> String {
    aeon_core::lock::this_host()
}

pub fn user_name() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }.to_string()
    })
}
