//! Password hashing with Argon2id (argon2's defaults: OWASP's recommended parameters), and a
//! login check that takes the same time whether the user exists or not.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use tokio::sync::Semaphore;

use super::random_token;
use crate::error::{ErrorKind, MeshError};

/// The longest password taken, in bytes: a longer one is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and checks passwords off the async threads (each takes tens of milliseconds of
/// CPU and 19 MiB of memory by design), as many at once as the machine has cores: a burst of
/// signups or logins waits its turn instead of taking every core and gigabytes of memory.
/// Clones share the decoy hash and the turns.
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
    /// One permit per core: hashes and checks running at once.
    turns: Arc<Semaphore>,
}

impl Passwords {
    /// A hasher, with its decoy hash made.
    pub fn new() -> Result<Self, MeshError> {
        let decoy = hash_now(&random_token(24)?)?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            decoy: decoy.into(),
            turns: Arc::new(Semaphore::new(cores)),
        })
    }

    /// Runs `work` off the async threads once a core is free for it.
    async fn in_turn<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, MeshError> {
        let turn = self.turns.clone().acquire_owned().await.map_err(|_| {
            MeshError::new(ErrorKind::Internal, "the password checks were shut down")
        })?;
        tokio::task::spawn_blocking(move || {
            let done = work();
            drop(turn);
            done
        })
        .await
        .map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))
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
        self.in_turn(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored` (the user's hash; `None` for an unknown user,
    /// checked against the decoy so that the answer takes as long). A hash that does not
    /// parse or a password over [`MAX_PASSWORD_BYTES`] is no match.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.decoy.to_string(), str::to_owned);
        let password = password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)].to_vec();
        let too_long = password.len() == MAX_PASSWORD_BYTES;
        let matched = self
            .in_turn(move || {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_checks_run_at_once_than_there_are_cores() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let passwords = Passwords::new().unwrap();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let checks: Vec<_> = (0..cores * 4)
            .map(|_| {
                let (passwords, running, most) = (passwords.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    passwords
                        .in_turn(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            // Held long enough for the others to pile up behind it.
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                        .unwrap();
                })
            })
            .collect();
        for check in checks {
            check.await.unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=cores).contains(&most),
            "{most} at once on {cores} cores"
        );
    }

    #[tokio::test]
    async fn a_password_over_the_bound_is_refused_without_hashing() {
        let passwords = Passwords::new().unwrap();
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        let error = passwords.hash(&long).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
    }
}
