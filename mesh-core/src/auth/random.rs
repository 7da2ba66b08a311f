//! Unguessable values from the operating system's generator (aws-lc-rs): token IDs, key IDs,
//! refresh tokens, generated passwords.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{ErrorKind, MeshError};

/// `bytes` random bytes from the system's cryptographic generator, base64url without padding.
///
/// ```
/// let token = mesh_core::auth::random_token(32).unwrap();
/// assert_eq!(token.len(), 43);
/// assert_ne!(token, mesh_core::auth::random_token(32).unwrap());
/// ```
pub fn random_token(bytes: usize) -> Result<String, MeshError> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| MeshError::new(ErrorKind::Internal, "the system's random generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}
