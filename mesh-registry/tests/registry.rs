//! The registry's behaviour: leases, eviction, self-preservation, overrides and watches.

use std::{future::Future, sync::Arc, time::Duration};

use mesh_core::{
    discovery::{Instance, InstanceStatus, ServiceId},
    error::{ErrorKind, MeshError},
    registry::{RegistryApi, RegistryFuture},
};
use mesh_registry::{
    LeaseRequest, Registry, RegistryConfig, WatchAnswer,
    model::{Action, Cursor},
    store::{MemoryStore, Store},
};

fn lease(renew_secs: u64, duration_secs: u64) -> LeaseRequest {
    LeaseRequest {
        renewal_interval: Some(Duration::from_secs(renew_secs)),
        duration: Some(Duration::from_secs(duration_secs)),
    }
}

fn instance(n: usize) -> Instance {
    Instance::new("inventory", format!("10.0.0.{n}"), 8080)
}

fn inventory() -> ServiceId {
    ServiceId::new("inventory")
}

/// The cursor of a watcher that applied `revision` of `registry`'s current history.
fn at(registry: &Registry, revision: u64) -> Option<Cursor> {
    Some(Cursor {
        epoch: registry.epoch(),
        revision,
    })
}

async fn ids(registry: &Registry) -> Vec<String> {
    let snapshot = registry.snapshot().await.unwrap();
    snapshot
        .registrations
        .iter()
        .map(|r| r.instance.id.clone())
        .collect()
}

/// The behaviour every store must show, through the registry. `pass` lets a second go by:
/// on tokio's paused clock for the in-memory store, on the real one for Redis (whose I/O does
/// not mix with a paused clock).
async fn lease_suite<F: Future<Output = ()>>(store: Arc<dyn Store>, pass: impl Fn() -> F) {
    let registry = Registry::with_store(RegistryConfig::default(), store);
    let a = instance(1);
    let b = instance(2);
    registry
        .register(a.clone(), lease(1, 3), None)
        .await
        .unwrap();
    registry
        .register(b.clone(), lease(1, 3), None)
        .await
        .unwrap();

    // a renews, b does not: after the lease only a remains.
    for _ in 0..4 {
        pass().await;
        assert!(registry.renew(&inventory(), &a.id).await.unwrap());
        registry.evict().await.unwrap();
    }
    assert_eq!(ids(&registry).await, std::slice::from_ref(&a.id));
    assert!(
        !registry.renew(&inventory(), &b.id).await.unwrap(),
        "an evicted instance is told to register again"
    );

    // Cancelling removes at once; cancelling twice says it was unknown.
    assert!(registry.cancel(&inventory(), &a.id).await.unwrap());
    assert!(!registry.cancel(&inventory(), &a.id).await.unwrap());
    assert!(ids(&registry).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_memory_store_passes_the_lease_suite() {
    lease_suite(Arc::new(MemoryStore::new()), || {
        tokio::time::advance(Duration::from_secs(1))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_lasts_exactly_its_duration() {
    let registry = Registry::new(RegistryConfig::default());
    registry
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(
        registry.evict().await.unwrap().is_empty(),
        "not before the lease ends"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let evicted = registry.evict().await.unwrap();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].action, Action::Deleted);
    assert_eq!(
        registry
            .counters()
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn self_preservation_stops_eviction_when_most_renewals_stop_and_resumes_after() {
    let mut config = RegistryConfig::default();
    config.self_preservation.window = Duration::from_secs(60);
    config.self_preservation.min_instances = 5;
    let registry = Registry::new(config);
    let pool: Vec<Instance> = (1..=6).map(instance).collect();
    for i in &pool {
        registry
            .register(i.clone(), lease(5, 15), None)
            .await
            .unwrap();
    }
    let renew = |ids: Vec<String>| {
        let registry = &registry;
        async move {
            for id in ids {
                registry.renew(&inventory(), &id).await.unwrap();
            }
        }
    };
    let all: Vec<String> = pool.iter().map(|i| i.id.clone()).collect();
    // A healthy minute.
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(5)).await;
        renew(all.clone()).await;
        registry.evict().await.unwrap();
    }
    assert!(!registry.is_self_preserving());

    // A partition: only one of six keeps renewing.
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(5)).await;
        renew(all[..1].to_vec()).await;
        registry.evict().await.unwrap();
    }
    assert!(registry.is_self_preserving());
    assert_eq!(
        ids(&registry).await.len(),
        6,
        "nobody is evicted while preserving"
    );

    // The partition heals: renewals recover, self-preservation ends.
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(5)).await;
        renew(all.clone()).await;
        registry.evict().await.unwrap();
    }
    assert!(!registry.is_self_preserving());
    assert_eq!(ids(&registry).await.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn small_pools_evict_dead_instances_without_self_preservation() {
    let registry = Registry::new(RegistryConfig::default());
    let pool: Vec<Instance> = (1..=3).map(instance).collect();
    for i in &pool {
        registry
            .register(i.clone(), lease(5, 15), None)
            .await
            .unwrap();
    }
    for _ in 0..24 {
        tokio::time::advance(Duration::from_secs(5)).await;
        for i in &pool[..2] {
            registry.renew(&inventory(), &i.id).await.unwrap();
        }
        registry.evict().await.unwrap();
    }
    assert!(!registry.is_self_preserving());
    assert_eq!(ids(&registry).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn status_overrides_win_and_survive_re_registration() {
    let registry = Registry::new(RegistryConfig::default());
    let a = instance(1);
    registry
        .register(a.clone(), lease(5, 15), None)
        .await
        .unwrap();
    assert!(
        registry
            .override_status(&inventory(), &a.id, Some(InstanceStatus::OutOfService))
            .await
            .unwrap()
    );
    async fn visible(registry: &Registry) -> InstanceStatus {
        registry.snapshot().await.unwrap().registrations[0]
            .visible_instance()
            .status
    }
    assert_eq!(visible(&registry).await, InstanceStatus::OutOfService);
    registry
        .register(a.clone(), lease(5, 15), None)
        .await
        .unwrap();
    assert_eq!(visible(&registry).await, InstanceStatus::OutOfService);
    registry
        .override_status(&inventory(), &a.id, None)
        .await
        .unwrap();
    assert_eq!(visible(&registry).await, InstanceStatus::Up);
    assert!(
        !registry
            .override_status(&inventory(), "nobody", Some(InstanceStatus::Down))
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn watchers_get_changes_in_order_and_resume_from_their_revision() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let waiting = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .watch(at(&registry, 0), Duration::from_secs(30))
                .await
                .unwrap()
        })
    };
    tokio::task::yield_now().await;
    registry
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    let WatchAnswer::Changes {
        revision, events, ..
    } = waiting.await.unwrap()
    else {
        panic!("a change after revision 0 is in the log");
    };
    assert_eq!(revision, 1);
    assert_eq!(events[0].action, Action::Added);

    registry
        .register(instance(2), lease(5, 15), None)
        .await
        .unwrap();
    registry
        .cancel(&inventory(), &instance(1).id)
        .await
        .unwrap();
    let WatchAnswer::Changes {
        revision, events, ..
    } = registry
        .watch(at(&registry, 1), Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("expected changes");
    };
    assert_eq!(revision, 3);
    let seen: Vec<_> = events.iter().map(|e| (e.revision, e.action)).collect();
    assert_eq!(seen, [(2, Action::Added), (3, Action::Deleted)]);

    let idle = registry
        .watch(at(&registry, 3), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        idle,
        WatchAnswer::Changes {
            epoch: registry.epoch(),
            revision: 3,
            events: vec![]
        },
        "no change within the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_watcher_too_far_behind_gets_a_snapshot() {
    let registry = Registry::with_store(
        RegistryConfig::default(),
        Arc::new(MemoryStore::with_log_size(2)),
    );
    for n in 1..=4 {
        registry
            .register(instance(n), lease(5, 15), None)
            .await
            .unwrap();
    }
    match registry
        .watch(at(&registry, 0), Duration::from_secs(1))
        .await
        .unwrap()
    {
        WatchAnswer::Snapshot(snapshot) => {
            assert_eq!(snapshot.revision, 4);
            assert_eq!(snapshot.registrations.len(), 4);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    match registry
        .watch(at(&registry, 2), Duration::from_secs(1))
        .await
        .unwrap()
    {
        WatchAnswer::Changes { events, .. } => assert_eq!(events.len(), 2),
        other => panic!("revision 2 is still in the log: {other:?}"),
    }
}

/// A registry on a new in-memory store (a restarted one) that warms up for `secs`.
fn restarted(secs: u64) -> Registry {
    Registry::new(RegistryConfig {
        warmup: Duration::from_secs(secs),
        ..RegistryConfig::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_watcher_from_before_a_restart_gets_a_snapshot_even_where_revisions_match() {
    let before = restarted(0);
    before
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    let old = at(&before, 1);
    // The restarted registry has made one change too: revision 1 again, another history.
    let after = restarted(0);
    assert_ne!(after.epoch(), before.epoch());
    after
        .register(instance(2), lease(5, 15), None)
        .await
        .unwrap();
    match after.watch(old, Duration::from_secs(1)).await.unwrap() {
        WatchAnswer::Snapshot(snapshot) => {
            assert_eq!(snapshot.epoch, after.epoch());
            assert_eq!(
                snapshot
                    .registrations
                    .iter()
                    .map(|r| r.instance.id.clone())
                    .collect::<Vec<_>>(),
                [instance(2).id],
                "instance 1 is gone"
            );
        }
        other => panic!("another epoch's revision 1 is not this one: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_registry_holds_earlier_watchers_while_it_warms_up() {
    let before = restarted(0);
    before
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    let old = at(&before, 1);
    let after = Arc::new(restarted(10));
    assert_eq!(after.warming(), Some(Duration::from_secs(10)));
    after
        .register(instance(2), lease(5, 15), None)
        .await
        .unwrap();

    // A watcher that knew nothing gets what there is at once.
    assert!(matches!(
        after.watch(None, Duration::from_secs(1)).await.unwrap(),
        WatchAnswer::Snapshot(_)
    ));
    // One from before the restart is held for its wait, then told to keep what it has.
    let asked = tokio::time::Instant::now();
    let answer = after.watch(old, Duration::from_secs(3)).await.unwrap();
    assert_eq!(asked.elapsed(), Duration::from_secs(3));
    assert_eq!(
        answer,
        WatchAnswer::Warming {
            epoch: after.epoch(),
            remaining_ms: 7_000
        }
    );
    assert_eq!(answer.cursor(old), old, "the watcher keeps its cursor");
    // Asking again, it gets the whole catalogue when the warm-up ends.
    let answer = after.watch(old, Duration::from_secs(30)).await.unwrap();
    assert_eq!(asked.elapsed(), Duration::from_secs(10));
    let WatchAnswer::Snapshot(snapshot) = answer else {
        panic!("a snapshot once warm, got {answer:?}");
    };
    assert_eq!(snapshot.registrations.len(), 1);
    assert_eq!(after.warming(), None);
    // Once warm, a watcher from before the restart gets its snapshot at once.
    let asked = tokio::time::Instant::now();
    assert!(matches!(
        after.watch(old, Duration::from_secs(30)).await.unwrap(),
        WatchAnswer::Snapshot(_)
    ));
    assert_eq!(asked.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn leases_are_bounded() {
    let registry = Registry::new(RegistryConfig::default());
    let event = registry
        .register(instance(1), lease(1, 1_000_000), None)
        .await
        .unwrap();
    assert_eq!(event.registration.lease.duration, Duration::from_secs(300));
}

#[cfg(feature = "redis")]
mod redis_store {
    use mesh_registry::store::RedisStore;

    use super::*;

    fn redis_url() -> Option<String> {
        let url = std::env::var("MESH_TEST_REDIS_URL").ok();
        if url.is_none() {
            eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
        }
        url
    }

    /// A key prefix no other run shares.
    fn prefix() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("mesh-test:registry:{}:{nanos}:", std::process::id())
    }

    #[tokio::test]
    async fn the_redis_store_passes_the_lease_suite() {
        let Some(url) = redis_url() else { return };
        let store = RedisStore::connect(&url, &prefix()).await.unwrap();
        lease_suite(store, || tokio::time::sleep(Duration::from_secs(1))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_sharing_one_redis_serve_one_view_and_wake_each_others_watchers() {
        let Some(url) = redis_url() else { return };
        let prefix = prefix();
        let first = Arc::new(Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &prefix).await.unwrap(),
        ));
        let second = Arc::new(Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &prefix).await.unwrap(),
        ));
        let watching = {
            let second = second.clone();
            tokio::spawn(async move {
                second
                    .watch(at(&second, 0), Duration::from_secs(5))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        first
            .register(instance(1), lease(5, 15), None)
            .await
            .unwrap();
        let WatchAnswer::Changes {
            revision, events, ..
        } = watching.await.unwrap()
        else {
            panic!("expected changes");
        };
        assert_eq!(revision, 1);
        assert_eq!(events[0].registration.instance, instance(1));

        assert!(second.renew(&inventory(), &instance(1).id).await.unwrap());
        assert_eq!(ids(&second).await, [instance(1).id]);
        assert!(second.cancel(&inventory(), &instance(1).id).await.unwrap());
        assert!(
            ids(&first).await.is_empty(),
            "a cancellation through one is seen by the other"
        );
        assert!(
            !first.renew(&inventory(), &instance(1).id).await.unwrap(),
            "and renewing through the other is told to register again"
        );
    }

    #[tokio::test]
    async fn replicas_share_the_epoch_and_a_kept_store_does_not_warm_up() {
        let Some(url) = redis_url() else { return };
        let shared = prefix();
        let first = Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &shared).await.unwrap(),
        );
        assert!(first.warming().is_some(), "an empty store warms up");
        first
            .register(instance(1), lease(5, 15), None)
            .await
            .unwrap();
        let restarted = Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &shared).await.unwrap(),
        );
        assert_eq!(restarted.epoch(), first.epoch());
        assert_eq!(
            restarted.warming(),
            None,
            "the store kept every registration: nothing to wait for"
        );
        let other = Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &prefix()).await.unwrap(),
        );
        assert_ne!(other.epoch(), first.epoch());
    }

    #[tokio::test]
    async fn overrides_and_the_log_behave_as_in_memory() {
        let Some(url) = redis_url() else { return };
        let registry = Registry::with_store(
            RegistryConfig::default(),
            RedisStore::connect(&url, &prefix()).await.unwrap(),
        );
        let a = instance(1);
        registry
            .register(a.clone(), lease(5, 15), None)
            .await
            .unwrap();
        registry
            .override_status(&inventory(), &a.id, Some(InstanceStatus::OutOfService))
            .await
            .unwrap();
        let snapshot = registry.snapshot().await.unwrap();
        assert_eq!(snapshot.revision, 2);
        assert_eq!(
            snapshot.registrations[0].visible_instance().status,
            InstanceStatus::OutOfService
        );
        let WatchAnswer::Changes { events, .. } = registry
            .watch(at(&registry, 0), Duration::from_secs(1))
            .await
            .unwrap()
        else {
            panic!("the log holds both changes");
        };
        let actions: Vec<_> = events.iter().map(|e| e.action).collect();
        assert_eq!(actions, [Action::Added, Action::Modified]);
    }
}

#[tokio::test(start_paused = true)]
async fn an_embedded_registry_feeds_discovery_without_sockets() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    registry
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    let mut discovery = registry.discover("inventory").await;
    assert_eq!(discovery.snapshot().len(), 1);

    registry
        .register(instance(2), lease(5, 15), None)
        .await
        .unwrap();
    registry
        .override_status(
            &inventory(),
            &instance(1).id,
            Some(InstanceStatus::OutOfService),
        )
        .await
        .unwrap();
    while discovery.snapshot().len() != 2
        || discovery
            .snapshot()
            .iter()
            .any(|i| i.status == InstanceStatus::Up && i.id == instance(1).id)
    {
        discovery.changed().await;
    }
    registry
        .cancel(&inventory(), &instance(2).id)
        .await
        .unwrap();
    while discovery.snapshot().len() != 1 {
        discovery.changed().await;
    }
    assert_eq!(discovery.snapshot()[0].status, InstanceStatus::OutOfService);
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_refuses_new_instances_but_not_renewed_registrations() {
    let config = RegistryConfig {
        max_instances: 2,
        ..RegistryConfig::default()
    };
    let registry = Registry::new(config);
    registry
        .register(instance(1), lease(5, 15), None)
        .await
        .unwrap();
    registry
        .register(instance(2), lease(5, 15), None)
        .await
        .unwrap();
    let refused = registry.register(instance(3), lease(5, 15), None).await;
    assert!(matches!(
        refused,
        Err(mesh_registry::RegisterError::Full(2))
    ));
    registry
        .register(instance(2), lease(5, 15), None)
        .await
        .expect("a known instance may register again");
    assert_eq!(ids(&registry).await.len(), 2);
}

/// A registry process that can be replaced by a restarted one: watches in flight when it is
/// replaced fail as a dropped connection would.
struct Restartable {
    current: std::sync::Mutex<Arc<Registry>>,
    restarts: tokio::sync::watch::Sender<u32>,
}

impl Restartable {
    fn new(registry: Arc<Registry>) -> Arc<Self> {
        Arc::new(Self {
            current: std::sync::Mutex::new(registry),
            restarts: tokio::sync::watch::Sender::new(0),
        })
    }

    fn current(&self) -> Arc<Registry> {
        self.current.lock().unwrap().clone()
    }

    fn restart(&self, registry: Arc<Registry>) {
        *self.current.lock().unwrap() = registry;
        self.restarts.send_modify(|n| *n += 1);
    }
}

impl RegistryApi for Restartable {
    fn register<'a>(
        &'a self,
        instance: &'a Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> RegistryFuture<'a, ()> {
        let registry = self.current();
        Box::pin(async move {
            RegistryApi::register(&*registry, instance, renewal_interval, lease_duration).await
        })
    }

    fn renew<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, bool> {
        let registry = self.current();
        Box::pin(async move { RegistryApi::renew(&*registry, service, id).await })
    }

    fn deregister<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, ()> {
        let registry = self.current();
        Box::pin(async move { RegistryApi::deregister(&*registry, service, id).await })
    }

    fn watch(&self, cursor: Option<Cursor>, wait: Duration) -> RegistryFuture<'_, WatchAnswer> {
        let registry = self.current();
        let mut restarts = self.restarts.subscribe();
        Box::pin(async move {
            tokio::select! {
                answer = RegistryApi::watch(&*registry, cursor, wait) => answer,
                _ = restarts.changed() => Err(MeshError::new(ErrorKind::Transport, "connection reset")),
            }
        })
    }
}

fn ids_of(discovery: &mesh_core::discovery::Discovery) -> Vec<String> {
    let mut ids: Vec<_> = discovery.snapshot().iter().map(|i| i.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn a_follower_keeps_its_instances_through_a_registry_restart_and_drops_the_dead_after() {
    let before = Arc::new(restarted(0));
    for n in 1..=3 {
        before
            .register(instance(n), lease(1, 3), None)
            .await
            .unwrap();
    }
    let source = Restartable::new(before);
    let discovery = mesh_core::registry::follow(source.clone(), "inventory").await;
    assert_eq!(ids_of(&discovery).len(), 3);

    // The registry restarts empty; instance 3 died while it was down. Instances 1 and 2
    // register again a second later, at their next renewal.
    source.restart(Arc::new(restarted(5)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ids_of(&discovery).len(),
        3,
        "an empty restarted registry empties no pool"
    );
    for n in 1..=2 {
        RegistryApi::register(
            &*source,
            &instance(n),
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ids_of(&discovery).len(),
        3,
        "while it warms up, the follower keeps what it knew"
    );
    // Warm, the registry's catalogue is complete: the dead instance is gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ids_of(&discovery), [instance(1).id, instance(2).id]);
}
