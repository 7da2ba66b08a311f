//! Password hashing with Argon2id (argon2's defaults: OWASP's recommended parameters), and a
//! login check that takes the same time whether the user exists or not.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::random_token;
use crate::error::{ErrorKind, MeshError};

/// The longest password taken, in bytes: a longer one is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and checks passwords off the async threads (each takes tens of milliseconds of
/// CPU by design). Clones share the decoy hash.
///
/// ```
/// use mesh_core::auth::Passwords;
///
/// # async fn run() -> Result<(), mesh_core::MeshError> {
/// let passwords = Passwords::new()?;
/// let stored = passwords.hash("correct horse").await?;
/// assert!(passwords.verify(Some(&stored), "correct horse").await);
/// assert!(!passwords.verify(Some(&stored), "wrong").await);
/// // An unknown user costs the same as a wrong password.
/// assert!(!passwords.verify(None, "correct horse").await);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Passwords {
    /// A hash no password is known for, checked when the user is unknown, so that a login
    /// takes as long for a name that does not exist as for a wrong password.
    decoy: Arc<str>,
}

impl Passwords {
    /// A hasher, with its decoy hash made.
    pub fn new() -> Result<Self, MeshError> {
        let decoy = hash_now(&random_token(24)?)?;
        Ok(Self {
            decoy: decoy.into(),
        })
    }

    /// The PHC string of `password` (`$argon2id$v=19$…`), with a fresh salt, to store.
    pub async fn hash(&self, password: &str) -> Result<String, MeshError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                format!("a password is at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))?
    }

    /// Whether `password` matches `stored` (the user's hash; `None` for an unknown user,
    /// checked against the decoy so that the answer takes as long). A hash that does not
    /// parse or a password over [`MAX_PASSWORD_BYTES`] is no match.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.decoy.to_string(), str::to_owned);
        let password = password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)].to_vec();
        let too_long = password.len() == MAX_PASSWORD_BYTES;
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .is_ok_and(|hash| Argon2::default().verify_password(&password, &hash).is_ok())
        })
        .await
        .unwrap_or(false);
        known && matched && !too_long
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

fn hash_now(password: &str) -> Result<String, MeshError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| MeshError::new(ErrorKind::Internal, "no randomness for a salt"))?;
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| MeshError::new(ErrorKind::Internal, format!("a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| MeshError::new(ErrorKind::Internal, format!("hashing a password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_salted_argon2id_and_matches_only_its_password() {
        let passwords = Passwords::new().unwrap();
        let first = passwords.hash("s3cret").await.unwrap();
        let second = passwords.hash("s3cret").await.unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(passwords.verify(Some(&first), "s3cret").await);
        assert!(!passwords.verify(Some(&first), "s3cret ").await);
        assert!(!passwords.verify(Some("not a hash"), "s3cret").await);
        assert!(!passwords.verify(None, "s3cret").await);
    }

    #[tokio::test]
    async fn a_password_over_the_bound_is_refused_without_hashing() {
        let passwords = Passwords::new().unwrap();
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        let error = passwords.hash(&long).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
    }
}
