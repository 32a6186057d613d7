//! Envelope encryption: values are sealed under *data keys*, data keys are wrapped by
//! the master key (`PICLOUD_SECRET_KEY`).
//!
//! - Every seal is AES-256-GCM with a random 96-bit nonce. The random-nonce bound is
//!   2^32 seals per key; data keys are retired long before it ([`DATA_KEY_MAX_USES`]),
//!   and the master key only wraps data keys (one per app per retirement), so neither
//!   comes near it.
//! - Every ciphertext names its key: a sealed value names its data key (by id), a
//!   wrapped data key names the master key that wrapped it ([`SecretKey::key_id`]).
//!   That is what lets a rotation re-wrap data keys without touching values, and a
//!   server read under the old or the new master key during one.
//! - The associated data binds a ciphertext to its owner (a secret's app and name, a
//!   data key's id and purpose), so bytes copied to another row do not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::crypto::{DecryptError, SecretKey};

/// Seals one data key may make before a new one takes over: 2^24, 256 times below
/// the 2^32 bound for random 96-bit nonces (collision chance about 2^-49).
pub const DATA_KEY_MAX_USES: u64 = 1 << 24;

const NONCE_BYTES: usize = 12;

/// A plaintext data key. Never stored, never printed.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A data key wrapped by one master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// [`SecretKey::key_id`] of the master key that wrapped it.
    pub master_key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A value sealed under a data key; the caller stores the data key's id beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The owner a ciphertext is bound to, as unambiguous associated data: each part is
/// length-prefixed, so no two owners encode alike.
pub fn binding(kind: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for part in std::iter::once(&kind).chain(parts) {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// What a secret's value is bound to: its app, its name and its data key.
pub fn secret_binding(app_id: &str, name: &str, data_key_id: &str) -> Vec<u8> {
    binding("picloud secret v1", &[app_id, name, data_key_id])
}

/// What a wrapped data key is bound to: its id and its owner (`app_id`, or empty for
/// an instance-wide purpose) and purpose.
pub fn data_key_binding(data_key_id: &str, owner: &str, purpose: &str) -> Vec<u8> {
    binding("picloud data key v1", &[data_key_id, owner, purpose])
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ciphertext = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_else(|_| unreachable!("AES-GCM encryption of an in-memory buffer"));
    (nonce.to_vec(), ciphertext)
}

fn open_with(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    if nonce.len() != NONCE_BYTES {
        return Err(DecryptError);
    }
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| DecryptError)
}

impl DataKey {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self(key)
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let (nonce, ciphertext) = seal_with(&self.0, aad, plaintext);
        Sealed { nonce, ciphertext }
    }

    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, DecryptError> {
        open_with(&self.0, aad, &sealed.nonce, &sealed.ciphertext)
    }

    /// Wraps this key under `master` (a sub-key of it, so the master key's own bytes
    /// never key AES directly).
    pub fn wrap(&self, master: &SecretKey, aad: &[u8]) -> Wrapped {
        let (nonce, ciphertext) = seal_with(&master.derive("data-key-wrap v1"), aad, &self.0);
        Wrapped {
            master_key_id: master.key_id(),
            nonce,
            ciphertext,
        }
    }

    pub fn unwrap(
        master: &SecretKey,
        aad: &[u8],
        wrapped: &Wrapped,
    ) -> Result<DataKey, DecryptError> {
        if wrapped.master_key_id != master.key_id() {
            return Err(DecryptError);
        }
        let bytes = open_with(
            &master.derive("data-key-wrap v1"),
            aad,
            &wrapped.nonce,
            &wrapped.ciphertext,
        )?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| DecryptError)?;
        Ok(DataKey(key))
    }

    /// Same key material (the verify pass of a rotation), in constant time.
    pub fn same_as(&self, other: &DataKey) -> bool {
        crate::crypto::constant_time_eq(&self.0, &other.0)
    }
}

/// The master keys a process holds: `PICLOUD_SECRET_KEY` and, while a rotation is under
/// way, `PICLOUD_NEW_SECRET_KEY`.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SecretKey,
    next: Option<SecretKey>,
}

impl Keyring {
    pub fn new(current: SecretKey, next: Option<SecretKey>) -> Self {
        Self { current, next }
    }

    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    pub fn next(&self) -> Option<&SecretKey> {
        self.next.as_ref()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        std::iter::once(&self.current).chain(self.next.as_ref())
    }

    /// The held key that wrapped `wrapped`, if any.
    pub fn key_for(&self, master_key_id: &str) -> Option<&SecretKey> {
        self.keys().find(|k| k.key_id() == master_key_id)
    }

    /// The held key whose check value is `check` (the one the data is under now).
    pub fn matching_check(&self, check: &str) -> Option<&SecretKey> {
        self.keys().find(|k| k.matches_check_value(check))
    }

    /// The held key other than `key`, if any.
    pub fn other_than(&self, key: &SecretKey) -> Option<&SecretKey> {
        let id = key.key_id();
        self.keys().find(|k| k.key_id() != id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_for_their_owner() {
        let dk = DataKey::generate();
        let sealed = dk.seal(&secret_binding("app_a", "token", "dk_1"), b"\"s3cret\"");
        assert_eq!(
            dk.open(&secret_binding("app_a", "token", "dk_1"), &sealed)
                .ok()
                .as_deref(),
            Some(&b"\"s3cret\""[..])
        );
        // Copied to another name, another app, or claimed under another data key.
        for aad in [
            secret_binding("app_a", "other", "dk_1"),
            secret_binding("app_b", "token", "dk_1"),
            secret_binding("app_a", "token", "dk_2"),
            // Length prefixes: moving bytes between parts changes the binding.
            secret_binding("app_a", "tokendk_1", ""),
        ] {
            assert!(dk.open(&aad, &sealed).is_err());
        }
        assert!(DataKey::generate()
            .open(&secret_binding("app_a", "token", "dk_1"), &sealed)
            .is_err());
    }

    #[test]
    fn wrapped_keys_name_their_master_key_and_owner() {
        let master = SecretKey::generate();
        let other = SecretKey::generate();
        let dk = DataKey::generate();
        let aad = data_key_binding("dk_1", "app_a", "secrets");
        let wrapped = dk.wrap(&master, &aad);
        assert_eq!(wrapped.master_key_id, master.key_id());
        let opened = DataKey::unwrap(&master, &aad, &wrapped).expect("opens");
        assert!(opened.same_as(&dk));
        assert!(DataKey::unwrap(&other, &aad, &wrapped).is_err());
        let forged = Wrapped {
            master_key_id: other.key_id(),
            ..wrapped.clone()
        };
        assert!(DataKey::unwrap(&other, &aad, &forged).is_err());
        let elsewhere = data_key_binding("dk_1", "app_b", "secrets");
        assert!(DataKey::unwrap(&master, &elsewhere, &wrapped).is_err());
        assert_eq!(format!("{dk:?}"), "DataKey(<redacted>)");
    }

    #[test]
    fn nonces_are_fresh() {
        let dk = DataKey::generate();
        let a = dk.seal(b"x", b"same");
        let b = dk.seal(b"x", b"same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(a.nonce.len(), 12);
    }

    #[test]
    fn keyring_finds_keys_by_id_and_check_value() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let ring = Keyring::new(old.clone(), Some(new.clone()));
        assert_eq!(
            ring.key_for(&new.key_id()).map(SecretKey::key_id),
            Some(new.key_id())
        );
        assert!(ring.key_for(&SecretKey::generate().key_id()).is_none());
        assert_eq!(
            ring.matching_check(&new.check_value())
                .map(SecretKey::key_id),
            Some(new.key_id())
        );
        assert_eq!(
            ring.other_than(&new).map(SecretKey::key_id),
            Some(old.key_id())
        );
        assert!(Keyring::new(old.clone(), None).other_than(&old).is_none());
    }
}
