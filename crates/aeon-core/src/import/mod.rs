//! Moving in with history: every snapshot of a restic repository ([`restic`]) or archive of a
//! Borg repository ([`borg`]) becomes an Aeon recovery point with its time, host, user, paths
//! and tags, its files and their attributes, deduplicated as they arrive.
//!
//! Each imported point records where it came from ([`Imported`]: format, source repository id,
//! source id) and `original` holds the source's id, so a second run recognises what it already
//! brought over and imports only what is new. Each point is committed when complete (see
//! [`crate::ingest`]): an interrupted import keeps every point it finished and the blobs of the
//! one it was on.

pub mod borg;
pub mod restic;

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::ingest::IngestStats;
use crate::repository::Repository;
use crate::snapshot::Imported;
use crate::tree::{Node, NodeKind};

/// One snapshot or archive of the source, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePoint {
    /// Its id in the source, in hex.
    pub id: String,
    /// Borg's archive name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    pub username: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// The Aeon recovery point it is (imported now or before); `None` in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_point: Option<String>,
    /// Imported by an earlier run: left alone.
    pub already_imported: bool,
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// `restic` or `borg`.
    pub format: &'static str,
    /// The source as given, and its repository id.
    pub source: String,
    pub source_repository: String,
    pub dry_run: bool,
    /// In time order.
    pub points: Vec<SourcePoint>,
    pub imported: usize,
    pub already_imported: usize,
    /// Entries of the imported points (all points together).
    pub files: u64,
    pub dirs: u64,
    #[serde(flatten)]
    pub stats: IngestStats,
    /// Things of the source that could not be represented exactly, one line each.
    pub notes: Vec<String>,
}

impl ImportReport {
    /// An empty report of an import from `source` (repository id `source_repository`).
    fn new(format: &'static str, source: &str, source_repository: &str, dry_run: bool) -> Self {
        ImportReport {
            format,
            source: source.to_string(),
            source_repository: source_repository.to_string(),
            dry_run,
            ..Default::default()
        }
    }
}

/// Which source points to import.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// List what would be imported; write nothing.
    pub dry_run: bool,
    /// Only these source ids (or unambiguous prefixes) / archive names; all when empty.
    pub only: Vec<String>,
}

impl ImportOptions {
    fn wants(&self, id: &str, name: Option<&str>) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|o| {
                Some(o.as_str()) == name || (!o.is_empty() && id.starts_with(&o.to_lowercase()))
            })
    }
}

/// The source ids of `format` already imported into `target`, with the Aeon point each is.
pub(crate) fn already_imported(target: &Repository, format: &str) -> Result<HashMap<String, Id>> {
    let (points, _) = target.list_snapshots()?;
    Ok(points
        .into_iter()
        .filter_map(|p| {
            let i: &Imported = p.snapshot.imported.as_ref()?;
            (i.format == format).then(|| (i.id.clone(), p.id))
        })
        .collect())
}

/// An id of the source (hex of 32 bytes, as restic's and Borg's are) as `original` holds it.
pub(crate) fn original_of(hex_id: &str) -> Option<Id> {
    hex_id.parse().ok()
}

/// Counts a tree's entries into `files` and `dirs` (the subtrees' own entries are counted when
/// they are built).
pub(crate) fn count(nodes: &[Node], files: &mut u64, dirs: &mut u64) {
    for n in nodes {
        match n.kind {
            NodeKind::Dir => *dirs += 1,
            _ => *files += 1,
        }
    }
}

/// Everything below a directory: what a recovery point's summary reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, o: Totals) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.bytes += o.bytes;
    }
}
