//! Repository statistics: what is stored, how well it deduplicates and compresses, and what
//! each recovery point alone holds (what forgetting it would free).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::tree::NodeKind;

#[derive(Debug, Default, Clone, Serialize)]
pub struct RepositoryStats {
    pub snapshots: usize,
    pub packs: usize,
    pub packs_pending_deletion: usize,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Bytes on storage: packs, index files, recovery points, key slots.
    pub stored_bytes: u64,
    /// Sum of the sizes of the files of every recovery point, as if each were restored.
    pub total_size: u64,
    /// Plaintext bytes of the distinct blobs the recovery points use.
    pub deduplicated_size: u64,
    /// Stored (compressed, encrypted) bytes of those blobs.
    pub deduplicated_stored: u64,
    /// deduplicated_size / deduplicated_stored.
    pub compression_ratio: f64,
    /// total_size / deduplicated_stored: how much the repository saves overall.
    pub space_saving_ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    pub per_snapshot: Vec<SnapshotStats>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SnapshotStats {
    pub id: String,
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
    pub total_size: u64,
    pub files: u64,
    pub blobs: u64,
    /// Blobs no other recovery point uses: what forgetting this one (and pruning) frees.
    pub unique_blobs: u64,
    pub unique_size: u64,
    pub unique_stored: u64,
}

/// The blobs and file sizes one tree names directly.
struct TreeSummary {
    blobs: Vec<Id>,
    subtrees: Vec<Id>,
    file_bytes: u64,
    files: u64,
}

/// Computes statistics for `selected` recovery points (all of them when `None`); uniqueness is
/// always judged against every recovery point in the repository.
pub fn stats(repo: &Repository, selected: Option<&[Id]>) -> Result<RepositoryStats> {
    let (all, _) = repo.list_snapshots()?;
    let index = repo.index();
    let mut cache: HashMap<Id, TreeSummary> = HashMap::new();
    // For every blob: the one recovery point using it, or `SHARED`.
    const SHARED: usize = usize::MAX;
    let mut owner: HashMap<Id, usize> = HashMap::new();
    let mut per: Vec<SnapshotStats> = Vec::with_capacity(all.len());
    for (n, s) in all.iter().enumerate() {
        let mut seen: HashSet<Id> = HashSet::new();
        let mut st = describe(s);
        let mut stack = vec![s.snapshot.tree];
        while let Some(tree) = stack.pop() {
            if seen.insert(tree) {
                let e = owner.entry(tree).or_insert(n);
                if *e != n {
                    *e = SHARED;
                }
            }
            let t = match cache.entry(tree) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(summarize(repo, &tree)?),
            };
            st.total_size += t.file_bytes;
            st.files += t.files;
            for b in &t.blobs {
                if seen.insert(*b) {
                    let e = owner.entry(*b).or_insert(n);
                    if *e != n {
                        *e = SHARED;
                    }
                }
            }
            stack.extend(t.subtrees.iter().copied());
        }
        st.blobs = seen.len() as u64;
        per.push(st);
    }

    let mut out = RepositoryStats {
        snapshots: all.len(),
        packs: index.packs().iter().filter(|p| !p.condemned).count(),
        packs_pending_deletion: index.packs().iter().filter(|p| p.condemned).count(),
        stored_bytes: repo.storage_used()?,
        quota: repo.settings().quota,
        ..Default::default()
    };
    for (_, l) in index.blobs() {
        match l.blob_type {
            crate::blob::BlobType::Data => out.data_blobs += 1,
            crate::blob::BlobType::Tree => out.tree_blobs += 1,
        }
    }
    let wanted = |n: usize| selected.is_none_or(|ids| ids.contains(&all[n].id));
    for (id, &n) in &owner {
        let Some(l) = index.get_readable(id) else { continue };
        if n != SHARED {
            let st = &mut per[n];
            st.unique_blobs += 1;
            st.unique_size += l.raw_len as u64;
            st.unique_stored += l.length as u64;
        }
        out.deduplicated_size += l.raw_len as u64;
        out.deduplicated_stored += l.length as u64;
    }
    if let Some(ids) = selected {
        let (size, stored) = selection_footprint(repo, &cache, &all, ids);
        out.deduplicated_size = size;
        out.deduplicated_stored = stored;
    }
    let per: Vec<SnapshotStats> =
        per.into_iter().enumerate().filter(|(n, _)| wanted(*n)).map(|(_, s)| s).collect();
    out.total_size = per.iter().map(|s| s.total_size).sum();
    if out.deduplicated_stored > 0 {
        out.compression_ratio = out.deduplicated_size as f64 / out.deduplicated_stored as f64;
        out.space_saving_ratio = out.total_size as f64 / out.deduplicated_stored as f64;
    }
    out.per_snapshot = per;
    Ok(out)
}

/// Plaintext and stored bytes of the distinct blobs the selected recovery points use.
fn selection_footprint(
    repo: &Repository,
    cache: &HashMap<Id, TreeSummary>,
    all: &[SnapshotEntry],
    ids: &[Id],
) -> (u64, u64) {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut stack: Vec<Id> =
        all.iter().filter(|s| ids.contains(&s.id)).map(|s| s.snapshot.tree).collect();
    while let Some(tree) = stack.pop() {
        if !seen.insert(tree) {
            continue;
        }
        if let Some(t) = cache.get(&tree) {
            for b in &t.blobs {
                seen.insert(*b);
            }
            stack.extend(t.subtrees.iter().copied());
        }
    }
    let index = repo.index();
    seen.iter()
        .filter_map(|id| index.get_readable(id))
        .fold((0, 0), |(a, b), l| (a + l.raw_len as u64, b + l.length as u64))
}

fn describe(s: &SnapshotEntry) -> SnapshotStats {
    SnapshotStats {
        id: s.id.to_hex(),
        time: s.snapshot.time.to_rfc3339(),
        hostname: s.snapshot.hostname.clone(),
        paths: s.snapshot.paths.clone(),
        ..Default::default()
    }
}

fn summarize(repo: &Repository, id: &Id) -> Result<TreeSummary> {
    let tree = repo.load_tree(id)?;
    let mut t = TreeSummary { blobs: Vec::new(), subtrees: Vec::new(), file_bytes: 0, files: 0 };
    for node in tree.nodes {
        if node.kind == NodeKind::File {
            t.files += 1;
            t.file_bytes += node.size;
        }
        t.blobs.extend(node.content);
        if let Some(sub) = node.subtree {
            t.subtrees.push(sub);
        }
    }
    Ok(t)
}
