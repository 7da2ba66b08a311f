//! Refresh tokens in Redis, shared by every instance of an auth service: a record per token
//! (`{prefix}token:{hash}`), its use marked with `SET … NX` (`{prefix}used:{hash}`, so of two
//! uses exactly one is first), revoked families as keys of their own
//! (`{prefix}revoked:{family}`), each with its TTL.

use std::time::Duration;

use redis::{AsyncCommands, Client, aio::ConnectionManager};
use tokio::sync::OnceCell;

use super::{RefreshError, RefreshRecord, RefreshStore, StoreFuture, Taken};

/// Refresh tokens in Redis; see [`RefreshStore`].
#[derive(Debug)]
pub struct RedisRefreshStore {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
}

impl RedisRefreshStore {
    /// A store for the Redis at `url`, keys prefixed `mesh:refresh:`.
    pub fn new(url: &str) -> Result<Self, RefreshError> {
        Ok(Self {
            client: Client::open(url).map_err(unavailable)?,
            connection: OnceCell::new(),
            prefix: "mesh:refresh:".into(),
        })
    }

    /// Prefixes every key with `prefix` instead.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    async fn connection(&self) -> Result<ConnectionManager, RefreshError> {
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager())
            .await
            .cloned()
            .map_err(unavailable)
    }

    async fn record(&self, hash: &str) -> Result<Option<(RefreshRecord, i64)>, RefreshError> {
        let mut connection = self.connection().await?;
        let key = format!("{}token:{hash}", self.prefix);
        let (json, ttl): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let record = serde_json::from_str(&json).map_err(|e| {
            RefreshError::Unavailable(format!("a stored record does not read: {e}"))
        })?;
        Ok(Some((record, ttl)))
    }
}

fn unavailable(error: redis::RedisError) -> RefreshError {
    RefreshError::Unavailable(error.to_string())
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RefreshStore for RedisRefreshStore {
    fn insert<'a>(
        &'a self,
        hash: &'a str,
        record: &'a RefreshRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let json = serde_json::to_string(record)
                .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
            connection
                .pset_ex::<_, _, ()>(format!("{}token:{hash}", self.prefix), json, millis(ttl))
                .await
                .map_err(unavailable)
        })
    }

    fn take<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Taken> {
        Box::pin(async move {
            let Some((record, ttl)) = self.record(hash).await? else {
                return Ok(Taken::Unknown);
            };
            let mut connection = self.connection().await?;
            let first: Option<String> = redis::cmd("SET")
                .arg(format!("{}used:{hash}", self.prefix))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.max(1))
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(if first.is_some() {
                Taken::Fresh(record)
            } else {
                Taken::Used(record)
            })
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<RefreshRecord>> {
        Box::pin(async move { Ok(self.record(hash).await?.map(|(record, _)| record)) })
    }

    fn revoke<'a>(&'a self, family: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            connection
                .pset_ex::<_, _, ()>(format!("{}revoked:{family}", self.prefix), 1, millis(ttl))
                .await
                .map_err(unavailable)
        })
    }

    fn is_revoked<'a>(&'a self, family: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            connection
                .exists(format!("{}revoked:{family}", self.prefix))
                .await
                .map_err(unavailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_redis_store_passes_the_behaviour_suite() {
        let Ok(url) = std::env::var("MESH_TEST_REDIS_URL") else {
            eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
            return;
        };
        let prefix = format!(
            "mesh-test:refresh:{}:{}:",
            std::process::id(),
            fastrand::u64(..)
        );
        let store = RedisRefreshStore::new(&url).unwrap().with_prefix(prefix);
        super::super::suite::behaviour_suite(Arc::new(store)).await;
    }
}
