//! Importing a restic repository (format versions 1 and 2) through `rustic_core`, the
//! maintained Rust implementation of restic's format: it decrypts, authenticates and parses
//! config, keys, index, snapshots, trees and blobs; Aeon only maps its nodes to Aeon's.
//!
//! rustic reads through `Storage`, which serves restic's layout from Aeon's own storage
//! backends (restic's layout is Aeon's: `config`, `keys/`, `snapshots/`, `index/`,
//! `data/xx/`), so a local path and every `s3:`/`sftp:`/`webdav:` URL Aeon opens (retries,
//! timeouts and credentials included) works as a source.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustic_core::repofile::{
    BlobType as ResticBlobType, Node as ResticNode, NodeType, SnapshotFile,
};
use rustic_core::{
    BlobId, BytesList, Credentials, ErrorKind, FileType as ResticFileType, Id as ResticId,
    IndexedFullStatus, ReadBackend, RepositoryBackends, RepositoryOptions, RusticError,
    RusticResult, TreeId, WriteBackend,
};

use super::{
    ImportOptions, ImportReport, SourcePoint, Totals, already_imported, count, original_of,
};
use crate::backend::{Backend, FileType};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::ingest::{Ingest, Pieces};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::{Imported, Snapshot, Summary};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree, Xattr};

type ResticRepository = rustic_core::Repository<IndexedFullStatus>;

/// restic's files as Aeon's storage holds them; read only.
struct Storage(Arc<dyn Backend>);

fn file_type(t: ResticFileType) -> FileType {
    match t {
        ResticFileType::Config => FileType::Config,
        ResticFileType::Index => FileType::Index,
        ResticFileType::Key => FileType::Key,
        ResticFileType::Snapshot => FileType::Snapshot,
        ResticFileType::Pack => FileType::Pack,
    }
}

fn object_name(t: ResticFileType, id: &ResticId) -> String {
    match t {
        ResticFileType::Config => "config".to_string(),
        _ => id.to_hex().as_str().to_string(),
    }
}

fn storage_error(e: Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "reading the restic repository failed", e)
}

impl ReadBackend for Storage {
    fn location(&self) -> String {
        self.0.location()
    }

    fn list_with_size(&self, t: ResticFileType) -> RusticResult<Vec<(ResticId, u32)>> {
        if t == ResticFileType::Config {
            // rustic asks for the config's "id": there is one config, or none.
            let size = self.0.stat(FileType::Config, "config").map_err(storage_error)?;
            return Ok(size.map(|s| (ResticId::default(), s as u32)).into_iter().collect());
        }
        let listed = self.0.list(file_type(t)).map_err(storage_error)?;
        Ok(listed
            .into_iter()
            .filter_map(|o| Some((o.name.parse::<ResticId>().ok()?, o.size as u32)))
            .collect())
    }

    fn read_full(&self, t: ResticFileType, id: &ResticId) -> RusticResult<bytes::Bytes> {
        let data = self.0.read(file_type(t), &object_name(t, id)).map_err(storage_error)?;
        Ok(data.into())
    }

    fn read_partial(
        &self,
        t: ResticFileType,
        id: &ResticId,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        let data = self
            .0
            .read_range(file_type(t), &object_name(t, id), offset.into(), length.into())
            .map_err(storage_error)?;
        Ok(data.into())
    }

    fn warmup_path(&self, t: ResticFileType, id: &ResticId) -> String {
        crate::backend::object_path(file_type(t), &object_name(t, id))
    }
}

impl WriteBackend for Storage {
    fn write_bytes(
        &self,
        _t: ResticFileType,
        _id: &ResticId,
        _cacheable: bool,
        _content: BytesList,
    ) -> RusticResult<()> {
        Err(RusticError::new(ErrorKind::Backend, "an import never writes to the restic repository"))
    }

    fn remove(&self, _t: ResticFileType, _id: &ResticId, _cacheable: bool) -> RusticResult<()> {
        Err(RusticError::new(ErrorKind::Backend, "an import never writes to the restic repository"))
    }
}

/// rustic's error as one line naming the restic repository.
fn restic_error(location: &str, e: &RusticError) -> Error {
    if e.is_incorrect_password() {
        return Error::InvalidInput(format!(
            "wrong password for the restic repository at {location} (AEON_FROM_PASSWORD, --from-password-file or --from-password-command)"
        ));
    }
    let said = e.display_log();
    let said = said.trim_start_matches("Error: ").lines().next().unwrap_or_default().to_string();
    Error::InvalidInput(format!("restic repository at {location}: {said}"))
}

/// A restic repository opened for reading, its whole index loaded.
pub struct ResticSource {
    repo: ResticRepository,
    location: String,
    repository_id: String,
}

impl ResticSource {
    /// Opens the restic repository in `storage` with `password`; refuses format versions other
    /// than 1 and 2 by name.
    pub fn open(storage: Arc<dyn Backend>, password: &str) -> Result<ResticSource> {
        let location = storage.location();
        if storage.stat(FileType::Config, "config")?.is_none() {
            return Err(Error::InvalidInput(format!(
                "no restic repository at {location} (it has no config file)"
            )));
        }
        let backends = RepositoryBackends::new(Arc::new(Storage(storage)), None);
        let opts = RepositoryOptions::default().no_cache(true);
        let err = |e: Box<RusticError>| restic_error(&location, &e);
        let repo = rustic_core::Repository::new(&opts, &backends).map_err(err)?;
        let repo = repo.open(&Credentials::password(password)).map_err(err)?;
        let version = repo.config().version;
        if !(1..=2).contains(&version) {
            return Err(Error::InvalidInput(format!(
                "restic repository at {location} has format version {version}; aeon imports versions 1 and 2"
            )));
        }
        let repository_id = repo.config().id.to_hex().as_str().to_string();
        let repo = repo.to_indexed().map_err(err)?;
        Ok(ResticSource { repo, location, repository_id })
    }

    /// Its snapshots, oldest first.
    fn snapshots(&self) -> Result<Vec<SnapshotFile>> {
        let mut all =
            self.repo.get_all_snapshots().map_err(|e| restic_error(&self.location, &e))?;
        all.sort_by_key(|a| a.time.timestamp());
        Ok(all)
    }
}

fn hex(id: &ResticId) -> String {
    id.to_hex().as_str().to_string()
}

fn chrono_time(z: &rustic_core::jiff::Zoned) -> chrono::DateTime<chrono::FixedOffset> {
    let offset = chrono::FixedOffset::east_opt(z.offset().seconds())
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"));
    let ts = z.timestamp();
    let (secs, nanos) = timestamp_parts(ts);
    chrono::DateTime::from_timestamp(secs, nanos).unwrap_or_default().with_timezone(&offset)
}

/// Whole seconds and non-negative nanoseconds (jiff gives times before 1970 a negative
/// fraction).
fn timestamp_parts(ts: rustic_core::jiff::Timestamp) -> (i64, u32) {
    let (secs, nanos) = (ts.as_second(), ts.subsec_nanosecond());
    if nanos < 0 { (secs - 1, (nanos + 1_000_000_000) as u32) } else { (secs, nanos as u32) }
}

fn timestamp(t: Option<rustic_core::jiff::Timestamp>) -> Option<Timestamp> {
    t.map(|t| {
        let (s, n) = timestamp_parts(t);
        Timestamp(s, n)
    })
}

/// restic stores Go's `os.FileMode`: permission bits low, setuid/setgid/sticky as high flags.
fn unix_permissions(go_mode: u32) -> u32 {
    const GO_SETUID: u32 = 1 << 23;
    const GO_SETGID: u32 = 1 << 22;
    const GO_STICKY: u32 = 1 << 20;
    let mut mode = go_mode & 0o777;
    if go_mode & GO_SETUID != 0 {
        mode |= 0o4000;
    }
    if go_mode & GO_SETGID != 0 {
        mode |= 0o2000;
    }
    if go_mode & GO_STICKY != 0 {
        mode |= 0o1000;
    }
    mode
}

/// Builds Aeon trees from restic trees, remembering each restic tree it converted (the trees
/// two snapshots share are converted once).
struct Converter<'a> {
    source: &'a ResticSource,
    ingest: Ingest<'a>,
    trees: HashMap<TreeId, (Id, Totals)>,
    /// Entries converted (a tree shared by several snapshots counts once).
    files: u64,
    dirs: u64,
}

impl Converter<'_> {
    fn tree(&mut self, id: &TreeId, depth: usize) -> Result<(Id, Totals)> {
        if let Some(done) = self.trees.get(id) {
            return Ok(*done);
        }
        crate::tree::ensure_depth(depth, &format_args!("restic tree {}", hex(id)))?;
        let restic_tree =
            self.source.repo.get_tree(id).map_err(|e| restic_error(&self.source.location, &e))?;
        let mut tree = Tree::default();
        let mut totals = Totals::default();
        for n in &restic_tree.nodes {
            tree.nodes.push(self.node(n, depth, &mut totals)?);
        }
        count(&tree.nodes, &mut self.files, &mut self.dirs);
        let out = (self.ingest.tree(&mut tree)?, totals);
        self.trees.insert(*id, out);
        Ok(out)
    }

    fn node(&mut self, n: &ResticNode, depth: usize, totals: &mut Totals) -> Result<Node> {
        let kind = match &n.node_type {
            NodeType::File => NodeKind::File,
            NodeType::Dir => NodeKind::Dir,
            NodeType::Symlink { .. } => NodeKind::Symlink,
            NodeType::Dev { .. } => NodeKind::Blockdev,
            NodeType::Chardev { .. } => NodeKind::Chardev,
            NodeType::Fifo => NodeKind::Fifo,
            NodeType::Socket => NodeKind::Socket,
        };
        let m = &n.meta;
        let mut node = Node::new(RawName(n.name().as_bytes().to_vec()), kind);
        // restic writes its JSON with Go's `omitempty`: no mode is mode 0 (a file chmod 000).
        node.mode = unix_permissions(m.mode.unwrap_or(0));
        node.uid = m.uid.unwrap_or(0);
        node.gid = m.gid.unwrap_or(0);
        node.user = m.user.clone().filter(|u| !u.is_empty());
        node.group = m.group.clone().filter(|g| !g.is_empty());
        node.mtime = timestamp(m.mtime).unwrap_or_default();
        node.atime = timestamp(m.atime);
        node.ctime = timestamp(m.ctime);
        node.inode = m.inode;
        node.device = m.device_id;
        node.links = m.links;
        node.xattrs = m
            .extended_attributes
            .iter()
            .map(|x| Xattr {
                name: RawName(x.name.as_bytes().to_vec()),
                value: RawName(x.value.clone().unwrap_or_default()),
            })
            .collect();
        node.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        match &n.node_type {
            NodeType::File => {
                let ids = n.content.as_deref().unwrap_or_default();
                let identity = ids.iter().flat_map(|id| id.to_hex().as_bytes().to_vec()).collect();
                // Blob by blob, each authenticated by rustic.
                let (repo, location) = (&self.source.repo, &self.source.location);
                let mut blobs = ids.iter();
                let mut content = Pieces::new(|| {
                    blobs
                        .next()
                        .map(|id| repo.get_blob_cached(&BlobId::from(**id), ResticBlobType::Data))
                        .transpose()
                        .map_err(|e| std::io::Error::other(restic_error(location, &e)))
                });
                let (blobs, size) = self.ingest.file(Some(identity), &mut content)?;
                node.content = blobs;
                node.size = size;
                totals.files += 1;
                totals.bytes += size;
            }
            NodeType::Dir => {
                let sub = n.subtree.ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "restic directory {:?} has no subtree",
                        n.name().to_string_lossy()
                    ))
                })?;
                let (subtree, below) = self.tree(&sub, depth + 1)?;
                node.subtree = Some(subtree);
                totals.add(below);
                totals.dirs += 1;
            }
            NodeType::Symlink { linktarget, linktarget_raw } => {
                let target =
                    linktarget_raw.clone().unwrap_or_else(|| linktarget.as_bytes().to_vec());
                node.size = target.len() as u64;
                node.target = Some(RawName(target));
            }
            NodeType::Dev { device } | NodeType::Chardev { device } => node.rdev = Some(*device),
            NodeType::Fifo | NodeType::Socket => {}
        }
        if kind != NodeKind::File && kind != NodeKind::Dir {
            totals.files += 1;
        }
        Ok(node)
    }
}

/// Imports the snapshots of the restic repository `source` into `target` (index loaded,
/// locked) in time order, each as soon as it is complete.
pub fn import(
    source: &ResticSource,
    target: &Repository,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let mut report =
        ImportReport::new("restic", &source.location, &source.repository_id, opts.dry_run);
    let before = already_imported(target, "restic")?;
    let snapshots: Vec<SnapshotFile> =
        source.snapshots()?.into_iter().filter(|s| opts.wants(&hex(&s.id), None)).collect();
    let todo: Vec<&SnapshotFile> =
        snapshots.iter().filter(|s| !before.contains_key(&hex(&s.id))).collect();
    let total: u64 =
        todo.iter().map(|s| s.summary.as_ref().map_or(0, |m| m.total_bytes_processed)).sum();
    progress.set_total(todo.len() as u64, total);
    // restic id -> Aeon id, for the parent relation.
    let mut as_aeon: HashMap<String, Id> = before.clone();
    let mut converter = Converter {
        source,
        ingest: Ingest::new(target, progress)?,
        trees: HashMap::new(),
        files: 0,
        dirs: 0,
    };
    for s in &snapshots {
        let id = hex(&s.id);
        let mut point = SourcePoint {
            id: id.clone(),
            name: None,
            time: chrono_time(&s.time),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            paths: s.paths.iter().cloned().collect(),
            tags: s.tags.iter().cloned().collect(),
            recovery_point: before.get(&id).map(Id::to_hex),
            already_imported: before.contains_key(&id),
        };
        if point.already_imported {
            report.already_imported += 1;
            report.points.push(point);
            continue;
        }
        if opts.dry_run {
            report.points.push(point);
            continue;
        }
        let (files, dirs) = (converter.files, converter.dirs);
        let start = chrono::Local::now().fixed_offset();
        let read = converter.ingest.stats;
        let (tree, totals) = converter.tree(&s.tree, 0)?;
        let now = converter.ingest.stats;
        let snapshot = Snapshot {
            time: point.time,
            tree,
            paths: point.paths.clone(),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            uid: s.uid,
            gid: s.gid,
            tags: point.tags.clone(),
            parent: s.parent.and_then(|p| as_aeon.get(&hex(&p)).copied()),
            description: s.description.clone(),
            category: None,
            kind: None,
            program_version: format!("aeon {}", crate::VERSION),
            summary: Summary {
                files_new: converter.files - files,
                dirs_new: converter.dirs - dirs,
                total_files: totals.files,
                total_dirs: totals.dirs,
                bytes_read: now.bytes_read - read.bytes_read,
                total_bytes: totals.bytes,
                backup_start: Some(start),
                backup_end: Some(chrono::Local::now().fixed_offset()),
                ..Default::default()
            },
            protected: false,
            original: original_of(&id),
            imported: Some(Imported {
                format: "restic".into(),
                repository: source.repository_id.clone(),
                id: id.clone(),
                name: None,
                program: Some(s.program_version.clone()).filter(|p| !p.is_empty()),
            }),
        };
        let new_id = converter.ingest.commit(&snapshot)?;
        let mut event = crate::audit::Event::new("import")
            .arg(format!("restic {} {id}", source.location))
            .added(FileType::Snapshot, new_id);
        event = event
            .figure("bytes_read", (converter.ingest.stats.bytes_read - read.bytes_read) as f64);
        target.audit(event);
        as_aeon.insert(id, new_id);
        point.recovery_point = Some(new_id.to_hex());
        report.imported += 1;
        report.points.push(point);
        progress.add(1, 0);
    }
    report.files = converter.files;
    report.dirs = converter.dirs;
    report.stats = converter.ingest.stats;
    Ok(report)
}
