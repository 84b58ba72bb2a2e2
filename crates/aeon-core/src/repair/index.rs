//! `aeon repair index`: a new index from the packs' own tables, for when index files are
//! damaged or lost (restic's `repair index`).
//!
//! Every pack on storage is read and its table authenticated (in format v3 the table is bound
//! to the pack's bytes, so a damaged pack does not open and stays out of the index). The new
//! index files supersede every index file there was, damaged ones included, which are then
//! removed. Packs awaiting deletion become live again: a later prune condemns them anew.

use serde::Serialize;

use crate::backend::FileType;
use crate::error::Result;
use crate::id::Id;
use crate::index::IndexFile;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::state::Locked;

use super::RepairOptions;

/// Packs per new index file (the last one also supersedes the old files).
const PACKS_PER_FILE: usize = 2048;

#[derive(Debug, Default, Serialize)]
pub struct IndexRebuild {
    pub packs: u64,
    pub blobs: u64,
    /// Index files replaced (0 with --dry-run).
    pub replaced: u64,
    /// Packs whose table does not open: (pack, why). Their data is lost to the index.
    pub unreadable_packs: Vec<(String, String)>,
}

/// Rebuilds the index of `repo` (which must hold the exclusive lock) from its packs.
pub fn rebuild_index(
    repo: Repository<Locked>,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<IndexRebuild> {
    let old: Vec<Id> = repo
        .backend()
        .list(FileType::Index)?
        .into_iter()
        .filter_map(|o| o.name.parse().ok())
        .collect();
    let packs = repo.backend().list(FileType::Pack)?;
    progress.set_total(packs.len() as u64, packs.iter().map(|p| p.size).sum());
    let mut report = IndexRebuild::default();
    let mut indexed = Vec::new();
    for p in &packs {
        match repo.read_pack_table(&p.name, p.size) {
            Ok(pack) => {
                report.blobs += pack.blobs.len() as u64;
                indexed.push(pack);
            }
            Err(e) => report.unreadable_packs.push((p.name.clone(), e.to_string())),
        }
        progress.add(1, p.size);
    }
    report.packs = indexed.len() as u64;
    if opts.dry_run {
        return Ok(report);
    }
    let chunks: Vec<Vec<_>> = indexed.chunks(PACKS_PER_FILE).map(<[_]>::to_vec).collect();
    let last = chunks.len().saturating_sub(1);
    let mut files: Vec<IndexFile> =
        chunks.into_iter().map(|packs| IndexFile { packs, ..Default::default() }).collect();
    if files.is_empty() {
        files.push(IndexFile::default());
    }
    // The old files lose force only with the last new one: a crash before leaves both (the
    // same packs named twice, which is harmless).
    files[last].supersedes = old.clone();
    for f in &files {
        repo.ensure_lock_held()?;
        let bytes = f.encode(repo.cipher())?;
        repo.backend().write(FileType::Index, &Id::of_stored_bytes(&bytes).to_hex(), &bytes)?;
    }
    for id in &old {
        match repo.backend().remove(FileType::Index, &id.to_hex()) {
            Ok(()) | Err(crate::error::Error::ObjectNotFound { .. }) => report.replaced += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
