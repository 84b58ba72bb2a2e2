//! Remote storage through Apache OpenDAL: S3-compatible object stores, SFTP and WebDAV.
//!
//! OpenDAL is asynchronous; the engine is not (its pipeline is threads and channels), so every
//! call runs on one shared Tokio runtime through OpenDAL's blocking operator. Every operator gets
//! the same layers: retries with exponential backoff and jitter on transient errors, timeouts,
//! and a limit on concurrent requests. Bandwidth limits are a layer around any backend
//! ([`super::RateLimited`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, blocking};

use super::{Backend, FileType, ObjectInfo, object_path};
use crate::error::{Error, Result};

/// How remote storage is reached, beyond its URL.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Attempts per request on transient errors (the first included).
    pub retries: usize,
    /// Longest a whole request may take, and longest a transfer may stall.
    pub timeout: Duration,
    pub io_timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Bytes per second, or unlimited.
    pub limit_upload: Option<u64>,
    pub limit_download: Option<u64>,
    /// S3: bucket in the host name (`bucket.host`) instead of the path.
    pub s3_virtual_host: bool,
    /// S3 credentials and region (the CLI takes them from the standard AWS variables).
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    pub s3_region: Option<String>,
    /// SFTP: private key file, and what to do with an unknown host key (strict, add, accept).
    pub sftp_key: Option<String>,
    pub sftp_known_hosts: String,
    /// WebDAV credentials.
    pub webdav_user: Option<String>,
    pub webdav_password: Option<String>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            retries: 6,
            timeout: Duration::from_secs(120),
            io_timeout: Duration::from_secs(30),
            concurrency: 16,
            limit_upload: None,
            limit_download: None,
            s3_virtual_host: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_region: None,
            sftp_key: None,
            sftp_known_hosts: "strict".into(),
            webdav_user: None,
            webdav_password: None,
        }
    }
}

/// Which protocol, for the few behaviours that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    S3,
    Sftp,
    WebDav,
}

pub struct RemoteBackend {
    op: blocking::Operator,
    protocol: Protocol,
    location: String,
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("aeon-storage")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::InvalidInput(format!("cannot start the storage runtime: {e}")))
}

impl RemoteBackend {
    /// `s3:http://host:port/bucket/prefix`, `s3:https://s3.amazonaws.com/bucket/prefix`,
    /// `sftp:user@host:port//absolute/path`, `sftp:user@host:/path`,
    /// `webdav:https://host/path`.
    pub fn open(url: &str, opts: &RemoteOptions) -> Result<RemoteBackend> {
        let (protocol, op, location) = if let Some(rest) = url.strip_prefix("s3:") {
            s3(rest, url, opts)?
        } else if let Some(rest) = url.strip_prefix("sftp:") {
            sftp(rest, url, opts)?
        } else if let Some(rest) = url.strip_prefix("webdav:") {
            webdav(rest, url, opts)?
        } else {
            return Err(Error::InvalidInput(format!(
                "invalid repository URL {url:?}: use s3:, sftp: or webdav:, or a local path"
            )));
        };
        let op = op
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(opts.retries.max(1))
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            )
            .layer(TimeoutLayer::new().with_timeout(opts.timeout).with_io_timeout(opts.io_timeout))
            .layer(ConcurrentLimitLayer::new(opts.concurrency.max(1)));
        let rt = runtime()?;
        let _guard = rt.enter();
        let op = blocking::Operator::new(op).map_err(|e| map_err(e, url))?;
        Ok(RemoteBackend { op, protocol, location })
    }

    fn err(&self, e: opendal::Error, path: &str) -> Error {
        map_err(e, &format!("{}/{path}", self.location.trim_end_matches('/')))
    }
}

/// A parsed URL: the protocol, its operator (before the common layers), and the location as
/// messages show it.
type Parsed = (Protocol, Operator, String);

/// `s3:http://host:port/bucket/prefix`, or `s3:bucket/prefix` on AWS.
fn s3(rest: &str, url: &str, opts: &RemoteOptions) -> Result<Parsed> {
    let bad = |why: &str| Error::InvalidInput(format!("invalid repository URL {url:?}: {why}"));
    let (endpoint, path) = match rest.split_once("://") {
        Some((scheme, after)) => {
            let (host, path) = after.split_once('/').unwrap_or((after, ""));
            (format!("{scheme}://{host}"), path)
        }
        None => ("https://s3.amazonaws.com".to_string(), rest),
    };
    let (bucket, prefix) =
        path.trim_matches('/').split_once('/').unwrap_or((path.trim_matches('/'), ""));
    if bucket.is_empty() {
        return Err(bad("name a bucket: s3:http://host:port/bucket/prefix"));
    }
    let region = opts.s3_region.clone().unwrap_or_else(|| "us-east-1".into());
    let mut b = opendal::services::S3::default()
        .endpoint(&endpoint)
        .bucket(bucket)
        .root(&format!("/{prefix}"))
        .region(&region)
        .disable_ec2_metadata();
    // Without explicit keys, the AWS configuration files (~/.aws/credentials, AWS_PROFILE)
    // apply.
    if let (Some(k), Some(s)) = (&opts.s3_access_key_id, &opts.s3_secret_access_key) {
        b = b.disable_config_load().access_key_id(k).secret_access_key(s);
    }
    if opts.s3_virtual_host {
        b = b.enable_virtual_host_style();
    }
    let op = Operator::new(b).map_err(|e| map_err(e, url))?.finish();
    Ok((Protocol::S3, op, format!("s3:{endpoint}/{bucket}/{prefix}")))
}

/// `sftp:user@host:port//absolute/path` or `sftp:user@host:/path`.
fn sftp(rest: &str, url: &str, opts: &RemoteOptions) -> Result<Parsed> {
    let bad = |why: &str| Error::InvalidInput(format!("invalid repository URL {url:?}: {why}"));
    let rest = rest.trim_start_matches("//");
    let (host, path) = match rest.split_once("//") {
        Some((host, path)) => (host.to_string(), format!("/{path}")),
        None => {
            let (h, p) = rest.rsplit_once(':').ok_or_else(|| bad("use sftp:user@host:/path"))?;
            (h.to_string(), p.to_string())
        }
    };
    if path.is_empty() || host.is_empty() {
        return Err(bad("use sftp:user@host:port//absolute/path"));
    }
    let mut b = opendal::services::Sftp::default()
        .endpoint(&format!("ssh://{host}"))
        .root(&path)
        .known_hosts_strategy(&opts.sftp_known_hosts);
    if let Some(k) = &opts.sftp_key {
        b = b.key(k);
    }
    let op = Operator::new(b).map_err(|e| map_err(e, url))?.finish();
    Ok((Protocol::Sftp, op, format!("sftp:{host}/{path}")))
}

/// `webdav:https://host/path`.
fn webdav(rest: &str, url: &str, opts: &RemoteOptions) -> Result<Parsed> {
    let bad = |why: &str| Error::InvalidInput(format!("invalid repository URL {url:?}: {why}"));
    let (scheme, after) =
        rest.split_once("://").ok_or_else(|| bad("use webdav:https://host/path"))?;
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    let mut b = opendal::services::Webdav::default()
        .endpoint(&format!("{scheme}://{host}"))
        .root(&format!("/{path}"));
    if let Some(u) = &opts.webdav_user {
        b = b.username(u);
    }
    if let Some(p) = &opts.webdav_password {
        b = b.password(p);
    }
    let op = Operator::new(b).map_err(|e| map_err(e, url))?.finish();
    Ok((Protocol::WebDav, op, format!("webdav:{scheme}://{host}/{path}")))
}

fn map_err(e: opendal::Error, what: &str) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::ObjectNotFound { kind: "object", id: what.to_string() },
        ErrorKind::PermissionDenied => Error::Storage {
            location: what.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("access denied (check the credentials): {e}"),
            ),
        },
        _ => Error::storage(what, e.to_string()),
    }
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<()> {
        if self.protocol == Protocol::S3 {
            // Object stores have no folders, but the bucket must exist: say so plainly.
            let probe = opendal::options::ListOptions { limit: Some(1), ..Default::default() };
            return match self.op.list_options("/", probe) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::storage(
                    self.location.clone(),
                    "the bucket does not exist; create it first",
                )),
                Err(e) => Err(self.err(e, "")),
            };
        }
        for t in FileType::all_dirs() {
            let dir = format!("{}/", t.dir());
            self.op.create_dir(&dir).map_err(|e| self.err(e, &dir))?;
        }
        Ok(())
    }

    fn location_exists(&self) -> Result<bool> {
        match self.op.list_options(
            "/",
            opendal::options::ListOptions { limit: Some(1), ..Default::default() },
        ) {
            Ok(entries) => Ok(entries.iter().any(|e| e.path() != "/")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(e, "")),
        }
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        let path = object_path(t, name);
        match self.op.stat(&path) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e, &path)),
        }
    }

    fn modified(&self, t: FileType, name: &str) -> Result<Vec<Option<std::time::SystemTime>>> {
        let path = object_path(t, name);
        match self.op.stat(&path) {
            Ok(m) => Ok(vec![m.last_modified().map(std::time::SystemTime::from)]),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(Error::ObjectNotFound { kind: "object", id: path })
            }
            Err(e) => Err(self.err(e, &path)),
        }
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let path = object_path(t, name);
        let data = self.op.read(&path).map_err(|e| self.err(e, &path))?.to_vec();
        Ok(data)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let path = object_path(t, name);
        let opts = opendal::options::ReadOptions {
            range: (offset..offset + length).into(),
            ..Default::default()
        };
        let data = match self.op.read_options(&path, opts) {
            Ok(b) => b.to_vec(),
            // A range past the end (reported differently by each service): the object is shorter
            // than the index says, which is damage, not a storage failure.
            Err(e) => match self.op.stat(&path) {
                Ok(m) if m.content_length() < offset + length => Vec::new(),
                _ => return Err(self.err(e, &path)),
            },
        };
        if data.len() as u64 != length {
            return Err(Error::corrupt(
                t.object(name),
                format!("truncated: {length} bytes at offset {offset} are beyond its end"),
            ));
        }
        Ok(data)
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let path = object_path(t, name);
        let buf = opendal::Buffer::from(data.to_vec());
        if self.protocol == Protocol::S3 {
            // A PUT is all or nothing.
            self.op.write(&path, buf).map_err(|e| self.err(e, &path))?;
            return Ok(());
        }
        // SFTP and WebDAV write in place: write beside the target, then rename, so that readers
        // never see half an object.
        let mut nonce = [0u8; 8];
        crate::crypto::fill_random(&mut nonce)?;
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let tmp = if dir.is_empty() {
            format!(".tmp-{file}-{}", hex::encode(nonce))
        } else {
            format!("{dir}/.tmp-{file}-{}", hex::encode(nonce))
        };
        let result = self.op.write(&tmp, buf).and_then(|_| self.op.rename(&tmp, &path));
        if let Err(e) = result {
            let _ = self.op.delete(&tmp);
            return Err(self.err(e, &path));
        }
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let dir = match t {
            FileType::Config => return Ok(Vec::new()),
            _ => format!("{}/", t.dir()),
        };
        let opts = opendal::options::ListOptions { recursive: true, ..Default::default() };
        let entries = match self.op.list_options(&dir, opts) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e, &dir)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let name = e.name().trim_end_matches('/').to_string();
            if name.is_empty() || name.starts_with('.') {
                continue;
            }
            let size = match e.metadata().content_length() {
                0 => self.op.stat(e.path()).map(|m| m.content_length()).unwrap_or(0),
                n => n,
            };
            out.push(ObjectInfo { name, size });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let path = object_path(t, name);
        self.op.delete(&path).map_err(|e| self.err(e, &path))
    }
}

/// Opens the backend a repository location names: a URL for remote storage, else a local path.
pub fn open_location(location: &str, opts: &RemoteOptions) -> Result<Arc<dyn Backend>> {
    let backend: Arc<dyn Backend> = if is_remote(location) {
        Arc::new(RemoteBackend::open(location, opts)?)
    } else {
        Arc::new(super::LocalBackend::new(location))
    };
    Ok(super::RateLimited::wrap(backend, opts.limit_upload, opts.limit_download))
}

/// Whether a location names remote storage (a URL of a supported scheme) rather than a path.
pub fn is_remote(location: &str) -> bool {
    ["s3:", "sftp:", "webdav:"].iter().any(|p| location.starts_with(p))
}
