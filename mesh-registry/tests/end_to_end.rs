//! A registry, three instances and a client on real sockets: dead instances stop receiving
//! traffic within their lease, and a graceful shutdown costs no caller an error.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use mesh_core::{
    BoxBody,
    balance::{BalanceConfig, BalanceLayer, Strategy},
    discovery::Instance,
    error::BoxError,
    registry::RegistryClient,
    resilience::retry::{RetryConfig, RetryLayer},
};
use mesh_registry::{Registry, RegistryConfig, api::router};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::{ServiceBuilder, ServiceExt};

type CallFuture = Pin<Box<dyn Future<Output = Result<http::StatusCode, BoxError>> + Send>>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

const RENEW: Duration = Duration::from_millis(300);
const LEASE: Duration = Duration::from_secs(1);

async fn start_registry() -> String {
    let config = RegistryConfig {
        eviction_interval: Duration::from_millis(200),
        ..RegistryConfig::default()
    };
    let registry = Arc::new(Registry::new(config));
    registry.spawn_eviction();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(registry)).await });
    format!("http://{addr}")
}

/// An upstream counting the requests it served.
async fn start_upstream(hits: Arc<AtomicUsize>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_instances_leave_within_their_lease_and_graceful_ones_cost_no_errors() {
    let url = start_registry().await;
    let registry = RegistryClient::new(&url).unwrap();

    let mut upstreams = Vec::new();
    for _ in 0..3 {
        let hits = Arc::new(AtomicUsize::new(0));
        let (addr, server) = start_upstream(hits.clone()).await;
        let mut instance = Instance::new("inventory", "127.0.0.1", addr.port());
        instance.id = format!("inventory-{}", addr.port());
        let registered = registry
            .keep_registered(instance, RENEW, LEASE)
            .await
            .unwrap();
        upstreams.push((hits, server, registered));
    }

    let discovery = registry.discover("inventory").await;
    assert_eq!(discovery.snapshot().len(), 3);
    let http = Client::builder(TokioExecutor::new()).build_http::<BoxBody>();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(
            "inventory",
            RetryConfig::default()
                .initial_backoff(Duration::from_millis(5))
                .max_backoff(Duration::from_millis(20)),
        ))
        .layer(BalanceLayer::new(
            discovery.clone(),
            BalanceConfig::default().strategy(Strategy::RoundRobin),
        ))
        .service(http.map_err(|error| -> BoxError { Box::new(error) }));
    // Each call is boxed as `Send` where its type is concrete, so tasks can hold it.
    let call = move || -> CallFuture {
        let request = Request::get("http://inventory/stock")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response: ResponseFuture = Box::pin(client.clone().oneshot(request));
        Box::pin(async move {
            let response = response.await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok(status)
        })
    };
    for _ in 0..30 {
        assert!(call().await.unwrap().is_success());
    }
    assert!(
        upstreams
            .iter()
            .all(|(hits, ..)| hits.load(Ordering::SeqCst) > 0)
    );

    // Kill the first instance: its server stops and it never deregisters.
    let (dead_hits, dead_server, dead_registration) = upstreams.remove(0);
    dead_server.abort();
    drop(dead_registration);
    // Within its lease plus an eviction pass, it is gone from the client's view.
    let gone_by = tokio::time::Instant::now() + LEASE + Duration::from_millis(800);
    while discovery.snapshot().len() != 2 {
        assert!(
            tokio::time::Instant::now() < gone_by,
            "the dead instance outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = dead_hits.load(Ordering::SeqCst);
    for _ in 0..30 {
        assert!(call().await.unwrap().is_success());
    }
    assert_eq!(
        dead_hits.load(Ordering::SeqCst),
        before,
        "no traffic reaches it"
    );

    // Shut the second one down gracefully while calls keep flowing: no call fails.
    let calls = tokio::spawn({
        let call = call.clone();
        async move {
            let mut failures = 0;
            for _ in 0..200 {
                if !call().await.is_ok_and(|status| status.is_success()) {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failures
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, leaving_server, leaving_registration) = upstreams.remove(0);
    leaving_registration.deregister().await.unwrap();
    while discovery.snapshot().len() != 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Drain: in-flight calls finish before the server goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    leaving_server.abort();
    assert_eq!(
        calls.await.unwrap(),
        0,
        "a graceful shutdown costs no caller an error"
    );
}
