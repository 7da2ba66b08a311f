//! A read-through cache for remote data, as the reference designs keep it in Redis: each
//! service caches the other services' entities it reads, and keeps them current with the
//! events those services publish.
//!
//! [`Cache::get_or_load`] answers from the store when it can and otherwise calls the loader
//! once per key however many callers miss at once (single flight), keeping what it found for
//! the TTL given, and a "not found" for the configured negative TTL. A loader's error is passed
//! to every caller that waited on it and is not kept. Entries leave by TTL, by
//! [`Cache::invalidate`], by a bus event ([`Cache::follow`]), or, in memory, past the size
//! bound. The store is in memory ([`MemoryCacheStore`], bounded) or Redis
//! ([`RedisCacheStore`], feature `redis`, shared by every instance); both pass one behaviour
//! suite. Hits, misses, loads and evictions are counted as
//! `mesh_cache_requests_total{cache, result}`, `mesh_cache_loads_total{cache, outcome}` and
//! `mesh_cache_evictions_total{cache, reason}`.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mesh_core::cache::{Cache, CacheConfig, MemoryCacheStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let clients: Cache<String> = Cache::new(
//!     "clients",
//!     Arc::new(MemoryCacheStore::new("clients", 10_000)),
//!     CacheConfig::default(),
//! );
//! let name = clients
//!     .get_or_load("42", Duration::from_secs(60), || async {
//!         Ok::<_, std::io::Error>(Some("Ada".to_owned())) // a call to the client service
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(name.as_deref(), Some("Ada"));
//! # }
//! ```

mod error;
mod memory;
mod read_through;
#[cfg(feature = "redis")]
mod redis;
mod store;

#[cfg(feature = "redis")]
pub use self::redis::RedisCacheStore;
pub use self::{
    error::CacheError,
    memory::MemoryCacheStore,
    read_through::{Cache, CacheConfig, Change},
    store::{CacheFuture, CacheStore},
};
