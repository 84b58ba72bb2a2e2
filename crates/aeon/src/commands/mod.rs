pub mod backup;
pub mod cat;
pub mod check;
pub mod init;
pub mod ls;
pub mod restore;
pub mod snapshots;

use aeon_core::Repository;
use aeon_core::snapshot::SnapshotEntry;
use aeon_core::tree::Node;
use anyhow::Result;

/// Splits `ID[:PATH]`, resolves the recovery point, and finds the node at PATH.
pub fn resolve_target(repo: &Repository, spec: &str) -> Result<(SnapshotEntry, String, Node)> {
    let (id, path) = match spec.split_once(':') {
        Some((id, path)) => (id, path.to_string()),
        None => (spec, String::new()),
    };
    let entry = repo.find_snapshot(id)?;
    let node = repo.find_node(&entry.snapshot.tree, &path)?;
    Ok((entry, path, node))
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

pub fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }.to_string()
        })
}
