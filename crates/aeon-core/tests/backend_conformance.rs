//! One conformance suite that every backend passes: local, S3 (SeaweedFS), SFTP (OpenSSH),
//! WebDAV (SeaweedFS), each against a real server on loopback.

#[path = "support/servers.rs"]
mod servers;

use std::sync::Arc;

use aeon_core::Error;
use aeon_core::backend::{
    Backend, FileType, LocalBackend, MemoryBackend, RateLimited, RemoteBackend, RemoteOptions,
};

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x = seed as u64 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The contract of [`Backend`], exercised end to end.
fn conformance(b: Arc<dyn Backend>) {
    b.create().unwrap();
    // Missing objects: a clear error, never empty data.
    assert!(matches!(b.read(FileType::Snapshot, "ab12"), Err(Error::ObjectNotFound { .. })));
    assert_eq!(b.stat(FileType::Index, "ab12").unwrap(), None);
    assert!(b.list(FileType::Snapshot).unwrap().is_empty());

    // Write, read, stat, list, for every namespace.
    let kinds =
        [FileType::Key, FileType::Pack, FileType::Index, FileType::Snapshot, FileType::Lock];
    for (i, t) in kinds.iter().enumerate() {
        let name = format!("{:02x}{}", 0x10 + i, "ab".repeat(31));
        let data = bytes(i as u8, 1000 + i);
        b.write(*t, &name, &data).unwrap();
        assert_eq!(b.read(*t, &name).unwrap(), data);
        assert_eq!(b.stat(*t, &name).unwrap(), Some(data.len() as u64));
        let listed = b.list(*t).unwrap();
        assert_eq!(listed.len(), 1, "{t:?}: {listed:?}");
        assert_eq!((listed[0].name.as_str(), listed[0].size), (name.as_str(), data.len() as u64));
    }
    b.write(FileType::Config, "config", b"config v1").unwrap();
    assert!(b.location_exists().unwrap());

    // Overwrite (config and locks are rewritten in place): the new content wins, whole.
    b.write(FileType::Config, "config", b"config, second version").unwrap();
    assert_eq!(b.read(FileType::Config, "config").unwrap(), b"config, second version");

    // Ranged reads, and a range past the end is an integrity error, never a short read.
    let pack = "77".repeat(32);
    let data = bytes(9, 100_000);
    b.write(FileType::Pack, &pack, &data).unwrap();
    assert_eq!(b.read_range(FileType::Pack, &pack, 12_345, 1000).unwrap(), &data[12_345..13_345]);
    assert_eq!(b.read_range(FileType::Pack, &pack, 99_000, 1000).unwrap(), &data[99_000..]);
    let past = b.read_range(FileType::Pack, &pack, 99_500, 1000);
    assert!(past.as_ref().is_err_and(|e| e.is_integrity()), "{past:?}");

    // Reads into a reused buffer replace what it held.
    let mut buf = bytes(1, 300_000);
    b.read_into(FileType::Pack, &pack, &mut buf).unwrap();
    assert!(buf == data);
    b.read_range_into(FileType::Pack, &pack, 5, 10, &mut buf).unwrap();
    assert_eq!(buf, &data[5..15]);
    let past = b.read_range_into(FileType::Pack, &pack, 99_999, 2, &mut buf);
    assert!(past.as_ref().is_err_and(|e| e.is_integrity()), "{past:?}");

    // A large object.
    let big = bytes(3, 40 << 20);
    let big_name = "99".repeat(32);
    b.write(FileType::Pack, &big_name, &big).unwrap();
    assert!(b.read(FileType::Pack, &big_name).unwrap() == big);
    assert_eq!(b.stat(FileType::Pack, &big_name).unwrap(), Some(40 << 20));

    // Concurrency: many writers, every object whole afterwards.
    std::thread::scope(|s| {
        for w in 0..8u8 {
            let b = b.clone();
            s.spawn(move || {
                for i in 0..12u8 {
                    let name = format!("{w:02x}{i:02x}{}", "c".repeat(60));
                    b.write(FileType::Index, &name, &bytes(w ^ i, 5000 + i as usize)).unwrap();
                }
            });
        }
    });
    let listed = b.list(FileType::Index).unwrap();
    assert_eq!(listed.len(), 1 + 96);
    for o in listed.iter().filter(|o| o.name.ends_with(&"c".repeat(60))) {
        let w = u8::from_str_radix(&o.name[..2], 16).unwrap();
        let i = u8::from_str_radix(&o.name[2..4], 16).unwrap();
        assert_eq!(b.read(FileType::Index, &o.name).unwrap(), bytes(w ^ i, 5000 + i as usize));
        assert_eq!(o.size, 5000 + i as u64);
    }

    // Packs of many fan-out folders list as one namespace.
    let packs: Vec<_> = b.list(FileType::Pack).unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(packs, vec![format!("11{}", "ab".repeat(31)), pack.clone(), big_name.clone()]);

    // Remove.
    b.remove(FileType::Pack, &pack).unwrap();
    assert_eq!(b.stat(FileType::Pack, &pack).unwrap(), None);
    assert_eq!(b.list(FileType::Pack).unwrap().len(), 2);
    assert!(matches!(b.read(FileType::Pack, &pack), Err(Error::ObjectNotFound { .. })));
}

#[test]
fn memory_backend_and_a_rate_limited_one_conform() {
    conformance(Arc::new(MemoryBackend::new()));
    conformance(RateLimited::wrap(Arc::new(MemoryBackend::new()), Some(1 << 30), Some(1 << 30)));
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(LocalBackend::new(dir.path().join("repo"))));
}

fn s3_options() -> RemoteOptions {
    RemoteOptions {
        s3_access_key_id: Some(servers::S3_ACCESS_KEY.into()),
        s3_secret_access_key: Some(servers::S3_SECRET_KEY.into()),
        ..Default::default()
    }
}

#[test]
fn s3_and_webdav_backends_conform() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("conformance");
    let s3 = RemoteBackend::open(&weed.s3_url("conformance", "repo"), &s3_options()).unwrap();
    conformance(Arc::new(s3));
    let dav = RemoteBackend::open(&weed.webdav_url("dav-repo"), &RemoteOptions::default()).unwrap();
    conformance(Arc::new(dav));
}

#[test]
fn sftp_backend_conforms() {
    let sshd = servers::Sshd::start();
    let opts = RemoteOptions {
        sftp_key: Some(sshd.key.display().to_string()),
        sftp_known_hosts: "accept".into(),
        ..Default::default()
    };
    let b = RemoteBackend::open(&sshd.url("repo"), &opts).unwrap();
    conformance(Arc::new(b));
}
