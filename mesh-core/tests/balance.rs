//! Load balancing over discovered instances: strategies and outlier ejection.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use mesh_core::{
    balance::{
        Affinity, BalanceConfig, BalanceLayer, EjectionConfig, NoInstances, Strategy, Target,
    },
    discovery::{Discovery, Instance, InstanceStatus},
    error::{ErrorKind, MeshError},
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Which authority each request went to, in order.
type Log = Arc<Mutex<Vec<String>>>;

/// An upstream that answers after `delay(authority)` with `status(authority)`.
fn upstream(
    delay: impl Fn(&str) -> Duration + Clone + Send + 'static,
    status: impl Fn(&str) -> u16 + Clone + Send + 'static,
) -> (
    impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future = impl Send>
    + Clone
    + Send,
    Log,
) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let service = service_fn(move |request: Request<()>| {
        let authority = request.uri().authority().unwrap().to_string();
        seen.lock().unwrap().push(authority.clone());
        let (wait, code) = (delay(&authority), status(&authority));
        async move {
            tokio::time::sleep(wait).await;
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            Ok(response)
        }
    });
    (service, log)
}

fn instances(hosts: &[&str]) -> Vec<Instance> {
    hosts
        .iter()
        .map(|host| Instance::new("inventory", *host, 8080))
        .collect()
}

fn count(log: &Log) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for authority in log.lock().unwrap().iter() {
        *counts.entry(authority.clone()).or_default() += 1;
    }
    counts
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://inventory{path}"))
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_faster_instance() {
    let discovery = Discovery::fixed("inventory", instances(&["fast", "slow"]));
    let (upstream, log) = upstream(
        |authority| Duration::from_millis(if authority.starts_with("fast") { 5 } else { 80 }),
        |_| 200,
    );
    let service = BalanceLayer::new(discovery, BalanceConfig::default()).layer(upstream);
    for _ in 0..200 {
        service.clone().oneshot(get("/stock")).await.unwrap();
    }
    let counts = count(&log);
    assert!(counts["fast:8080"] >= 190, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn requests_keep_their_path_and_learn_their_target() {
    let discovery = Discovery::fixed("inventory", instances(&["10.0.0.9"]));
    let seen = Arc::new(Mutex::new(None));
    let uri = seen.clone();
    let upstream = service_fn(move |request: Request<()>| {
        *uri.lock().unwrap() = Some(request.uri().clone());
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let service = BalanceLayer::new(discovery, BalanceConfig::default()).layer(upstream);
    let response = service.oneshot(get("/stock/42?warehouse=3")).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().as_ref().unwrap().to_string(),
        "http://10.0.0.9:8080/stock/42?warehouse=3"
    );
    assert_eq!(
        response.extensions().get::<Target>().unwrap().0.host,
        "10.0.0.9"
    );
}

#[tokio::test(start_paused = true)]
async fn only_up_instances_receive_traffic() {
    let mut pool = instances(&["a", "b", "c"]);
    pool[0].status = InstanceStatus::Down;
    pool[2].status = InstanceStatus::OutOfService;
    let (publisher, discovery) = Discovery::new("inventory");
    publisher.publish(pool.clone());
    let (upstream, log) = upstream(|_| Duration::ZERO, |_| 200);
    let service = BalanceLayer::new(discovery, BalanceConfig::default()).layer(upstream);
    for _ in 0..20 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    assert_eq!(count(&log).keys().collect::<Vec<_>>(), ["b:8080"]);

    pool[1].status = InstanceStatus::Starting;
    publisher.publish(pool);
    let error = service.clone().oneshot(get("/")).await.unwrap_err();
    assert!(error.is::<NoInstances>());
    assert_eq!(MeshError::from_boxed(error).kind(), ErrorKind::NoInstances);

    publisher.publish(Vec::new());
    let error = service.oneshot(get("/")).await.unwrap_err();
    assert!(
        error.is::<NoInstances>(),
        "an empty pool is no instance, not a panic"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_instance_is_ejected_and_returns_after_its_ejection_time() {
    let discovery = Discovery::fixed("inventory", instances(&["a", "b", "c"]));
    let (upstream, log) = upstream(
        |_| Duration::ZERO,
        |authority| {
            if authority.starts_with('b') { 503 } else { 200 }
        },
    );
    let ejection = EjectionConfig {
        consecutive_failures: 3,
        base_ejection_time: Duration::from_secs(30),
        ..EjectionConfig::default()
    };
    let config = BalanceConfig::default()
        .strategy(Strategy::RoundRobin)
        .ejection(ejection);
    let service = BalanceLayer::new(discovery, config).layer(upstream);

    for _ in 0..30 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    assert_eq!(
        count(&log)["b:8080"],
        3,
        "ejected after three failures in a row"
    );

    log.lock().unwrap().clear();
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..30 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    assert_eq!(count(&log)["b:8080"], 3, "back after 30 s, and out again");

    log.lock().unwrap().clear();
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..30 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    assert!(
        !count(&log).contains_key("b:8080"),
        "the second ejection lasts 60 s"
    );
}

/// An instance that accepts calls and never answers: each call is cut by its timeout. Those
/// timed-out calls count as failures at their elapsed time, so the instance is ejected after
/// three of them (round robin) and looks slow to peak-EWMA, instead of looking fast once its
/// stuck calls are dropped.
#[tokio::test(start_paused = true)]
async fn an_instance_whose_calls_time_out_is_ejected() {
    use mesh_core::resilience::timeout::{TimeoutConfig, TimeoutLayer};
    let discovery = Discovery::fixed("inventory", instances(&["a", "hung", "c"]));
    let (upstream, log) = upstream(
        |authority| {
            if authority.starts_with("hung") {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            }
        },
        |_| 200,
    );
    let ejection = EjectionConfig {
        consecutive_failures: 3,
        base_ejection_time: Duration::from_secs(30),
        ..EjectionConfig::default()
    };
    let config = BalanceConfig::default()
        .strategy(Strategy::RoundRobin)
        .ejection(ejection);
    let balanced = BalanceLayer::new(discovery, config).layer(upstream);
    let timeout = TimeoutLayer::try_new(
        "inventory",
        TimeoutConfig::default().timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let service = timeout.layer(balanced);
    let mut timed_out = 0;
    for _ in 0..30 {
        if service.clone().oneshot(get("/")).await.is_err() {
            timed_out += 1;
        }
    }
    assert_eq!(
        timed_out, 3,
        "three timeouts, then the hung instance is out"
    );
    assert_eq!(count(&log)["hung:8080"], 3);
}

#[tokio::test(start_paused = true)]
async fn ejection_never_takes_out_more_than_its_share_of_the_pool() {
    let discovery = Discovery::fixed("inventory", instances(&["a", "b"]));
    let (upstream, log) = upstream(|_| Duration::ZERO, |_| 503);
    let ejection = EjectionConfig {
        consecutive_failures: 1,
        max_ejection_percent: 50,
        ..EjectionConfig::default()
    };
    let config = BalanceConfig::default()
        .strategy(Strategy::RoundRobin)
        .ejection(ejection);
    let service = BalanceLayer::new(discovery, config).layer(upstream);
    for _ in 0..10 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    let counts = count(&log);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        counts.values().any(|&n| n >= 8),
        "one stays in, taking the traffic: {counts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn weights_share_the_traffic() {
    let mut pool = instances(&["heavy", "light"]);
    pool[0].weight = 300;
    pool[1].weight = 100;
    let discovery = Discovery::fixed("inventory", pool);
    let (upstream, log) = upstream(|_| Duration::ZERO, |_| 200);
    let config = BalanceConfig::default().strategy(Strategy::Weighted);
    let service = BalanceLayer::new(discovery, config).layer(upstream);
    for _ in 0..4000 {
        service.clone().oneshot(get("/")).await.unwrap();
    }
    let heavy = count(&log)["heavy:8080"] as f64 / 4000.0;
    assert!((0.70..0.80).contains(&heavy), "heavy took {heavy}");
}

#[tokio::test(start_paused = true)]
async fn consistent_hashing_moves_only_the_new_instances_share() {
    let (publisher, discovery) = Discovery::new("inventory");
    publisher.publish(instances(&["a", "b"]));
    let (upstream, _) = upstream(|_| Duration::ZERO, |_| 200);
    let config = BalanceConfig::default().strategy(Strategy::ConsistentHash {
        header: "x-user".into(),
    });
    let service = BalanceLayer::new(discovery, config).layer(upstream);
    let route = |user: usize| {
        let service = service.clone();
        async move {
            let request = Request::get("http://inventory/cart")
                .header("x-user", user.to_string())
                .body(())
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            response
                .extensions()
                .get::<Target>()
                .unwrap()
                .0
                .host
                .clone()
        }
    };
    let mut before = Vec::new();
    for user in 0..1000 {
        before.push(route(user).await);
    }
    assert_eq!(route(7).await, before[7], "a key stays on its instance");

    publisher.publish(instances(&["a", "b", "c"]));
    let mut moved = 0;
    for (user, old) in before.iter().enumerate() {
        let new = route(user).await;
        if &new != old {
            assert_eq!(new, "c", "keys only move to the new instance");
            moved += 1;
        }
    }
    assert!((200..=450).contains(&moved), "{moved} of 1000 keys moved");
}

#[tokio::test]
async fn an_affinity_keeps_its_key_on_one_instance_whatever_the_strategy() {
    let (publisher, discovery) = Discovery::new("inventory");
    publisher.publish(instances(&["a", "b", "c"]));
    let (upstream, _) = upstream(|_| Duration::ZERO, |_| 200);
    // The default strategy (P2C over peak-EWMA) for requests without an affinity.
    let service = BalanceLayer::new(discovery, BalanceConfig::default()).layer(upstream);
    let route = |session: usize| {
        let service = service.clone();
        async move {
            let mut request = Request::get("http://inventory/socket.io/")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(Affinity::of(format!("session-{session}").as_bytes()));
            let response = service.oneshot(request).await.unwrap();
            response
                .extensions()
                .get::<Target>()
                .unwrap()
                .0
                .host
                .clone()
        }
    };
    let mut placed = Vec::new();
    for session in 0..300 {
        placed.push(route(session).await);
    }
    for session in [0, 7, 299] {
        for _ in 0..5 {
            assert_eq!(route(session).await, placed[session], "a session stays put");
        }
    }
    let per_instance = |host: &str| placed.iter().filter(|h| *h == host).count();
    for host in ["a", "b", "c"] {
        assert!(
            (50..=150).contains(&per_instance(host)),
            "{host}: {}",
            per_instance(host)
        );
    }

    // An instance leaves: only its sessions move, spread over the others.
    publisher.publish(instances(&["a", "c"]));
    for (session, before) in placed.iter().enumerate() {
        let now = route(session).await;
        if before == "b" {
            assert_ne!(now, "b");
        } else {
            assert_eq!(&now, before, "session {session} had no reason to move");
        }
    }
}

#[tokio::test]
async fn invalid_configs_name_the_field() {
    let discovery = Discovery::fixed("inventory", vec![]);
    let config = BalanceConfig::default().strategy(Strategy::ConsistentHash {
        header: "bad header".into(),
    });
    let error = BalanceLayer::try_new(discovery, config).unwrap_err();
    assert_eq!(error.field(), "strategy.header");
}
