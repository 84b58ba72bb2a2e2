//! Authenticated encryption and hashing primitives.
//!
//! Cipher: XChaCha20-Poly1305 with a random nonce per message: 192 bits in format version 1,
//! 128 bits (the rest zero) from version 2 on, which saves 8 bytes in every blob of a
//! repository of small files. Random nonces need no coordination between concurrent writers on
//! different hosts; at 128 bits, 2^48 messages under one key still collide with a probability
//! below 2^-32 (AES-256-GCM's 96-bit nonce caps a key at about 2^32 random-nonce messages). The
//! measured speed is in the README.
//!
//! XChaCha20-Poly1305 is built as its specification defines it (draft-irtf-cfrg-xchacha):
//! HChaCha20 of the key and the nonce's first 16 bytes gives a subkey, used with ChaCha20-Poly1305
//! (RFC 8439) and the nonce `0u32 || nonce[16..24]`. The RFC 8439 part is ring's, whose
//! assembly computes ChaCha20 and Poly1305 in one pass over the data: RustCrypto's
//! `chacha20poly1305` (the reference in the tests) made them 34% of the CPU of a full check.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::Id;

pub const KEY_LEN: usize = 32;
/// XChaCha20's nonce; format version 1 stores all of it in every sealed box.
pub const NONCE_LEN: usize = 24;
/// The random part of the nonce that format version 2 stores; the remaining bytes are zero.
pub const SHORT_NONCE_LEN: usize = 16;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed box of format version 1 adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A 256-bit secret key, wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl Key {
    pub fn random() -> Result<Key> {
        let mut k = [0u8; KEY_LEN];
        fill_random(&mut k)?;
        Ok(Key(k))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::InvalidInput(format!("no system randomness: {e}")))
}

/// Bytes of system randomness each thread fetches at once for nonces.
const NONCE_POOL: usize = 4096;

thread_local! {
    /// Unused system randomness, consumed from the end. Nonces are public, so holding them in
    /// advance reveals nothing; each byte is handed out once, and the process never seals in a
    /// forked child, the one way two users could see the same pool.
    static NONCE_BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fills `nonce` with system randomness drawn from this thread's pool: a backup of 200,000
/// small files made a `getrandom` call per box, 1% of its CPU.
fn fill_nonce(nonce: &mut [u8]) -> Result<()> {
    NONCE_BYTES.with_borrow_mut(|pool| {
        if pool.len() < nonce.len() {
            // Filled before it replaces the pool: a failed call must not leave zeros to hand out.
            let mut fresh = vec![0; NONCE_POOL.max(nonce.len())];
            fill_random(&mut fresh)?;
            *pool = fresh;
        }
        let rest = pool.len() - nonce.len();
        nonce.copy_from_slice(&pool[rest..]);
        pool.truncate(rest);
        Ok(())
    })
}

/// A cipher instance for one key and one layout of sealed boxes; cheap to share between threads.
#[derive(Clone)]
pub struct Cipher {
    key: Key,
    /// Nonce bytes stored in each box: [`NONCE_LEN`] or [`SHORT_NONCE_LEN`].
    stored_nonce: usize,
    format_version: u8,
    /// Set when the key is a write-only client's run key: the envelope that tells readers
    /// which key it is (docs/FORMAT.md §4b), written before what this cipher seals.
    envelope: Option<std::sync::Arc<[u8]>>,
    /// How a full-key holder opens objects that write-only clients sealed: from their envelope.
    openers: Option<std::sync::Arc<dyn EnvelopeOpener>>,
}

/// Recovers the key of a write-only client's run from the envelope its objects carry.
pub trait EnvelopeOpener: Send + Sync {
    /// The run's cipher and the writer's blob-id hasher.
    fn open_envelope(&self, envelope: &[u8], format_version: u8) -> Result<(Cipher, IdHasher)>;
}

impl Cipher {
    /// A cipher for boxes of format version 1 (192-bit nonces), as key slots always are.
    pub fn new(key: &Key) -> Cipher {
        Cipher::for_format(key, 1)
    }

    /// A cipher for the boxes of a repository of this format version.
    pub fn for_format(key: &Key, format_version: u8) -> Cipher {
        let stored_nonce = if format_version >= 2 { SHORT_NONCE_LEN } else { NONCE_LEN };
        Cipher { key: key.clone(), stored_nonce, format_version, envelope: None, openers: None }
    }

    /// This cipher, able to open what write-only clients wrote through `openers`.
    pub fn with_openers(mut self, openers: std::sync::Arc<dyn EnvelopeOpener>) -> Cipher {
        self.openers = Some(openers);
        self
    }

    /// Whether objects sealed by write-only clients may be met (and opened) with this cipher.
    pub fn opens_envelopes(&self) -> bool {
        self.openers.is_some()
    }

    /// The cipher that opens the object `data`: this one, or the run key its envelope names.
    pub fn for_object(&self, data: &[u8], what: &str) -> Result<std::borrow::Cow<'_, Cipher>> {
        use std::borrow::Cow;
        match (crate::format::envelope_of(data, what)?, self.envelope()) {
            (None, None) => Ok(Cow::Borrowed(self)),
            (None, Some(_)) => {
                Err(Error::WriteOnly(format!("{what} is sealed with the repository key")))
            }
            (Some(theirs), Some(own)) if theirs == own => Ok(Cow::Borrowed(self)),
            (Some(theirs), _) => Ok(Cow::Owned(self.open_envelope(theirs, what)?.0)),
        }
    }

    /// The cipher and id hasher of a write-only run, from its envelope.
    pub fn open_envelope(&self, envelope: &[u8], what: &str) -> Result<(Cipher, IdHasher)> {
        match &self.openers {
            Some(openers) => openers.open_envelope(envelope, self.format_version),
            None if self.envelope.is_some() => {
                Err(Error::WriteOnly(format!("{what} is sealed by another write-only run")))
            }
            None => Err(Error::corrupt(
                what,
                "sealed by a write-only client, and this repository has no write-only key slot",
            )),
        }
    }

    /// This cipher, for objects that carry `envelope` before their sealed part: the key of a
    /// write-only client's run, which readers recover from the envelope.
    pub fn with_envelope(mut self, envelope: &[u8]) -> Cipher {
        self.envelope = Some(envelope.into());
        self
    }

    /// The envelope objects sealed with this cipher carry, if it is a write-only run's.
    pub fn envelope(&self) -> Option<&[u8]> {
        self.envelope.as_deref()
    }

    /// The format version whose box layout this cipher writes and reads.
    pub fn format_version(&self) -> u8 {
        self.format_version
    }

    /// Bytes a sealed box adds to its plaintext.
    pub fn overhead(&self) -> usize {
        self.stored_nonce + TAG_LEN
    }

    /// The ChaCha20-Poly1305 key and nonce of the message with this stored nonce.
    fn message_key(&self, stored: &[u8]) -> (LessSafeKey, Nonce) {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..stored.len()].copy_from_slice(stored);
        let (head, tail) = nonce.split_at(16);
        let head: [u8; 16] = head.try_into().expect("16 of 24 bytes");
        let mut subkey: [u8; KEY_LEN] =
            chacha20::hchacha::<chacha20::R20>(&self.key.0.into(), &head.into()).into();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey).expect("a 32-byte key");
        subkey.zeroize();
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(tail);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(short))
    }

    /// Encrypts `plaintext` into a sealed box `nonce || ciphertext || tag`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + self.overhead());
        self.seal_into(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`Cipher::seal`], appending to `out` (which may already hold other data).
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.seal_appended(aad, out, |o| o.extend_from_slice(plaintext))
    }

    /// Seals the plaintext that `write` appends to `out` after the nonce, encrypting it where
    /// it lies: callers that assemble a plaintext from parts need no separate buffer for it.
    pub fn seal_appended(
        &self,
        aad: &[u8],
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        let nonce = &mut nonce[..self.stored_nonce];
        fill_nonce(nonce)?;
        let start = out.len();
        out.extend_from_slice(nonce);
        write(out);
        let body = &mut out[start + self.stored_nonce..];
        let (key, nonce) = self.message_key(nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), body)
            .map_err(|_| Error::InvalidInput("message too long to encrypt".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts and authenticates a sealed box. `what` names the object in the error.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let (nonce, ciphertext, tag) = self.split_sealed(sealed, what)?;
        let mut out = ciphertext.to_vec();
        self.decrypt(aad, nonce, &mut out, tag, what)?;
        Ok(out)
    }

    /// Like [`Cipher::open`], decrypting where the box lies; returns the plaintext, a part of
    /// `sealed`. The tag is checked before decryption: a box that fails is left as it was.
    pub fn open_in_place<'a>(
        &self,
        aad: &[u8],
        sealed: &'a mut [u8],
        what: &str,
    ) -> Result<&'a mut [u8]> {
        let (nonce, _, tag) = self.split_sealed(sealed, what)?;
        let mut stored = [0u8; NONCE_LEN];
        stored[..nonce.len()].copy_from_slice(nonce);
        let tag = *tag;
        let end = sealed.len() - TAG_LEN;
        let ciphertext = &mut sealed[self.stored_nonce..end];
        self.decrypt(aad, &stored[..self.stored_nonce], ciphertext, &tag, what)?;
        Ok(ciphertext)
    }

    /// `nonce`, `ciphertext` and `tag` of a sealed box, or an error if it is too short for them.
    fn split_sealed<'a>(
        &self,
        sealed: &'a [u8],
        what: &str,
    ) -> Result<(&'a [u8], &'a [u8], &'a [u8; TAG_LEN])> {
        if sealed.len() < self.stored_nonce {
            return Err(Error::corrupt(what, "sealed data shorter than nonce and tag"));
        }
        let (nonce, rest) = sealed.split_at(self.stored_nonce);
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_LEN>()
            .ok_or_else(|| Error::corrupt(what, "sealed data shorter than nonce and tag"))?;
        Ok((nonce, ciphertext, tag))
    }

    fn decrypt(
        &self,
        aad: &[u8],
        nonce: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        what: &str,
    ) -> Result<()> {
        let (key, nonce) = self.message_key(nonce);
        key.open_in_place_separate_tag(nonce, Aad::from(aad), (*tag).into(), buf, 0..)
            .map(|_| ())
            .map_err(|_| Error::corrupt(what, "authentication failed (data altered or wrong key)"))
    }
}

/// Keyed BLAKE3: the id of a blob's plaintext. The key is a repository secret, so ids reveal
/// nothing about content to someone without it.
#[derive(Clone)]
pub struct IdHasher {
    key: [u8; KEY_LEN],
}

impl IdHasher {
    pub fn new(key: &Key) -> IdHasher {
        IdHasher { key: key.0 }
    }

    pub fn hash(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.key, data).as_bytes())
    }
}

impl Drop for IdHasher {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nonces come from a per-thread pool of system randomness: across several refills of the
    /// pool, in both box layouts, no nonce repeats and none is all zeros.
    #[test]
    fn nonces_never_repeat_across_pool_refills() {
        let key = Key::random().unwrap();
        for cipher in [Cipher::new(&key), Cipher::for_format(&key, crate::format::FORMAT_VERSION)] {
            let stored = cipher.stored_nonce;
            let mut seen = std::collections::HashSet::new();
            for _ in 0..3 * NONCE_POOL / stored {
                let sealed = cipher.seal(b"", b"x").unwrap();
                let nonce = sealed[..stored].to_vec();
                assert!(nonce.iter().any(|&b| b != 0));
                assert!(seen.insert(nonce), "a nonce repeated");
            }
        }
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = Cipher::new(&Key::random().unwrap());
        let sealed = c.seal(b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(c.open(b"aad", &sealed, "t").unwrap(), b"hello");
        assert!(c.open(b"other", &sealed, "t").is_err());
        let mut bad = sealed.clone();
        bad[NONCE_LEN] ^= 1;
        assert!(c.open(b"aad", &bad, "t").is_err());
        assert!(c.open(b"aad", &sealed[..10], "t").is_err());
        let other = Cipher::new(&Key::random().unwrap());
        assert!(other.open(b"aad", &sealed, "t").is_err());
    }

    /// The construction is XChaCha20-Poly1305 exactly: what RustCrypto's implementation seals,
    /// this opens, and the other way round, for lengths around ChaCha's block sizes.
    #[test]
    fn matches_the_reference_xchacha20_poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let key = Key::random().unwrap();
        let ours = Cipher::new(&key);
        let reference = XChaCha20Poly1305::new_from_slice(&key.0).unwrap();
        for len in [0, 1, 15, 16, 63, 64, 65, 255, 256, 257, 4096, 100_003] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let sealed = ours.seal(b"aad", &plain).unwrap();
            let nonce = XNonce::try_from(&sealed[..NONCE_LEN]).unwrap();
            let payload = Payload { msg: &sealed[NONCE_LEN..], aad: b"aad" };
            assert_eq!(reference.decrypt(&nonce, payload).unwrap(), plain, "len {len}");
            let theirs = reference.encrypt(&nonce, Payload { msg: &plain, aad: b"aad" }).unwrap();
            assert_eq!(theirs, sealed[NONCE_LEN..], "len {len}");
            let mut boxed = sealed[..NONCE_LEN].to_vec();
            boxed.extend_from_slice(&theirs);
            assert_eq!(ours.open(b"aad", &boxed, "t").unwrap(), plain, "len {len}");
        }
    }

    /// Version 2 boxes store 16 nonce bytes; they are XChaCha20-Poly1305 boxes whose nonce ends
    /// in 8 zero bytes, and neither layout opens as the other.
    #[test]
    fn short_nonce_boxes_are_xchacha_with_zero_tail() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let key = Key::random().unwrap();
        let v2 = Cipher::for_format(&key, 2);
        assert_eq!(v2.overhead(), SHORT_NONCE_LEN + TAG_LEN);
        let reference = XChaCha20Poly1305::new_from_slice(&key.0).unwrap();
        for len in [0, 1, 64, 65, 4096, 100_003] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 3 + len) as u8).collect();
            let sealed = v2.seal(b"aad", &plain).unwrap();
            assert_eq!(sealed.len(), len + v2.overhead());
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..SHORT_NONCE_LEN].copy_from_slice(&sealed[..SHORT_NONCE_LEN]);
            let payload = Payload { msg: &sealed[SHORT_NONCE_LEN..], aad: b"aad" };
            let nonce = XNonce::try_from(&nonce[..]).unwrap();
            assert_eq!(reference.decrypt(&nonce, payload).unwrap(), plain, "len {len}");
            let mut in_place = sealed.clone();
            assert_eq!(v2.open_in_place(b"aad", &mut in_place, "t").unwrap(), &plain[..]);
            assert!(Cipher::new(&key).open(b"aad", &sealed, "t").is_err());
        }
        let v1_box = Cipher::new(&key).seal(b"aad", b"hello").unwrap();
        assert!(v2.open(b"aad", &v1_box, "t").is_err());
        assert!(v2.open(b"aad", &[0; 31], "t").is_err());
    }

    #[test]
    fn keyed_ids_depend_on_key() {
        let a = IdHasher::new(&Key::random().unwrap());
        let b = IdHasher::new(&Key::random().unwrap());
        assert_eq!(a.hash(b"x"), a.hash(b"x"));
        assert_ne!(a.hash(b"x"), b.hash(b"x"));
    }
}
