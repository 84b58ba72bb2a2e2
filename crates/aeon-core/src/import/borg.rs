//! Importing a Borg 1.x repository through the installed Borg itself.
//!
//! Borg's format is read by Borg's own Python modules (`borg_reader.py`, run with the
//! interpreter of the `borg` program): no second implementation of Borg's crypto, compression
//! and msgpack item format to get wrong. `borg export-tar` was the other candidate; in Borg 1.2
//! it writes GNU tar only, which loses xattrs, ACLs, sub-second times, atime and ctime. The
//! reader streams each item's metadata and content; Aeon chunks the content as it arrives and
//! builds each archive's trees once the last item is in.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde::Deserialize;

use super::{
    ImportOptions, ImportReport, SourcePoint, Totals, already_imported, count, original_of,
};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::ingest::{Ingest, Pieces};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::{Imported, Snapshot, Summary};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree, Xattr};

const READER: &str = include_str!("borg_reader.py");

/// A Borg repository and its archives, read through `borg`'s Python.
pub struct BorgSource {
    python: PathBuf,
    repo: String,
    password: Option<String>,
    pub repository_id: String,
    pub borg_version: String,
    archives: Vec<BorgArchive>,
}

#[derive(Debug, Clone, Deserialize)]
struct BorgArchive {
    name: String,
    id: String,
    time: String,
    hostname: String,
    username: String,
    command_line: Vec<String>,
    comment: String,
}

#[derive(Deserialize)]
struct Listing {
    repository: String,
    borg: String,
    archives: Vec<BorgArchive>,
}

/// The interpreter `borg` runs with (its `#!` line), so the reader loads the same Borg.
fn python_of(borg: &str) -> Result<PathBuf> {
    let path = if borg.contains('/') {
        PathBuf::from(borg)
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(borg))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{borg} not found on PATH: install Borg 1.x (e.g. apt install borgbackup) or name it with --borg"
                ))
            })?
    };
    let mut head = [0u8; 256];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::Io { path: path.clone(), source: e })?;
    let first = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_string();
    let interpreter = first.strip_prefix("#!").map(|l| l.split_whitespace().collect::<Vec<_>>());
    match interpreter.as_deref() {
        Some([env, py, ..]) if env.ends_with("/env") && py.contains("python") => {
            Ok(PathBuf::from(py))
        }
        Some([py, ..]) if py.contains("python") => Ok(PathBuf::from(py)),
        _ => Err(Error::InvalidInput(format!(
            "{} is not a Python installation of Borg (a standalone binary?): aeon reads Borg repositories through Borg's Python modules; install Borg from your distribution or with pip",
            path.display()
        ))),
    }
}

impl BorgSource {
    /// Lists the archives of the Borg repository `repo` (a path or `ssh://` URL) through the
    /// `borg` program named.
    pub fn open(borg: &str, repo: &str, password: Option<&str>) -> Result<BorgSource> {
        let python = python_of(borg)?;
        let mut source = BorgSource {
            python,
            repo: repo.to_string(),
            password: password.map(str::to_string),
            repository_id: String::new(),
            borg_version: String::new(),
            archives: Vec::new(),
        };
        let out = source.reader(&["list", repo]).stdout(Stdio::piped()).output().map_err(|e| {
            Error::InvalidInput(format!("cannot run {}: {e}", source.python.display()))
        })?;
        if !out.status.success() {
            return Err(reader_failure(repo, &out.stderr));
        }
        let listing: Listing = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::InvalidInput(format!("Borg's listing of {repo} could not be read: {e}"))
        })?;
        source.repository_id = listing.repository;
        source.borg_version = listing.borg;
        source.archives = listing.archives;
        Ok(source)
    }

    fn reader(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg("-c").arg(READER).args(args).stdin(Stdio::null()).stderr(Stdio::piped());
        if let Some(p) = &self.password {
            c.env("BORG_PASSPHRASE", p);
        }
        c
    }
}

fn reader_failure(repo: &str, stderr: &[u8]) -> Error {
    let said = String::from_utf8_lossy(stderr);
    let line = said
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| said.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("Borg failed without a message")
        .to_string();
    let hint = if line.contains("PassphraseWrong") || line.contains("passphrase") {
        " (give it with AEON_FROM_PASSWORD, --from-password-file, --from-password-command or BORG_PASSPHRASE)"
    } else {
        ""
    };
    Error::InvalidInput(format!("Borg repository {repo}: {line}{hint}"))
}

/// One item as the reader sends it (bytes fields in hex).
#[derive(Deserialize)]
struct Item {
    path: String,
    mode: u32,
    mtime: i64,
    uid: Option<u32>,
    gid: Option<u32>,
    user: Option<String>,
    group: Option<String>,
    atime: Option<i64>,
    ctime: Option<i64>,
    birthtime: Option<i64>,
    rdev: Option<u64>,
    bsdflags: Option<u64>,
    source: Option<String>,
    hardlink_master: Option<bool>,
    #[serde(default)]
    xattrs: BTreeMap<String, String>,
    #[serde(default)]
    has_content: bool,
    #[serde(default)]
    unsupported_acl_extended: bool,
    #[serde(default)]
    unsupported_acl_nfs4: bool,
}

fn unhex(s: &str, what: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|_| Error::InvalidInput(format!("Borg's reader sent a bad {what}")))
}

fn ns(t: i64) -> Timestamp {
    Timestamp(t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000) as u32)
}

/// The reader's frames: items, their content, the end.
struct Frames {
    input: BufReader<ChildStdout>,
    /// The header of the next frame, read ahead.
    next: Option<(u8, u32)>,
}

impl Frames {
    fn header(&mut self) -> std::io::Result<(u8, u32)> {
        if let Some(h) = self.next.take() {
            return Ok(h);
        }
        let mut h = [0u8; 5];
        self.input.read_exact(&mut h)?;
        Ok((h[0], u32::from_le_bytes([h[1], h[2], h[3], h[4]])))
    }

    fn body(&mut self, len: u32) -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; len as usize];
        self.input.read_exact(&mut b)?;
        Ok(b)
    }
}

/// Entries of one archive by path, assembled into trees at the end.
#[derive(Default)]
struct Assembly {
    nodes: HashMap<Vec<u8>, Node>,
    children: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// Hard-link master path -> the inode number given to its group.
    link_groups: HashMap<Vec<u8>, u64>,
    link_counts: HashMap<u64, u64>,
}

fn parent_of(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (path[..i].to_vec(), path[i + 1..].to_vec()),
        None => (Vec::new(), path.to_vec()),
    }
}

impl Assembly {
    /// Adds `node` at `path`, with any parent Borg did not store (those above the paths given
    /// to `borg create`) as a plain directory.
    fn insert(&mut self, path: Vec<u8>, node: Node, default_dir: &Node) {
        let (parent, _) = parent_of(&path);
        if !parent.is_empty() && !self.nodes.contains_key(&parent) {
            let (_, name) = parent_of(&parent);
            let mut dir = default_dir.clone();
            dir.name = RawName(name);
            self.insert(parent.clone(), dir, default_dir);
        }
        if self.nodes.insert(path.clone(), node).is_none() {
            self.children.entry(parent).or_default().push(path);
        }
    }

    /// Stores the trees below `path` and returns the id of its own tree.
    fn build(
        &mut self,
        path: &[u8],
        ingest: &mut Ingest,
        depth: usize,
        totals: &mut Totals,
    ) -> Result<Id> {
        crate::tree::ensure_depth(
            depth,
            &format_args!("Borg directory {}", String::from_utf8_lossy(path)),
        )?;
        let mut tree = Tree::default();
        for child in self.children.remove(path).unwrap_or_default() {
            let Some(mut node) = self.nodes.remove(&child) else { continue };
            if node.kind == NodeKind::Dir {
                node.subtree = Some(self.build(&child, ingest, depth + 1, totals)?);
                totals.dirs += 1;
            } else {
                totals.files += 1;
                totals.bytes += node.size;
            }
            if node.inode != 0 {
                node.links = self.link_counts.get(&node.inode).copied().unwrap_or(1);
            }
            tree.nodes.push(node);
        }
        ingest.tree(&mut tree)
    }
}

/// Imports the archives of `source` into `target` (index loaded, locked), oldest first.
pub fn import(
    source: &BorgSource,
    target: &Repository,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let mut report = ImportReport::new("borg", &source.repo, &source.repository_id, opts.dry_run);
    if let Some(wanted) = opts.only.first()
        && !source.archives.iter().any(|a| a.name == *wanted)
    {
        return Err(Error::NoMatch { kind: "Borg archive", prefix: wanted.clone() });
    }
    let before = already_imported(target, "borg")?;
    let archives: Vec<&BorgArchive> =
        source.archives.iter().filter(|a| opts.wants(&a.id, Some(&a.name))).collect();
    let todo = archives.iter().filter(|a| !before.contains_key(&a.id)).count();
    progress.set_total(todo as u64, 0);
    let mut ingest = Ingest::new(target, progress)?;
    let mut notes: Vec<String> = Vec::new();
    for a in archives {
        let time = chrono::DateTime::parse_from_rfc3339(&a.time).map_err(|e| {
            Error::InvalidInput(format!("Borg archive {}: time {:?}: {e}", a.name, a.time))
        })?;
        let mut point = SourcePoint {
            id: a.id.clone(),
            name: Some(a.name.clone()),
            time,
            hostname: a.hostname.clone(),
            username: a.username.clone(),
            paths: paths_of(&a.command_line),
            tags: vec![format!("borg:{}", a.name)],
            recovery_point: before.get(&a.id).map(Id::to_hex),
            already_imported: before.contains_key(&a.id),
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
        let start = chrono::Local::now().fixed_offset();
        let read_before = ingest.stats.bytes_read;
        let (tree, totals, entries) = archive_tree(source, a, &mut ingest, &mut notes)?;
        report.files += entries.files;
        report.dirs += entries.dirs;
        let snapshot = Snapshot {
            time,
            tree,
            paths: point.paths.clone(),
            hostname: a.hostname.clone(),
            username: a.username.clone(),
            uid: 0,
            gid: 0,
            tags: point.tags.clone(),
            parent: None,
            description: Some(a.comment.clone()).filter(|c| !c.is_empty()),
            category: None,
            kind: None,
            program_version: format!("aeon {}", crate::VERSION),
            summary: Summary {
                files_new: totals.files,
                dirs_new: totals.dirs,
                total_files: totals.files,
                total_dirs: totals.dirs,
                bytes_read: ingest.stats.bytes_read - read_before,
                total_bytes: totals.bytes,
                backup_start: Some(start),
                backup_end: Some(chrono::Local::now().fixed_offset()),
                ..Default::default()
            },
            protected: false,
            original: original_of(&a.id),
            imported: Some(Imported {
                format: "borg".into(),
                repository: source.repository_id.clone(),
                id: a.id.clone(),
                name: Some(a.name.clone()),
                program: Some(format!("borg {}", source.borg_version)),
            }),
        };
        let new_id = ingest.commit(&snapshot)?;
        target.audit(
            crate::audit::Event::new("import")
                .arg(format!("borg {}::{}", source.repo, a.name))
                .added(FileType::Snapshot, new_id)
                .figure("bytes_read", (ingest.stats.bytes_read - read_before) as f64),
        );
        point.recovery_point = Some(new_id.to_hex());
        report.imported += 1;
        report.points.push(point);
        progress.add(1, 0);
    }
    notes.sort();
    notes.dedup();
    report.notes = notes;
    report.stats = ingest.stats;
    Ok(report)
}

/// The paths `borg create` was given: the arguments after `REPO::ARCHIVE` that are not
/// options.
fn paths_of(command_line: &[String]) -> Vec<String> {
    let Some(at) = command_line.iter().position(|a| a.contains("::")) else {
        return Vec::new();
    };
    command_line[at + 1..].iter().filter(|a| !a.starts_with('-')).cloned().collect()
}

/// Reads archive `a` item by item, storing contents as they arrive, then its trees. Returns
/// the root tree, its totals and the entries read (files and dirs).
fn archive_tree(
    source: &BorgSource,
    a: &BorgArchive,
    ingest: &mut Ingest,
    notes: &mut Vec<String>,
) -> Result<(Id, Totals, Totals)> {
    let mut child: Child =
        source.reader(&["items", &source.repo, &a.name]).stdout(Stdio::piped()).spawn().map_err(
            |e| Error::InvalidInput(format!("cannot run {}: {e}", source.python.display())),
        )?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::InvalidInput("no output from Borg's reader".into()))?;
    let mut frames = Frames { input: BufReader::with_capacity(1 << 20, stdout), next: None };
    let result = read_items(&mut frames, a, ingest, notes);
    let status = child.wait().map_err(|e| Error::InvalidInput(format!("Borg's reader: {e}")))?;
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    if !status.success() {
        return Err(reader_failure(&format!("{}::{}", source.repo, a.name), &stderr));
    }
    let mut assembly = result?;
    let mut entries = Totals::default();
    for n in assembly.nodes.values() {
        count(std::slice::from_ref(n), &mut entries.files, &mut entries.dirs);
    }
    let mut totals = Totals::default();
    let root = assembly.build(b"", ingest, 0, &mut totals)?;
    Ok((root, totals, entries))
}

fn read_items(
    frames: &mut Frames,
    a: &BorgArchive,
    ingest: &mut Ingest,
    notes: &mut Vec<String>,
) -> Result<Assembly> {
    let io =
        |e: std::io::Error| Error::InvalidInput(format!("reading Borg archive {}: {e}", a.name));
    let mut assembly = Assembly::default();
    let mut default_dir = Node::new(RawName::default(), NodeKind::Dir);
    default_dir.mode = 0o755;
    let mut masters: HashMap<Vec<u8>, (Vec<Id>, u64)> = HashMap::new();
    loop {
        let (tag, len) = frames.header().map_err(io)?;
        match tag {
            b'Z' => break,
            b'I' => {}
            other => {
                return Err(Error::InvalidInput(format!(
                    "Borg's reader sent an unexpected frame {other:#04x}"
                )));
            }
        }
        let body = frames.body(len).map_err(io)?;
        let item: Item = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidInput(format!("Borg's reader sent a bad item: {e}")))?;
        let path = unhex(&item.path, "path")?;
        let path = path.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(path);
        let kind = match item.mode & libc::S_IFMT {
            libc::S_IFREG => NodeKind::File,
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFCHR => NodeKind::Chardev,
            libc::S_IFBLK => NodeKind::Blockdev,
            libc::S_IFSOCK => NodeKind::Socket,
            other => {
                notes.push(format!(
                    "{}: file type {other:o} left out",
                    String::from_utf8_lossy(&path)
                ));
                continue;
            }
        };
        let (_, name) = parent_of(&path);
        let mut node = Node::new(RawName(name), kind);
        node.mode = item.mode & 0o7777;
        node.uid = item.uid.unwrap_or(0);
        node.gid = item.gid.unwrap_or(0);
        node.user = item.user.filter(|u| !u.is_empty());
        node.group = item.group.filter(|g| !g.is_empty());
        node.mtime = ns(item.mtime);
        node.atime = item.atime.map(ns);
        node.ctime = item.ctime.map(ns);
        for (k, v) in &item.xattrs {
            node.xattrs.push(Xattr {
                name: RawName(unhex(k, "xattr")?),
                value: RawName(unhex(v, "xattr")?),
            });
        }
        node.xattrs.sort_by(|x, y| x.name.cmp(&y.name));
        if item.birthtime.is_some() {
            notes.push("birth times (macOS, BSD) are not kept".into());
        }
        if item.bsdflags.is_some_and(|f| f != 0) {
            notes.push("file flags (chattr, chflags) are not kept".into());
        }
        if item.unsupported_acl_extended || item.unsupported_acl_nfs4 {
            notes.push("macOS extended and NFSv4 ACLs are not kept".into());
        }
        match kind {
            NodeKind::File if item.has_content => {
                // The content frames that follow the item; the next frame of another kind
                // is kept for the loop.
                let mut content = Pieces::new(|| match frames.header()? {
                    (b'D', len) => frames.body(len).map(Some),
                    other => {
                        frames.next = Some(other);
                        Ok(None)
                    }
                });
                let (ids, size) = ingest.file(None, &mut content)?;
                // Any file with content may be the first of a hard-link group (archives of
                // Borg before 1.1 do not mark it): kept until a later item links to it.
                if item.hardlink_master.unwrap_or(true) {
                    masters.insert(path.clone(), (ids.clone(), size));
                }
                node.content = ids;
                node.size = size;
            }
            NodeKind::File => {
                // A hard link to an earlier file of the archive (Borg 1.x keeps the content once).
                if let Some(master) = item.source.as_deref() {
                    let master = unhex(master, "hard link")?;
                    let master = master.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(master);
                    if let Some((ids, size)) = masters.get(&master) {
                        let inode = match assembly.link_groups.get(&master) {
                            Some(&inode) => inode,
                            None => {
                                let inode = assembly.link_groups.len() as u64 + 1;
                                assembly.link_groups.insert(master.clone(), inode);
                                assembly.link_counts.insert(inode, 1);
                                if let Some(first) = assembly.nodes.get_mut(&master) {
                                    first.inode = inode;
                                    first.device = 1;
                                }
                                inode
                            }
                        };
                        node.content = ids.clone();
                        node.size = *size;
                        node.inode = inode;
                        node.device = 1;
                        *assembly.link_counts.entry(inode).or_default() += 1;
                    } else {
                        notes.push(format!(
                            "{}: a hard link to {} which the archive does not hold; kept empty",
                            String::from_utf8_lossy(&path),
                            String::from_utf8_lossy(&master)
                        ));
                    }
                }
            }
            NodeKind::Symlink => {
                let target = unhex(item.source.as_deref().unwrap_or_default(), "link target")?;
                node.size = target.len() as u64;
                node.target = Some(RawName(target));
            }
            NodeKind::Chardev | NodeKind::Blockdev => node.rdev = Some(item.rdev.unwrap_or(0)),
            _ => {}
        }
        if kind == NodeKind::Dir
            && let Some(existing) = assembly.nodes.get_mut(&path)
        {
            // A directory met first as the parent of an earlier item.
            *existing = node;
            continue;
        }
        assembly.insert(path, node, &default_dir);
    }
    Ok(assembly)
}
