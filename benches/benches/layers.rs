//! Per-call overhead of each resilience layer, and of the whole stack, over a no-op service.
//!
//! Run with `cargo bench -p mesh-benches --bench layers`. Each figure is compared with the bare
//! service measured in the same run; docs/performance.md records the differences.
//!
//! Criterion measures each benchmark in turn, seconds apart; on a VM whose speed drifts, that
//! order alone moves a difference of a few hundred nanoseconds. So after criterion's figures
//! the bench also measures them paired: many short rounds, each timing the bare service and
//! then every stack for the same number of calls, and prints the median over rounds of each
//! stack's time minus the bare service's in that round (`-- paired` runs only that part).

use std::{convert::Infallible, future::Ready, time::Duration};

use tokio::runtime::Runtime;

use criterion::{Criterion, criterion_group};
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

/// Measures calls through `layer` over the no-op service.
fn bench_layer<L>(c: &mut Criterion, runtime: &Runtime, name: &str, layer: L)
where
    L: Layer<NoOp> + Clone,
    L::Service: Service<Request<BoxBody>, Response = Response<()>> + 'static,
    <L::Service as Service<Request<BoxBody>>>::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        let mut run = calls(layer.clone());
        b.iter_custom(|iters| run(runtime, iters))
    });
}

/// Times `calls` sequential calls of one service; each candidate of the paired measurement is one.
type Calls = Box<dyn FnMut(&Runtime, u64) -> Duration>;

/// `calls` sequential calls through `layer` over the no-op service, timed.
fn calls<L>(layer: L) -> Calls
where
    L: Layer<NoOp>,
    L::Service: Service<Request<BoxBody>, Response = Response<()>> + 'static,
    <L::Service as Service<Request<BoxBody>>>::Error: std::fmt::Debug,
{
    let mut service = layer.layer(no_op());
    let template = template();
    Box::new(move |runtime, calls| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..calls {
                let ready = service.ready().await.unwrap();
                ready
                    .call(Request::from_parts(template.clone(), BoxBody::default()))
                    .await
                    .unwrap();
            }
            started.elapsed()
        })
    })
}

/// The five layers, in the order of the client stack.
fn whole_stack() -> impl Layer<
    NoOp,
    Service: Service<Request<BoxBody>, Response = Response<()>, Error: std::fmt::Debug> + 'static,
> + Clone {
    ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .layer(bulkhead())
        .layer(rate_limit())
        .into_inner()
}

/// Every layer alone, then the whole stack.
fn stacks() -> Vec<(&'static str, Calls)> {
    vec![
        ("timeout", calls(timeout())),
        ("retry", calls(retry())),
        ("circuit breaker", calls(breaker())),
        ("bulkhead", calls(bulkhead())),
        ("rate limit (local)", calls(rate_limit())),
        ("whole stack", calls(whole_stack())),
    ]
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn layers(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    bench_layer(c, &runtime, "bare service", Identity::new());
    bench_layer(c, &runtime, "timeout", timeout());
    bench_layer(c, &runtime, "retry", retry());
    bench_layer(c, &runtime, "circuit breaker", breaker());
    bench_layer(c, &runtime, "bulkhead", bulkhead());
    bench_layer(c, &runtime, "rate limit (local)", rate_limit());
    bench_layer(c, &runtime, "whole stack", whole_stack());
}

/// Rounds of the paired measurement, the first tenth of which warm up and are not counted.
const ROUNDS: usize = 400;
/// Calls per service per round: about a millisecond each.
const CALLS_PER_ROUND: u64 = 1_000;

/// The paired measurement: per round, the bare service and every stack make the same number
/// of calls; a stack's cost in that round is its time per call minus the bare service's. Prints
/// the median and the quartiles of those differences over the counted rounds.
fn paired() {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut services = vec![("bare service", calls(Identity::new()))];
    services.extend(stacks());
    let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
    let times = mesh_benches::paired_rounds(ROUNDS, services.len(), |candidate| {
        let elapsed = (services[candidate].1)(&runtime, CALLS_PER_ROUND);
        elapsed.as_secs_f64() * 1e9 / CALLS_PER_ROUND as f64
    });
    let mut bare_times = times[0].clone();
    let (_, bare_median, _) = mesh_benches::quartiles(&mut bare_times);
    println!(
        "\npaired: {} rounds of {CALLS_PER_ROUND} calls each, bare service {bare_median:.0} ns per call (median)",
        bare_times.len()
    );
    println!("| layer | added per call, median | quartiles |");
    println!("|---|---|---|");
    for (name, stack_times) in names.iter().zip(&times).skip(1) {
        let mut added: Vec<f64> = stack_times
            .iter()
            .zip(&times[0])
            .map(|(t, bare)| t - bare)
            .collect();
        let (low, median, high) = mesh_benches::quartiles(&mut added);
        println!("| {name} | {median:.0} ns | {low:.0}–{high:.0} ns |");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = layers
}

fn main() {
    mesh_benches::run(benches, paired);
}
