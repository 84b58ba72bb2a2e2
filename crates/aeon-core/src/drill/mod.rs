//! Disaster-recovery drills: the newest recovery point of a host or path (or a sample of its
//! files) is restored into a scratch folder, every restored byte and attribute is proven
//! against the point, and the time the restore took (the recovery time) is measured and kept
//! in the audit log, where `dr plan` and the compliance report find it.

pub mod plan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::diff::{self, Change, ChangeKind};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::restorer::{self, RestoreOptions};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};

/// What to drill.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Only points of this host.
    pub host: Option<String>,
    /// Only points that back up this path, and only this path of them (absolute, as the
    /// point records it).
    pub path: Option<String>,
    /// Restore this many files picked at random instead of everything.
    pub sample: Option<usize>,
    /// Where to restore: a folder that does not exist yet, or is empty.
    pub scratch: PathBuf,
    pub threads: usize,
    /// Seed of the sample (the time, unless a test fixes it).
    pub seed: u64,
}

/// What a drill found and measured.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub point: String,
    pub point_time: DateTime<FixedOffset>,
    pub host: String,
    pub paths: Vec<String>,
    /// The path of the point that was restored (`/`: all of it).
    pub restored: String,
    /// Files picked, when the drill restored a sample.
    pub sampled: Option<usize>,
    pub files: u64,
    pub bytes: u64,
    /// The recovery time: from the start of the restore to its end.
    pub restore_seconds: f64,
    /// Reading everything back and comparing it with the point.
    pub verify_seconds: f64,
    pub bytes_per_second: f64,
    /// Every entry whose content or type differs from the point (metadata-only differences
    /// are in `metadata_differences`).
    pub differences: Vec<Change>,
    pub metadata_differences: Vec<Change>,
    /// Items the restore could not write, and files whose stored data failed verification.
    pub errors: Vec<String>,
    pub passed: bool,
}

/// The newest point of `host` that backs up `path` (either may be absent).
pub fn newest_point(
    repo: &Repository,
    host: Option<&str>,
    path: Option<&str>,
) -> Result<SnapshotEntry> {
    let (entries, unreadable) = repo.list_snapshots()?;
    crate::snapshot::refuse_unreadable(
        unreadable.iter(),
        "which point is the newest cannot be told while one cannot be read: repair it or forget it",
    )?;
    entries
        .into_iter()
        .filter(|e| host.is_none_or(|h| e.snapshot.hostname == h))
        .filter(|e| path.is_none_or(|p| e.snapshot.paths.iter().any(|sp| is_within(p, sp))))
        .max_by_key(|e| (e.snapshot.time, e.id))
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "no recovery point{}{} to drill",
                host.map(|h| format!(" of host {h}")).unwrap_or_default(),
                path.map(|p| format!(" that backs up {p}")).unwrap_or_default()
            ))
        })
}

/// Whether `path` is `source` or lies beneath it.
fn is_within(path: &str, source: &str) -> bool {
    let (p, s) = (path.trim_end_matches('/'), source.trim_end_matches('/'));
    p == s || p.strip_prefix(s).is_some_and(|rest| rest.starts_with('/')) || s.is_empty()
}

/// Runs a drill: restores, proves, measures, and records the outcome in the audit log.
pub fn drill(
    repo: &Repository,
    opts: &DrillOptions,
    progress: &dyn Progress,
) -> Result<DrillReport> {
    let entry = newest_point(repo, opts.host.as_deref(), opts.path.as_deref())?;
    let restored = format!("/{}", opts.path.as_deref().unwrap_or("").trim_matches('/'));
    let node = repo.find_node(&entry.snapshot.tree, &restored)?;
    if opts.scratch.exists()
        && std::fs::read_dir(&opts.scratch)
            .map_err(|e| Error::io(&opts.scratch, e))?
            .next()
            .is_some()
    {
        return Err(Error::InvalidInput(format!(
            "the drill's scratch folder {} is not empty",
            opts.scratch.display()
        )));
    }
    let mut report = DrillReport {
        point: entry.id.to_hex(),
        point_time: entry.snapshot.time,
        host: entry.snapshot.hostname.clone(),
        paths: entry.snapshot.paths.clone(),
        restored: restored.clone(),
        sampled: None,
        files: 0,
        bytes: 0,
        restore_seconds: 0.0,
        verify_seconds: 0.0,
        bytes_per_second: 0.0,
        differences: Vec::new(),
        metadata_differences: Vec::new(),
        errors: Vec::new(),
        passed: false,
    };
    let restore_opts = RestoreOptions {
        threads: opts.threads.max(1),
        // The drill proves the restore by reading it back in full below.
        verify: false,
        ..RestoreOptions::default()
    };
    // What is restored, each with the path it lands at.
    let parts: Vec<(String, Node, PathBuf)> = match opts.sample {
        None => vec![(restored.clone(), node.clone(), opts.scratch.clone())],
        Some(n) => {
            let mut files = Vec::new();
            collect_files(repo, &node, &restored, &mut files)?;
            let picked = sample(files, n, opts.seed);
            report.sampled = Some(picked.len());
            picked
                .into_iter()
                .enumerate()
                .map(|(i, (path, file))| {
                    let into = opts.scratch.join(format!("{i:06}"));
                    (path, file, into)
                })
                .collect()
        }
    };
    let started = Instant::now();
    for (path, part, into) in &parts {
        let summary = restorer::restore(repo, part, path, into, &restore_opts, progress)?;
        report.files += summary.files;
        report.bytes += summary.bytes;
        report.errors.extend(summary.errors);
        if let Some(full) = summary.no_space {
            report.errors.push(format!("the scratch folder's file system is full: {full}"));
        }
    }
    report.restore_seconds = started.elapsed().as_secs_f64();
    let verifying = Instant::now();
    let mut changes = Vec::new();
    for (_, part, into) in &parts {
        // A file restored alone lands in its folder under its own name.
        let live = if part.kind == NodeKind::Dir {
            into.clone()
        } else {
            into.join(part.name.as_os_str())
        };
        diff::verify_live(repo, part, &live, &mut changes)?;
    }
    report.verify_seconds = verifying.elapsed().as_secs_f64();
    let (metadata, content): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| c.change == ChangeKind::Metadata);
    report.differences = content;
    report.metadata_differences = metadata;
    report.bytes_per_second = report.bytes as f64 / report.restore_seconds.max(1e-6);
    report.passed = report.differences.is_empty() && report.errors.is_empty();
    record(repo, &report);
    Ok(report)
}

/// Every regular file below `node` (at `base`), with its path.
fn collect_files(
    repo: &Repository,
    node: &Node,
    base: &str,
    out: &mut Vec<(String, Node)>,
) -> Result<()> {
    match node.kind {
        NodeKind::File => out.push((base.to_string(), node.clone())),
        NodeKind::Dir => {
            let Some(subtree) = node.subtree else { return Ok(()) };
            crate::tree::ensure_depth(crate::tree::depth_of(base), &base)?;
            for child in repo.load_tree(&subtree)?.nodes {
                let path =
                    format!("{}/{}", base.trim_end_matches('/'), child.name.to_string_lossy());
                collect_files(repo, &child, &path, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `n` of `items` picked at random (all of them if there are fewer), in their order.
fn sample<T>(items: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    if items.len() <= n {
        return items;
    }
    // A partial Fisher-Yates shuffle of the indices, driven by splitmix64.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut indices: Vec<usize> = (0..items.len()).collect();
    for i in 0..n {
        let j = i + (next() % (items.len() - i) as u64) as usize;
        indices.swap(i, j);
    }
    let mut chosen: Vec<usize> = indices[..n].to_vec();
    chosen.sort_unstable();
    let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
    chosen.into_iter().filter_map(|i| items[i].take()).collect()
}

/// The drill's audit record: `drill POINT PATH` with its figures.
fn record(repo: &Repository, report: &DrillReport) {
    let mut event = crate::audit::Event::new("drill")
        .arg(&report.point)
        .arg(&report.restored)
        .figure("seconds", report.restore_seconds)
        .figure("verify_seconds", report.verify_seconds)
        .figure("files", report.files as f64)
        .figure("bytes", report.bytes as f64)
        .figure("bytes_per_second", report.bytes_per_second)
        .figure("differences", report.differences.len() as f64);
    if let Some(n) = report.sampled {
        event = event.figure("sampled", n as f64);
    }
    if !report.passed {
        event.failure = Some(format!(
            "{} difference(s), {} error(s)",
            report.differences.len(),
            report.errors.len()
        ));
    }
    repo.audit(event);
}

/// Where a drill puts its files when not told: a new folder under the system's temporary one.
pub fn default_scratch() -> PathBuf {
    std::env::temp_dir().join(format!("aeon-drill-{}", std::process::id()))
}

/// Removes a drill's scratch folder (made writable first: restored folders may be read-only).
pub fn remove_scratch(dir: &Path) -> std::io::Result<()> {
    fn open_up(dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                open_up(&entry.path())?;
            }
        }
        Ok(())
    }
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    open_up(dir)?;
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_distinct_in_order_and_capped() {
        let picked = sample((0..1000).collect::<Vec<_>>(), 10, 42);
        assert_eq!(picked.len(), 10);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(picked, sample((0..1000).collect::<Vec<_>>(), 10, 43));
        assert_eq!(sample(vec![1, 2, 3], 10, 1), [1, 2, 3]);
    }

    #[test]
    fn paths_within_a_source() {
        assert!(is_within("/srv/www", "/srv/www"));
        assert!(is_within("/srv/www/a", "/srv/www/"));
        assert!(!is_within("/srv/wwwx", "/srv/www"));
        assert!(is_within("/anything", "/"));
    }
}
