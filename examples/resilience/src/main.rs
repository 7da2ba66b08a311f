//! A deliberately flaky upstream called through the mesh resilience stack.
//!
//! Run with `cargo run -p example-resilience`. The program starts a local HTTP upstream whose
//! behaviour it switches between flaky, down, healthy and slow, calls it through
//! timeout → retry → circuit breaker → bulkhead → rate limit, and prints what each layer did.
//! Set `MESH_REDIS_URL` to keep the rate limit in Redis instead of in process.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use mesh::{
    BoxBody,
    error::{BoxError, MeshError},
    resilience::{
        bulkhead::{BulkheadConfig, BulkheadLayer},
        circuit_breaker::{
            Breaker, CircuitBreakerConfig, CircuitBreakerLayer, ServerErrorsAreFailures,
        },
        rate_limit::{RateLimitConfig, RateLimitLayer, RateLimitStore},
        retry::{RetryConfig, RetryLayer},
        timeout::{TimeoutConfig, TimeoutLayer},
    },
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

/// How the upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Two calls out of three fail with 503.
    Flaky,
    /// Every call fails with 503.
    Down,
    /// Every call succeeds.
    Healthy,
    /// Every call succeeds after 300 ms.
    Slow,
}

/// The upstream's switchable behaviour and call counter.
#[derive(Debug, Default)]
struct Upstream {
    mode: AtomicU8,
    calls: AtomicU32,
}

impl Upstream {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn take_calls(&self) -> u32 {
        self.calls.swap(0, Ordering::SeqCst)
    }

    async fn answer(&self) -> Response<Full<Bytes>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.load(Ordering::SeqCst);
        let ok = match mode {
            m if m == Mode::Flaky as u8 => call % 3 == 2,
            m if m == Mode::Down as u8 => false,
            m if m == Mode::Slow as u8 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                true
            }
            _ => true,
        };
        let (status, body) = if ok {
            (StatusCode::OK, "7 in stock")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "inventory unavailable")
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    }
}

/// Serves the upstream on an ephemeral local port.
async fn serve(upstream: Arc<Upstream>) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let upstream = upstream.clone();
                    async move { Ok::<_, Infallible>(upstream.answer().await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The rate limiter's store: Redis when `MESH_REDIS_URL` is set, in process otherwise.
fn limiter(config: RateLimitConfig) -> Result<RateLimitLayer, BoxError> {
    match std::env::var("MESH_REDIS_URL") {
        Ok(url) => {
            println!("rate limit store: Redis at {url}");
            let store: Arc<dyn RateLimitStore> =
                Arc::new(mesh::resilience::rate_limit::RedisStore::new(&url)?);
            Ok(RateLimitLayer::with_store("inventory", config, store)?)
        }
        Err(_) => {
            println!("rate limit store: in process");
            Ok(RateLimitLayer::try_new("inventory", config)?)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,mesh_core=info".into()),
        )
        .init();

    let upstream = Arc::new(Upstream::default());
    let addr = serve(upstream.clone()).await?;
    let uri = format!("http://{addr}/inventory/42");
    println!("flaky upstream listening on {addr}\n");

    let breaker_layer = CircuitBreakerLayer::try_new(
        "inventory",
        CircuitBreakerConfig::open_after_failures(5)
            .wait_duration_in_open_state(Duration::from_secs(1)),
    )?
    .with_classifier(ServerErrorsAreFailures);
    let breaker = breaker_layer.breaker().clone();
    let bulkhead = BulkheadLayer::try_new(
        "inventory",
        BulkheadConfig::default().max_concurrent_calls(4),
    )?;
    let http = Client::builder(TokioExecutor::new()).build_http::<BoxBody>();
    let client = ServiceBuilder::new()
        .layer(TimeoutLayer::try_new(
            "inventory",
            TimeoutConfig::default().timeout(Duration::from_secs(2)),
        )?)
        .layer(RetryLayer::try_new(
            "inventory",
            RetryConfig::default()
                .max_attempts(3)
                .initial_backoff(Duration::from_millis(20))
                .max_backoff(Duration::from_millis(200)),
        )?)
        .layer(breaker_layer)
        .layer(bulkhead)
        .layer(limiter(
            RateLimitConfig::default()
                .replenish_rate(20)
                .burst_capacity(20),
        )?)
        .service(http.map_err(BoxError::from));
    watch(&breaker);

    let get = || Request::get(&uri).body(Empty::<Bytes>::new()).unwrap();

    println!("== 1. flaky upstream: two calls in three fail with 503; retries hide it");
    upstream.set(Mode::Flaky);
    for n in 1..=4 {
        let outcome = describe(client.clone().oneshot(get()).await);
        println!(
            "call {n}: {outcome} after {} attempt(s)",
            upstream.take_calls()
        );
    }

    println!("\n== 2. upstream down: failures open the circuit, then calls fail fast");
    upstream.set(Mode::Down);
    for n in 1..=4 {
        let outcome = describe(client.clone().oneshot(get()).await);
        println!(
            "call {n}: {outcome} ({} reached the upstream)",
            upstream.take_calls()
        );
    }

    println!("\n== 3. upstream back: after the wait a trial call closes the circuit");
    upstream.set(Mode::Healthy);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for n in 1..=2 {
        let outcome = describe(client.clone().oneshot(get()).await);
        println!("call {n}: {outcome}; circuit {}", breaker.state());
    }

    println!("\n== 4. slow upstream, 8 concurrent calls: the bulkhead admits 4");
    upstream.set(Mode::Slow);
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(client.clone().oneshot(get())))
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        println!("call {}: {}", n + 1, describe(call.await?));
    }

    println!("\n== 5. a burst of 30 calls: the rate limit admits its burst of 20");
    upstream.set(Mode::Healthy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut admitted, mut limited) = (0, 0);
    for _ in 0..30 {
        match client.clone().oneshot(get()).await {
            Ok(_) => admitted += 1,
            Err(error) => {
                let error = MeshError::from_boxed(error);
                limited += 1;
                if limited == 1 {
                    println!("first refusal: {} {error}", error.status());
                }
            }
        }
    }
    println!("{admitted} admitted, {limited} refused with 429");
    Ok(())
}

/// Prints every circuit breaker transition as it happens.
fn watch(breaker: &Breaker) {
    let mut events = breaker.subscribe();
    tokio::spawn(async move {
        while let Ok(transition) = events.recv().await {
            println!(
                "   [circuit breaker: {} -> {}]",
                transition.from, transition.to
            );
        }
    });
}

/// One line for the outcome of a call.
fn describe(result: Result<Response<Incoming>, BoxError>) -> String {
    match result {
        Ok(response) => format!("HTTP {}", response.status().as_u16()),
        Err(error) => {
            let error = MeshError::from_boxed(error);
            format!("refused, {} ({})", error.status(), error)
        }
    }
}
