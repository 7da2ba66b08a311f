//! Each service's cache: in Redis when the service's configuration names one (`redis.url`,
//! `MESH_REDIS_URL`), in memory otherwise.

use std::sync::Arc;

use mesh::{
    Mesh, MeshError,
    cache::{Cache, CacheConfig, CacheStore, MemoryCacheStore, RedisCacheStore},
    error::ErrorKind,
};
use serde::{Serialize, de::DeserializeOwned};

/// The most entries an in-memory cache holds.
const MAX_ENTRIES: usize = 10_000;

/// The cache `name` of `service`; in Redis its keys start with `{namespace}:{service}.{name}:`.
pub async fn cache<V>(
    mesh: &Mesh,
    namespace: &str,
    service: &str,
    name: &str,
) -> Result<Cache<V>, MeshError>
where
    V: Serialize + DeserializeOwned + Send + 'static,
{
    let label = format!("{service}.{name}");
    let store: Arc<dyn CacheStore> = match mesh.redis_url()? {
        Some(url) => {
            let prefix = format!("{namespace}:{label}:");
            Arc::new(
                RedisCacheStore::connect(&url, &prefix)
                    .await
                    .map_err(|e| MeshError::new(ErrorKind::Unavailable, e.to_string()))?,
            )
        }
        None => Arc::new(MemoryCacheStore::new(&label, MAX_ENTRIES)),
    };
    Ok(Cache::new(&label, store, CacheConfig::default()))
}
