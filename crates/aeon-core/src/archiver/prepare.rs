//! Everything a backup does before and after the archiver runs: the lock, stale locks, the
//! index, reusing what an interrupted backup stored, the quota, and the parent.

use super::{BackupOptions, absolute_source_paths};
use crate::error::Result;
use crate::id::Id;
use crate::lock::LockKind;
use crate::progress::Notice;
use crate::repository::Repository;
use crate::repository::state::Open;

/// Which recovery point a backup compares against (files unchanged since it are not read).
#[derive(Debug, Clone, Default)]
pub enum ParentChoice {
    /// The newest point of the same host with the same source paths.
    #[default]
    Latest,
    /// None: every file is read (`--force`, streams).
    None,
    /// A point named by id, id prefix or `latest`.
    Given(String),
}

/// A repository made ready for a backup, and what getting it ready did.
pub struct Prepared {
    /// Locked (shared) with its index loaded.
    pub repo: Repository,
    /// Packs an interrupted backup stored that this one reuses instead of storing again.
    pub packs_reused: usize,
    pub bytes_reused: u64,
    /// With a quota: the repository's size before the backup, and its limit.
    pub quota: Option<(u64, u64)>,
}

/// Readies `repo` for a backup with `opts`, and fills in what the repository decides of them
/// (the parent, the quota already used). The lock comes before the index is read: prune's
/// safety rests on it. Stale locks are evidence of a crash: the packs the crashed writer stored
/// are adopted, so that nothing it uploaded is uploaded again.
pub fn prepare(
    repo: Repository<Open>,
    opts: &mut BackupOptions,
    parent: ParentChoice,
) -> Result<Prepared> {
    let repo = repo.lock(LockKind::Shared, "backup")?;
    // Append-only: stale locks are evidence all the same, but stay for a client that may delete.
    let stale = match repo.append_only() {
        false => repo.remove_stale_locks()?,
        true => repo
            .judge_locks()?
            .into_iter()
            .filter(|l| matches!(l.liveness, crate::lock::Liveness::Stale(_)))
            .map(|l| format!("stale lock left in place (append-only): {}", l.info.describe()))
            .collect(),
    };
    for m in &stale {
        repo.notify(Notice::note(m.clone()));
    }
    let mut repo = repo.load_index()?;
    let absent = &repo.index_state().missing_packs;
    if let Some(first) = absent.first() {
        repo.notify(Notice::warning(format!(
            "the index names {} pack(s) that storage does not have (first: {first}); their data \
             is stored again rather than trusted (run `aeon check`)",
            absent.len()
        )));
    }
    let (mut packs_reused, mut bytes_reused) = (0, 0);
    let write_only = repo.keyring().is_write_only();
    // A write-only client cannot read others' pack tables (nor its own earlier runs').
    if !stale.is_empty() && !write_only {
        (packs_reused, bytes_reused) = adopt_unindexed_packs(&mut repo)?;
    }
    let quota = match repo.settings().quota {
        Some(limit) => Some((repo.storage_used()?, limit)),
        None => None,
    };
    opts.quota_used = quota.map(|(used, _)| used);
    opts.parent = match parent {
        ParentChoice::None => None,
        // It cannot read a recovery point: every file is read, and deduplicated against its
        // own record.
        ParentChoice::Latest if write_only => None,
        ParentChoice::Given(spec) => Some(repo.find_snapshot(&spec)?.id),
        ParentChoice::Latest => latest_with_same_sources(&repo, opts)?,
    };
    Ok(Prepared { repo, packs_reused, bytes_reused, quota })
}

/// Records packs that no index names (a killed backup wrote them) so that this backup reuses
/// their blobs. Packs whose table cannot be read are left for `check` and `prune`.
fn adopt_unindexed_packs(repo: &mut Repository) -> Result<(usize, u64)> {
    let mut packs = Vec::new();
    for o in repo.unindexed_packs()? {
        if let Ok(p) = repo.read_pack_table(&o.name, o.size) {
            packs.push(p);
        }
    }
    let n = packs.len();
    let infos: Vec<crate::backend::ObjectInfo> = packs
        .iter()
        .map(|p| crate::backend::ObjectInfo { name: p.id.to_hex(), size: p.size })
        .collect();
    let bytes = repo.adopt_packs(packs)?;
    // A killed backup sealed no group over its last packs: they get their parity now.
    if let Some(scheme) = repo.settings().parity
        && !infos.is_empty()
        && repo.stripe().is_none()
    {
        let listing =
            crate::parity::ParityListing::read(repo.storage().as_ref(), &Default::default())?;
        let adopted: std::collections::HashSet<crate::id::Id> =
            infos.iter().filter_map(|i| i.name.parse().ok()).collect();
        crate::parity::groups::complete_groups_of(repo.storage().as_ref(), &listing, &adopted)?;
        let covered = listing.group_of_pack();
        let infos: Vec<_> = infos
            .into_iter()
            .filter(|i| i.name.parse().is_ok_and(|id| !covered.contains_key(&id)))
            .collect();
        crate::parity::groups::protect_packs(
            repo.storage().clone(),
            scheme,
            repo.format_version(),
            &infos,
            &crate::progress::NoProgress,
        )?;
    }
    Ok((n, bytes))
}

/// The newest recovery point of the same host with the same paths.
fn latest_with_same_sources(repo: &Repository, opts: &BackupOptions) -> Result<Option<Id>> {
    let paths: Vec<String> = absolute_source_paths(&opts.paths)?
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let (entries, _) = repo.list_snapshots()?;
    Ok(entries
        .iter()
        .filter(|e| e.snapshot.hostname == opts.hostname && e.snapshot.paths == paths)
        .max_by_key(|e| e.snapshot.time)
        .map(|e| e.id))
}

/// Tells the observer about locations of a multi-location repository that missed writes
/// (they were unreachable): what `aeon locations sync` must fill in.
pub fn report_missed_writes(repo: &Repository) {
    let Some(m) = repo.mirror() else { return };
    let missed = m.missed_writes();
    for (i, l) in m.locations().iter().enumerate() {
        let n = missed.iter().filter(|(at, _, _)| *at == i).count();
        if n > 0 {
            repo.notify(Notice::warning(format!(
                "location {} was unreachable ({}); {n} object(s) are missing there: run `aeon \
                 locations sync` when it is back",
                l.url,
                l.why_down().unwrap_or_default()
            )));
        }
    }
}
