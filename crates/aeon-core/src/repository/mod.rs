//! A repository: storage plus keys plus configuration, and the operations every command needs
//! (reading blobs, trees, recovery points; writing them through the [`Packer`]).

mod packer;

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use packer::{Packer, PackerStats};

use crate::backend::{Backend, FileType};
use crate::blob::{self, BlobType, Compression};
use crate::chunker::ChunkerParams;
use crate::crypto::{Cipher, IdHasher};
use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, ObjectKind};
use crate::id::Id;
use crate::index::{Index, IndexFile};
use crate::keys::{KdfParams, KeySlot, MasterKey};
use crate::snapshot::{self, Snapshot, SnapshotEntry};
use crate::tree::{Node, NodeKind, Tree};

/// Objects that could not be read, by name, with why.
pub type UnreadableObjects = Vec<(String, Error)>;

/// Target pack size: 16 MiB (see the README's "Why these defaults").
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// The sealed part of the config: settings every writer must share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub chunker: ChunkerParams,
    pub compression: Compression,
    pub pack_size: u32,
    pub created: DateTime<FixedOffset>,
    /// Reserved for multi-location repositories: the storage locations that mirror this one.
    #[serde(default)]
    pub locations: Vec<String>,
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression: Compression,
    pub pack_size: u32,
    pub kdf: KdfParams,
    pub key_label: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression: Compression::default(),
            pack_size: DEFAULT_PACK_SIZE,
            kdf: KdfParams::default(),
            key_label: String::new(),
        }
    }
}

/// The unencrypted part of the config: enough to tell a repository, and its version, before
/// asking for a password.
#[derive(Debug, Clone)]
pub struct ConfigHeader {
    pub repository_id: [u8; 32],
    raw: Vec<u8>,
}

impl ConfigHeader {
    fn sealed_settings(&self) -> &[u8] {
        &self.raw[HEADER_LEN + 32..]
    }
    fn aad(&self) -> &[u8] {
        &self.raw[..HEADER_LEN + 32]
    }
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    repository_id: [u8; 32],
    settings: Settings,
    key: MasterKey,
    cipher: Cipher,
    hasher: IdHasher,
    index: Index,
}

impl Repository {
    /// Creates a new repository and returns it opened.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<Repository> {
        if backend.stat(FileType::Config, "config")?.is_some() {
            return Err(Error::AlreadyExists(backend.location()));
        }
        opts.chunker.validate()?;
        if opts.pack_size < 1024 * 1024 || opts.pack_size > 1024 * 1024 * 1024 {
            return Err(Error::InvalidInput("pack size must be between 1 MiB and 1 GiB".into()));
        }
        backend.create()?;
        let mut repository_id = [0u8; 32];
        crate::crypto::fill_random(&mut repository_id)?;
        let key = MasterKey::random()?;
        let now = chrono::Local::now().fixed_offset();
        let settings = Settings {
            chunker: opts.chunker,
            compression: opts.compression,
            pack_size: opts.pack_size,
            created: now,
            locations: Vec::new(),
        };
        // Key slot first, config last: a config on storage means the repository is complete.
        let slot = KeySlot::new_password(
            &key,
            repository_id,
            password,
            &opts.key_label,
            opts.kdf,
            now.timestamp(),
        )?;
        backend.write(FileType::Key, &Id::of_stored_bytes(&slot).to_hex(), &slot)?;
        let cipher = key.cipher();
        let mut config = format::header(ObjectKind::Config).to_vec();
        config.extend_from_slice(&repository_id);
        let aad = config.clone();
        cipher.seal_into(&aad, &format::to_cbor(&settings), &mut config)?;
        backend.write(FileType::Config, "config", &config)?;
        Ok(Repository {
            backend,
            repository_id,
            settings,
            hasher: key.id_hasher(),
            cipher,
            key,
            index: Index::default(),
        })
    }

    /// Reads and checks the config's public part: that this is an Aeon repository of a
    /// supported version. Call before asking for a password.
    pub fn probe(backend: &dyn Backend) -> Result<ConfigHeader> {
        let raw = match backend.read(FileType::Config, "config") {
            Ok(raw) => raw,
            Err(Error::ObjectNotFound { .. }) => {
                return Err(if backend.location_exists()? {
                    Error::NotARepository(backend.location(), "it has no config file".into())
                } else {
                    Error::RepositoryNotFound(backend.location())
                });
            }
            Err(e) => return Err(e),
        };
        if raw.len() < 4 || raw[..4] != format::MAGIC {
            return Err(Error::NotARepository(
                backend.location(),
                "its config file does not start with the AEON magic number".into(),
            ));
        }
        let body = format::check_header(&raw, ObjectKind::Config, "config")?;
        if body.len() < 32 {
            return Err(Error::corrupt("config", "truncated"));
        }
        let repository_id = body[..32].try_into().expect("32 bytes");
        Ok(ConfigHeader { repository_id, raw })
    }

    /// Opens a repository with a password, trying every password key slot.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let header = Self::probe(backend.as_ref())?;
        let mut key = None;
        for info in backend.list(FileType::Key)? {
            let data = backend.read(FileType::Key, &info.name)?;
            let Ok(slot) = KeySlot::decode(&data) else {
                continue;
            };
            if slot.repository_id != header.repository_id {
                continue;
            }
            if let Some(k) = slot.unlock(password)? {
                key = Some(k);
                break;
            }
        }
        let key = key.ok_or(Error::WrongPassword)?;
        let cipher = key.cipher();
        let plain = cipher.open(header.aad(), header.sealed_settings(), "config")?;
        let settings: Settings = format::from_cbor(&plain, "config")?;
        settings.chunker.validate()?;
        Ok(Repository {
            backend,
            repository_id: header.repository_id,
            settings,
            hasher: key.id_hasher(),
            cipher,
            key,
            index: Index::default(),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn repository_id(&self) -> String {
        hex::encode(self.repository_id)
    }
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }
    pub fn hasher(&self) -> &IdHasher {
        &self.hasher
    }
    pub fn chunker_seed(&self) -> u64 {
        self.key.chunker_seed
    }
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Loads every index file into memory. A damaged index file is an error naming it.
    pub fn load_index(&mut self) -> Result<()> {
        let mut index = Index::default();
        for f in self.read_index_files()? {
            index.add_file(&f?.1);
        }
        index.seal();
        self.index = index;
        Ok(())
    }

    /// Every index file, decoded; errors are per file so that `check` can report each.
    pub fn read_index_files(&self) -> Result<Vec<Result<(Id, IndexFile)>>> {
        let mut out = Vec::new();
        for info in self.backend.list(FileType::Index)? {
            out.push(self.read_index_file(&info.name));
        }
        Ok(out)
    }

    fn read_index_file(&self, name: &str) -> Result<(Id, IndexFile)> {
        let what = format!("index file {name}");
        let data = self.backend.read(FileType::Index, name)?;
        let id = Id::of_stored_bytes(&data);
        if id.to_hex() != name {
            return Err(Error::corrupt(what, "content does not match its name"));
        }
        Ok((id, IndexFile::decode(&self.cipher, &data, &what)?))
    }

    /// Reads, decrypts and verifies one blob.
    pub fn read_blob(&self, blob_type: BlobType, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.get(id).ok_or(Error::BlobNotIndexed(*id))?;
        let pack = self.index.pack(loc.pack);
        let sealed = self
            .backend
            .read_range(FileType::Pack, &pack.id.to_hex(), loc.offset as u64, loc.length as u64)
            .map_err(|e| annotate_pack_error(e, &pack.id))?;
        blob::open_blob(&self.cipher, &self.hasher, blob_type, id, &sealed, loc.raw_len)
            .map_err(|e| annotate_pack_error(e, &pack.id))
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let data = self.read_blob(BlobType::Tree, id)?;
        Tree::decode(&data, &format!("tree {id}"))
    }

    /// Follows `path` (components separated by `/`) down from `root`.
    pub fn find_node(&self, root: &Id, path: &str) -> Result<Node> {
        let mut node = Node::new(crate::tree::RawName(b"/".to_vec()), NodeKind::Dir);
        node.subtree = Some(*root);
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let subtree = match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(t)) => t,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "{path}: {} is not a directory",
                        node.name.to_string_lossy()
                    )));
                }
            };
            let tree = self.load_tree(&subtree)?;
            node = tree.find(part.as_bytes()).cloned().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{path}: no such file or directory in the recovery point"
                ))
            })?;
        }
        Ok(node)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let data = snap.encode(&self.cipher)?;
        let id = Id::of_stored_bytes(&data);
        self.backend.write(FileType::Snapshot, &id.to_hex(), &data)?;
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let name = id.to_hex();
        let what = format!("recovery point {name}");
        let data = self.backend.read(FileType::Snapshot, &name)?;
        if Id::of_stored_bytes(&data) != *id {
            return Err(Error::corrupt(what, "content does not match its name"));
        }
        Snapshot::decode(&self.cipher, &data, &what)
    }

    /// Every recovery point, oldest first, with the ones that could not be read listed apart.
    pub fn list_snapshots(&self) -> Result<(Vec<SnapshotEntry>, UnreadableObjects)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for info in self.backend.list(FileType::Snapshot)? {
            let loaded = info
                .name
                .parse::<Id>()
                .and_then(|id| self.load_snapshot(&id).map(|s| SnapshotEntry { id, snapshot: s }));
            match loaded {
                Ok(e) => good.push(e),
                Err(e) => bad.push((info.name, e)),
            }
        }
        good.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok((good, bad))
    }

    /// Resolves `latest`, an id or an id prefix to a recovery point.
    pub fn find_snapshot(&self, spec: &str) -> Result<SnapshotEntry> {
        let (entries, _) = self.list_snapshots()?;
        snapshot::resolve(&entries, spec).cloned()
    }

    /// A packer that writes new blobs into this repository.
    pub fn packer(&self) -> Packer {
        Packer::new(self.backend.clone(), self.cipher.clone(), self.settings.pack_size)
    }
}

fn annotate_pack_error(e: Error, pack: &Id) -> Error {
    match e {
        Error::Corrupt { what, reason } if !what.contains("pack") => {
            Error::Corrupt { what: format!("{what} in pack {pack}"), reason }
        }
        Error::ObjectNotFound { .. } => {
            Error::corrupt(format!("pack {pack}"), "missing from storage")
        }
        other => other,
    }
}

impl Repository {
    /// Replaces the in-memory index (used by `check`, which builds it while reporting errors).
    pub fn replace_index(&mut self, index: Index) {
        self.index = index;
    }
}
