//! Reading the audit log back: its records in order (`aeon audit log`) and the proof that
//! nothing was removed, altered, reordered or signed by an unregistered key
//! (`aeon audit verify`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{Body, Record, heads, load};
use crate::backend::{Backend, FileType};
use crate::crypto::Cipher;
use crate::error::Result;
use crate::id::Id;
use crate::keys::KeySlot;

/// One record, opened.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: String,
    pub parents: Vec<String>,
    #[serde(flatten)]
    pub body: Body,
    /// The signer's Ed25519 key, hex.
    pub signer: String,
}

/// Something wrong with the log, naming the record concerned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub record: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub records: usize,
    /// The records nothing follows yet (more than one while writers raced).
    pub heads: Vec<String>,
    /// Records that follow more than one head: where concurrent writers were joined.
    pub joins: usize,
    /// Keys registered, by slot.
    pub registered: Vec<super::Registration>,
    /// Slots older than the log that registered their own key when they first signed.
    pub self_registered: Vec<String>,
    /// `--head`: whether that record is in the log, and how many records came after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_checked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_after_head: Option<usize>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The records in the log's order: every record after the records it follows; among records
/// free to come next, the earliest by their writers' clocks (then by name).
fn ordered(records: &BTreeMap<Id, Record>, bodies: &HashMap<Id, Body>) -> Vec<Id> {
    let mut waiting: HashMap<Id, usize> = HashMap::new();
    let mut children: HashMap<Id, Vec<Id>> = HashMap::new();
    for (name, r) in records {
        let known: Vec<&Id> = r.parents.iter().filter(|p| records.contains_key(p)).collect();
        waiting.insert(*name, known.len());
        for p in known {
            children.entry(*p).or_default().push(*name);
        }
    }
    let key = |n: &Id| (bodies.get(n).map(|b| b.time.clone()).unwrap_or_default(), *n);
    let mut ready: BTreeSet<(String, Id)> =
        waiting.iter().filter(|(_, w)| **w == 0).map(|(n, _)| key(n)).collect();
    let mut out = Vec::with_capacity(records.len());
    while let Some(first) = ready.pop_first() {
        let n = first.1;
        out.push(n);
        for c in children.get(&n).into_iter().flatten() {
            let w = waiting.get_mut(c).expect("every child waits");
            *w -= 1;
            if *w == 0 {
                ready.insert(key(c));
            }
        }
    }
    out
}

/// Every record whose clear part parses, opened, in the log's order (`aeon audit log`).
pub fn entries(storage: &dyn Backend, cipher: &Cipher) -> Result<Vec<LogEntry>> {
    let (records, _) = load(storage)?;
    let bodies: HashMap<Id, Body> =
        records.iter().filter_map(|(n, r)| r.open(cipher).ok().map(|b| (*n, b))).collect();
    Ok(ordered(&records, &bodies)
        .into_iter()
        .filter_map(|n| {
            let r = &records[&n];
            bodies.get(&n).map(|b| LogEntry {
                id: n.to_hex(),
                parents: r.parents.iter().map(Id::to_hex).collect(),
                body: b.clone(),
                signer: hex::encode(r.signer),
            })
        })
        .collect())
}

/// Checks the whole log; with `head`, also that this record (kept elsewhere) is in it.
pub fn verify(storage: &dyn Backend, cipher: &Cipher, head: Option<&str>) -> Result<VerifyReport> {
    let (records, unreadable) = load(storage)?;
    let mut report =
        VerifyReport { records: records.len() + unreadable.len(), ..Default::default() };
    let mut problems = Vec::new();
    let mut problem = |record: &dyn std::fmt::Display, what: String| {
        problems.push(Problem { record: record.to_string(), problem: what })
    };
    for (name, why) in &unreadable {
        problem(name, why.clone());
    }
    let mut bodies = HashMap::new();
    for (name, r) in &records {
        if !r.signature_holds() {
            problem(name, "its signature does not verify (the record was altered)".into());
            continue;
        }
        match r.open(cipher) {
            Ok(b) => {
                bodies.insert(*name, b);
            }
            Err(e) => problem(name, format!("its body does not open ({e}): altered or forged")),
        }
        for p in &r.parents {
            if !records.contains_key(p) && !unreadable.iter().any(|(n, _)| *n == p.to_hex()) {
                problem(name, format!("it follows record {p}, which is missing (removed)"));
            }
        }
    }
    let order = ordered(&records, &bodies);
    if order.len() < records.len() {
        problem(&"log", "its records follow each other in a cycle (forged links)".into());
    }
    let genesis: Vec<&Id> = order.iter().filter(|n| records[n].parents.is_empty()).collect();
    if genesis.len() > 1 {
        let names: Vec<String> = genesis.iter().map(|g| g.to_hex()).collect();
        problem(
            &genesis[1],
            format!(
                "{} records start the log ({}): part of it was replaced",
                names.len(),
                names.join(", ")
            ),
        );
    }
    // Which slot each key signs for; keys become registered in the log's order.
    let slot_created = slot_times(storage);
    let log_start = genesis.first().and_then(|g| bodies.get(g)).map(|b| b.time.clone());
    let mut key_slot: HashMap<String, String> = HashMap::new();
    for name in &order {
        let r = &records[name];
        let Some(body) = bodies.get(name) else { continue };
        let signer = hex::encode(r.signer);
        match key_slot.get(&signer) {
            Some(slot) if *slot == body.slot => {}
            Some(slot) => problem(
                name,
                format!("signed with the key of slot {slot} but says slot {}", short(&body.slot)),
            ),
            None => {
                let own = body.registers.iter().any(|g| g.key == signer && g.slot == body.slot);
                let first = r.parents.is_empty() && genesis.first() == Some(&name);
                let older_than_log = slot_created.get(&body.slot).is_some_and(|created| {
                    log_start.as_ref().is_some_and(|start| {
                        chrono::DateTime::parse_from_rfc3339(start)
                            .is_ok_and(|s| s.timestamp() >= *created)
                    })
                });
                if own && (first || older_than_log) {
                    if !first {
                        report.self_registered.push(body.slot.clone());
                    }
                    key_slot.insert(signer.clone(), body.slot.clone());
                } else {
                    problem(
                        name,
                        format!(
                            "signed by key {} which no earlier record registered (re-signed or forged)",
                            &signer[..16]
                        ),
                    );
                    continue;
                }
            }
        }
        // A registered signer registers others (a slot added, a password changed).
        for g in &body.registers {
            if let Some(existing) = key_slot.get(&g.key)
                && *existing != g.slot
            {
                problem(name, format!("registers key {} again, for another slot", &g.key[..16]));
                continue;
            }
            key_slot.insert(g.key.clone(), g.slot.clone());
            report.registered.push(g.clone());
        }
    }
    report.joins = records.values().filter(|r| r.parents.len() > 1).count();
    report.heads = heads(&records).iter().map(Id::to_hex).collect();
    if let Some(h) = head {
        report.head_checked = Some(h.to_string());
        match records.keys().find(|n| n.to_hex() == h.to_lowercase()) {
            Some(found) => {
                report.records_after_head = Some(descendants(&records, *found));
            }
            None => problem(
                &h,
                "this head is not in the log: records were removed from its end, or the log was replaced"
                    .into(),
            ),
        }
    }
    report.problems = problems;
    Ok(report)
}

/// How many records follow `from`, directly or not.
fn descendants(records: &BTreeMap<Id, Record>, from: Id) -> usize {
    let mut children: HashMap<Id, Vec<Id>> = HashMap::new();
    for (name, r) in records {
        for p in &r.parents {
            children.entry(*p).or_default().push(*name);
        }
    }
    let mut seen = BTreeSet::new();
    let mut frontier = vec![from];
    while let Some(n) = frontier.pop() {
        for child in children.get(&n).into_iter().flatten() {
            if seen.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    seen.len()
}

/// When each key slot on storage was made (Unix seconds), by name.
fn slot_times(storage: &dyn Backend) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for info in storage.list(FileType::Key).unwrap_or_default() {
        if let Ok(slot) = storage.read(FileType::Key, &info.name).and_then(|d| KeySlot::decode(&d))
        {
            out.insert(info.name, slot.created_unix);
        }
    }
    out
}

fn short(s: &str) -> &str {
    &s[..s.len().min(16)]
}
