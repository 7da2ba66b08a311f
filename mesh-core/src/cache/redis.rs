use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;

use super::{CacheError, CacheFuture, CacheStore};

/// Entries in Redis under `{prefix}{key}` with `PX` expiry, shared by every instance of a
/// service. Past Redis's memory, its own `maxmemory` policy evicts.
#[derive(Clone)]
pub struct RedisCacheStore {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCacheStore {
    /// Connects to the Redis at `url`; keys are `{prefix}{key}` (such as
    /// `mesh:cache:clients:42` with the prefix `mesh:cache:clients:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(CacheError::store)?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(CacheError::store)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl CacheStore for RedisCacheStore {
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let value: Option<Vec<u8>> = connection
                .get(self.key(key))
                .await
                .map_err(CacheError::store)?;
            Ok(value.map(Bytes::from))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            // Redis takes at most `i64::MAX` milliseconds.
            let millis = ttl.as_millis().clamp(1, i64::MAX as u128) as u64;
            connection
                .pset_ex::<_, _, ()>(self.key(key), value.as_ref(), millis)
                .await
                .map_err(CacheError::store)
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> CacheFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let removed: u64 = connection
                .del(self.key(key))
                .await
                .map_err(CacheError::store)?;
            Ok(removed > 0)
        })
    }
}
