//! Per-call overhead of each resilience layer, and of the whole stack, over a no-op service.
//!
//! Run with `cargo bench -p mesh-benches --bench layers`. Each figure is compared with the bare
//! service measured in the same run; docs/performance.md records the differences.

use std::{convert::Infallible, future::Ready, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mesh::{
    BoxBody,
    resilience::{
        bulkhead::{BulkheadConfig, BulkheadLayer},
        circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer},
        rate_limit::{RateLimitConfig, RateLimitLayer},
        retry::{RetryConfig, RetryLayer},
        timeout::{TimeoutConfig, TimeoutLayer},
    },
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, layer::util::Identity, service_fn};

type NoOp = tower::util::ServiceFn<fn(Request<BoxBody>) -> Ready<Result<Response<()>, Infallible>>>;

fn no_op() -> NoOp {
    fn answer(_: Request<BoxBody>) -> Ready<Result<Response<()>, Infallible>> {
        std::future::ready(Ok(Response::new(())))
    }
    service_fn(answer as fn(_) -> _)
}

/// A GET as a client sends it: a path and the usual headers, no body. Parsed once; each call
/// clones the parts, as a client does to send a request it keeps a template of.
fn template() -> http::request::Parts {
    Request::get("http://inventory/inventory/42")
        .header("host", "inventory")
        .header("user-agent", "mesh-bench")
        .header("accept", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn timeout() -> TimeoutLayer {
    TimeoutLayer::new("bench", TimeoutConfig::default())
}

fn retry() -> RetryLayer {
    RetryLayer::new("bench", RetryConfig::default())
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::new("bench", CircuitBreakerConfig::default())
}

fn bulkhead() -> BulkheadLayer {
    BulkheadLayer::new("bench", BulkheadConfig::default())
}

/// A limit the bench never reaches: a bucket of four billion tokens.
fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::new(
        "bench",
        RateLimitConfig::default()
            .replenish_rate(1_000_000)
            .burst_capacity(u32::MAX),
    )
}

/// Measures `iters` sequential calls through `layer` over the no-op service.
fn bench_layer<L>(c: &mut Criterion, runtime: &tokio::runtime::Runtime, name: &str, layer: L)
where
    L: Layer<NoOp> + Clone,
    L::Service: Service<Request<BoxBody>, Response = Response<()>> + 'static,
    <L::Service as Service<Request<BoxBody>>>::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let mut service = layer.clone().layer(no_op());
            let template = template();
            async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let ready = service.ready().await.unwrap();
                    ready
                        .call(Request::from_parts(template.clone(), BoxBody::default()))
                        .await
                        .unwrap();
                }
                started.elapsed()
            }
        })
    });
}

fn layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    bench_layer(c, &runtime, "bare service", Identity::new());
    bench_layer(c, &runtime, "timeout", timeout());
    bench_layer(c, &runtime, "retry", retry());
    bench_layer(c, &runtime, "circuit breaker", breaker());
    bench_layer(c, &runtime, "bulkhead", bulkhead());
    bench_layer(c, &runtime, "rate limit (local)", rate_limit());
    let stack = ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .layer(bulkhead())
        .layer(rate_limit())
        .into_inner();
    bench_layer(c, &runtime, "whole stack", stack);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = layers
}
criterion_main!(benches);
