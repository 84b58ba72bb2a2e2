//! A recovery point's labels (protection, tags, description) change without changing its id.
//!
//! A recovery point's object is named by the hash of its bytes, so rewriting it would give it a
//! new id and break every script, runbook and audit record that named it. Its labels are
//! therefore changed by writing a small label record beside it (`labels/<id>`, kind 10): the
//! complete new set of labels, and the records it replaces. A point's labels are those of its
//! newest record that no other record replaces, else the ones its own object was written with.
//! See docs/FORMAT.md, section 10a.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::Snapshot;
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::id::Id;

/// What may change about a recovery point after it was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    /// `forget` never removes a protected point.
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Labels {
    /// The labels a recovery point's object holds.
    pub fn of(snapshot: &Snapshot) -> Labels {
        Labels {
            protected: snapshot.protected,
            tags: snapshot.tags.clone(),
            description: snapshot.description.clone(),
        }
    }

    /// Gives `snapshot` these labels (in memory: its object is never rewritten).
    pub fn apply_to(&self, snapshot: &mut Snapshot) {
        snapshot.protected = self.protected;
        snapshot.tags.clone_from(&self.tags);
        snapshot.description.clone_from(&self.description);
    }
}

/// One change of a recovery point's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRecord {
    /// The recovery point's id.
    pub snapshot: Id,
    /// When the change was made (by the writer's clock: it only orders concurrent changes).
    pub time: DateTime<FixedOffset>,
    #[serde(flatten)]
    pub labels: Labels,
    /// The records of the same point this one replaces (all that its writer saw).
    #[serde(default)]
    pub supersedes: Vec<Id>,
}

impl LabelRecord {
    pub fn encode(&self, cipher: &Cipher) -> Result<Vec<u8>> {
        format::seal_record(cipher, ObjectKind::Labels, self)
    }

    pub fn decode(cipher: &Cipher, data: &[u8], what: &str) -> Result<LabelRecord> {
        format::open_record(cipher, ObjectKind::Labels, data, what)
    }
}

/// Every label record of a repository, by recovery point.
#[derive(Debug, Default)]
pub struct LabelSet {
    by_point: HashMap<Id, Vec<(Id, LabelRecord)>>,
    /// Records that could not be read, by object name, with why. While there are any, which
    /// points are protected cannot be told for sure.
    pub unreadable: Vec<(String, Error)>,
}

impl LabelSet {
    pub fn insert(&mut self, id: Id, record: LabelRecord) {
        self.by_point.entry(record.snapshot).or_default().push((id, record));
    }

    /// The record in force for a point: the newest that no other record replaces (the newest
    /// of all, should crafted records replace each other in a circle).
    pub fn current(&self, point: &Id) -> Option<&LabelRecord> {
        let records = self.by_point.get(point)?;
        let replaced: HashSet<&Id> = records.iter().flat_map(|(_, r)| &r.supersedes).collect();
        let newest = |all: bool| {
            records
                .iter()
                .filter(|(id, _)| all || !replaced.contains(id))
                .max_by(|(a_id, a), (b_id, b)| a.time.cmp(&b.time).then(a_id.cmp(b_id)))
                .map(|(_, r)| r)
        };
        newest(false).or_else(|| newest(true))
    }

    /// The ids of every record of a point.
    pub fn records_of(&self, point: &Id) -> Vec<Id> {
        self.by_point.get(point).map(|v| v.iter().map(|(id, _)| *id).collect()).unwrap_or_default()
    }

    /// The records of points not in `points` (left when a forget stopped between removing a
    /// point and its records).
    pub fn orphans(&self, points: &HashSet<Id>) -> Vec<Id> {
        self.by_point
            .iter()
            .filter(|(p, _)| !points.contains(*p))
            .flat_map(|(_, v)| v.iter().map(|(id, _)| *id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(point: u8, time: &str, tag: &str, supersedes: Vec<Id>) -> LabelRecord {
        LabelRecord {
            snapshot: Id([point; 32]),
            time: DateTime::parse_from_rfc3339(time).unwrap(),
            labels: Labels { protected: false, tags: vec![tag.into()], description: None },
            supersedes,
        }
    }

    #[test]
    fn the_record_no_other_replaces_wins_whatever_the_clocks_say() {
        let mut set = LabelSet::default();
        // The second change replaces the first although its writer's clock was behind.
        set.insert(Id([1; 32]), record(7, "2026-12-07T10:00:00Z", "first", vec![]));
        set.insert(Id([2; 32]), record(7, "2026-12-07T09:20:00Z", "second", vec![Id([1; 32])]));
        assert_eq!(set.current(&Id([7; 32])).unwrap().labels.tags, ["second"]);
        // Two concurrent changes (neither saw the other): the later one wins.
        set.insert(Id([3; 32]), record(7, "2026-12-07T09:30:00Z", "third", vec![Id([1; 32])]));
        assert_eq!(set.current(&Id([7; 32])).unwrap().labels.tags, ["third"]);
        assert!(set.current(&Id([8; 32])).is_none());
        assert_eq!(set.orphans(&HashSet::new()).len(), 3);
    }

    #[test]
    fn records_round_trip_and_refuse_tampering() {
        let c = Cipher::new(&crate::crypto::Key::random().unwrap());
        let r = record(1, "2026-12-07T10:00:00+01:00", "x", vec![Id([9; 32])]);
        let mut bytes = r.encode(&c).unwrap();
        assert_eq!(LabelRecord::decode(&c, &bytes, "l").unwrap(), r);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(LabelRecord::decode(&c, &bytes, "l").is_err());
    }
}
