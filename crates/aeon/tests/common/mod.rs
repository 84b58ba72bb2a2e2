//! Helpers for end-to-end tests: run the real `aeon` binary, generate trees, and compare
//! trees with an oracle built on std::fs (not on Aeon's code).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod torture;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    /// Run aeon as this uid/gid (through setpriv) instead of the test's own user.
    pub run_as: Option<u32>,
    /// More environment for every run (credentials of remote storage).
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    /// A fresh directory with an initialised repository (cheap Argon2id for speed).
    pub fn new() -> Env {
        let env = Env::empty();
        let out = env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
        assert_success(&out);
        env
    }

    pub fn empty() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Env { dir, repo, run_as: None, extra_env: Vec::new() }
    }

    /// Writes `aeon.toml`: a `[default]` profile with this repository and a password file,
    /// then `profiles` (TOML). Its path.
    #[allow(dead_code)]
    pub fn config_file(&self, profiles: &str) -> PathBuf {
        let password = self.path("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        let config = self.path("aeon.toml");
        let default = format!(
            "[default]\nrepository = {:?}\npassword_file = {:?}\n\n",
            self.repo.display(),
            password.display()
        );
        std::fs::write(&config, default + profiles).unwrap();
        config
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = match self.run_as {
            None => Command::new(env!("CARGO_BIN_EXE_aeon")),
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(env!("CARGO_BIN_EXE_aeon"));
                c
            }
        };
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AEON_REPOSITORY", &self.repo)
            .env("AEON_PASSWORD", PASSWORD)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        c
    }

    /// Like [`Env::cmd`], with aeon started by `wrapper` (e.g. `unshare --pid --fork`): the
    /// wrapper's arguments, then aeon's path, then what the caller adds.
    pub fn cmd_via(&self, wrapper: &[&str]) -> Command {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..])
            .arg(env!("CARGO_BIN_EXE_aeon"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AEON_REPOSITORY", &self.repo)
            .env("AEON_PASSWORD", PASSWORD)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run aeon")
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out);
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        // Right after the subcommand: anything after `--` belongs to a command, not to aeon.
        let mut all = args.to_vec();
        all.insert(1.min(all.len()), "--json");
        serde_json::from_str(&self.run_ok(&all)).expect("valid JSON")
    }

    /// Backs up `path` and returns the recovery point's full id.
    pub fn backup(&self, path: &Path) -> String {
        let v = self.json(&["backup", path.to_str().expect("utf-8 path")]);
        v["snapshot_id"].as_str().expect("snapshot_id").to_string()
    }

    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo)
    }

    /// The pack files, largest first (partial uploads, `.tmp-*`, left out).
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let visible = |e: &fs::DirEntry| !e.file_name().to_string_lossy().starts_with('.');
        for sub in fs::read_dir(self.repo.join("data")).expect("data dir").flatten() {
            if !visible(&sub) || !sub.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path()).expect("fan-out dir").flatten() {
                if visible(&f) {
                    v.push(f.path());
                }
            }
        }
        v.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
        v
    }
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "aeon failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&d) else {
            continue;
        };
        if md.is_dir() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                stack.push(e.path());
            }
        } else {
            total += md.len();
        }
    }
    total
}

/// A small deterministic generator (xorshift64*), so trees are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Half text-like (compressible), half random bytes.
    pub fn content(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let words: [&[u8]; 8] = [
            b"backup ",
            b"restore ",
            b"chunk ",
            b"aeon ",
            b"fn main() {\n",
            b"}\n",
            b"let x = 42;\n",
            b"// note\n",
        ];
        while out.len() < len {
            if self.below(2) == 0 {
                for _ in 0..64 {
                    out.extend_from_slice(words[self.below(8) as usize]);
                }
            } else {
                for _ in 0..64 {
                    out.extend_from_slice(&self.next().to_le_bytes());
                }
            }
        }
        out.truncate(len);
        out
    }
}

/// `len` incompressible bytes (rounded down to a multiple of 8) determined by `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len / 8).flat_map(|_| rng.next().to_le_bytes()).collect()
}

/// Writes `len` incompressible bytes determined by `seed`.
pub fn write_random(path: &Path, seed: u64, len: usize) {
    fs::write(path, random_bytes(seed, len)).expect("write");
}

/// Generates a tree: nested dirs, files from 0 bytes to `max_file` bytes, symlinks (relative,
/// absolute, dangling), an empty dir, odd modes and nanosecond mtimes.
pub fn generate_tree(root: &Path, seed: u64, files: usize, max_file: usize) {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root).expect("mkdir");
    let mut dirs = vec![root.to_path_buf()];
    for i in 0..files / 8 + 1 {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let d = parent.join(format!("dir{i}"));
        fs::create_dir_all(&d).expect("mkdir");
        dirs.push(d);
    }
    fs::create_dir_all(root.join("empty/deeper")).expect("mkdir");
    for i in 0..files {
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        let size = match rng.below(20) {
            0 => 0,
            1 => (max_file as u64 / 2 + rng.below(max_file as u64 / 2)) as usize,
            2..=4 => rng.below(2_000_000) as usize,
            _ => rng.below(20_000) as usize,
        };
        let p = dir.join(format!("file{i}.dat"));
        fs::write(&p, rng.content(size)).expect("write");
        let mode = [0o644, 0o600, 0o755, 0o444, 0o640][rng.below(5) as usize];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        let t = filetime::FileTime::from_unix_time(
            1_600_000_000 + rng.below(100_000_000) as i64,
            rng.below(1_000_000_000) as u32,
        );
        filetime::set_file_mtime(&p, t).expect("mtime");
    }
    std::os::unix::fs::symlink("file0.dat", root.join("rel-link")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling-link")).expect("symlink");
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o750)).expect("chmod");
    // Directory times last, since creating entries changes them.
    for (i, d) in dirs.iter().enumerate().rev() {
        let t = filetime::FileTime::from_unix_time(1_500_000_000 + i as i64, 123_456_789);
        filetime::set_file_mtime(d, t).expect("dir mtime");
    }
}

/// What the oracle records of one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content_hash: Option<[u8; 32]>,
    pub link: Option<PathBuf>,
}

/// Describes every entry below `root` by relative path, using only std::fs.
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).expect("lstat");
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "file"
        };
        let content_hash = if ft.is_file() {
            Some(*blake3::hash(&fs::read(&p).expect("read")).as_bytes())
        } else {
            None
        };
        let link = if ft.is_symlink() { Some(fs::read_link(&p).expect("readlink")) } else { None };
        if ft.is_dir() {
            for e in fs::read_dir(&p).expect("read_dir").flatten() {
                stack.push(e.path());
            }
        }
        // The root's own times are not part of the comparison (the restore target is ours).
        let mtime = if rel.as_os_str().is_empty() { (0, 0) } else { (md.mtime(), md.mtime_nsec()) };
        out.insert(
            rel,
            Entry {
                kind,
                mode: if ft.is_symlink() { 0 } else { md.mode() & 0o7777 },
                uid: md.uid(),
                gid: md.gid(),
                mtime,
                size: if ft.is_file() { md.len() } else { 0 },
                content_hash,
                link,
            },
        );
    }
    out
}

pub fn assert_trees_equal(a: &Path, b: &Path) {
    let ta = snapshot_tree(a);
    let tb = snapshot_tree(b);
    let ka: Vec<_> = ta.keys().collect();
    let kb: Vec<_> = tb.keys().collect();
    assert_eq!(ka, kb, "different sets of paths");
    for (k, ea) in &ta {
        assert_eq!(ea, &tb[k], "entry {} differs", k.display());
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Writes crafted recovery points through the library: blobs and trees of a test's choosing,
/// as a key holder could, to see what every reader does with them.
pub struct Crafter {
    pub repo: aeon_core::repository::Repository,
    packer: aeon_core::repository::Packer,
}

impl Crafter {
    pub fn open(env: &Env) -> Crafter {
        let backend = std::sync::Arc::new(aeon_core::backend::LocalBackend::new(&env.repo));
        let repo =
            aeon_core::repository::Repository::open(backend, PASSWORD.as_bytes()).expect("open");
        let repo = repo.lock(aeon_core::lock::LockKind::Shared, "test").expect("lock");
        let repo = repo.load_index().expect("index");
        let packer = repo.packer();
        Crafter { repo, packer }
    }

    fn add(&mut self, kind: aeon_core::blob::BlobType, bytes: &[u8]) -> aeon_core::id::Id {
        use aeon_core::blob::{Compression, seal_blob};
        let id = self.repo.hasher().hash(bytes);
        let sealed = seal_blob(self.repo.cipher(), kind, &id, bytes, Compression::None).unwrap();
        self.packer.add(kind, id, &sealed, bytes.len() as u32).expect("pack");
        id
    }

    pub fn data(&mut self, bytes: &[u8]) -> aeon_core::id::Id {
        self.add(aeon_core::blob::BlobType::Data, bytes)
    }

    pub fn tree(&mut self, tree: &aeon_core::tree::Tree) -> aeon_core::id::Id {
        self.add(aeon_core::blob::BlobType::Tree, &tree.encode())
    }

    /// Stores what was added and a recovery point of `tree`; returns the point's id.
    pub fn point(self, tree: aeon_core::id::Id) -> String {
        self.packer.finish().expect("finish");
        let snap = aeon_core::snapshot::Snapshot {
            time: chrono::Utc::now().fixed_offset(),
            tree,
            paths: vec!["/crafted".into()],
            hostname: "attacker".into(),
            username: "mallory".into(),
            uid: 0,
            gid: 0,
            tags: vec![],
            parent: None,
            description: None,
            category: None,
            kind: None,
            program_version: "crafted".into(),
            summary: aeon_core::snapshot::Summary::default(),
            protected: false,
            original: None,
            imported: None,
        };
        self.repo.save_snapshot(&snap).expect("save").to_hex()
    }
}
