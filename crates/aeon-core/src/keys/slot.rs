//! Key slots (`keys/<id>`, docs/FORMAT.md §4): each wraps the master key under a key-encryption
//! key (KEK) that one credential yields: a password (Argon2id), a key file (a random 256-bit
//! secret), or the secret half of a hybrid post-quantum key pair (X-Wing: ML-KEM-768 + X25519).

use zeroize::Zeroizing;

use super::files::{KeyFileSecret, PublicKey, SecretKey};
use super::{KdfParams, MasterKey};
use crate::crypto::{Cipher, KEY_LEN, Key, fill_random};
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind, Reader};
use crate::id::Id;

/// Key-slot types. Numbers are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum SlotType {
    Password = 1,
    /// A random 256-bit secret kept in a file.
    KeyFile = 2,
    /// The master key encapsulated to a hybrid ML-KEM-768 + X25519 (X-Wing) public key.
    PublicKey = 3,
}

impl SlotType {
    pub fn name(self) -> &'static str {
        match self {
            SlotType::Password => "password",
            SlotType::KeyFile => "key-file",
            SlotType::PublicKey => "public-key",
        }
    }
}

/// What a slot lets its holder do. Numbers are part of the format (public-key slots store it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Access {
    /// Read and write everything: the slot wraps the master key.
    Full = 0,
    /// Write-only clients (FORMAT.md §4b): add recovery points, read none.
    WriteOnly = 1,
}

/// What a client presents to open a repository.
pub enum Credential {
    Password(Zeroizing<Vec<u8>>),
    KeyFile(KeyFileSecret),
    SecretKey(Box<SecretKey>),
    /// The public file of a write-only slot: opens the repository for adding recovery points.
    PublicKey(Box<PublicKey>),
}

impl Credential {
    pub fn password(password: &[u8]) -> Credential {
        Credential::Password(Zeroizing::new(password.to_vec()))
    }

    /// The slot type this credential opens.
    pub fn slot_type(&self) -> SlotType {
        match self {
            Credential::Password(_) => SlotType::Password,
            Credential::KeyFile(_) => SlotType::KeyFile,
            Credential::SecretKey(_) | Credential::PublicKey(_) => SlotType::PublicKey,
        }
    }
}

/// What a new slot is made for.
pub enum NewSlot<'a> {
    Password {
        password: &'a [u8],
        kdf: KdfParams,
    },
    KeyFile(&'a KeyFileSecret),
    PublicKey(&'a PublicKey),
    /// A write-only slot for the client holding `public`, with the settings it writes with.
    WriteOnly {
        public: &'a PublicKey,
        settings: super::write_only::WriterSettings,
    },
}

/// A slot opened: the master key, and the audit-signing seed only this slot's credential
/// yields (derived from its KEK, so other slots' holders cannot sign as this one).
pub struct Unlocked {
    pub master: MasterKey,
    pub signing_seed: Zeroizing<[u8; 32]>,
    /// The slot says its holder deletes and replaces nothing (`key add --append-only`).
    pub append_only: bool,
}

/// What a slot's sealed field holds (FORMAT.md §4, "Labels"): its label and its holder's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotNotes {
    pub label: String,
    /// Whoever opens the repository with this slot acts as `--append-only`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
}

impl SlotNotes {
    pub fn labelled(label: &str) -> SlotNotes {
        SlotNotes { label: label.to_string(), append_only: false }
    }
}

const KEY_FILE_KEK_CONTEXT: &str = "aeon 2026-12-07 key file slot key-encryption key";
const PUBLIC_KEY_KEK_CONTEXT: &str = "aeon 2026-12-07 public key slot key-encryption key";
const SIGNING_SEED_CONTEXT: &str = "aeon 2026-12-07 audit signing key of a key slot";
const LABEL_KEY_CONTEXT: &str = "aeon 2026-12-07 key slot label key";
const LABEL_AAD: &[u8] = b"aeon key slot label";
/// First byte of a sealed label; labels written in the clear (before 7 December 2026) are
/// UTF-8 text, which never starts with a NUL.
const SEALED_LABEL: u8 = 0;
/// X-Wing's ciphertext, in bytes.
pub const CIPHERTEXT_LEN: usize = x_wing::CIPHERTEXT_SIZE;

/// A decoded key slot: the public parameters plus the sealed master key.
#[derive(Debug, Clone)]
pub struct KeySlot {
    pub slot_type: SlotType,
    pub repository_id: [u8; 32],
    pub created_unix: i64,
    /// The label field as stored: clear UTF-8 (older slots) or sealed.
    label_field: Vec<u8>,
    /// Argon2id costs (password slots).
    pub kdf: Option<KdfParams>,
    salt: [u8; 32],
    /// Public-key slots: what the slot grants and the fingerprint of the public key.
    pub access: Access,
    pub fingerprint: Option<[u8; 32]>,
    ciphertext: Vec<u8>,
    /// Write-only slots: what the client needs to write, sealed under its writer secret.
    writer_part: Vec<u8>,
    /// Everything before the sealed master key: the AAD that binds the parameters.
    authenticated_prefix: Vec<u8>,
    sealed_master_key: Vec<u8>,
}

impl KeySlot {
    /// Makes a password slot wrapping `master`.
    pub fn new_password(
        master: &MasterKey,
        repository_id: [u8; 32],
        password: &[u8],
        label: &str,
        kdf: KdfParams,
        created_unix: i64,
    ) -> Result<Vec<u8>> {
        Ok(KeySlot::make(
            master,
            repository_id,
            &NewSlot::Password { password, kdf },
            &SlotNotes::labelled(label),
            created_unix,
        )?
        .0)
    }

    /// Makes a slot of any type wrapping `master`; returns its bytes and the public half of the
    /// audit-signing key its holder will sign with.
    pub fn make(
        master: &MasterKey,
        repository_id: [u8; 32],
        kind: &NewSlot,
        notes: &SlotNotes,
        created_unix: i64,
    ) -> Result<(Vec<u8>, [u8; 32])> {
        let slot_type = match kind {
            NewSlot::Password { .. } => SlotType::Password,
            NewSlot::KeyFile(_) => SlotType::KeyFile,
            NewSlot::PublicKey(_) | NewSlot::WriteOnly { .. } => SlotType::PublicKey,
        };
        let label_field = seal_notes(master, &repository_id, notes)?;
        let label_len = u16::try_from(label_field.len())
            .map_err(|_| Error::InvalidInput("key label too long".into()))?;
        // Key slots keep the version 1 header in every repository (read before the config).
        let mut out = format::header(ObjectKind::KeySlot, 1).to_vec();
        out.push(slot_type as u8);
        out.extend_from_slice(&repository_id);
        out.extend_from_slice(&created_unix.to_le_bytes());
        out.extend_from_slice(&label_len.to_le_bytes());
        out.extend_from_slice(&label_field);
        let mut salt = [0u8; 32];
        fill_random(&mut salt)?;
        let kek = match kind {
            NewSlot::Password { password, kdf } => {
                if let Some(why) = kdf.outside_limits() {
                    // Such a slot could never be opened again.
                    return Err(Error::InvalidInput(why));
                }
                if password.is_empty() {
                    return Err(Error::InvalidInput("an empty password is not allowed".into()));
                }
                out.extend_from_slice(&kdf.memory_kib.to_le_bytes());
                out.extend_from_slice(&kdf.iterations.to_le_bytes());
                out.extend_from_slice(&kdf.parallelism.to_le_bytes());
                out.extend_from_slice(&salt);
                kdf.derive(password, &salt)?
            }
            NewSlot::KeyFile(secret) => {
                out.extend_from_slice(&salt);
                key_file_kek(secret, &salt)
            }
            NewSlot::PublicKey(public) => {
                let fingerprint = public.fingerprint();
                let (ciphertext, shared) = public.encapsulate();
                out.push(Access::Full as u8);
                out.extend_from_slice(&fingerprint);
                out.extend_from_slice(&ciphertext);
                public_key_kek(&shared, &fingerprint)
            }
            NewSlot::WriteOnly { public, settings } => {
                return make_write_only(out, master, public, settings);
            }
        };
        let sealed = Cipher::new(&kek).seal(&out, &master.encode())?;
        out.extend_from_slice(&sealed);
        Ok((out, signing_public(&signing_seed(&kek))))
    }

    pub fn decode(data: &[u8]) -> Result<KeySlot> {
        let body = format::check_header(data, ObjectKind::KeySlot, "key slot")?;
        let mut r = Reader::new(body, "key slot");
        let slot_type = match r.u8()? {
            1 => SlotType::Password,
            2 => SlotType::KeyFile,
            3 => SlotType::PublicKey,
            t => {
                return Err(Error::corrupt(
                    "key slot",
                    format!("slot type {t} is not supported by this version"),
                ));
            }
        };
        let repository_id = r.array()?;
        let created_unix = r.i64()?;
        let label_len = r.u16()? as usize;
        let label_field = r.take(label_len)?.to_vec();
        let mut slot = KeySlot {
            slot_type,
            repository_id,
            created_unix,
            label_field,
            kdf: None,
            salt: [0; 32],
            access: Access::Full,
            fingerprint: None,
            ciphertext: Vec::new(),
            writer_part: Vec::new(),
            authenticated_prefix: Vec::new(),
            sealed_master_key: Vec::new(),
        };
        match slot_type {
            SlotType::Password => {
                slot.kdf = Some(KdfParams {
                    memory_kib: r.u32()?,
                    iterations: r.u32()?,
                    parallelism: r.u32()?,
                });
                slot.salt = r.array()?;
            }
            SlotType::KeyFile => slot.salt = r.array()?,
            SlotType::PublicKey => {
                slot.access = match r.u8()? {
                    0 => Access::Full,
                    1 => Access::WriteOnly,
                    a => {
                        return Err(Error::corrupt(
                            "key slot",
                            format!(
                                "access {a} of a public-key slot is not supported by this version"
                            ),
                        ));
                    }
                };
                slot.fingerprint = Some(r.array()?);
                match slot.access {
                    Access::Full => slot.ciphertext = r.take(CIPHERTEXT_LEN)?.to_vec(),
                    Access::WriteOnly => {
                        let len = r.u32()? as usize;
                        slot.writer_part = r.take(len)?.to_vec();
                    }
                }
            }
        }
        let prefix_len = format::HEADER_LEN + r.position();
        slot.authenticated_prefix = data[..prefix_len].to_vec();
        slot.sealed_master_key = r.rest().to_vec();
        Ok(slot)
    }

    /// The label, if it was written in the clear (slots made before 7 December 2026).
    pub fn label_in_clear(&self) -> Option<String> {
        match self.label_field.first() {
            None => Some(String::new()),
            Some(&SEALED_LABEL) => None,
            Some(_) => Some(String::from_utf8_lossy(&self.label_field).into_owned()),
        }
    }

    /// The label, opened with the master key when it is sealed.
    pub fn label(&self, master: &MasterKey) -> Result<String> {
        Ok(self.notes(master)?.label)
    }

    /// The label and policy, opened with the master key when they are sealed.
    pub fn notes(&self, master: &MasterKey) -> Result<SlotNotes> {
        if let Some(clear) = self.label_in_clear() {
            return Ok(SlotNotes::labelled(&clear));
        }
        let cipher = Cipher::new(&label_key(master));
        let plain = cipher.open(
            &label_aad(&self.repository_id),
            &self.label_field[1..],
            "key slot label",
        )?;
        format::from_cbor(&plain, "key slot label")
    }

    /// Returns what `credential` opens in this slot, `None` if it does not open it (a slot of
    /// another type is not tried). Errors when the slot cannot be tried at all: parameters
    /// outside the readers' limits (never run), or a key derivation that fails.
    pub fn unlock(&self, credential: &Credential) -> Result<Option<Unlocked>> {
        let kek = match (credential, self.slot_type) {
            (Credential::Password(password), SlotType::Password) => {
                let kdf = self.kdf.ok_or_else(|| Error::corrupt("key slot", "no costs"))?;
                if let Some(why) = kdf.above_ceiling() {
                    return Err(Error::corrupt("key slot", format!("{why}; not tried")));
                }
                kdf.derive(password, &self.salt)?
            }
            (Credential::KeyFile(secret), SlotType::KeyFile) => key_file_kek(secret, &self.salt),
            // A write-only slot holds no master key: its client opens it with
            // [`KeySlot::open_as_writer`], full-key holders with [`KeySlot::open_reader_part`].
            _ if self.access == Access::WriteOnly => return Ok(None),
            (Credential::SecretKey(secret), SlotType::PublicKey) => {
                let fingerprint = secret.public().fingerprint();
                if Some(fingerprint) != self.fingerprint {
                    return Ok(None);
                }
                let shared = secret.decapsulate(&self.ciphertext)?;
                public_key_kek(&shared, &fingerprint)
            }
            _ => return Ok(None),
        };
        match Cipher::new(&kek).open(
            &self.authenticated_prefix,
            &self.sealed_master_key,
            "key slot",
        ) {
            Ok(plain) => {
                let master = MasterKey::decode(&Zeroizing::new(plain))?;
                // The notes are authenticated twice: by their own box and, being part of the
                // slot's prefix, by the master key's.
                let append_only = self.notes(&master)?.append_only;
                Ok(Some(Unlocked { master, signing_seed: signing_seed(&kek), append_only }))
            }
            Err(_) => Ok(None),
        }
    }

    /// What a write-only slot gives the client holding `public`; `None` if the slot is not
    /// its.
    pub fn open_as_writer(
        &self,
        public: &PublicKey,
    ) -> Result<Option<(super::write_only::WriterSettings, super::write_only::WriterSecret)>> {
        if self.access != Access::WriteOnly
            || self.fingerprint != Some(public.fingerprint())
            || self.is_retired()
        {
            return Ok(None);
        }
        let secret = super::write_only::WriterSecret::of(public);
        let before = self.authenticated_prefix.len() - self.writer_part.len() - 4;
        let aad = &self.authenticated_prefix[..before];
        let plain = Cipher::new(&secret.settings_key()).open(
            aad,
            &self.writer_part,
            "write-only key slot",
        )?;
        let settings = format::from_cbor(&plain, "write-only key slot")?;
        Ok(Some((settings, secret)))
    }

    /// A write-only slot whose client was removed (an empty writer part): it still lets full
    /// keys read what the client wrote.
    pub fn is_retired(&self) -> bool {
        self.access == Access::WriteOnly && self.writer_part.is_empty()
    }

    /// This write-only slot retired: the same slot without its writer part, so that its client
    /// opens nothing while full keys keep reading what it wrote (the reader part is sealed
    /// again, bound to the new prefix).
    pub fn retired(&self, master: &MasterKey) -> Result<Vec<u8>> {
        let reader_part = self
            .open_reader_part(master)?
            .ok_or_else(|| Error::InvalidInput("only a write-only slot is retired".into()))?;
        let before = self.authenticated_prefix.len() - self.writer_part.len() - 4;
        let mut out = self.authenticated_prefix[..before].to_vec();
        out.extend_from_slice(&0u32.to_le_bytes());
        let sealed =
            Cipher::new(&super::write_only::reader_key(master)).seal(&out, &reader_part)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The reader part of a write-only slot (its decapsulation key and writer secret), opened
    /// with the master key; `None` for other slots.
    pub fn open_reader_part(&self, master: &MasterKey) -> Result<Option<Zeroizing<Vec<u8>>>> {
        if self.access != Access::WriteOnly {
            return Ok(None);
        }
        let cipher = Cipher::new(&super::write_only::reader_key(master));
        let plain = cipher.open(
            &self.authenticated_prefix,
            &self.sealed_master_key,
            "write-only key slot",
        )?;
        Ok(Some(Zeroizing::new(plain)))
    }

    pub fn storage_id(data: &[u8]) -> Id {
        Id::of_stored_bytes(data)
    }
}

/// The rest of a write-only slot after its label (FORMAT.md §4b): access, fingerprint, the
/// writer part and, where other slots seal the master key, the reader part.
fn make_write_only(
    mut out: Vec<u8>,
    master: &MasterKey,
    public: &PublicKey,
    settings: &super::write_only::WriterSettings,
) -> Result<(Vec<u8>, [u8; 32])> {
    use super::write_only::{WriterPair, WriterSecret, reader_key};
    let secret = WriterSecret::of(public);
    let pair = WriterPair::generate()?;
    let settings = super::write_only::WriterSettings {
        encapsulation_key: pair.encapsulation_key.clone(),
        ..settings.clone()
    };
    out.push(Access::WriteOnly as u8);
    out.extend_from_slice(&public.fingerprint());
    // The writer part is bound to the slot before it; its length field and the part itself are
    // bound by the reader part, whose AAD is everything before it.
    let writer_part =
        Cipher::new(&secret.settings_key()).seal(&out, &format::to_cbor(&settings))?;
    out.extend_from_slice(&(writer_part.len() as u32).to_le_bytes());
    out.extend_from_slice(&writer_part);
    let mut reader_part = Zeroizing::new(Vec::with_capacity(64));
    reader_part.extend_from_slice(pair.decapsulation_seed.as_ref());
    reader_part.extend_from_slice(secret.bytes());
    let sealed = Cipher::new(&reader_key(master)).seal(&out, &reader_part)?;
    out.extend_from_slice(&sealed);
    Ok((out, signing_public(&secret.signing_seed())))
}

fn key_file_kek(secret: &KeyFileSecret, salt: &[u8; 32]) -> Key {
    let mut h = blake3::Hasher::new_derive_key(KEY_FILE_KEK_CONTEXT);
    h.update(secret.bytes());
    h.update(salt);
    Key(*h.finalize().as_bytes())
}

fn public_key_kek(shared: &[u8; 32], fingerprint: &[u8; 32]) -> Key {
    let mut h = blake3::Hasher::new_derive_key(PUBLIC_KEY_KEK_CONTEXT);
    h.update(shared);
    h.update(fingerprint);
    Key(*h.finalize().as_bytes())
}

fn signing_seed(kek: &Key) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(SIGNING_SEED_CONTEXT, &kek.0))
}

/// The Ed25519 public key of a signing seed.
pub fn signing_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

fn label_key(master: &MasterKey) -> Key {
    Key(blake3::derive_key(LABEL_KEY_CONTEXT, &master.data_key.0))
}

fn label_aad(repository_id: &[u8; 32]) -> Vec<u8> {
    [LABEL_AAD, repository_id.as_slice()].concat()
}

/// Notes sealed under a key derived from the data key: storage shows their length only.
fn seal_notes(master: &MasterKey, repository_id: &[u8; 32], notes: &SlotNotes) -> Result<Vec<u8>> {
    if *notes == SlotNotes::default() {
        return Ok(Vec::new());
    }
    let mut out = vec![SEALED_LABEL];
    let plain = format::to_cbor(notes);
    out.extend(Cipher::new(&label_key(master)).seal(&label_aad(repository_id), &plain)?);
    Ok(out)
}

const _: () = assert!(KEY_LEN == 32);

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams::FLOOR;

    fn password(p: &[u8]) -> Credential {
        Credential::password(p)
    }

    fn notes(label: &str) -> SlotNotes {
        SlotNotes::labelled(label)
    }

    #[test]
    fn an_append_only_slot_says_so_when_opened_and_storage_cannot_strip_it() {
        let mk = MasterKey::random().unwrap();
        let file = KeyFileSecret::random().unwrap();
        let policy = SlotNotes { label: "server".into(), append_only: true };
        let (bytes, _) = KeySlot::make(&mk, [7; 32], &NewSlot::KeyFile(&file), &policy, 5).unwrap();
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.notes(&mk).unwrap(), policy);
        let opened = slot.unlock(&Credential::KeyFile(file.clone())).unwrap().unwrap();
        assert!(opened.append_only);
        // The notes of an ordinary slot put in their place: the slot no longer opens.
        let (plain, _) =
            KeySlot::make(&mk, [7; 32], &NewSlot::KeyFile(&file), &notes("server"), 5).unwrap();
        let mut forged = bytes[..51].to_vec();
        let theirs = KeySlot::decode(&plain).unwrap();
        forged[49..51].copy_from_slice(&(theirs.label_field.len() as u16).to_le_bytes());
        forged.extend_from_slice(&theirs.label_field);
        forged.extend_from_slice(&bytes[51 + slot.label_field.len()..]);
        let slot = KeySlot::decode(&forged).unwrap();
        assert!(slot.unlock(&Credential::KeyFile(file)).unwrap().is_none());
    }

    #[test]
    fn password_slot_round_trip_with_a_sealed_label() {
        let mk = MasterKey::random().unwrap();
        let bytes = KeySlot::new_password(&mk, [7; 32], b"secret", "me@host", CHEAP, 5).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"me@host"), "the label is in the clear");
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.label_in_clear(), None);
        assert_eq!(slot.label(&mk).unwrap(), "me@host");
        assert_eq!(slot.repository_id, [7; 32]);
        let got = slot.unlock(&password(b"secret")).unwrap().unwrap();
        assert!(got.master.data_key == mk.data_key && got.master.chunker_seed == mk.chunker_seed);
        assert!(slot.unlock(&password(b"wrong")).unwrap().is_none());
    }

    #[test]
    fn key_file_and_public_key_slots_open_with_their_secret_only() {
        let mk = MasterKey::random().unwrap();
        let file = KeyFileSecret::random().unwrap();
        let (bytes, signer) =
            KeySlot::make(&mk, [7; 32], &NewSlot::KeyFile(&file), &SlotNotes::labelled("ci"), 5)
                .unwrap();
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.slot_type, SlotType::KeyFile);
        let got = slot.unlock(&Credential::KeyFile(file.clone())).unwrap().unwrap();
        assert!(got.master.id_key == mk.id_key);
        assert_eq!(signing_public(&got.signing_seed), signer);
        let other = KeyFileSecret::random().unwrap();
        assert!(slot.unlock(&Credential::KeyFile(other)).unwrap().is_none());
        assert!(slot.unlock(&password(b"pw")).unwrap().is_none());

        let secret = SecretKey::generate().unwrap();
        let (bytes, signer) =
            KeySlot::make(&mk, [7; 32], &NewSlot::PublicKey(&secret.public()), &notes("vault"), 5)
                .unwrap();
        // header 8, type 1, id 32, time 8, label length 2 and label, access 1, fingerprint 32,
        // ciphertext 1120, sealed master key 113.
        let label_len = bytes.len() - (8 + 1 + 32 + 8 + 2 + 1 + 32 + 1120 + 113);
        // The notes: CBOR {"label": "vault"} (13 bytes) in a box.
        assert_eq!(label_len, 1 + 24 + 13 + 16);
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.access, Access::Full);
        let got = slot.unlock(&Credential::SecretKey(Box::new(secret))).unwrap().unwrap();
        assert!(got.master.data_key == mk.data_key);
        assert_eq!(signing_public(&got.signing_seed), signer);
        let stranger = SecretKey::generate().unwrap();
        assert!(slot.unlock(&Credential::SecretKey(Box::new(stranger))).unwrap().is_none());
    }

    /// A write-only slot gives its client the settings and nothing else; full keys open its
    /// reader part; retiring it keeps the reader part and ends the client.
    #[test]
    fn a_write_only_slot_opens_for_its_client_and_retires() {
        let mk = MasterKey::random().unwrap();
        let secret = SecretKey::generate().unwrap();
        let public = secret.public();
        let settings = super::super::write_only::WriterSettings {
            encapsulation_key: Vec::new(),
            chunker: crate::chunker::ChunkerParams::default(),
            compression: crate::blob::Compression::default(),
            pack_size: 1 << 24,
            locations: vec![],
        };
        let kind = NewSlot::WriteOnly { public: &public, settings: settings.clone() };
        let (bytes, signer) = KeySlot::make(&mk, [7; 32], &kind, &SlotNotes::default(), 5).unwrap();
        assert_eq!(bytes.len(), 1555);
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!((slot.slot_type, slot.access), (SlotType::PublicKey, Access::WriteOnly));
        let (got, writer) = slot.open_as_writer(&public).unwrap().unwrap();
        assert_eq!(got.pack_size, settings.pack_size);
        assert_eq!(got.encapsulation_key.len(), 1216);
        assert_eq!(signing_public(&writer.signing_seed()), signer);
        // No credential opens a master key in it; a stranger's public key opens nothing.
        assert!(slot.unlock(&Credential::SecretKey(Box::new(secret))).unwrap().is_none());
        let stranger = SecretKey::generate().unwrap().public();
        assert!(slot.open_as_writer(&stranger).unwrap().is_none());
        let reader = slot.open_reader_part(&mk).unwrap().unwrap();
        assert_eq!(&reader[32..], writer.bytes());
        assert!(slot.open_reader_part(&MasterKey::random().unwrap()).is_err());
        // Retired: the client opens nothing, full keys still open the reader part.
        let retired = KeySlot::decode(&slot.retired(&mk).unwrap()).unwrap();
        assert!(retired.is_retired());
        assert!(retired.open_as_writer(&public).unwrap().is_none());
        assert_eq!(*retired.open_reader_part(&mk).unwrap().unwrap(), *reader);
        // The writer part is bound to the slot: tampering with it fails for the client.
        let mut flipped = bytes.clone();
        flipped[200] ^= 1;
        assert!(KeySlot::decode(&flipped).unwrap().open_as_writer(&public).is_err());
    }

    #[test]
    fn a_clear_label_of_an_older_slot_still_reads() {
        let mk = MasterKey::random().unwrap();
        let mut bytes = KeySlot::new_password(&mk, [7; 32], b"pw", "", CHEAP, 5).unwrap();
        // An older slot: label "ab" in the clear (it is inside the AAD, so this one no longer
        // opens, but it decodes and shows its label).
        bytes.splice(49..51, [2u8, 0, b'a', b'b']);
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.label_in_clear().as_deref(), Some("ab"));
        assert_eq!(slot.label(&mk).unwrap(), "ab");
    }

    #[test]
    fn tampered_parameters_do_not_unlock() {
        let mk = MasterKey::random().unwrap();
        let mut bytes = KeySlot::new_password(&mk, [7; 32], b"pw", "", CHEAP, 5).unwrap();
        bytes[10] ^= 1; // inside the repository id, which is authenticated
        let slot = KeySlot::decode(&bytes).unwrap();
        assert!(slot.unlock(&password(b"pw")).unwrap().is_none());
    }

    #[test]
    fn lanes_change_the_key_and_round_trip() {
        let mk = MasterKey::random().unwrap();
        let four = KdfParams { parallelism: 4, ..CHEAP };
        let bytes = KeySlot::new_password(&mk, [7; 32], b"pw", "", four, 5).unwrap();
        let slot = KeySlot::decode(&bytes).unwrap();
        assert_eq!(slot.kdf, Some(four));
        assert!(slot.unlock(&password(b"pw")).unwrap().unwrap().master.id_key == mk.id_key);
        let salt = [1u8; 32];
        assert!(CHEAP.derive(b"pw", &salt).unwrap() != four.derive(b"pw", &salt).unwrap());
    }

    #[test]
    fn a_slot_no_reader_would_open_is_refused_when_made() {
        let mk = MasterKey::random().unwrap();
        let greedy = KdfParams { iterations: 33, ..CHEAP };
        let err = KeySlot::new_password(&mk, [7; 32], b"pw", "", greedy, 5).unwrap_err();
        assert!(err.to_string().contains("32 passes"), "{err}");
        let cheap = KdfParams { memory_kib: 1024, ..CHEAP };
        let err = KeySlot::new_password(&mk, [7; 32], b"pw", "", cheap, 5).unwrap_err();
        assert!(err.to_string().contains("below the floor"), "{err}");
        let err = KeySlot::new_password(&mk, [7; 32], b"", "", CHEAP, 5).unwrap_err();
        assert!(err.to_string().contains("empty password"), "{err}");
    }

    /// A slot whose (authenticated) costs were rewritten past the ceiling is never run: its
    /// parameters are refused before any derivation.
    #[test]
    fn a_hostile_slot_is_not_run() {
        let mk = MasterKey::random().unwrap();
        let mut bytes = KeySlot::new_password(&mk, [7; 32], b"pw", "", CHEAP, 5).unwrap();
        // Memory (u32 at 51 + label length 0): 4 TiB.
        bytes[51..55].copy_from_slice(&u32::MAX.to_le_bytes());
        let slot = KeySlot::decode(&bytes).unwrap();
        let started = std::time::Instant::now();
        let Err(err) = slot.unlock(&password(b"pw")) else { panic!("the hostile slot was tried") };
        assert!(err.to_string().contains("not tried"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn hostile_public_key_slots_are_refused_not_trusted() {
        let mk = MasterKey::random().unwrap();
        let secret = SecretKey::generate().unwrap();
        let (bytes, _) =
            KeySlot::make(&mk, [7; 32], &NewSlot::PublicKey(&secret.public()), &notes(""), 5)
                .unwrap();
        for cut in [52, 60, 500, bytes.len() - 200] {
            let _ = KeySlot::decode(&bytes[..cut])
                .map(|s| s.unlock(&Credential::SecretKey(Box::new(secret.clone()))));
        }
        let mut flipped = bytes.clone();
        flipped[200] ^= 0x40; // inside the ciphertext
        let slot = KeySlot::decode(&flipped).unwrap();
        assert!(slot.unlock(&Credential::SecretKey(Box::new(secret.clone()))).unwrap().is_none());
        // A full slot relabelled write-only opens nothing for anyone.
        let mut write_only = bytes.clone();
        write_only[51] = Access::WriteOnly as u8;
        if let Ok(slot) = KeySlot::decode(&write_only) {
            assert!(
                slot.unlock(&Credential::SecretKey(Box::new(secret.clone()))).unwrap().is_none()
            );
            assert!(!matches!(slot.open_as_writer(&secret.public()), Ok(Some(_))));
            assert!(!matches!(slot.open_reader_part(&mk), Ok(Some(_))));
        }
        let mut unknown = bytes;
        unknown[51] = 2;
        assert!(KeySlot::decode(&unknown).unwrap_err().to_string().contains("access 2"));
    }
}
