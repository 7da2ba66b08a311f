//! Rate limiting: one behaviour suite for every store, then the layer.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderMap, Request, Response};
use mesh_core::{
    context::PeerAddr,
    error::{BoxError, ErrorKind, MeshError},
    resilience::rate_limit::{
        Decision, KeyParts, KeySource, LocalStore, MissingKey, Quota, RateLimitConfig,
        RateLimitLayer, RateLimitStore, RateLimited, StoreFuture,
    },
};
use tower::{Layer, ServiceExt, service_fn};

use super::support::is;

const SECOND: u64 = 1_000_000;

fn quota(rate: u32, burst: u32) -> Quota {
    Quota {
        replenish_rate: rate,
        burst_capacity: burst,
        period: Duration::from_secs(1),
    }
}

/// The behaviour every store must show. Times are explicit, so the suite runs the same
/// against Redis; `key` makes the keys of one run unique.
async fn behaviour_suite(store: &dyn RateLimitStore, key: &dyn Fn(&str) -> String) {
    let t0 = 1_700_000_000 * SECOND;

    // A full bucket admits a burst, then refuses with the time to the next token.
    let k = key("burst");
    for expected_remaining in (0..5).rev() {
        let decision = store.check(&k, quota(1, 5), 1, t0).await.unwrap();
        assert!(decision.allowed());
        assert_eq!(decision.remaining(), expected_remaining);
    }
    let refused = store.check(&k, quota(1, 5), 1, t0).await.unwrap();
    assert!(!refused.allowed());
    assert_eq!(refused.remaining(), 0);
    assert_eq!(refused.retry_after(), Duration::from_secs(1));

    // Tokens come back at the replenish rate.
    let later = t0 + SECOND;
    assert!(
        store
            .check(&k, quota(1, 5), 1, later)
            .await
            .unwrap()
            .allowed()
    );
    assert!(
        !store
            .check(&k, quota(1, 5), 1, later)
            .await
            .unwrap()
            .allowed()
    );
    let half_later = later + SECOND / 2;
    let refused = store.check(&k, quota(1, 5), 1, half_later).await.unwrap();
    assert_eq!(refused.retry_after(), Duration::from_millis(500));

    // A refusal spends nothing: after the wait the call is admitted.
    assert!(
        store
            .check(&k, quota(1, 5), 1, later + SECOND)
            .await
            .unwrap()
            .allowed()
    );

    // The bucket never holds more than its burst, however long it rests.
    let k = key("rest");
    let rested = t0 + 3600 * SECOND;
    let decision = store.check(&k, quota(10, 3), 1, rested).await.unwrap();
    assert_eq!(decision.remaining(), 2);

    // Requested tokens: each call costs several.
    let k = key("cost");
    let decision = store.check(&k, quota(2, 5), 3, t0).await.unwrap();
    assert!(decision.allowed());
    assert_eq!(decision.remaining(), 2);
    let refused = store.check(&k, quota(2, 5), 3, t0).await.unwrap();
    assert!(!refused.allowed());
    assert_eq!(refused.remaining(), 2);
    assert_eq!(refused.retry_after(), Duration::from_millis(500));
    assert!(
        store.check(&k, quota(2, 5), 2, t0).await.unwrap().allowed(),
        "smaller costs fit"
    );

    // Keys are independent.
    let (a, b) = (key("a"), key("b"));
    assert!(store.check(&a, quota(1, 1), 1, t0).await.unwrap().allowed());
    assert!(!store.check(&a, quota(1, 1), 1, t0).await.unwrap().allowed());
    assert!(store.check(&b, quota(1, 1), 1, t0).await.unwrap().allowed());

    // Sub-second rates: 100 per second is one token every 10 ms.
    let k = key("fast");
    assert!(
        store
            .check(&k, quota(100, 1), 1, t0)
            .await
            .unwrap()
            .allowed()
    );
    let refused = store.check(&k, quota(100, 1), 1, t0).await.unwrap();
    assert_eq!(refused.retry_after(), Duration::from_millis(10));
    assert!(
        store
            .check(&k, quota(100, 1), 1, t0 + 10_000)
            .await
            .unwrap()
            .allowed()
    );
}

#[tokio::test]
async fn the_local_store_passes_the_behaviour_suite() {
    let store = LocalStore::new();
    behaviour_suite(&store, &|name| name.to_string()).await;
}

#[tokio::test]
async fn the_local_store_is_bounded_and_sweeps_refilled_keys() {
    let store = LocalStore::with_max_keys(2);
    let t0 = 10 * SECOND;
    store.check("a", quota(1, 1), 1, t0).await.unwrap();
    store.check("b", quota(1, 1), 1, t0).await.unwrap();
    assert!(store.check("c", quota(1, 1), 1, t0).await.is_err(), "full");
    // Once a and b have refilled they are forgotten, making room.
    let decision = store.check("c", quota(1, 1), 1, t0 + SECOND).await.unwrap();
    assert!(decision.allowed());
    assert_eq!(store.len(), 1);
}

#[cfg(feature = "redis")]
mod redis_store {
    use mesh_core::resilience::rate_limit::{FailurePolicy, RedisStore, StoreUnavailable};

    use super::*;

    fn redis_url() -> Option<String> {
        let url = std::env::var("MESH_TEST_REDIS_URL").ok();
        if url.is_none() {
            eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
        }
        url
    }

    #[tokio::test]
    async fn the_redis_store_passes_the_behaviour_suite() {
        let Some(url) = redis_url() else { return };
        let run = format!("mesh-test:{}:{}:", std::process::id(), fastrand_suffix());
        let store = RedisStore::new(&url).unwrap().with_prefix(run);
        behaviour_suite(&store, &|name| name.to_string()).await;
    }

    #[tokio::test]
    async fn two_replicas_on_one_redis_share_the_limit() {
        let Some(url) = redis_url() else { return };
        let prefix = format!("mesh-test:{}:{}:", std::process::id(), fastrand_suffix());
        let config = RateLimitConfig::default()
            .replenish_rate(1)
            .burst_capacity(3)
            .period(Duration::from_secs(3600))
            .store_timeout(Duration::from_secs(2));
        let replica = || {
            let store = RedisStore::new(&url).unwrap().with_prefix(prefix.clone());
            let layer = RateLimitLayer::with_store("shared", config.clone(), Arc::new(store));
            layer.unwrap().layer(ok_service())
        };
        let (a, b) = (replica(), replica());
        assert!(a.clone().oneshot(Request::new(())).await.is_ok());
        assert!(b.clone().oneshot(Request::new(())).await.is_ok());
        assert!(a.clone().oneshot(Request::new(())).await.is_ok());
        let error = b.oneshot(Request::new(())).await.unwrap_err();
        assert!(
            is::<RateLimited>(&error),
            "the fourth call across replicas is refused"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
        let unreachable = || Arc::new(RedisStore::new("redis://127.0.0.1:1").unwrap());
        let config = RateLimitConfig::default().store_timeout(Duration::from_secs(3));

        let open = RateLimitLayer::with_store("open", config.clone(), unreachable()).unwrap();
        let response = open.layer(ok_service()).oneshot(Request::new(())).await;
        assert!(response.is_ok(), "fail open admits the call");

        let closed_config = config.failure_policy(FailurePolicy::FailClosed);
        let closed = RateLimitLayer::with_store("closed", closed_config, unreachable()).unwrap();
        let error = closed
            .layer(ok_service())
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert!(is::<StoreUnavailable>(&error));
        assert_eq!(MeshError::from_boxed(error).status().as_u16(), 503);
    }

    #[tokio::test]
    async fn admit_waits_for_a_redis_store_and_decides_as_the_layer_does() {
        let Some(url) = redis_url() else { return };
        let prefix = format!("mesh-test:{}:{}:", std::process::id(), fastrand_suffix());
        let store = RedisStore::new(&url).unwrap().with_prefix(prefix);
        let config = RateLimitConfig::default()
            .replenish_rate(1)
            .burst_capacity(1)
            .period(Duration::from_secs(3600))
            .store_timeout(Duration::from_secs(2));
        let limiter = RateLimitLayer::with_store("admit", config, Arc::new(store)).unwrap();
        assert!(limiter.admit(&Request::new(())).await.unwrap().is_none());
        let error = limiter.admit(&Request::new(())).await.unwrap_err();
        assert!(is::<RateLimited>(&error), "the second call is refused");
    }

    fn fastrand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

fn ok_service()
-> impl tower::Service<Request<()>, Response = Response<()>, Error = BoxError, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(())) })
}

#[tokio::test]
async fn admitted_responses_carry_the_decision_only_when_asked() {
    let config = RateLimitConfig::default();
    let service = RateLimitLayer::new("quiet", config.clone()).layer(ok_service());
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert!(response.extensions().get::<Decision>().is_none());

    let service = RateLimitLayer::new("told", config.include_headers(true)).layer(ok_service());
    let response = service.oneshot(Request::new(())).await.unwrap();
    let decision = response.extensions().get::<Decision>().unwrap();
    assert_eq!(decision.remaining(), 19);
}

#[tokio::test]
async fn admit_decides_as_the_layer_does_without_a_service() {
    let config = RateLimitConfig::default()
        .replenish_rate(1)
        .burst_capacity(2)
        .period(Duration::from_secs(3600));
    let quiet = RateLimitLayer::new("admit-quiet", config.clone());
    assert!(quiet.admit(&Request::new(())).await.unwrap().is_none());

    let told = RateLimitLayer::new("admit-told", config.include_headers(true));
    let first = told.admit(&Request::new(())).await.unwrap().unwrap();
    assert_eq!(first.remaining(), 1);
    let second = told.admit(&Request::new(())).await.unwrap().unwrap();
    assert_eq!(second.remaining(), 0);
    let error = told.admit(&Request::new(())).await.unwrap_err();
    assert!(is::<RateLimited>(&error), "the third call is refused");
    let refused = error.downcast_ref::<RateLimited>().unwrap().decision();
    assert!(refused.retry_after() > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_layer_refuses_with_retry_after_and_admits_again_later() {
    let config = RateLimitConfig::default()
        .replenish_rate(2)
        .burst_capacity(2)
        .include_headers(true);
    let service = RateLimitLayer::new("orders", config).layer(ok_service());

    for remaining in [1, 0] {
        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        let decision = response.extensions().get::<Decision>().unwrap();
        assert_eq!(decision.remaining(), remaining);
    }
    let error = service.clone().oneshot(Request::new(())).await.unwrap_err();
    let limited = error.downcast_ref::<RateLimited>().unwrap();
    assert_eq!(limited.decision().retry_after(), Duration::from_millis(500));
    let mut headers = HeaderMap::new();
    limited.decision().write_headers(&mut headers);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-ratelimit-replenish-rate"], "2");
    assert_eq!(headers["x-ratelimit-burst-capacity"], "2");
    let mesh = MeshError::from_boxed(error);
    assert_eq!(
        (mesh.kind(), mesh.status().as_u16()),
        (ErrorKind::RateLimited, 429)
    );
    assert_eq!(mesh.retry_after(), Some(Duration::from_millis(500)));

    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(service.oneshot(Request::new(())).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn every_clone_shares_one_limit() {
    let config = RateLimitConfig::default()
        .replenish_rate(1)
        .burst_capacity(1);
    let layer = RateLimitLayer::new("orders", config);
    let first = layer.layer(ok_service());
    let second = layer.layer(ok_service());
    assert!(first.oneshot(Request::new(())).await.is_ok());
    assert!(second.oneshot(Request::new(())).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn keys_by_header_and_by_peer_ip_get_their_own_buckets() {
    let by_header = RateLimitConfig::default()
        .replenish_rate(1)
        .burst_capacity(1)
        .key(KeySource::Header("x-api-key".into()));
    let service = RateLimitLayer::new("api", by_header).layer(ok_service());
    let keyed = |key: &str| {
        Request::builder()
            .header("x-api-key", key)
            .body(())
            .unwrap()
    };
    assert!(service.clone().oneshot(keyed("a")).await.is_ok());
    assert!(service.clone().oneshot(keyed("a")).await.is_err());
    assert!(service.clone().oneshot(keyed("b")).await.is_ok());
    let error = service.oneshot(Request::new(())).await.unwrap_err();
    assert!(
        is::<MissingKey>(&error),
        "a request without the header has no bucket"
    );
    assert_eq!(MeshError::from_boxed(error).status().as_u16(), 403);

    let by_ip = RateLimitConfig::default()
        .replenish_rate(1)
        .burst_capacity(1)
        .key(KeySource::PeerIp);
    let service = RateLimitLayer::new("ip", by_ip).layer(ok_service());
    let from = |addr: &str| {
        let mut request = Request::new(());
        let addr: SocketAddr = addr.parse().unwrap();
        request.extensions_mut().insert(PeerAddr(addr));
        request
    };
    assert!(service.clone().oneshot(from("10.0.0.1:1000")).await.is_ok());
    assert!(
        service
            .clone()
            .oneshot(from("10.0.0.1:2000"))
            .await
            .is_err(),
        "the port does not matter"
    );
    assert!(service.oneshot(from("10.0.0.2:1000")).await.is_ok());
}

#[test]
fn spring_settings_are_validated() {
    let too_costly = RateLimitConfig::default()
        .burst_capacity(2)
        .requested_tokens(3);
    let error = RateLimitLayer::try_new("x", too_costly).unwrap_err();
    assert_eq!(error.field(), "requested_tokens");
    let error =
        RateLimitLayer::try_new("x", RateLimitConfig::default().replenish_rate(0)).unwrap_err();
    assert_eq!(error.field(), "replenish_rate");
}

/// A store that always has to wait for its answer, as a remote one does.
#[derive(Debug, Default)]
struct Remote(LocalStore);

impl RateLimitStore for Remote {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        requested: u32,
        now: u64,
    ) -> StoreFuture<'a> {
        StoreFuture::pending(self.0.check(key, quota, requested, now))
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_read_as_parts_is_decided_at_once_when_the_store_can() {
    let config = RateLimitConfig::default()
        .replenish_rate(1)
        .burst_capacity(1)
        .key(KeySource::Header("x-api-key".into()));
    let layer = RateLimitLayer::new("parts", config.clone());
    let header = |name: &str| (name == "x-api-key").then_some(&b"team-a"[..]);
    let parts = KeyParts {
        header: &header,
        peer: None,
        subject: None,
    };
    assert!(matches!(layer.admit_now(parts), Some(Ok(None))));
    let refused = layer.admit_now(parts).unwrap().unwrap_err();
    assert!(is::<RateLimited>(&refused));
    // The same bucket as a request with that header.
    let request = Request::builder()
        .header("x-api-key", "team-a")
        .body(())
        .unwrap();
    assert!(layer.layer(ok_service()).oneshot(request).await.is_err());

    let nothing = |_: &str| None;
    let missing = KeyParts {
        header: &nothing,
        peer: None,
        subject: None,
    };
    let error = layer.admit_now(missing).unwrap().unwrap_err();
    assert!(is::<MissingKey>(&error));

    let remote = RateLimitLayer::with_store("remote", config, Arc::new(Remote::default())).unwrap();
    assert!(
        remote.admit_now(parts).is_none(),
        "the caller goes through admit"
    );
}

/// A store that never answers, as a Redis that went away behind a firewall; it counts the
/// times it was asked.
#[derive(Debug, Default)]
struct Hung(std::sync::atomic::AtomicUsize);

impl RateLimitStore for Hung {
    fn check<'a>(&'a self, _: &'a str, _: Quota, _: u32, _: u64) -> StoreFuture<'a> {
        // Asked when polled, as a remote store's request goes out then.
        StoreFuture::pending(async move {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending().await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_skipped_after_a_few_failures_and_asked_again_later() {
    let store = Arc::new(Hung::default());
    let asked = || store.0.load(std::sync::atomic::Ordering::SeqCst);
    let config = RateLimitConfig::default().store_timeout(Duration::from_millis(50));
    let layer = RateLimitLayer::with_store("hung", config, store.clone()).unwrap();
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(()))
    }));
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        // Fail open, the default: every call is admitted.
        service.clone().oneshot(Request::new(())).await.unwrap();
    }
    assert_eq!(asked(), 3, "three timeouts, then the store is not asked");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(150),
        "only the first three calls waited for it"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(asked(), 4, "asked again a second later");
}
