//! Verified tokens, remembered until they expire so a repeated token skips the signature
//! check: in memory, and optionally in Redis, where every gateway replica shares them.

#[cfg(feature = "redis")]
use std::{collections::BTreeMap, time::Duration};
use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use foldhash::fast::RandomState;
use http::HeaderValue;
use mesh_core::{auth::Identity, context::Subject};

use crate::headers::encode_roles;
#[cfg(feature = "redis")]
use serde::{Deserialize, Serialize};

/// How long Redis has to answer before the cache is skipped (the token is then verified).
#[cfg(feature = "redis")]
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// A bounded in-memory cache of verified tokens, over an optional shared Redis one.
///
/// Only verified tokens are kept, so the keys are not the caller's to choose: a fast seeded
/// hash (foldhash) serves instead of SipHash.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: DashMap<Box<str>, (Arc<Verified>, u64), RandomState>,
    capacity: usize,
    #[cfg(feature = "redis")]
    shared: Option<Shared>,
}

/// The Redis side: keys are the token's SHA-256, so Redis never holds a usable token.
#[cfg(feature = "redis")]
#[derive(Debug)]
struct Shared {
    client: redis::Client,
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    prefix: String,
}

/// A verified token's identity, with the headers that carry it upstream built once.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) identity: Identity,
    /// The rate limiter's key when it counts per user.
    pub(crate) subject: Subject,
    /// `x-mesh-user` (none when the subject cannot be a header value).
    pub(crate) user: Option<HeaderValue>,
    /// `x-mesh-roles`, as [`encode_roles`] writes it.
    pub(crate) roles: Option<HeaderValue>,
}

impl Verified {
    pub(crate) fn new(identity: Identity) -> Arc<Self> {
        Arc::new(Self {
            user: HeaderValue::try_from(identity.subject.as_str()).ok(),
            roles: HeaderValue::try_from(encode_roles(&identity.roles)).ok(),
            subject: Subject(identity.subject.as_str().into()),
            identity,
        })
    }
}

/// What Redis keeps of a verified token.
#[cfg(feature = "redis")]
#[derive(Serialize, Deserialize)]
struct Stored {
    subject: String,
    roles: Vec<String>,
    claims: BTreeMap<String, serde_json::Value>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::with_hasher(RandomState::default()),
            capacity,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Shares verified tokens through the Redis at `url`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_redis(mut self, url: &str) -> Result<Self, redis::RedisError> {
        self.shared = Some(Shared {
            client: redis::Client::open(url)?,
            connection: tokio::sync::OnceCell::new(),
            prefix: "mesh:gw:token:".into(),
        });
        Ok(self)
    }

    /// The identity of a token verified before (here or, with Redis, by any replica) and not
    /// expired since.
    pub(crate) async fn get(&self, token: &str) -> Option<Arc<Verified>> {
        if let Some(verified) = self.cached(token) {
            return Some(verified);
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            // Boxed, as below: the Redis call stays out of every request's future.
            let verified = Verified::new(Box::pin(shared.get(token)).await?);
            self.remember(token, &verified);
            return Some(verified);
        }
        None
    }

    /// Remembers a verified token until its `exp`.
    pub(crate) async fn put(&self, token: &str, verified: &Arc<Verified>) {
        self.remember(token, verified);
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            Box::pin(shared.put(token, &verified.identity)).await;
        }
    }

    /// The identity of a token verified before and remembered here (not in Redis), when not
    /// expired since.
    pub(crate) fn cached(&self, token: &str) -> Option<Arc<Verified>> {
        let (verified, exp) = {
            let entry = self.entries.get(token)?;
            let (verified, exp) = entry.value();
            (verified.clone(), *exp)
        };
        if exp > now() {
            return Some(verified);
        }
        self.entries.remove(token);
        None
    }

    /// When full, expired entries go first; if none has expired the token is simply not
    /// remembered here.
    fn remember(&self, token: &str, verified: &Arc<Verified>) {
        let Some(exp) = expiry(&verified.identity) else {
            return;
        };
        if self.entries.len() >= self.capacity {
            let now = now();
            self.entries.retain(|_, (_, exp)| *exp > now);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(token.into(), (verified.clone(), exp));
    }
}

fn expiry(identity: &Identity) -> Option<u64> {
    identity.claims.get("exp").and_then(|e| e.as_u64())
}

#[cfg(feature = "redis")]
impl Shared {
    fn key(&self, token: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{hex}", self.prefix)
    }

    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .inspect_err(|error| tracing::warn!(%error, "token cache: Redis unreachable"))
            .ok()
            .cloned()
    }

    async fn get(&self, token: &str) -> Option<Identity> {
        let mut connection = self.connection().await?;
        let value: Option<String> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GET")
                .arg(self.key(token))
                .query_async(&mut connection),
        )
        .await
        .ok()?
        .ok()?;
        let stored: Stored = serde_json::from_str(&value?).ok()?;
        let identity = Identity {
            subject: stored.subject,
            roles: stored.roles,
            claims: stored.claims,
        };
        (expiry(&identity)? > now()).then_some(identity)
    }

    async fn put(&self, token: &str, identity: &Identity) {
        let Some(ttl) = expiry(identity).and_then(|exp| exp.checked_sub(now())) else {
            return;
        };
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let stored = Stored {
            subject: identity.subject.clone(),
            roles: identity.roles.clone(),
            claims: identity.claims.clone(),
        };
        let Ok(value) = serde_json::to_string(&stored) else {
            return;
        };
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(token))
            .arg(value)
            .arg("EX")
            .arg(ttl.max(1));
        let set = command.query_async::<()>(&mut connection);
        if let Ok(Err(error)) = tokio::time::timeout(REDIS_TIMEOUT, set).await {
            tracing::debug!(%error, "token cache: Redis write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(exp: u64) -> Arc<Verified> {
        Verified::new(Identity {
            subject: "alice".into(),
            roles: vec!["reader".into(), "writer".into()],
            claims: [("exp".to_owned(), serde_json::json!(exp))].into(),
        })
    }

    #[tokio::test]
    async fn remembers_until_expiry_and_within_capacity() {
        let cache = TokenCache::new(2);
        cache.put("a", &identity(now() + 60)).await;
        cache.put("b", &identity(now() - 1)).await;
        let hit = cache.get("a").await.unwrap();
        assert_eq!(hit.identity.subject, "alice");
        assert_eq!(hit.user.as_ref().unwrap(), "alice");
        assert_eq!(hit.roles.as_ref().unwrap(), "reader,writer");
        assert!(cache.get("b").await.is_none(), "expired");
        cache.put("c", &identity(now() + 60)).await;
        cache.put("d", &identity(now() + 60)).await;
        assert!(
            cache.get("d").await.is_none(),
            "full of live tokens: not remembered"
        );
        assert!(cache.get("c").await.is_some());
    }
}
