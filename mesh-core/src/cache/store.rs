use std::{future::Future, pin::Pin, time::Duration};

use bytes::Bytes;

use super::CacheError;

/// The future a [`CacheStore`] answers with.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// Where a [`Cache`](super::Cache) keeps its entries: bytes under a key, each with a TTL.
pub trait CacheStore: std::fmt::Debug + Send + Sync + 'static {
    /// The bytes under `key`, unless absent or expired.
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<Bytes>>;
    /// Keeps `value` under `key` for `ttl`.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> CacheFuture<'a, ()>;
    /// Removes `key`; `true` when it was there.
    fn remove<'a>(&'a self, key: &'a str) -> CacheFuture<'a, bool>;
}
