//! The audit log (`audit/<id>`, kind 7; docs/FORMAT.md §10b): every operation that changes
//! the repository, and every check and restore, appends a record naming the records it follows
//! (hash links), signed with the Ed25519 key of the key slot that opened the repository.
//!
//! Records form a chain that forks only when two writers append at once; the next record then
//! names both heads, so concurrent writers never fork it silently. [`verify()`] names every record
//! that was removed, altered, reordered or signed by a key no earlier record registered.

pub mod verify;

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileType};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind, Reader};
use crate::id::Id;
use crate::progress::Notice;
use crate::repository::Repository;

pub use ed25519_dalek::SigningKey;
pub use verify::{LogEntry, Problem, VerifyReport, entries, verify};

/// Layout of a record after its header.
const RECORD_LAYOUT: u8 = 1;
/// What a signature covers, before the record's bytes.
const SIGNATURE_DOMAIN: &[u8] = b"aeon audit record";
const SIGNATURE_LEN: usize = 64;
/// Records are small; a larger object is refused before it is read whole.
pub const MAX_RECORD_LEN: u64 = 1 << 20;
/// A record follows at most this many heads (more only after that many writers raced).
const MAX_PARENTS: usize = 255;

/// What happened, as a record's sealed body says (CBOR, FORMAT.md §10b).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Body {
    /// The writer's clock, RFC 3339.
    pub time: String,
    pub host: String,
    pub user: String,
    /// The key slot whose holder signed.
    pub slot: String,
    /// `init`, `backup`, `forget`, `prune`, `key-add`, … (docs/FORMAT.md lists them).
    pub operation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// `ok`, or `failed: <message>`.
    pub outcome: String,
    /// Objects the operation added (recovery points, key slots, …), as `kind/id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Signing keys this record registers: a new slot's, or the signer's own on first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registers: Vec<Registration>,
    /// Figures worth keeping (bytes added, files restored, measured seconds, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
    pub aeon: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    pub slot: String,
    /// The Ed25519 public key, hex.
    pub key: String,
}

/// An operation to record, as the code that did it describes it.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub operation: String,
    pub arguments: Vec<String>,
    /// `None` when it succeeded, else what failed.
    pub failure: Option<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub registers: Vec<Registration>,
    pub figures: BTreeMap<String, f64>,
}

impl Event {
    pub fn new(operation: &str) -> Event {
        Event { operation: operation.to_string(), ..Event::default() }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Event {
        self.arguments.push(a.into());
        self
    }

    pub fn added(mut self, kind: FileType, id: impl std::fmt::Display) -> Event {
        self.added.push(format!("{}/{id}", kind.dir()));
        self
    }

    pub fn removed(mut self, kind: FileType, id: impl std::fmt::Display) -> Event {
        self.removed.push(format!("{}/{id}", kind.dir()));
        self
    }

    pub fn register(mut self, registration: Registration) -> Event {
        self.registers.push(registration);
        self
    }

    pub fn figure(mut self, name: &str, value: f64) -> Event {
        self.figures.insert(name.to_string(), value);
        self
    }

    /// Records the outcome of `result`.
    pub fn outcome<T>(mut self, result: &Result<T>) -> Event {
        if let Err(e) = result {
            self.failure = Some(e.to_string());
        }
        self
    }
}

/// A record as stored: the clear part anyone can check, and the sealed body.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its name on storage (BLAKE3 of its bytes).
    pub name: Id,
    pub parents: Vec<Id>,
    pub signer: [u8; 32],
    /// Everything the signature covers after the domain: the record without its signature.
    signed: Vec<u8>,
    /// Where the sealed body starts in `signed`.
    body_at: usize,
    signature: [u8; SIGNATURE_LEN],
}

impl Record {
    /// Makes a record following `parents`, its body sealed with `cipher` and signed with `key`.
    pub fn seal(
        parents: &[Id],
        body: &Body,
        cipher: &Cipher,
        key: &SigningKey,
    ) -> Result<(Id, Vec<u8>)> {
        if parents.len() > MAX_PARENTS {
            return Err(Error::InvalidInput(format!(
                "the audit log has {} heads, more than a record can follow",
                parents.len()
            )));
        }
        let mut out = format::prefix(ObjectKind::Audit, cipher);
        out.push(RECORD_LAYOUT);
        out.push(parents.len() as u8);
        for p in parents {
            out.extend_from_slice(&p.0);
        }
        out.extend_from_slice(&key.verifying_key().to_bytes());
        let plain = format::to_cbor(body);
        let aad = out.clone();
        let sealed = cipher.seal(&aad, &plain)?;
        out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        out.extend_from_slice(&sealed);
        let signature = key.sign(&signed_message(&out));
        out.extend_from_slice(&signature.to_bytes());
        Ok((Id::of_stored_bytes(&out), out))
    }

    /// Parses a record's clear part (no key needed). `name` is the name it was stored under.
    pub fn decode(name: Id, data: &[u8]) -> Result<Record> {
        let what = format!("audit record {name}");
        let mut plain_header = data.get(..format::HEADER_LEN).unwrap_or(data).to_vec();
        if let Some(flags) = plain_header.get_mut(6) {
            *flags &= !format::FLAG_ENVELOPE;
        }
        format::check_header(&plain_header, ObjectKind::Audit, &what)?;
        // A write-only client's record: its envelope names the key of its body.
        let envelope_len = format::envelope_of(data, &what)?.map_or(0, <[u8]>::len);
        let body = &data[format::HEADER_LEN + envelope_len..];
        let mut r = Reader::new(body, &what);
        if r.u8()? != RECORD_LAYOUT {
            return Err(r.error("unknown record layout"));
        }
        let count = r.u8()? as usize;
        let mut parents = Vec::with_capacity(count);
        for _ in 0..count {
            parents.push(Id(r.array()?));
        }
        let signer = r.array()?;
        let aad_len = format::HEADER_LEN + envelope_len + r.position();
        let len = r.u32()? as usize;
        r.take(len)?;
        let signed_len = format::HEADER_LEN + envelope_len + r.position();
        let signature = r.array()?;
        if !r.is_empty() {
            return Err(r.error("bytes after the signature"));
        }
        let _ = aad_len;
        Ok(Record {
            name,
            parents,
            signer,
            signed: data[..signed_len].to_vec(),
            body_at: aad_len + 4,
            signature,
        })
    }

    /// Whether the signature is the signer's over the record.
    pub fn signature_holds(&self) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.signer) else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify(&signed_message(&self.signed), &sig).is_ok()
    }

    /// Opens the body with the repository's cipher.
    pub fn open(&self, cipher: &Cipher) -> Result<Body> {
        let what = format!("audit record {}", self.name);
        let cipher = cipher.for_object(&self.signed, &what)?;
        let plain =
            cipher.open(&self.signed[..self.body_at - 4], &self.signed[self.body_at..], &what)?;
        format::from_cbor(&plain, &what)
    }
}

fn signed_message(record: &[u8]) -> Vec<u8> {
    [SIGNATURE_DOMAIN, record].concat()
}

/// Every record on `storage` whose clear part parses, by name; and the names that do not
/// (with why).
/// The records read, by name, and the names that could not be read with why.
pub type Loaded = (BTreeMap<Id, Record>, Vec<(String, String)>);

pub fn load(storage: &dyn Backend) -> Result<Loaded> {
    load_with(storage, |name| storage.read(FileType::Audit, name))
}

/// [`load`], reading each record with `read`.
fn load_with(storage: &dyn Backend, read: impl Fn(&str) -> Result<Vec<u8>>) -> Result<Loaded> {
    let mut records = BTreeMap::new();
    let mut unreadable = Vec::new();
    for info in storage.list(FileType::Audit)? {
        let Ok(name) = info.name.parse::<Id>() else {
            unreadable.push((info.name, "its name is not an object id".to_string()));
            continue;
        };
        if info.size > MAX_RECORD_LEN {
            unreadable.push((info.name, format!("{} bytes, larger than any record", info.size)));
            continue;
        }
        let parsed = read(&info.name).and_then(|data| {
            if Id::of_stored_bytes(&data) != name {
                return Err(Error::corrupt(
                    format!("audit record {name}"),
                    "its bytes no longer hash to its name (altered or truncated)",
                ));
            }
            Record::decode(name, &data)
        });
        match parsed {
            Ok(r) => {
                records.insert(name, r);
            }
            Err(e) => unreadable.push((info.name, e.to_string())),
        }
    }
    Ok((records, unreadable))
}

/// The records no other record follows.
pub fn heads(records: &BTreeMap<Id, Record>) -> Vec<Id> {
    let followed: BTreeSet<Id> = records.values().flat_map(|r| r.parents.iter().copied()).collect();
    records.keys().filter(|n| !followed.contains(n)).copied().collect()
}

impl<S> Repository<S> {
    /// Appends `event` to the audit log, signed by the slot that opened the repository, and
    /// returns the new head. The record follows every head it finds.
    pub fn audit_append(&self, event: Event) -> Result<Id> {
        let storage = self.storage();
        let (records, _) = load_with(storage.as_ref(), |name| self.read_audit_record(name))?;
        let parents = heads(&records);
        let key = SigningKey::from_bytes(&self.keyring().signing_seed);
        let own = hex::encode(key.verifying_key().to_bytes());
        let slot = self.keyring().slot.clone();
        let mut registers = event.registers;
        // A slot signing for the first time (the log's first record, or a slot older than the
        // log) registers its own key; verify says which registrations were made this way.
        // A write-only client's key was registered when its slot was added (it cannot read the
        // record that did).
        // A record this key already signed was written after its registration (this slot's
        // own appends ensure it): then no body needs opening, which with a long log is most of
        // an append's cost.
        let signed_before = records.values().any(|r| r.signer == key.verifying_key().to_bytes());
        let registered = self.keyring().is_write_only()
            || signed_before
            || records
                .values()
                .filter_map(|r| r.open(self.cipher()).ok())
                .any(|b| b.registers.iter().any(|g| g.key == own && g.slot == slot));
        if !registered && !registers.iter().any(|g| g.key == own) {
            registers.insert(0, Registration { slot: slot.clone(), key: own });
        }
        let body = Body {
            time: chrono::Local::now().fixed_offset().to_rfc3339(),
            host: crate::lock::this_host(),
            user: current_user(),
            slot,
            operation: event.operation,
            arguments: event.arguments,
            outcome: match event.failure {
                None => "ok".into(),
                Some(f) => format!("failed: {f}"),
            },
            added: event.added,
            removed: event.removed,
            registers,
            figures: event.figures,
            aeon: env!("CARGO_PKG_VERSION").into(),
        };
        let (name, bytes) = Record::seal(&parents, &body, self.cipher(), &key)?;
        self.backend().write(FileType::Audit, &name.to_hex(), &bytes)?;
        Ok(name)
    }

    /// [`Repository::audit_append`], telling the observer the new head (or why no record could
    /// be written: the operation itself is done, so that is a warning, not its failure).
    pub fn audit(&self, event: Event) -> Option<Id> {
        // Opened without a lock (read-only storage): this process writes nothing, not even this.
        if self.is_read_only() {
            return None;
        }
        let operation = event.operation.clone();
        match self.audit_append(event) {
            Ok(head) => {
                self.observer().audit_recorded(&head.to_hex());
                Some(head)
            }
            Err(e) => {
                self.notify(Notice::warning(format!(
                    "the audit record of {operation} could not be written: {e}"
                )));
                None
            }
        }
    }
}

/// The user this process runs as.
pub fn current_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }.to_string()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::MemoryBackend;
    use crate::keys::KdfParams;
    use crate::repository::InitOptions;

    fn repository() -> (Arc<MemoryBackend>, Repository<crate::repository::state::Open>) {
        let storage = Arc::new(MemoryBackend::new());
        let init = InitOptions { kdf: KdfParams::FLOOR, ..InitOptions::default() };
        let repo = Repository::init(storage.clone(), b"pw", init).unwrap();
        (storage, repo)
    }

    #[test]
    fn records_chain_and_concurrent_writers_are_joined_not_forked() {
        let (storage, repo) = repository();
        let first = repo.audit_append(Event::new("backup").arg("/home")).unwrap();
        // Two writers that both saw `first` as the head.
        let key = SigningKey::from_bytes(&repo.keyring().signing_seed);
        let body = |op: &str| Body {
            time: chrono::Local::now().fixed_offset().to_rfc3339(),
            host: "h".into(),
            user: "u".into(),
            slot: repo.keyring().slot.clone(),
            operation: op.into(),
            arguments: vec![],
            outcome: "ok".into(),
            added: vec![],
            removed: vec![],
            registers: vec![],
            figures: BTreeMap::new(),
            aeon: "test".into(),
        };
        for op in ["tag", "check"] {
            let (name, bytes) = Record::seal(&[first], &body(op), repo.cipher(), &key).unwrap();
            storage.write(FileType::Audit, &name.to_hex(), &bytes).unwrap();
        }
        let (records, _) = load(storage.as_ref()).unwrap();
        assert_eq!(heads(&records).len(), 2, "the two racing records are both heads");
        let joined = repo.audit_append(Event::new("forget")).unwrap();
        let (records, _) = load(storage.as_ref()).unwrap();
        assert_eq!(heads(&records), vec![joined]);
        assert_eq!(records[&joined].parents.len(), 2);
        let report = verify(storage.as_ref(), repo.cipher(), Some(&first.to_hex())).unwrap();
        assert!(report.intact(), "{:?}", report.problems);
        assert_eq!((report.records, report.joins), (5, 1));
        assert_eq!(report.records_after_head, Some(3));
        let ops: Vec<String> = entries(storage.as_ref(), repo.cipher())
            .unwrap()
            .into_iter()
            .map(|e| e.body.operation)
            .collect();
        assert_eq!(ops[..2], ["init".to_string(), "backup".to_string()]);
        assert_eq!(ops[4], "forget");
    }

    #[test]
    fn a_record_reads_back_and_its_bytes_are_bound() {
        let (storage, repo) = repository();
        let head = repo.audit_append(Event::new("prune").figure("bytes_freed", 5.0)).unwrap();
        let data = storage.read(FileType::Audit, &head.to_hex()).unwrap();
        let r = Record::decode(head, &data).unwrap();
        assert!(r.signature_holds());
        assert_eq!(r.open(repo.cipher()).unwrap().figures["bytes_freed"], 5.0);
        // Any byte changed breaks the signature (or the parse); none panics.
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x01;
            if let Ok(r) = Record::decode(head, &bad) {
                assert!(!r.signature_holds() || r.open(repo.cipher()).is_err(), "byte {i}");
            }
        }
        for cut in 0..data.len() {
            assert!(Record::decode(head, &data[..cut]).is_err(), "cut at {cut}");
        }
    }
}
