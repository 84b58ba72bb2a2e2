//! Changing recovery points after they were taken: their labels (protection, tags,
//! description), and forgetting them. Both keep the promise that a point keeps its id for life
//! and that `forget` never removes a protected point.

use std::collections::HashSet;

use super::Repository;
use super::state::Guarded;
use crate::backend::FileType;
use crate::error::{Error, Object, Result};
use crate::id::Id;
use crate::snapshot::{LabelRecord, LabelSet, Labels, SnapshotEntry};

/// The most bytes read of a label record before it is authenticated (real ones are under 1 KiB).
const MAX_LABEL_RECORD_LEN: u64 = 1 << 20;

impl<S> Repository<S> {
    /// Every label record, by recovery point; records that cannot be read are listed apart.
    pub fn load_labels(&self) -> Result<LabelSet> {
        let mut set = LabelSet::default();
        for info in self.backend.list(FileType::Label)? {
            let object = Object::Label(info.name.clone());
            if info.size > MAX_LABEL_RECORD_LEN {
                let why = format!("{} bytes, larger than any label record", info.size);
                set.unreadable.push((info.name, Error::corrupt(object, why)));
                continue;
            }
            let read = info.name.parse::<Id>().and_then(|id| {
                let data = self.backend.read(FileType::Label, &info.name)?;
                if Id::of_stored_bytes(&data) != id {
                    return Err(Error::corrupt(object.clone(), "content does not match its name"));
                }
                let record = LabelRecord::decode(&self.cipher, &data, &object.to_string());
                Ok((id, record.map_err(|e| e.about(object.clone()))?))
            });
            match read {
                Ok((id, record)) => set.insert(id, record),
                // Replaced and removed between listing and reading.
                Err(Error::ObjectNotFound { .. }) => {}
                Err(e) => set.unreadable.push((info.name, e)),
            }
        }
        Ok(set)
    }
}

impl<S> Repository<S> {
    /// [`Repository::load_labels`], refusing (with `consequence`) when a record cannot be read.
    fn load_labels_intact(&self, consequence: &str) -> Result<LabelSet> {
        let set = self.load_labels()?;
        if let Some((name, e)) = set.unreadable.first() {
            return Err(Error::corrupt(Object::Label(name.clone()), format!("{e}; {consequence}")));
        }
        Ok(set)
    }
}

/// What [`Repository::forget`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ForgetOutcome {
    /// Recovery points removed (ones already gone are not counted).
    pub removed: usize,
    /// Label records removed with them.
    pub label_records_removed: usize,
}

impl<S: Guarded> Repository<S> {
    /// Changes a recovery point's labels; its id stays. Returns the labels now in force, and
    /// writes nothing when `change` changes nothing.
    pub fn relabel(
        &self,
        point: &SnapshotEntry,
        change: impl FnOnce(&mut Labels),
    ) -> Result<Labels> {
        self.ensure_lock_held()?;
        let set = self
            .load_labels_intact("labels are changed only while every label record can be read")?;
        let mut labels = match set.current(&point.id) {
            Some(r) => r.labels.clone(),
            None => Labels::of(&point.snapshot),
        };
        let before = labels.clone();
        change(&mut labels);
        labels.tags.sort();
        labels.tags.dedup();
        if labels == before {
            return Ok(labels);
        }
        let replaced = set.records_of(&point.id);
        let record = LabelRecord {
            snapshot: point.id,
            time: chrono::Local::now().fixed_offset(),
            labels: labels.clone(),
            supersedes: replaced.clone(),
        };
        let data = record.encode(&self.cipher)?;
        let record_id = Id::of_stored_bytes(&data);
        self.backend.write(FileType::Label, &record_id.to_hex(), &data)?;
        let mut event = crate::audit::Event::new("labels")
            .arg(point.id.to_hex())
            .arg(format!("protected={}", labels.protected))
            .added(FileType::Label, record_id);
        if !labels.tags.is_empty() {
            event = event.arg(format!("tags={}", labels.tags.join(",")));
        }
        self.audit(event);
        // The new record replaces the old ones whether or not they are removed, so a removal
        // that fails (a location that is down) leaves only superseded records for later.
        for old in replaced {
            let _ = self.backend.remove(FileType::Label, &old.to_hex());
        }
        Ok(labels)
    }

    /// Removes recovery points (their data stays until prune). Refuses, before removing any,
    /// when one of them is protected now (labels are read afresh: a point protected since it
    /// was listed is kept) or when a label record cannot be read.
    pub fn forget(&self, points: &[SnapshotEntry]) -> Result<ForgetOutcome> {
        let result = self.forget_points(points);
        let mut event = crate::audit::Event::new("forget").outcome(&result);
        for p in points {
            event = event.removed(FileType::Snapshot, p.id);
        }
        if !points.is_empty() {
            self.audit(event);
        }
        result
    }

    fn forget_points(&self, points: &[SnapshotEntry]) -> Result<ForgetOutcome> {
        self.ensure_lock_held()?;
        let set = self.load_labels_intact(
            "which recovery points are protected cannot be told, so none is forgotten",
        )?;
        for p in points {
            let protected = match set.current(&p.id) {
                Some(r) => r.labels.protected,
                None => p.snapshot.protected,
            };
            if protected {
                return Err(Error::Protected(p.id.short()));
            }
        }
        let mut outcome = ForgetOutcome::default();
        for p in points {
            match self.backend.remove(FileType::Snapshot, &p.id.to_hex()) {
                Ok(()) => outcome.removed += 1,
                Err(Error::ObjectNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            // After the point: a crash in between leaves records of a point that is gone,
            // which nothing reads and prune removes.
            for record in set.records_of(&p.id) {
                match self.backend.remove(FileType::Label, &record.to_hex()) {
                    Ok(()) => outcome.label_records_removed += 1,
                    Err(Error::ObjectNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(outcome)
    }

    /// Removes label records of recovery points that no longer exist; returns how many.
    pub fn remove_orphan_labels(&self) -> Result<usize> {
        let set = self.load_labels()?;
        let existing: HashSet<Id> = self
            .backend
            .list(FileType::Snapshot)?
            .into_iter()
            .filter_map(|o| o.name.parse().ok())
            .collect();
        let mut removed = 0;
        for record in set.orphans(&existing) {
            match self.backend.remove(FileType::Label, &record.to_hex()) {
                Ok(()) => removed += 1,
                Err(Error::ObjectNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}
