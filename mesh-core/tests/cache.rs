//! The read-through cache: one behaviour suite, run against the in-memory store and against
//! Redis, with invalidation by a real bus event (in memory, and RabbitMQ beside Redis).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mesh_core::{
    bus::{Bus, Event, EventType, MemoryBus, SubscriptionConfig},
    cache::{Cache, CacheConfig, CacheError, CacheStore, Change, MemoryCacheStore},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Client {
    id: String,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClientChanged {
    #[serde(rename = "clientId")]
    client_id: String,
    #[serde(rename = "clientName")]
    client_name: Option<String>,
}

impl EventType for ClientChanged {
    const TYPE: &'static str = "client.changed";
}

const TTL: Duration = Duration::from_secs(60);

#[cfg(feature = "redis")]
fn nonce() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn ada(id: &str) -> Client {
    Client {
        id: id.into(),
        name: "Ada".into(),
    }
}

/// A loader that counts its calls and answers `answer`.
#[derive(Clone, Default)]
struct Loads(Arc<AtomicUsize>);

impl Loads {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    async fn load<T>(&self, answer: Result<Option<T>, &'static str>) -> Result<Option<T>, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        answer.map_err(str::to_owned)
    }
}

/// The behaviour every cache store must show through a [`Cache`].
async fn suite(store: Arc<dyn CacheStore>, bus: Arc<dyn Bus>) {
    let cache: Cache<Client> = Cache::new("clients", store, CacheConfig::default());
    let loads = Loads::default();

    // A miss loads; the next read is a hit.
    let first = cache
        .get_or_load("1", TTL, || loads.load(Ok(Some(ada("1")))))
        .await
        .unwrap();
    assert_eq!(first, Some(ada("1")));
    let again = cache
        .get_or_load("1", TTL, || loads.load(Ok(Some(ada("other")))))
        .await
        .unwrap();
    assert_eq!(again, Some(ada("1")), "kept, not loaded again");
    assert_eq!(loads.count(), 1);

    // "Not found" is kept too (a negative entry).
    for _ in 0..3 {
        let absent = cache
            .get_or_load("missing", TTL, || loads.load(Ok(None)))
            .await
            .unwrap();
        assert_eq!(absent, None);
    }
    assert_eq!(loads.count(), 2, "the absent key was loaded once");

    // A failed load reaches its caller and is not kept.
    let failed = cache
        .get_or_load("2", TTL, || loads.load(Err("client-service is down")))
        .await;
    assert!(
        matches!(&failed, Err(CacheError::Load { key, message }) if key == "2" && message.contains("down")),
        "{failed:?}"
    );
    let recovered = cache
        .get_or_load("2", TTL, || loads.load(Ok(Some(ada("2")))))
        .await
        .unwrap();
    assert_eq!(recovered, Some(ada("2")));
    assert_eq!(loads.count(), 4);

    // Invalidation by key: the next read loads again.
    assert!(cache.invalidate("1").await.unwrap());
    assert!(!cache.invalidate("1").await.unwrap(), "already gone");
    cache
        .get_or_load("1", TTL, || loads.load(Ok(Some(ada("1")))))
        .await
        .unwrap();
    assert_eq!(loads.count(), 5);

    // Single flight: 100 callers missing one key at once cause one load.
    let single = Loads::default();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (cache, single) = (cache.clone(), single.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("crowd", TTL, || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        single.load(Ok(Some(ada("crowd")))).await
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), Some(ada("crowd")));
    }
    assert_eq!(single.count(), 1, "one load for 100 concurrent misses");

    // A load in flight when the key changes answers its callers, but does not store what it
    // found over the change.
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let slow = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("raced", TTL, || async move {
                    let _ = started.send(());
                    let _ = released.await;
                    Ok::<_, String>(Some(ada("before the change")))
                })
                .await
        })
    };
    has_started.await.unwrap();
    cache.put("raced", &ada("the change"), TTL).await.unwrap();
    release.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), Some(ada("before the change")));
    let now = cache
        .get_or_load("raced", TTL, || loads.load(Ok(None)))
        .await
        .unwrap();
    assert_eq!(now, Some(ada("the change")), "the change stands");

    // Invalidation and updates by bus events.
    let mut config = SubscriptionConfig::new("goal-service", "client-cache", ["client.*"]);
    config.transient = true;
    let _following = cache
        .follow(&*bus, config, |event| {
            let changed: ClientChanged = event.data().ok()?;
            Some(match changed.client_name {
                Some(name) => Change::Put(
                    changed.client_id.clone(),
                    Client {
                        id: changed.client_id,
                        name,
                    },
                    TTL,
                ),
                None => Change::Evict(changed.client_id),
            })
        })
        .await
        .unwrap();
    let deleted = ClientChanged {
        client_id: "1".into(),
        client_name: None,
    };
    bus.publish(Event::new("client-service", &deleted).unwrap())
        .await
        .unwrap();
    let reloads = Loads::default();
    for _ in 0..1000 {
        cache
            .get_or_load("1", TTL, || reloads.load(Ok(Some(ada("1")))))
            .await
            .unwrap();
        if reloads.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reloads.count(),
        1,
        "the event evicted the key: it loaded again"
    );
    let renamed = ClientChanged {
        client_id: "2".into(),
        client_name: Some("Grace".into()),
    };
    bus.publish(Event::new("client-service", &renamed).unwrap())
        .await
        .unwrap();
    let updates = Loads::default();
    let mut latest = None;
    for _ in 0..1000 {
        latest = cache
            .get_or_load("2", TTL, || updates.load(Ok(None)))
            .await
            .unwrap();
        if latest.as_ref().is_some_and(|client| client.name == "Grace") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(latest.unwrap().name, "Grace", "the event's value was put");
    assert_eq!(updates.count(), 0, "an update needs no load");
}

#[tokio::test]
async fn the_memory_store_passes_the_suite() {
    suite(
        Arc::new(MemoryCacheStore::new("clients", 1000)),
        Arc::new(MemoryBus::new()),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn memory_entries_expire_after_their_ttl_and_negative_ones_after_theirs() {
    let store = Arc::new(MemoryCacheStore::new("clients", 1000));
    let config = CacheConfig {
        negative_ttl: Duration::from_secs(5),
    };
    let cache: Cache<Client> = Cache::new("clients", store, config);
    let loads = Loads::default();
    let read = |key: &'static str, answer: Option<Client>| {
        let (cache, loads) = (cache.clone(), loads.clone());
        async move {
            cache
                .get_or_load(key, TTL, || loads.load(Ok(answer)))
                .await
                .unwrap()
        }
    };
    read("1", Some(ada("1"))).await;
    read("missing", None).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    read("1", Some(ada("1"))).await;
    assert_eq!(loads.count(), 2, "the value lives on");
    read("missing", None).await;
    assert_eq!(loads.count(), 3, "the negative entry expired");
    tokio::time::advance(TTL).await;
    read("1", Some(ada("1"))).await;
    assert_eq!(loads.count(), 4, "the value expired");
}

#[tokio::test(start_paused = true)]
async fn the_memory_store_keeps_within_its_bound() {
    let store = Arc::new(MemoryCacheStore::new("bounded", 3));
    let cache: Cache<Client> = Cache::new("bounded", store.clone(), CacheConfig::default());
    let loads = Loads::default();
    for key in ["a", "b", "c", "d"] {
        cache
            .get_or_load(key, TTL, || loads.load(Ok(Some(ada(key)))))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 3);
    cache
        .get_or_load("a", TTL, || loads.load(Ok(Some(ada("a")))))
        .await
        .unwrap();
    assert_eq!(loads.count(), 5, "the oldest written, `a`, was evicted");
    cache
        .get_or_load("d", TTL, || loads.load(Ok(Some(ada("d")))))
        .await
        .unwrap();
    assert_eq!(loads.count(), 5, "`d` stayed: `b` made room for `a`");
    // Expired entries make room before live ones are evicted.
    tokio::time::advance(TTL).await;
    cache
        .get_or_load("e", TTL, || loads.load(Ok(Some(ada("e")))))
        .await
        .unwrap();
    assert_eq!(store.len(), 1, "every expired entry was swept");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_store_passes_the_suite_with_rabbitmq_events() {
    use mesh_core::cache::RedisCacheStore;

    let Ok(url) = std::env::var("MESH_TEST_REDIS_URL") else {
        eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
        return;
    };
    let prefix = format!("mesh-test:cache:{}:", nonce());
    let store = RedisCacheStore::connect(&url, &prefix).await.unwrap();
    let bus: Arc<dyn Bus> = match std::env::var("MESH_TEST_AMQP_URL") {
        #[cfg(feature = "amqp")]
        Ok(amqp) => Arc::new(
            mesh_core::bus::AmqpBus::connect(&amqp)
                .await
                .unwrap()
                .with_exchange(&format!("mesh.test.cache.{}", nonce()))
                .await
                .unwrap(),
        ),
        _ => Arc::new(MemoryBus::new()),
    };
    suite(Arc::new(store.clone()), bus).await;

    // Entries carry their TTL in Redis.
    let cache: Cache<Client> = Cache::new("clients", Arc::new(store), CacheConfig::default());
    cache
        .get_or_load("ttl", Duration::from_secs(30), || async {
            Ok::<_, String>(Some(ada("ttl")))
        })
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}ttl"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((1..=30_000).contains(&pttl), "{pttl}");
}
