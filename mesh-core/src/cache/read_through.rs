use std::{
    collections::HashMap,
    future::Future,
    marker::PhantomData,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use metrics::Counter;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;

use super::{CacheError, CacheStore};
use crate::{
    bus::{Bus, BusError, Event, Subscription, SubscriptionConfig},
    error::BoxError,
};

/// How a [`Cache`] keeps what its loader found absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long "not found" is kept (a negative entry), so a missing key does not reach the
    /// loader on every call; zero keeps nothing.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    /// Keeps "not found" for 30 s.
    fn default() -> Self {
        Self {
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// What a bus event does to a cache: see [`Cache::follow`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change<V> {
    /// Removes the key: the next read loads it again.
    Evict(String),
    /// Keeps the value the event carries under the key, for the TTL.
    Put(String, V, Duration),
}

/// A read-through cache of `V` values by key; see the [module](super). Clones share the
/// store and the loads in flight.
pub struct Cache<V> {
    inner: Arc<Inner>,
    _values: PhantomData<fn() -> V>,
}

struct Inner {
    name: Arc<str>,
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    /// The loads in flight, by key: callers that miss the same key wait on one load.
    flights: Mutex<HashMap<String, Flight>>,
    /// Counts the changes made by [`Cache::invalidate`] and [`Cache::put`]: a load that
    /// started before one keeps what it found only for its own callers, so it cannot write a
    /// value older than the change back. Changes take it for writing, loads for reading while
    /// they store.
    changes: tokio::sync::RwLock<u64>,
    counters: Counters,
}

/// Takes a flight out of the map when the last caller waiting on it is done, whether it
/// finished or was cancelled.
struct Boarded<'a> {
    flights: &'a Mutex<HashMap<String, Flight>>,
    key: &'a str,
    flight: Flight,
}

impl Drop for Boarded<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and this caller's: nobody else waits on it.
        if flights
            .get(self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.flight))
            && Arc::strong_count(&self.flight) <= 2
        {
            flights.remove(self.key);
        }
    }
}

/// One load and its outcome as stored: the entry bytes, or the loader's error.
type Flight = Arc<OnceCell<Result<Bytes, CacheError>>>;

struct Counters {
    hits: Counter,
    misses: Counter,
    found: Counter,
    absent: Counter,
    failed: Counter,
    invalidated: Counter,
    store_errors: Counter,
}

impl Counters {
    fn new(name: &str) -> Self {
        let requests = |result: &'static str| metrics::counter!("mesh_cache_requests_total", "cache" => name.to_owned(), "result" => result);
        let loads = |outcome: &'static str| metrics::counter!("mesh_cache_loads_total", "cache" => name.to_owned(), "outcome" => outcome);
        Self {
            hits: requests("hit"),
            misses: requests("miss"),
            found: loads("found"),
            absent: loads("absent"),
            failed: loads("failed"),
            invalidated: metrics::counter!(
                "mesh_cache_evictions_total",
                "cache" => name.to_owned(),
                "reason" => "invalidated",
            ),
            store_errors: metrics::counter!(
                "mesh_cache_store_errors_total",
                "cache" => name.to_owned(),
            ),
        }
    }
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _values: PhantomData,
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// The first byte of an entry: a value follows, or the key was found absent.
const PRESENT: u8 = b'1';
const ABSENT: u8 = b'0';

impl<V> Cache<V>
where
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// A cache named `name` (the metrics' `cache` label) keeping its entries in `store`.
    pub fn new(name: &str, store: Arc<dyn CacheStore>, config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                store,
                config,
                flights: Mutex::default(),
                changes: tokio::sync::RwLock::new(0),
                counters: Counters::new(name),
            }),
            _values: PhantomData,
        }
    }

    /// The value under `key`: from the store when it holds one, else from `load`, which is
    /// called once however many callers miss `key` at once and whose answer is kept for `ttl`
    /// (`None`, "not found", for the negative TTL). A store that fails is treated as a miss:
    /// the value is loaded, and the failure counted.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<Option<V>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        let inner = &self.inner;
        match inner.store.get(key).await {
            Ok(Some(entry)) => {
                if let Some(value) = Self::decode(&entry) {
                    inner.counters.hits.increment(1);
                    return Ok(value);
                }
            }
            Ok(None) => {}
            Err(error) => self.store_failed(&error),
        }
        inner.counters.misses.increment(1);
        let changes_before = *inner.changes.read().await;
        let flight = inner
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let boarded = Boarded {
            flights: &inner.flights,
            key,
            flight,
        };
        let entry = boarded
            .flight
            .get_or_init(|| async {
                // A load that finished between this caller's miss and its flight left its
                // entry: the store is asked once more before loading again.
                if let Ok(Some(entry)) = inner.store.get(key).await
                    && Self::decode(&entry).is_some()
                {
                    return Ok(entry);
                }
                let entry = match load().await {
                    Ok(Some(value)) => {
                        inner.counters.found.increment(1);
                        Self::encode(Some(&value), key)?
                    }
                    Ok(None) => {
                        inner.counters.absent.increment(1);
                        Self::encode(None, key)?
                    }
                    Err(error) => {
                        inner.counters.failed.increment(1);
                        return Err(CacheError::Load {
                            key: key.to_owned(),
                            message: error.into().to_string().into(),
                        });
                    }
                };
                let keep = if entry[0] == PRESENT {
                    ttl
                } else {
                    inner.config.negative_ttl
                };
                let changes = inner.changes.read().await;
                if !keep.is_zero()
                    && *changes == changes_before
                    && let Err(error) = inner.store.set(key, entry.clone(), keep).await
                {
                    self.store_failed(&error);
                }
                Ok(entry)
            })
            .await
            .clone();
        drop(boarded);
        let entry = entry?;
        Self::decode(&entry).ok_or_else(|| CacheError::Load {
            key: key.to_owned(),
            message: "the loaded value does not read back".into(),
        })
    }

    /// Removes `key`: the next read loads it again. A load in flight answers its callers but
    /// does not store what it found.
    pub async fn invalidate(&self, key: &str) -> Result<bool, CacheError> {
        let mut changes = self.inner.changes.write().await;
        *changes += 1;
        let removed = self.inner.store.remove(key).await?;
        if removed {
            self.inner.counters.invalidated.increment(1);
        }
        Ok(removed)
    }

    /// Keeps `value` under `key` for `ttl`, as a load would have (a zero `ttl` removes the
    /// key). A load in flight answers its callers but does not store what it found.
    pub async fn put(&self, key: &str, value: &V, ttl: Duration) -> Result<(), CacheError> {
        let entry = Self::encode(Some(value), key)?;
        let mut changes = self.inner.changes.write().await;
        *changes += 1;
        if ttl.is_zero() {
            self.inner.store.remove(key).await.map(drop)
        } else {
            self.inner.store.set(key, entry, ttl).await
        }
    }

    /// Keeps the cache current with the events on `bus` that `config` subscribes to: `change`
    /// tells what each event does (evict a key, put the value it carries, or nothing). A
    /// change the store cannot make fails the event's handling, so the bus retries it.
    pub async fn follow<F>(
        &self,
        bus: &dyn Bus,
        config: SubscriptionConfig,
        change: F,
    ) -> Result<Subscription, BusError>
    where
        F: Fn(&Event) -> Option<Change<V>> + Send + Sync + 'static,
        V: Sync,
    {
        let cache = self.clone();
        let change = Arc::new(change);
        let handler = move |event: Event| {
            let (cache, change) = (cache.clone(), change.clone());
            async move {
                match change(&event) {
                    Some(Change::Evict(key)) => {
                        cache.invalidate(&key).await?;
                    }
                    Some(Change::Put(key, value, ttl)) => cache.put(&key, &value, ttl).await?,
                    None => {}
                }
                Ok::<(), BoxError>(())
            }
        };
        bus.subscribe(config, Arc::new(handler)).await
    }

    fn store_failed(&self, error: &CacheError) {
        self.inner.counters.store_errors.increment(1);
        tracing::warn!(cache = %self.inner.name, %error, "cache store failed; loading instead");
    }

    fn encode(value: Option<&V>, key: &str) -> Result<Bytes, CacheError> {
        let Some(value) = value else {
            return Ok(Bytes::from_static(&[ABSENT]));
        };
        let mut entry = BytesMut::new().writer();
        entry.get_mut().put_u8(PRESENT);
        serde_json::to_writer(&mut entry, value).map_err(|error| CacheError::Load {
            key: key.to_owned(),
            message: format!("the value does not serialize: {error}").into(),
        })?;
        Ok(entry.into_inner().freeze())
    }

    /// The value an entry holds (`Some(None)` for "not found"); `None` for an entry this
    /// cache cannot read (another version's), which is then loaded again.
    fn decode(entry: &[u8]) -> Option<Option<V>> {
        match entry.split_first()? {
            (&ABSENT, []) => Some(None),
            (&PRESENT, json) => serde_json::from_slice(json).ok().map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::cache::MemoryCacheStore;

    #[tokio::test]
    async fn a_cancelled_load_leaves_no_flight_behind() {
        let store = Arc::new(MemoryCacheStore::new("cancelled", 10));
        let cache: Cache<String> = Cache::new("cancelled", store, CacheConfig::default());
        let stuck = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let never = || std::future::pending::<Result<Option<String>, String>>();
                cache.get_or_load("k", Duration::from_secs(1), never).await
            })
        };
        while cache.inner.flights.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        let _ = stuck.await;
        assert!(cache.inner.flights.lock().unwrap().is_empty());
        let loaded = cache
            .get_or_load("k", Duration::from_secs(1), || async {
                Ok::<_, String>(Some("v".to_owned()))
            })
            .await
            .unwrap();
        assert_eq!(loaded.as_deref(), Some("v"));
        assert!(cache.inner.flights.lock().unwrap().is_empty());
    }

    #[test]
    fn hits_misses_loads_and_evictions_are_counted() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            tokio_test::block_on(async {
                let store = Arc::new(MemoryCacheStore::new("counted", 1));
                let cache: Cache<String> = Cache::new("counted", store, CacheConfig::default());
                let ttl = Duration::from_secs(60);
                let found = || async { Ok::<_, String>(Some("value".to_owned())) };
                cache.get_or_load("a", ttl, found).await.unwrap();
                cache.get_or_load("a", ttl, found).await.unwrap();
                // `b` takes the one place: `a` is evicted.
                let absent = || async { Ok::<Option<String>, String>(None) };
                cache.get_or_load("b", ttl, absent).await.unwrap();
                let failed = || async { Err::<Option<String>, String>("down".into()) };
                cache.get_or_load("c", ttl, failed).await.unwrap_err();
                cache.invalidate("b").await.unwrap();
            });
        });
        let counts: BTreeMap<String, u64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let DebugValue::Counter(count) = value else {
                    return None;
                };
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .filter(|label| label.key() != "cache")
                    .map(|label| label.value().to_owned())
                    .collect();
                Some((format!("{} {}", key.name(), labels.join(",")), count))
            })
            .collect();
        let count = |name: &str| counts.get(name).copied().unwrap_or_default();
        assert_eq!(count("mesh_cache_requests_total hit"), 1, "{counts:?}");
        assert_eq!(count("mesh_cache_requests_total miss"), 3);
        assert_eq!(count("mesh_cache_loads_total found"), 1);
        assert_eq!(count("mesh_cache_loads_total absent"), 1);
        assert_eq!(count("mesh_cache_loads_total failed"), 1);
        assert_eq!(count("mesh_cache_evictions_total size"), 1);
        assert_eq!(count("mesh_cache_evictions_total invalidated"), 1);
    }
}
