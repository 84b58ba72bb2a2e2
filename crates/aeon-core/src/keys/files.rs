//! Credentials kept in files (docs/FORMAT.md §4a): a key file (a random 256-bit secret), and the
//! two halves of a hybrid post-quantum key pair made by `aeon key generate` (X-Wing:
//! ML-KEM-768 combined with X25519 as draft-connolly-cfrg-xwing-kem specifies).
//!
//! Each file is text: comment lines start with `#`; one line holds the kind and the key in hex.

use std::path::Path;

use x_wing::{Decapsulate, Decapsulator, Encapsulate, KeyExport};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::fill_random;
use crate::error::{Error, Result};

const KEY_FILE_TAG: &str = "aeon-key-file-1";
const SECRET_KEY_TAG: &str = "aeon-secret-key-1 x-wing";
const PUBLIC_KEY_TAG: &str = "aeon-public-key-1 x-wing";
const FINGERPRINT_CONTEXT: &str = "aeon 2026-12-07 public key fingerprint";

/// The secret of a key-file slot.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyFileSecret([u8; 32]);

impl KeyFileSecret {
    pub fn random() -> Result<KeyFileSecret> {
        let mut b = [0u8; 32];
        fill_random(&mut b)?;
        Ok(KeyFileSecret(b))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# aeon key file: it opens every repository it was added to (aeon key add --key-file).\n\
             # Keep it as secret as a password.\n{KEY_FILE_TAG} {}\n",
            hex::encode(self.0)
        ))
    }
}

/// The secret half of an X-Wing key pair (its 32-byte seed).
#[derive(Clone)]
pub struct SecretKey(x_wing::DecapsulationKey);

impl SecretKey {
    pub fn generate() -> Result<SecretKey> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill_random(seed.as_mut())?;
        Ok(SecretKey(x_wing::DecapsulationKey::from(*seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.encapsulation_key().clone())
    }

    /// The shared secret of an encapsulation to this key (X-Wing's decapsulation never fails:
    /// a wrong ciphertext yields an unrelated secret, which opens nothing).
    pub(crate) fn decapsulate(&self, ciphertext: &[u8]) -> Result<[u8; 32]> {
        let shared = self
            .0
            .decapsulate_slice(ciphertext)
            .map_err(|_| Error::corrupt("key slot", "the ciphertext has the wrong length"))?;
        Ok(shared.into())
    }

    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# aeon secret key (X-Wing: ML-KEM-768 + X25519). It opens every repository its public\n\
             # key was added to (aeon key add --public). Keep it secret.\n{SECRET_KEY_TAG} {}\n",
            hex::encode(self.0.as_bytes())
        ))
    }
}

/// The public half of an X-Wing key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(x_wing::EncapsulationKey);

impl PublicKey {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }

    /// A one-way name of the key, stored in its slot (the key itself is not).
    pub fn fingerprint(&self) -> [u8; 32] {
        blake3::derive_key(FINGERPRINT_CONTEXT, &self.bytes())
    }

    /// The first 16 bytes of the fingerprint, hex: how listings name the key.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(&self.fingerprint()[..16])
    }

    /// A fresh encapsulation: the ciphertext to store and the secret it carries.
    pub(crate) fn encapsulate(&self) -> (Vec<u8>, [u8; 32]) {
        let (ct, shared) = self.0.encapsulate();
        (ct.to_vec(), shared.into())
    }

    pub fn to_text(&self) -> String {
        format!(
            "# aeon public key (X-Wing: ML-KEM-768 + X25519), fingerprint {}\n{PUBLIC_KEY_TAG} {}\n",
            hex::encode(&self.fingerprint()[..8]),
            hex::encode(self.bytes())
        )
    }
}

/// What a credential file holds.
pub enum KeyMaterial {
    KeyFile(KeyFileSecret),
    SecretKey(SecretKey),
    PublicKey(PublicKey),
}

impl KeyMaterial {
    /// Parses a key file, a secret key or a public key; `what` names the file in errors.
    pub fn parse(text: &str, what: &str) -> Result<KeyMaterial> {
        let bad = |why: &str| Error::InvalidInput(format!("{what} is not an aeon key file: {why}"));
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("it holds no key"))?;
        let (tag, hex_key) = line.rsplit_once(' ').ok_or_else(|| bad("no key on its line"))?;
        if ![KEY_FILE_TAG, SECRET_KEY_TAG, PUBLIC_KEY_TAG].contains(&tag) {
            return Err(bad(&format!("unknown kind {tag:?}")));
        }
        let bytes = Zeroizing::new(hex::decode(hex_key).map_err(|_| bad("the key is not hex"))?);
        let exact = |n: usize| -> Result<[u8; 32]> {
            if bytes.len() != n {
                return Err(bad(&format!("{} bytes of key where {n} belong", bytes.len())));
            }
            let mut a = [0u8; 32];
            a.copy_from_slice(&bytes);
            Ok(a)
        };
        match tag {
            KEY_FILE_TAG => Ok(KeyMaterial::KeyFile(KeyFileSecret(exact(32)?))),
            SECRET_KEY_TAG => {
                let seed = Zeroizing::new(exact(32)?);
                Ok(KeyMaterial::SecretKey(SecretKey(x_wing::DecapsulationKey::from(*seed))))
            }
            PUBLIC_KEY_TAG => x_wing::EncapsulationKey::try_from(bytes.as_slice())
                .map(|k| KeyMaterial::PublicKey(PublicKey(k)))
                .map_err(|_| bad("the public key is not a valid X-Wing key")),
            other => Err(bad(&format!("unknown kind {other:?}"))),
        }
    }

    pub fn read(path: &Path) -> Result<KeyMaterial> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        KeyMaterial::parse(&text, &path.display().to_string())
    }
}

/// Writes `text` to a new file at `path`, readable by its owner only; never replaces a file.
pub fn write_new(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_refuse_what_they_are_not() {
        let kf = KeyFileSecret::random().unwrap();
        let KeyMaterial::KeyFile(back) = KeyMaterial::parse(&kf.to_text(), "f").unwrap() else {
            panic!("not a key file")
        };
        assert_eq!(back.bytes(), kf.bytes());
        let sk = SecretKey::generate().unwrap();
        let KeyMaterial::SecretKey(back) = KeyMaterial::parse(&sk.to_text(), "f").unwrap() else {
            panic!("not a secret key")
        };
        assert_eq!(back.public(), sk.public());
        let pk = sk.public();
        assert_eq!(pk.bytes().len(), 1216);
        let KeyMaterial::PublicKey(back) = KeyMaterial::parse(&pk.to_text(), "f").unwrap() else {
            panic!("not a public key")
        };
        assert_eq!(back, pk);
        for (text, why) in [
            ("", "holds no key"),
            ("aeon-key-file-1 zz", "not hex"),
            ("aeon-key-file-1 abcd", "2 bytes"),
            ("ssh-ed25519 AAAA", "unknown kind"),
            ("aeon-nothing 00", "unknown kind"),
        ] {
            let err = KeyMaterial::parse(text, "f").err().expect(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn an_encapsulation_opens_with_the_secret_only() {
        let sk = SecretKey::generate().unwrap();
        let (ct, shared) = sk.public().encapsulate();
        assert_eq!(ct.len(), 1120);
        assert_eq!(sk.decapsulate(&ct).unwrap(), shared);
        let other = SecretKey::generate().unwrap();
        assert_ne!(other.decapsulate(&ct).unwrap(), shared);
        assert!(sk.decapsulate(&ct[1..]).is_err());
    }
}
