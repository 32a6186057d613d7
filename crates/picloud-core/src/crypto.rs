//! Crypto helpers: the instance master key, password hashing, opaque tokens.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The 32-byte master key (`PICLOUD_SECRET_KEY`). Never printed.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)")]
    Malformed,
}

#[derive(Debug, thiserror::Error)]
#[error("decryption failed: wrong key or corrupted data")]
pub struct DecryptError;

impl SecretKey {
    pub fn parse(encoded: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim().trim_end_matches('=')))
            .map_err(|_| KeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
        Ok(Self(key))
    }

    /// The deterministic key `picloud dev` uses when none is configured. Anything
    /// encrypted with it is readable by anyone who has the source code.
    pub fn development() -> Self {
        Self(Sha256::digest(b"picloud development key - not for production").into())
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self(key)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A value stored at first start that identifies the key without revealing it, so
    /// a later start with another key is refused before anything is written under it.
    pub fn check_value(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"picloud key check v1");
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn matches_check_value(&self, stored: &str) -> bool {
        constant_time_eq(self.check_value().as_bytes(), stored.as_bytes())
    }

    /// A short public identifier of the key, stored beside everything it wraps so a
    /// reader knows which key opens it. A one-way function of the key, like the check
    /// value, but under its own label.
    pub fn key_id(&self) -> String {
        hex::encode(&self.derive("key id")[..8])
    }

    /// A 32-byte sub-key for one purpose (`label`), so no two uses share key material.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"picloud derive v1:");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// AES-256-GCM with a random 96-bit nonce; returns `(nonce, ciphertext||tag)`.
    pub fn encrypt(&self, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of an in-memory buffer"));
        (nonce.to_vec(), ciphertext)
    }

    pub fn decrypt(&self, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if nonce.len() != 12 {
            return Err(DecryptError);
        }
        Aes256Gcm::new((&self.0).into())
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| DecryptError)
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn argon2() -> Argon2<'static> {
    // OWASP's recommended argon2id set-up: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None)
        .unwrap_or_else(|_| unreachable!("constant argon2 parameters are valid"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string (argon2id, random salt). CPU-heavy: call it
/// from a blocking thread.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_else(|_| unreachable!("argon2 hashing with valid parameters"))
}

/// Checks a password against a PHC string. A malformed hash never verifies.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Burns the same time as a real verification, for logins naming an unknown user,
/// so response timing does not tell which accounts exist.
pub fn verify_password_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("picloud-timing-equaliser"));
    let _ = verify_password(password, phc);
}

/// A new opaque bearer token: `{prefix}` + 32 random bytes, URL-safe base64.
pub fn generate_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// How tokens are stored: SHA-256, hex. Tokens carry 256 random bits, so a fast
/// hash is enough, and lookups by hash reveal nothing about the token to timing.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parsing() {
        let key = SecretKey::generate();
        assert!(SecretKey::parse(&key.to_base64()).is_ok());
        assert!(SecretKey::parse("not base64!").is_err());
        assert!(SecretKey::parse(&STANDARD.encode([0u8; 31])).is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn check_value_tells_keys_apart() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        assert!(a.matches_check_value(&a.check_value()));
        assert!(!b.matches_check_value(&a.check_value()));
    }

    #[test]
    fn encryption_round_trip_and_tamper_detection() {
        let key = SecretKey::generate();
        let (nonce, mut ct) = key.encrypt(b"hello");
        assert_eq!(
            key.decrypt(&nonce, &ct).ok().as_deref(),
            Some(&b"hello"[..])
        );
        ct[0] ^= 1;
        assert!(key.decrypt(&nonce, &ct).is_err());
        assert!(SecretKey::generate().decrypt(&nonce, &ct).is_err());
    }

    #[test]
    fn key_ids_tell_keys_apart_and_reveal_no_check_value() {
        let a = SecretKey::generate();
        assert_eq!(a.key_id(), a.key_id());
        assert_eq!(a.key_id().len(), 16);
        assert_ne!(a.key_id(), SecretKey::generate().key_id());
        assert!(!a.check_value().starts_with(&a.key_id()));
    }

    #[test]
    fn development_key_is_stable_and_parses_back() {
        let dev = SecretKey::development();
        assert_eq!(dev.check_value(), SecretKey::development().check_value());
        let parsed = SecretKey::parse(&dev.to_base64()).expect("round trip");
        assert!(parsed.matches_check_value(&dev.check_value()));
    }

    #[test]
    fn passwords() {
        let phc = hash_password("hunter22");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("hunter22", &phc));
        assert!(!verify_password("hunter23", &phc));
        assert!(!verify_password("hunter22", "garbage"));
    }

    #[test]
    fn tokens() {
        let t = generate_token("pcs_");
        assert!(t.starts_with("pcs_") && t.len() == 4 + 43);
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), hash_token(&generate_token("pcs_")));
    }
}
