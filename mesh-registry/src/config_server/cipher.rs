//! `{cipher}` values: AES-256-GCM under a key derived from `MESH_CONFIG_ENCRYPT_KEY`
//! (SHA-256 of it), each value `base64(nonce ‖ ciphertext ‖ tag)` with a random 96-bit nonce.
//! The key and the plain values never reach a log, a metric or an error message.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey},
    digest,
};
use base64::{Engine, engine::general_purpose::STANDARD};

/// What marks an encrypted value, as in Spring Cloud Config.
pub const PREFIX: &str = "{cipher}";

/// Encrypts and decrypts configuration values.
pub struct Cipher {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher")
    }
}

/// A value did not decrypt: another key, or not a ciphertext at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the value does not decrypt with this server's key")]
pub struct CannotDecrypt;

impl Cipher {
    /// A cipher keyed by `secret` (any length; its SHA-256 is the AES key).
    pub fn new(secret: &str) -> Self {
        let key = digest::digest(&digest::SHA256, secret.as_bytes());
        Self {
            key: RandomizedNonceKey::new(&AES_256_GCM, key.as_ref())
                .expect("a SHA-256 digest is an AES-256 key"),
        }
    }

    /// `plain` encrypted, without the `{cipher}` prefix.
    pub fn encrypt(&self, plain: &str) -> String {
        let mut sealed = plain.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::empty(), &mut sealed)
            .expect("AES-GCM seals any value this size");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// `encrypted` (with or without the `{cipher}` prefix) decrypted.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CannotDecrypt> {
        let encrypted = encrypted.strip_prefix(PREFIX).unwrap_or(encrypted).trim();
        let bytes = STANDARD.decode(encrypted).map_err(|_| CannotDecrypt)?;
        if bytes.len() < NONCE_LEN {
            return Err(CannotDecrypt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CannotDecrypt)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| CannotDecrypt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CannotDecrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_another_key_fails_clearly() {
        let cipher = Cipher::new("a key for the config server");
        let encrypted = cipher.encrypt("s3cr3t-password");
        assert!(!encrypted.contains("s3cr3t"));
        assert_ne!(
            encrypted,
            cipher.encrypt("s3cr3t-password"),
            "a new nonce each time"
        );
        assert_eq!(cipher.decrypt(&encrypted).unwrap(), "s3cr3t-password");
        assert_eq!(
            cipher.decrypt(&format!("{PREFIX}{encrypted}")).unwrap(),
            "s3cr3t-password"
        );
        let other = Cipher::new("another key");
        assert_eq!(other.decrypt(&encrypted), Err(CannotDecrypt));
        assert_eq!(cipher.decrypt("not base64 !"), Err(CannotDecrypt));
        assert_eq!(cipher.decrypt("c2hvcnQ="), Err(CannotDecrypt));
        let mut tampered = STANDARD.decode(&encrypted).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            cipher.decrypt(&STANDARD.encode(tampered)),
            Err(CannotDecrypt)
        );
    }
}
