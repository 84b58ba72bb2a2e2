//! Managing the locations of a multi-location repository: what each one lacks (the redundancy
//! map), filling the gaps, and cross-verifying every copy with healing from a good one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backend::{FileType, MirrorBackend};
use crate::error::{Error, Result};
use crate::id::Id;

/// The kinds of object every location must hold (locks are per process, so not compared).
const MIRRORED: [FileType; 6] = [
    FileType::Key,
    FileType::Pack,
    FileType::Index,
    FileType::Snapshot,
    FileType::Label,
    FileType::Config,
];

#[derive(Debug, Clone, Serialize)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub name: String,
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Config => "config",
        other => other.dir(),
    }
}

#[derive(Debug, Serialize)]
pub struct LocationStatus {
    pub location: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub objects: usize,
    pub bytes: u64,
    /// Objects the other locations have and this one lacks.
    pub missing: Vec<ObjectRef>,
    pub missing_bytes: u64,
}

/// Each location's listing: `None` when it cannot be listed.
type Listing = Option<BTreeMap<(usize, String), u64>>;

fn listings(m: &MirrorBackend, kinds: &[FileType]) -> Vec<(Listing, Option<String>)> {
    m.locations()
        .iter()
        .map(|l| {
            let mut map = BTreeMap::new();
            for (k, t) in kinds.iter().enumerate() {
                let listed = if *t == FileType::Config {
                    l.backend.stat(*t, "config").map(|s| {
                        s.map(|size| {
                            vec![crate::backend::ObjectInfo { name: "config".into(), size }]
                        })
                        .unwrap_or_default()
                    })
                } else {
                    l.backend.list(*t)
                };
                match listed {
                    Ok(objs) => {
                        for o in objs {
                            map.insert((k, o.name), o.size);
                        }
                    }
                    Err(e) => return (None, Some(e.to_string())),
                }
            }
            (Some(map), None)
        })
        .collect()
}

/// The redundancy map: for each location, whether it answers and what it lacks.
pub fn status(m: &MirrorBackend) -> Vec<LocationStatus> {
    let lists = listings(m, &MIRRORED);
    let mut union: BTreeMap<(usize, String), u64> = BTreeMap::new();
    for (l, _) in &lists {
        if let Some(l) = l {
            for (k, v) in l {
                union.insert(k.clone(), *v);
            }
        }
    }
    m.locations()
        .iter()
        .zip(lists)
        .map(|(loc, (list, error))| match list {
            None => LocationStatus {
                location: loc.url.clone(),
                reachable: false,
                error,
                objects: 0,
                bytes: 0,
                missing: Vec::new(),
                missing_bytes: 0,
            },
            Some(have) => {
                let missing: Vec<_> =
                    union.iter().filter(|(k, _)| !have.contains_key(*k)).collect();
                LocationStatus {
                    location: loc.url.clone(),
                    reachable: true,
                    error: None,
                    objects: have.len(),
                    bytes: have.values().sum(),
                    missing_bytes: missing.iter().map(|(_, s)| **s).sum(),
                    missing: missing
                        .into_iter()
                        .map(|((k, name), _)| ObjectRef {
                            kind: kind_name(MIRRORED[*k]),
                            name: name.clone(),
                        })
                        .collect(),
                }
            }
        })
        .collect()
}

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub copied: usize,
    pub bytes: u64,
    pub failed: Vec<String>,
}

/// Copies to every reachable location what it lacks, from a location with a verified copy.
pub fn sync(m: &MirrorBackend) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let st = status(m);
    for (i, s) in st.iter().enumerate() {
        if !s.reachable {
            report.failed.push(format!(
                "{}: unreachable: {}",
                s.location,
                s.error.clone().unwrap_or_default()
            ));
            continue;
        }
        if !s.missing.is_empty() {
            // A location that lost its folders (or is new) gets them back first.
            m.locations()[i].backend.create()?;
        }
        for o in &s.missing {
            let t = MIRRORED.iter().copied().find(|t| kind_name(*t) == o.kind).expect("known kind");
            match good_copy(m, t, &o.name, Some(i)) {
                Some(data) => match m.locations()[i].backend.write(t, &o.name, &data) {
                    Ok(()) => {
                        report.copied += 1;
                        report.bytes += data.len() as u64;
                    }
                    Err(e) => report.failed.push(format!("{} {}: {e}", o.kind, o.name)),
                },
                None => report.failed.push(format!("{} {}: no good copy anywhere", o.kind, o.name)),
            }
        }
    }
    Ok(report)
}

/// A copy of the object whose content matches its name (for content-named objects), read from
/// any location but `except`.
fn good_copy(m: &MirrorBackend, t: FileType, name: &str, except: Option<usize>) -> Option<Vec<u8>> {
    for (i, l) in m.locations().iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        if let Ok(data) = l.backend.read(t, name)
            && intact(t, name, &data)
        {
            return Some(data);
        }
    }
    None
}

fn intact(t: FileType, name: &str, data: &[u8]) -> bool {
    t == FileType::Config || Id::of_stored_bytes(data).to_hex() == name
}

#[derive(Debug, Default, Serialize)]
pub struct CrossCheckReport {
    pub objects: usize,
    pub copies_read: usize,
    pub bytes_read: u64,
    /// (location, object) pairs.
    pub missing: Vec<(String, ObjectRef)>,
    pub damaged: Vec<(String, ObjectRef)>,
    pub healed: Vec<(String, ObjectRef)>,
    /// Objects with no good copy in any location.
    pub lost: Vec<ObjectRef>,
    pub unreachable: Vec<String>,
}

impl CrossCheckReport {
    pub fn is_ok(&self) -> bool {
        self.lost.is_empty()
            && self.unreachable.is_empty()
            && self.missing.len() + self.damaged.len() == self.healed.len()
    }
}

/// Reads every copy of every object in every location, compares them with their names (and the
/// config across locations), and with `repair` writes a good copy over every bad or missing one.
pub fn cross_check(m: &MirrorBackend, repair: bool) -> Result<CrossCheckReport> {
    cross_check_of(m, repair, &MIRRORED)
}

/// The small objects every location of a stripe holds (packs and parity are spread).
pub const STRIPE_MIRRORED: [FileType; 5] =
    [FileType::Key, FileType::Index, FileType::Snapshot, FileType::Label, FileType::Config];

/// [`cross_check`] of the objects of `kinds` only.
pub fn cross_check_of(
    m: &MirrorBackend,
    repair: bool,
    kinds: &[FileType],
) -> Result<CrossCheckReport> {
    let mut r = CrossCheckReport::default();
    let lists = listings(m, kinds);
    let mut union: BTreeSet<(usize, String)> = BTreeSet::new();
    for (i, (l, e)) in lists.iter().enumerate() {
        match l {
            Some(l) => union.extend(l.keys().cloned()),
            None => r.unreachable.push(format!(
                "{}: {}",
                m.locations()[i].url,
                e.clone().unwrap_or_default()
            )),
        }
    }
    if union.is_empty() {
        return Err(Error::InvalidInput("no location could be listed".into()));
    }
    for (k, name) in union {
        let t = kinds[k];
        let obj = || ObjectRef { kind: kind_name(t), name: name.clone() };
        r.objects += 1;
        let mut good: Option<Vec<u8>> = None;
        let mut bad: Vec<usize> = Vec::new();
        for (i, l) in m.locations().iter().enumerate() {
            let Some(list) = &lists[i].0 else { continue };
            if !list.contains_key(&(k, name.clone())) {
                r.missing.push((l.url.clone(), obj()));
                bad.push(i);
                continue;
            }
            match l.backend.read(t, &name) {
                Ok(data) => {
                    r.copies_read += 1;
                    r.bytes_read += data.len() as u64;
                    let agrees = good.as_ref().is_none_or(|g| t != FileType::Config || *g == data);
                    if intact(t, &name, &data) && agrees {
                        good.get_or_insert(data);
                    } else {
                        r.damaged.push((l.url.clone(), obj()));
                        bad.push(i);
                    }
                }
                Err(_) => {
                    r.damaged.push((l.url.clone(), obj()));
                    bad.push(i);
                }
            }
        }
        match (&good, repair) {
            (None, _) if !bad.is_empty() => r.lost.push(obj()),
            (Some(data), true) => {
                for i in bad {
                    let l = &m.locations()[i];
                    if l.backend.write(t, &name, data).is_ok() {
                        r.healed.push((l.url.clone(), obj()));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(r)
}
