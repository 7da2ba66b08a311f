//! Opaque refresh tokens that rotate on use, with reuse detection (OAuth 2.0 Security BCP,
//! §4.14): each token is good for one refresh, which returns its successor in the same
//! family; presenting a token that was already used revokes the whole family, so a stolen
//! token and the one its rightful holder has both stop working. Logout revokes the family.
//!
//! Tokens are 32 random bytes (base64url); a store keeps only their SHA-256, in memory
//! ([`MemoryRefreshStore`]) or in Redis (`RedisRefreshStore`, feature `redis`), shared by
//! every instance of the auth service.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mesh_core::auth::{Grant, MemoryRefreshStore, RefreshError, RefreshTokens};
//!
//! # async fn run() -> Result<(), RefreshError> {
//! let tokens = RefreshTokens::new(Arc::new(MemoryRefreshStore::new()), Duration::from_secs(86_400));
//! let first = tokens.start(Grant::new("ada", ["customer"])).await?;
//! let (second, grant) = tokens.rotate(&first).await?;
//! assert_eq!(grant.subject, "ada");
//! // The first token was used: presenting it again revokes the family, the second included.
//! assert_eq!(tokens.rotate(&first).await.unwrap_err(), RefreshError::Reused);
//! assert_eq!(tokens.rotate(&second).await.unwrap_err(), RefreshError::Invalid);
//! # Ok(()) }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::digest::{SHA256, digest};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryRefreshStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisRefreshStore;
use super::random_token;
use crate::error::{ErrorKind, MeshError};

/// What a refresh token grants: new access tokens for this subject with these roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The user.
    pub subject: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Grant {
    /// A grant for `subject` with `roles`.
    pub fn new<R: Into<String>>(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = R>,
    ) -> Self {
        Self {
            subject: subject.into(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, or of a revoked family.
    #[error("the refresh token is unknown, expired or revoked")]
    Invalid,
    /// Used before: its family is now revoked.
    #[error("the refresh token was used before; every token of its family is revoked")]
    Reused,
    /// The store could not be reached.
    #[error("the refresh token store is unavailable: {0}")]
    Unavailable(String),
}

impl From<RefreshError> for MeshError {
    fn from(error: RefreshError) -> Self {
        let kind = match error {
            RefreshError::Invalid | RefreshError::Reused => ErrorKind::Unauthorized,
            RefreshError::Unavailable(_) => ErrorKind::Unavailable,
        };
        MeshError::new(kind, error.to_string())
    }
}

/// A stored refresh token: its family, what it grants, when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The family: every token rotated from one login.
    pub family: String,
    /// What it grants.
    pub grant: Grant,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// A token taken for a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Never used before: this use is its one.
    Fresh(RefreshRecord),
    /// Used before.
    Used(RefreshRecord),
    /// Not in the store (never issued, or expired).
    Unknown,
}

/// The future of a [`RefreshStore`] operation.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, RefreshError>>;

/// Where refresh tokens are kept, by the SHA-256 of each (base64url). Every operation is
/// atomic on its own; the behaviour suite in this module's tests holds each implementation to
/// the same rules.
pub trait RefreshStore: Send + Sync + 'static {
    /// Keeps `record` under `hash` for `ttl`.
    fn insert<'a>(
        &'a self,
        hash: &'a str,
        record: &'a RefreshRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;
    /// The record under `hash`, marked used: whether it was already is decided atomically,
    /// so of two concurrent uses exactly one is [`Taken::Fresh`].
    fn take<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Taken>;
    /// The record under `hash`, without using it.
    fn get<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<RefreshRecord>>;
    /// Revokes `family` for `ttl` (the longest any of its tokens can live).
    fn revoke<'a>(&'a self, family: &'a str, ttl: Duration) -> StoreFuture<'a, ()>;
    /// Whether `family` is revoked.
    fn is_revoked<'a>(&'a self, family: &'a str) -> StoreFuture<'a, bool>;
}

/// Issues, rotates and revokes refresh tokens: each refreshes once and returns its successor;
/// a reused one revokes its family (see `docs/auth.md`). Clones share the store.
#[derive(Clone)]
pub struct RefreshTokens {
    store: Arc<dyn RefreshStore>,
    ttl: Duration,
}

impl RefreshTokens {
    /// Tokens kept in `store`, each valid for `ttl` unless used or revoked.
    pub fn new(store: Arc<dyn RefreshStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// The first token of a new family (a login).
    pub async fn start(&self, grant: Grant) -> Result<String, RefreshError> {
        let family = self.random_token()?;
        self.issue(family, grant).await
    }

    /// Uses `token`: its successor and what it grants. A token used before revokes its
    /// family ([`RefreshError::Reused`]).
    pub async fn rotate(&self, token: &str) -> Result<(String, Grant), RefreshError> {
        let record = match self.store.take(&hash(token)).await? {
            Taken::Unknown => return Err(RefreshError::Invalid),
            Taken::Used(record) => {
                self.store.revoke(&record.family, self.ttl).await?;
                tracing::warn!(
                    subject = %record.grant.subject,
                    "a refresh token was used twice; its family is revoked"
                );
                return Err(RefreshError::Reused);
            }
            Taken::Fresh(record) => record,
        };
        if record.expires_at <= now() || self.store.is_revoked(&record.family).await? {
            return Err(RefreshError::Invalid);
        }
        let grant = record.grant.clone();
        let next = self.issue(record.family, record.grant).await?;
        Ok((next, grant))
    }

    /// Revokes the family of `token` (a logout); an unknown token is no error.
    pub async fn revoke(&self, token: &str) -> Result<(), RefreshError> {
        if let Some(record) = self.store.get(&hash(token)).await? {
            self.store.revoke(&record.family, self.ttl).await?;
        }
        Ok(())
    }

    /// How long a token lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn issue(&self, family: String, grant: Grant) -> Result<String, RefreshError> {
        let token = self.random_token()?;
        let record = RefreshRecord {
            family,
            grant,
            expires_at: now() + self.ttl.as_secs(),
        };
        self.store.insert(&hash(&token), &record, self.ttl).await?;
        Ok(token)
    }

    fn random_token(&self) -> Result<String, RefreshError> {
        random_token(32).map_err(|e| RefreshError::Unavailable(e.to_string()))
    }
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The key a token is stored under: its SHA-256, base64url.
fn hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The rules every [`RefreshStore`] is held to, through [`RefreshTokens`].
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    pub(crate) async fn behaviour_suite(store: Arc<dyn RefreshStore>) {
        let tokens = RefreshTokens::new(store, Duration::from_secs(60));
        rotation_hands_on_the_grant(&tokens).await;
        reuse_revokes_the_family(&tokens).await;
        logout_revokes_the_family(&tokens).await;
        an_unknown_token_is_invalid(&tokens).await;
        concurrent_uses_are_a_reuse(&tokens).await;
    }

    async fn rotation_hands_on_the_grant(tokens: &RefreshTokens) {
        let first = tokens.start(Grant::new("ada", ["customer"])).await.unwrap();
        let (second, grant) = tokens.rotate(&first).await.unwrap();
        assert_eq!(grant, Grant::new("ada", ["customer"]));
        assert_ne!(first, second);
        let (_, grant) = tokens.rotate(&second).await.unwrap();
        assert_eq!(grant.subject, "ada");
    }

    async fn reuse_revokes_the_family(tokens: &RefreshTokens) {
        let first = tokens.start(Grant::new("ada", ["customer"])).await.unwrap();
        let (second, _) = tokens.rotate(&first).await.unwrap();
        // An attacker replays the first token: refused, and the family goes.
        assert_eq!(tokens.rotate(&first).await, Err(RefreshError::Reused));
        assert_eq!(tokens.rotate(&second).await, Err(RefreshError::Invalid));
        // Another login is its own family.
        let other = tokens.start(Grant::new("ada", ["customer"])).await.unwrap();
        assert!(tokens.rotate(&other).await.is_ok());
    }

    async fn logout_revokes_the_family(tokens: &RefreshTokens) {
        let first = tokens.start(Grant::new("bob", ["customer"])).await.unwrap();
        let (second, _) = tokens.rotate(&first).await.unwrap();
        tokens.revoke(&second).await.unwrap();
        assert_eq!(tokens.rotate(&second).await, Err(RefreshError::Invalid));
        tokens.revoke("never-issued").await.unwrap();
    }

    async fn an_unknown_token_is_invalid(tokens: &RefreshTokens) {
        assert_eq!(tokens.rotate("forged").await, Err(RefreshError::Invalid));
    }

    async fn concurrent_uses_are_a_reuse(tokens: &RefreshTokens) {
        let first = tokens.start(Grant::new("eve", ["customer"])).await.unwrap();
        let (a, b) = tokio::join!(tokens.rotate(&first), tokens.rotate(&first));
        // One use is the second: the family is revoked, whichever finished first.
        assert!(
            a == Err(RefreshError::Reused) || b == Err(RefreshError::Reused),
            "{a:?} {b:?}"
        );
        for successor in [a, b].into_iter().flatten() {
            assert_eq!(
                tokens.rotate(&successor.0).await,
                Err(RefreshError::Invalid)
            );
        }
    }
}
