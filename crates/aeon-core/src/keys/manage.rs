//! Key management on an open repository: list, add, change and remove key slots
//! (`aeon key …`).

use serde::Serialize;

use super::{Access, KdfParams, KeySlot, NewSlot, SlotNotes, SlotType};
use crate::audit::{Event, Registration};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::repository::state::Guarded;

/// One key slot as `aeon key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub slot_type: Option<SlotType>,
    pub access: Option<Access>,
    /// Its holder deletes and replaces nothing (`key add --append-only`).
    pub append_only: bool,
    pub label: Option<String>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// The slot that opened the repository in this process.
    pub current: bool,
    /// When the slot last signed an audit record (RFC 3339), if the log knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2id: Option<KdfCosts>,
    /// A write-only slot whose client was removed: it still reads what that client wrote.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// The first 16 bytes of a public-key slot's key fingerprint, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Why the slot could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct KdfCosts {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// A slot added.
#[derive(Debug, Clone, Serialize)]
pub struct AddedSlot {
    pub id: String,
    /// The Ed25519 key its holder signs audit records with (hex).
    pub signing_key: String,
}

impl<S: Guarded> Repository<S> {
    /// Every key slot of this repository, in name order, labels opened.
    pub fn key_list(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        let master = self.keyring().master()?;
        let current = &self.keyring().slot;
        // The log is in order: the last record of a slot is when it was last used.
        let mut last_used = std::collections::HashMap::new();
        for e in crate::audit::entries(self.storage().as_ref(), self.cipher()).unwrap_or_default() {
            last_used.insert(e.body.slot, e.body.time);
        }
        let mut names = self.storage().list(FileType::Key)?;
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for info in names {
            let decoded = self
                .storage()
                .read(FileType::Key, &info.name)
                .and_then(|data| KeySlot::decode(&data));
            let entry = match decoded {
                Ok(slot) if slot.repository_id == self.repository_id_bytes() => SlotInfo {
                    current: &info.name == current,
                    last_used: last_used.get(&info.name).cloned(),
                    id: info.name,
                    slot_type: Some(slot.slot_type),
                    access: Some(slot.access),
                    append_only: slot.notes(master).is_ok_and(|n| n.append_only),
                    label: Some(
                        slot.label(master).unwrap_or_else(|e| format!("(label unreadable: {e})")),
                    ),
                    created: chrono::DateTime::from_timestamp(slot.created_unix, 0),
                    argon2id: slot.kdf.map(|k| KdfCosts {
                        memory_kib: k.memory_kib,
                        iterations: k.iterations,
                        parallelism: k.parallelism,
                    }),
                    retired: slot.is_retired(),
                    fingerprint: slot.fingerprint.map(|f| hex::encode(&f[..16])),
                    error: None,
                },
                Ok(_) => continue,
                Err(e) => SlotInfo {
                    current: false,
                    last_used: None,
                    id: info.name,
                    slot_type: None,
                    access: None,
                    append_only: false,
                    label: None,
                    created: None,
                    argon2id: None,
                    retired: false,
                    fingerprint: None,
                    error: Some(e.to_string()),
                },
            };
            out.push(entry);
        }
        Ok(out)
    }

    /// Adds a slot wrapping this repository's master key, and records it in the audit log
    /// (registering the key its holder will sign with).
    pub fn key_add(&self, slot: &NewSlot, notes: &SlotNotes) -> Result<AddedSlot> {
        let added = self.write_slot(slot, notes)?;
        let kind = match slot {
            NewSlot::Password { .. } => SlotType::Password,
            NewSlot::KeyFile(_) => SlotType::KeyFile,
            NewSlot::PublicKey(_) | NewSlot::WriteOnly { .. } => SlotType::PublicKey,
        };
        let mut event = Event::new("key-add").arg(kind.name());
        if let NewSlot::WriteOnly { .. } = slot {
            event = event.arg("write-only");
        }
        if notes.append_only {
            event = event.arg("append-only");
        }
        self.audit(event.added(FileType::Key, &added.id).register(added.registration()));
        Ok(added)
    }

    /// What a write-only slot made now gives its client to write with: this repository's
    /// chunker bounds, compression, pack size and locations. Refused with parity, which
    /// write-only clients do not write (yet).
    pub fn writer_settings(&self) -> Result<super::write_only::WriterSettings> {
        let settings = self.settings();
        if settings.parity.is_some() {
            return Err(Error::InvalidInput(
                "write-only clients do not write parity: a repository with parity cannot have a write-only slot (aeon parity off first)".into(),
            ));
        }
        Ok(super::write_only::WriterSettings {
            encapsulation_key: Vec::new(),
            chunker: settings.chunker,
            compression: settings.compression,
            pack_size: settings.pack_size,
            locations: settings.locations.clone(),
        })
    }

    fn write_slot(&self, slot: &NewSlot, notes: &SlotNotes) -> Result<AddedSlot> {
        self.ensure_lock_held()?;
        let (bytes, signer) = KeySlot::make(
            self.keyring().master()?,
            self.repository_id_bytes(),
            slot,
            notes,
            chrono::Utc::now().timestamp(),
        )?;
        let id = Id::of_stored_bytes(&bytes).to_hex();
        self.backend().write(FileType::Key, &id, &bytes)?;
        Ok(AddedSlot { id, signing_key: hex::encode(signer) })
    }

    /// Replaces the slot in use by a password slot with `password` (same label and policy):
    /// the new slot is written before the old one is removed.
    pub fn key_passwd(&self, password: &[u8], kdf: KdfParams) -> Result<(AddedSlot, String)> {
        let old = self.keyring().slot.clone();
        // The slot in use opened, so it decodes; its notes carry over.
        let current = KeySlot::decode(&self.storage().read(FileType::Key, &old)?)?;
        let notes = current.notes(self.keyring().master()?)?;
        let added = self.write_slot(&NewSlot::Password { password, kdf }, &notes)?;
        self.remove_slot(&old)?;
        self.audit(
            Event::new("key-passwd")
                .added(FileType::Key, &added.id)
                .removed(FileType::Key, &old)
                .register(added.registration()),
        );
        Ok((added, old))
    }

    /// Removes the slot whose id starts with `prefix`. Refuses the last slot that can read
    /// the repository, and the slot in use unless `force`.
    pub fn key_remove(&self, prefix: &str, force: bool) -> Result<String> {
        self.ensure_lock_held()?;
        let slots = self.key_list()?;
        let matching: Vec<&SlotInfo> = slots.iter().filter(|s| s.id.starts_with(prefix)).collect();
        let target = match matching.as_slice() {
            [] => return Err(Error::NoMatch { kind: "key slot", prefix: prefix.into() }),
            [one] => *one,
            many => {
                return Err(Error::Ambiguous {
                    kind: "key slot",
                    prefix: prefix.into(),
                    count: many.len(),
                });
            }
        };
        let readers =
            slots.iter().filter(|s| s.access == Some(Access::Full) && s.id != target.id).count();
        if target.access == Some(Access::Full) && readers == 0 {
            return Err(Error::InvalidInput(format!(
                "key slot {} is the last one that can read the repository: add another first (aeon key add)",
                short(&target.id)
            )));
        }
        if target.retired && !force {
            return Err(Error::InvalidInput(format!(
                "key slot {} holds the only key to what its write-only client wrote: removing it makes those recovery points unreadable; forget them and prune first, or give --force",
                short(&target.id)
            )));
        }
        if target.access == Some(Access::WriteOnly) && !target.retired {
            // The client goes; what it wrote stays readable through the retired slot.
            let slot = KeySlot::decode(&self.storage().read(FileType::Key, &target.id)?)?;
            let retired = slot.retired(self.keyring().master()?)?;
            let id = Id::of_stored_bytes(&retired).to_hex();
            self.backend().write(FileType::Key, &id, &retired)?;
            self.remove_slot(&target.id)?;
            self.audit(
                Event::new("key-remove")
                    .arg("write-only client retired")
                    .removed(FileType::Key, &target.id)
                    .added(FileType::Key, &id),
            );
            return Ok(target.id.clone());
        }
        if target.current && !force {
            return Err(Error::InvalidInput(format!(
                "key slot {} is the one in use: give --force to remove it anyway, or open with another key",
                short(&target.id)
            )));
        }
        self.remove_slot(&target.id)?;
        self.audit(Event::new("key-remove").removed(FileType::Key, &target.id));
        Ok(target.id.clone())
    }

    fn remove_slot(&self, name: &str) -> Result<()> {
        self.ensure_lock_held()?;
        self.backend().remove(FileType::Key, name)
    }
}

impl AddedSlot {
    fn registration(&self) -> Registration {
        Registration { slot: self.id.clone(), key: self.signing_key.clone() }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(16)]
}
