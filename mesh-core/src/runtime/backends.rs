//! The backends a service's configuration names: the event bus (`bus.url`) and Redis
//! (`redis.url`, for refresh tokens, dedupe and caches), connected on first use and shared by the service, so the same code runs on
//! the embedded defaults and on RabbitMQ and Redis without a change.

use std::{fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;

use super::Mesh;
use crate::{
    auth::{MemoryRefreshStore, RefreshStore},
    bus::{Bus, BusSettings, DedupeStore},
    cache::{Cache, CacheConfig, CacheStore, MemoryCacheStore},
    error::MeshError,
};

/// The most entries a cache of [`Mesh::cache`] holds in memory.
pub const MEMORY_CACHE_ENTRIES: usize = 10_000;

/// The `redis` section of the configuration: the Redis that a service's shared state lives
/// in, when it has one.
///
/// ```yaml
/// redis:
///   url: redis://127.0.0.1:6379   # MESH_REDIS_URL; unset: state in this process's memory
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// The Redis URL (`redis://host:port/db`).
    pub url: Option<String>,
}

/// What the service connected, once.
#[derive(Default)]
pub(super) struct Backends {
    bus: OnceCell<Arc<dyn Bus>>,
    refresh: OnceCell<Arc<dyn RefreshStore>>,
}

impl Backends {
    /// Backends whose bus is `bus`.
    pub(super) fn with_bus(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus: OnceCell::new_with(Some(bus)),
            refresh: OnceCell::new(),
        }
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("bus", &self.bus.initialized())
            .field("refresh", &self.refresh.initialized())
            .finish()
    }
}

impl Mesh {
    /// The event bus `bus.url` names — the in-process bus by default (`memory`), RabbitMQ for
    /// an `amqp://` URL — connected on the first call and shared by every later one (or the
    /// bus given to [`MeshBuilder::bus`](super::MeshBuilder::bus)). Handled
    /// events are remembered in Redis when `redis.url` is set (so a service's instances share
    /// dedupe), in memory otherwise.
    ///
    /// ```no_run
    /// # async fn run(mesh: mesh_core::Mesh) -> Result<(), mesh_core::MeshError> {
    /// use mesh_core::bus::Event;
    /// let bus = mesh.bus().await?;
    /// # let event: Event = todo!();
    /// bus.publish(event).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bus(&self) -> Result<Arc<dyn Bus>, MeshError> {
        let backends = &self.inner.backends;
        backends
            .bus
            .get_or_try_init(|| async {
                let settings: BusSettings = self.config().snapshot().section("bus")?;
                let dedupe = self.dedupe_store(settings.dedupe_retention).await?;
                let bus = settings.connect(dedupe).await?;
                tracing::info!(
                    service = %self.name(),
                    backend = if settings.is_memory() { "memory" } else { "amqp" },
                    "event bus connected"
                );
                Ok::<_, MeshError>(bus)
            })
            .await
            .cloned()
    }

    /// `redis.url`, when the configuration sets it.
    pub fn redis_url(&self) -> Result<Option<String>, MeshError> {
        let settings: RedisSettings = self.config().snapshot().section("redis")?;
        Ok(settings.url.filter(|url| !url.is_empty()))
    }

    /// Where refresh tokens live: Redis when `redis.url` is set (every instance of the auth
    /// service sees the same tokens), this process's memory otherwise. Shared by every call.
    pub fn refresh_store(&self) -> Result<Arc<dyn RefreshStore>, MeshError> {
        let backends = &self.inner.backends;
        if let Some(store) = backends.refresh.get() {
            return Ok(store.clone());
        }
        let store: Arc<dyn RefreshStore> = match self.redis_url()? {
            None => Arc::new(MemoryRefreshStore::new()),
            Some(url) => redis_refresh_store(&url)?,
        };
        // Another caller may have set it meanwhile: theirs is kept.
        let _ = backends.refresh.set(store);
        Ok(backends
            .refresh
            .get()
            .cloned()
            .unwrap_or_else(|| unreachable!()))
    }

    /// The read-through cache `name` of this service: in Redis when `redis.url` is set (its
    /// keys under `{namespace}:{service}.{name}:`, so that services and deployments sharing a
    /// Redis keep apart), in this process's memory otherwise (at most
    /// [`MEMORY_CACHE_ENTRIES`] entries). Its metrics are labelled `{service}.{name}`. Each
    /// call makes a new cache (its own Redis connection, or its own memory): make one per cache
    /// at start and clone it.
    ///
    /// ```no_run
    /// # async fn run(mesh: mesh_core::Mesh) -> Result<(), mesh_core::MeshError> {
    /// let profiles = mesh.cache::<String>("marketplace", "profiles").await?;
    /// # Ok(()) }
    /// ```
    pub async fn cache<V>(&self, namespace: &str, name: &str) -> Result<Cache<V>, MeshError>
    where
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let label = format!("{}.{name}", self.name());
        let store: Arc<dyn CacheStore> = match self.redis_url()? {
            Some(url) => redis_cache(&url, &format!("{namespace}:{label}:")).await?,
            None => Arc::new(MemoryCacheStore::new(&label, MEMORY_CACHE_ENTRIES)),
        };
        Ok(Cache::new(&label, store, CacheConfig::default()))
    }

    async fn dedupe_store(
        &self,
        retention: Duration,
    ) -> Result<Option<Arc<dyn DedupeStore>>, MeshError> {
        match self.redis_url()? {
            None => Ok(None),
            Some(url) => redis_dedupe(&url, &format!("mesh:dedupe:{}:", self.name()), retention)
                .await
                .map(Some),
        }
    }
}

#[cfg(feature = "redis")]
fn redis_refresh_store(url: &str) -> Result<Arc<dyn RefreshStore>, MeshError> {
    Ok(Arc::new(crate::auth::RedisRefreshStore::new(url)?))
}

#[cfg(feature = "redis")]
async fn redis_dedupe(
    url: &str,
    prefix: &str,
    retention: Duration,
) -> Result<Arc<dyn DedupeStore>, MeshError> {
    Ok(Arc::new(
        crate::bus::RedisDedupe::connect(url, prefix, retention).await?,
    ))
}

#[cfg(feature = "redis")]
async fn redis_cache(url: &str, prefix: &str) -> Result<Arc<dyn CacheStore>, MeshError> {
    let store = crate::cache::RedisCacheStore::connect(url, prefix)
        .await
        .map_err(|e| MeshError::new(crate::error::ErrorKind::Unavailable, e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn redis_cache(_: &str, _: &str) -> Result<Arc<dyn CacheStore>, MeshError> {
    Err(without_redis())
}

#[cfg(not(feature = "redis"))]
fn redis_refresh_store(_: &str) -> Result<Arc<dyn RefreshStore>, MeshError> {
    Err(without_redis())
}

#[cfg(not(feature = "redis"))]
async fn redis_dedupe(_: &str, _: &str, _: Duration) -> Result<Arc<dyn DedupeStore>, MeshError> {
    Err(without_redis())
}

#[cfg(not(feature = "redis"))]
fn without_redis() -> MeshError {
    MeshError::new(
        crate::error::ErrorKind::Config,
        "redis.url is set, but mesh was built without its `redis` feature",
    )
}
