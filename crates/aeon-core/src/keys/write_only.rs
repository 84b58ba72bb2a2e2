//! Write-only clients (docs/FORMAT.md §4b): a client holding only a public file adds recovery
//! points it can never read back, and cannot read anything else.
//!
//! - The public file's key (an X-Wing encapsulation key) is the client's only secret: the
//!   **writer secret** derives from it, and from that its blob-id key, chunker table and
//!   audit-signing key. Its slot stores only the key's fingerprint.
//! - The slot holds, sealed under the writer secret, what the client needs to write (the
//!   repository's own X-Wing encapsulation key for this writer, chunker bounds, compression,
//!   pack size, locations); and, sealed under a key derived from the data key, the matching
//!   decapsulation key and the writer secret, so that every full-key holder reads what the
//!   client wrote.
//! - Each run encapsulates once to the repository's key ([`WriterRun`]): the run's objects are
//!   sealed under a key derived from that shared secret and carry the **envelope**
//!   (fingerprint ‖ ciphertext). The client forgets the secret when the run ends: taken over
//!   later, it cannot read even what it wrote before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use x_wing::{Decapsulate, Decapsulator, Encapsulate, KeyExport};
use zeroize::Zeroizing;

use super::MasterKey;
use super::files::PublicKey;
use crate::blob::Compression;
use crate::chunker::ChunkerParams;
use crate::crypto::{Cipher, EnvelopeOpener, IdHasher, KEY_LEN, Key, fill_random};
use crate::error::{Error, Result};
use crate::format::ENVELOPE_LEN;

const WRITER_SECRET_CONTEXT: &str = "aeon 2026-12-07 write-only writer secret";
const WRITER_SETTINGS_KEY_CONTEXT: &str = "aeon 2026-12-07 write-only writer settings key";
const WRITER_ID_KEY_CONTEXT: &str = "aeon 2026-12-07 write-only writer blob id key";
const WRITER_GEAR_CONTEXT: &str = "aeon 2026-12-07 write-only writer chunker secret";
const WRITER_SIGNING_CONTEXT: &str = "aeon 2026-12-07 write-only writer audit signing key";
const READER_KEY_CONTEXT: &str = "aeon 2026-12-07 write-only slot reader key";
const RUN_KEY_CONTEXT: &str = "aeon 2026-12-07 write-only run key";
/// The reader part of a write-only slot: decapsulation key seed ‖ writer secret.
pub(crate) const READER_PART_LEN: usize = 32 + 32;

/// What the client of a write-only slot derives everything from (never stored).
pub struct WriterSecret(Zeroizing<[u8; KEY_LEN]>);

impl WriterSecret {
    /// The secret of the client holding `public`.
    pub fn of(public: &PublicKey) -> WriterSecret {
        WriterSecret(Zeroizing::new(blake3::derive_key(WRITER_SECRET_CONTEXT, &public.bytes())))
    }

    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> WriterSecret {
        WriterSecret(Zeroizing::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn derive(&self, context: &str) -> Key {
        Key(blake3::derive_key(context, self.0.as_ref()))
    }

    /// The key the slot's writer part is sealed under.
    pub(crate) fn settings_key(&self) -> Key {
        self.derive(WRITER_SETTINGS_KEY_CONTEXT)
    }

    /// The client's blob ids: its own key, so that its ids say nothing about other clients'
    /// data and theirs nothing about its own (and there is no deduplication between them).
    pub fn id_hasher(&self) -> IdHasher {
        IdHasher::new(&self.derive(WRITER_ID_KEY_CONTEXT))
    }

    /// The client's chunker table: a secret of its own (never the repository's).
    pub fn gear(&self) -> crate::chunker::Gear {
        crate::chunker::Gear::from_secret(&self.derive(WRITER_GEAR_CONTEXT).0)
    }

    /// The seed of the Ed25519 key the client signs audit records with.
    pub fn signing_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.derive(WRITER_SIGNING_CONTEXT).0)
    }
}

/// What a write-only slot tells its client (sealed under the writer secret): enough to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSettings {
    /// The repository's X-Wing encapsulation key for this writer (1,216 bytes).
    #[serde(with = "serde_bytes")]
    pub encapsulation_key: Vec<u8>,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    pub pack_size: u32,
    /// The storage locations of a multi-location repository (empty: one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
}

/// A new write-only slot's key pair: the settings part holds the encapsulation key, the reader
/// part the decapsulation key's seed.
pub(crate) struct WriterPair {
    pub decapsulation_seed: Zeroizing<[u8; 32]>,
    pub encapsulation_key: Vec<u8>,
}

impl WriterPair {
    pub fn generate() -> Result<WriterPair> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill_random(seed.as_mut())?;
        let key = x_wing::DecapsulationKey::from(*seed);
        let encapsulation_key = key.encapsulation_key().to_bytes().to_vec();
        Ok(WriterPair { decapsulation_seed: seed, encapsulation_key })
    }
}

/// The key the reader part of a write-only slot is sealed under: any full-key holder's.
pub(crate) fn reader_key(master: &MasterKey) -> Key {
    Key(blake3::derive_key(READER_KEY_CONTEXT, &master.data_key.0))
}

fn run_key(shared: &[u8; 32], fingerprint: &[u8]) -> Key {
    let mut h = blake3::Hasher::new_derive_key(RUN_KEY_CONTEXT);
    h.update(shared);
    h.update(fingerprint);
    Key(*h.finalize().as_bytes())
}

/// One run of a write-only client: a fresh encapsulation, and the cipher its objects are
/// sealed with (it carries the envelope that tells readers which key opens them).
pub struct WriterRun {
    pub cipher: Cipher,
}

impl WriterRun {
    pub fn start(
        settings: &WriterSettings,
        fingerprint: &[u8; 32],
        format_version: u8,
    ) -> Result<WriterRun> {
        let key = x_wing::EncapsulationKey::try_from(settings.encapsulation_key.as_slice())
            .map_err(|_| Error::corrupt("write-only key slot", "invalid encapsulation key"))?;
        let (ciphertext, shared) = key.encapsulate();
        let shared: [u8; 32] = shared.into();
        let shared = Zeroizing::new(shared);
        let mut envelope = Vec::with_capacity(ENVELOPE_LEN);
        envelope.extend_from_slice(fingerprint);
        envelope.extend_from_slice(&ciphertext);
        let cipher = Cipher::for_format(&run_key(&shared, fingerprint), format_version)
            .with_envelope(&envelope);
        Ok(WriterRun { cipher })
    }
}

/// What a full-key holder knows of one write-only slot.
struct KnownWriter {
    decapsulation: x_wing::DecapsulationKey,
    hasher: IdHasher,
}

/// The write-only slots of a repository as a full-key holder opens them: it recovers the key
/// of any run from the run's envelope.
#[derive(Default)]
pub struct Writers {
    by_fingerprint: HashMap<[u8; 32], KnownWriter>,
    /// Runs met so far, by envelope: one decapsulation per run, not per object.
    runs: Mutex<HashMap<Vec<u8>, (Cipher, IdHasher)>>,
}

impl Writers {
    /// Adds the writer of a slot whose reader part opened as `reader_part`.
    pub(crate) fn add(&mut self, fingerprint: [u8; 32], reader_part: &[u8]) -> Result<()> {
        if reader_part.len() != READER_PART_LEN {
            return Err(Error::corrupt("write-only key slot", "reader part of the wrong length"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&reader_part[..32]);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&reader_part[32..]);
        let secret = WriterSecret::from_bytes(secret);
        self.by_fingerprint.insert(
            fingerprint,
            KnownWriter {
                decapsulation: x_wing::DecapsulationKey::from(*seed),
                hasher: secret.id_hasher(),
            },
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }
}

impl EnvelopeOpener for Writers {
    fn open_envelope(&self, envelope: &[u8], format_version: u8) -> Result<(Cipher, IdHasher)> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = runs.get(envelope) {
            return Ok(known.clone());
        }
        let (fingerprint, ciphertext) = envelope.split_at(envelope.len().min(32));
        let writer = self.by_fingerprint.get(fingerprint).ok_or_else(|| {
            Error::corrupt(
                "write-only envelope",
                format!(
                    "sealed for write-only key {} that no key slot of this repository names \
                     (removed, or never added)",
                    hex::encode(&fingerprint[..fingerprint.len().min(8)])
                ),
            )
        })?;
        let shared = writer.decapsulation.decapsulate_slice(ciphertext).map_err(|_| {
            Error::corrupt("write-only envelope", "the ciphertext has the wrong length")
        })?;
        let shared: [u8; 32] = shared.into();
        let shared = Zeroizing::new(shared);
        let cipher = Cipher::for_format(&run_key(&shared, fingerprint), format_version)
            .with_envelope(envelope);
        let opened = (cipher, writer.hasher.clone());
        runs.insert(envelope.to_vec(), opened.clone());
        Ok(opened)
    }
}

/// A shared, empty set: what a repository without write-only slots opens with.
pub fn none() -> Arc<Writers> {
    Arc::new(Writers::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn settings(pair: &WriterPair) -> WriterSettings {
        WriterSettings {
            encapsulation_key: pair.encapsulation_key.clone(),
            chunker: ChunkerParams::default(),
            compression: Compression::default(),
            pack_size: 1 << 20,
            locations: vec![],
        }
    }

    /// A run's objects open for a holder of the slot's reader part, and for nobody holding
    /// the client's material only: not even the same client in a later run.
    #[test]
    fn a_run_opens_with_the_reader_part_only() {
        let public = SecretKey::generate().unwrap().public();
        let secret = WriterSecret::of(&public);
        let pair = WriterPair::generate().unwrap();
        let fingerprint = public.fingerprint();
        let run = WriterRun::start(&settings(&pair), &fingerprint, 3).unwrap();
        let sealed = run.cipher.seal(b"aad", b"written by a write-only client").unwrap();
        let envelope = run.cipher.envelope().unwrap().to_vec();
        assert_eq!(envelope.len(), ENVELOPE_LEN);

        let mut readers = Writers::default();
        let mut part = pair.decapsulation_seed.to_vec();
        part.extend_from_slice(secret.bytes());
        readers.add(fingerprint, &part).unwrap();
        let (cipher, hasher) = readers.open_envelope(&envelope, 3).unwrap();
        assert_eq!(cipher.open(b"aad", &sealed, "t").unwrap(), b"written by a write-only client");
        assert_eq!(hasher.hash(b"x"), secret.id_hasher().hash(b"x"));

        // What the client holds: its public key, the writer secret and the settings. None of
        // it, nor a new run, opens the run's box.
        let later = WriterRun::start(&settings(&pair), &fingerprint, 3).unwrap();
        assert!(later.cipher.open(b"aad", &sealed, "t").is_err());
        for guess in
            [*secret.bytes(), secret.settings_key().0, blake3::hash(&public.bytes()).into()]
        {
            assert!(Cipher::for_format(&Key(guess), 3).open(b"aad", &sealed, "t").is_err());
        }
        // A stranger's reader part does not open it either.
        let mut other = Writers::default();
        let stranger = WriterPair::generate().unwrap();
        let mut part = stranger.decapsulation_seed.to_vec();
        part.extend_from_slice(secret.bytes());
        other.add(fingerprint, &part).unwrap();
        let (cipher, _) = other.open_envelope(&envelope, 3).unwrap();
        assert!(cipher.open(b"aad", &sealed, "t").is_err());
        // An envelope of an unknown writer is named as such.
        let Err(unknown) = Writers::default().open_envelope(&envelope, 3) else {
            panic!("an unknown writer's envelope opened")
        };
        assert!(unknown.to_string().contains("no key slot"), "{unknown}");
    }
}
