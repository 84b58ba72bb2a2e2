//! Recovery points (snapshots): the root tree of a backup plus who, when, what and how much.

mod labels;

pub use labels::{LabelRecord, LabelSet, Labels};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::id::Id;

/// What a backup did, recorded in its recovery point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unchanged: u64,
    pub total_files: u64,
    pub total_dirs: u64,
    /// Bytes of file content the backup read from the source.
    pub bytes_read: u64,
    /// Total size of the files in the recovery point.
    pub total_bytes: u64,
    /// Blobs and their plaintext bytes not already in the repository.
    pub blobs_added: u64,
    pub data_added: u64,
    /// Bytes written to storage (compressed, encrypted, including pack and index overhead).
    pub data_added_stored: u64,
    pub errors: u64,
    pub backup_start: Option<DateTime<FixedOffset>>,
    pub backup_end: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: DateTime<FixedOffset>,
    pub tree: Id,
    pub paths: Vec<String>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub parent: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// full, config, critical, incremental, emergency, pre-deploy, post-deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// system, config, data, application, database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub program_version: String,
    #[serde(default)]
    pub summary: Summary,
    /// A protected recovery point is never removed by `forget`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// The id this recovery point had first: set on a copy made by `aeon copy`, and on objects
    /// that protect/unprotect rewrote before labels kept ids for life (see [`Labels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// Where an imported recovery point came from (`aeon import`); `original` then holds the
    /// source's own id of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
}

/// The source of an imported recovery point: what `aeon import` recognises it by when run
/// again, and what a person needs to trace it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// `restic` or `borg`.
    pub format: String,
    /// The source repository's id (restic's config id, Borg's repository id).
    pub repository: String,
    /// The snapshot's or archive's id there, in hex.
    pub id: String,
    /// Borg's archive name (restic snapshots have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The program that wrote it, as the source recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
}

impl Snapshot {
    pub fn encode(&self, cipher: &Cipher) -> Result<Vec<u8>> {
        format::seal_record(cipher, ObjectKind::Snapshot, self)
    }

    pub fn decode(cipher: &Cipher, data: &[u8], what: &str) -> Result<Snapshot> {
        format::open_record(cipher, ObjectKind::Snapshot, data, what)
    }
}

#[cfg(test)]
impl Snapshot {
    /// A recovery point of host `h` taken at `time` (RFC 3339), for tests.
    pub(crate) fn sample(time: &str) -> Snapshot {
        Snapshot {
            time: DateTime::parse_from_rfc3339(time).expect("RFC 3339 time"),
            tree: Id::ZERO,
            paths: vec!["/a".into()],
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: vec![],
            parent: None,
            description: None,
            category: None,
            kind: None,
            program_version: "x".into(),
            summary: Summary::default(),
            protected: false,
            original: None,
            imported: None,
        }
    }
}

/// A recovery point with the id of its storage object.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub id: Id,
    pub snapshot: Snapshot,
}

/// Resolves `latest`, a full id or an unambiguous prefix against `entries` (sorted by time).
pub fn resolve<'a>(entries: &'a [SnapshotEntry], spec: &str) -> Result<&'a SnapshotEntry> {
    if spec == "latest" {
        return entries
            .iter()
            .max_by_key(|e| e.snapshot.time)
            .ok_or_else(|| Error::NoMatch { kind: "recovery point", prefix: spec.into() });
    }
    let prefix = spec.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{spec:?} is not a recovery point id; use a hex id, a prefix of one, or \"latest\""
        )));
    }
    let matches: Vec<_> = entries.iter().filter(|e| e.id.to_hex().starts_with(&prefix)).collect();
    match matches.len() {
        1 => Ok(matches[0]),
        0 => Err(Error::NoMatch { kind: "recovery point", prefix: spec.into() }),
        n => Err(Error::Ambiguous { kind: "recovery point", prefix: spec.into(), count: n }),
    }
}

/// Like [`resolve`], knowing the recovery points that could not be read (`unreadable`: their
/// object names and why). `latest` cannot be decided while one is unreadable (its time is inside
/// it), and a prefix that names one is an error naming it: neither silently means another point.
pub fn resolve_among<'a>(
    entries: &'a [SnapshotEntry],
    unreadable: &[(String, Error)],
    spec: &str,
) -> Result<&'a SnapshotEntry> {
    let prefix = spec.to_ascii_lowercase();
    let damaged = unreadable
        .iter()
        .filter(|(name, _)| spec == "latest" || (!prefix.is_empty() && name.starts_with(&prefix)));
    let consequence = if spec == "latest" {
        "so which point is the latest cannot be told; name an older one by id to use it"
    } else {
        "it cannot be used"
    };
    refuse_unreadable(damaged, consequence)?;
    resolve(entries, spec)
}

/// An error naming the first of `unreadable` (recovery points that could not be read: object
/// name and why) and what it stops, if there is one: what a damaged point held is unknown, so
/// an answer that depends on it must not be given as if it were not there.
pub fn refuse_unreadable<'u>(
    mut unreadable: impl Iterator<Item = &'u (String, Error)>,
    consequence: &str,
) -> Result<()> {
    match unreadable.next() {
        None => Ok(()),
        Some((name, e)) => Err(Error::corrupt(
            format!("recovery point {name}"),
            format!("{}; {consequence}", e.to_string().trim_end_matches('.')),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;

    fn snap(t: &str) -> Snapshot {
        Snapshot::sample(t)
    }

    #[test]
    fn encode_decode_and_tamper() {
        let c = Cipher::new(&Key::random().unwrap());
        let s = snap("2026-01-01T00:00:00+01:00");
        let mut bytes = s.encode(&c).unwrap();
        assert_eq!(Snapshot::decode(&c, &bytes, "s").unwrap(), s);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(Snapshot::decode(&c, &bytes, "s").is_err());
    }

    #[test]
    fn resolve_latest_prefix_and_ambiguity() {
        let e = |b: u8, t| SnapshotEntry { id: Id([b; 32]), snapshot: snap(t) };
        let list = vec![
            e(0xab, "2026-01-01T00:00:00Z"),
            e(0xac, "2026-01-03T00:00:00Z"),
            e(0x12, "2026-01-02T00:00:00Z"),
        ];
        assert_eq!(resolve(&list, "latest").unwrap().id, Id([0xac; 32]));
        assert_eq!(resolve(&list, "12").unwrap().id, Id([0x12; 32]));
        assert_eq!(resolve(&list, "ABAB").unwrap().id, Id([0xab; 32]));
        assert!(matches!(resolve(&list, "a"), Err(Error::Ambiguous { count: 2, .. })));
        assert!(matches!(resolve(&list, "ff"), Err(Error::NoMatch { .. })));
        assert!(matches!(resolve(&list, "xyz"), Err(Error::InvalidInput(_))));
    }
}
