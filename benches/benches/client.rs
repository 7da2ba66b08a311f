//! A call through `MeshClient` with the whole client stack vs a bare hyper-util client, both to
//! the same local upstream, in one run.
//!
//! Run with `cargo bench -p mesh-benches --bench client`. Two shapes: one call at a time
//! (latency) and batches of 64 concurrent calls (throughput), the latter also with the
//! resilience layers switched off to show what they cost. docs/performance.md records the
//! ratios.
//!
//! Criterion measures each client in turn, seconds apart, and the VM's speed drifts by tens of
//! percent within that time. So after criterion's figures the bench also measures the clients
//! paired: many short rounds, each timing the same number of concurrent batches through every
//! client in turn, and prints the median over rounds of each mesh client's throughput relative
//! to the bare client's in that round (`-- paired` runs only that part).

use std::{future::Future, net::SocketAddr, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh::{BoxBody, Mesh, MeshClient, axum, config::MeshConfig};
use tokio::{runtime::Runtime, time::Instant};

const BATCH: usize = 64;

async fn upstream() -> SocketAddr {
    let router = axum::Router::new().route("/item", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A client of the upstream; `disable` lists the client layers switched off.
async fn mesh_client(addr: SocketAddr, disable: &[&str]) -> MeshClient {
    let config = MeshConfig::from_value(
        "bench",
        serde_json::json!({"clients": {"upstream": {
            "instances": [addr.to_string()],
            // A breaker and a bulkhead that a healthy upstream never trips.
            "circuit_breaker": {"minimum_number_of_calls": 100},
            "bulkhead": {"max_concurrent_calls": 1024},
            "disable": disable,
        }}}),
    );
    let mesh = Mesh::builder("bench").config(config).build().await.unwrap();
    mesh.client("upstream")
}

async fn via_mesh(client: &MeshClient) {
    let request = Request::get("/item").body(BoxBody::default()).unwrap();
    let response = client.send(request).await.unwrap();
    assert!(response.status().is_success());
    response.into_body().collect().await.unwrap();
}

async fn bare(client: &Client<HttpConnector, Empty<Bytes>>, uri: &http::Uri) {
    let request = Request::get(uri.clone()).body(Empty::new()).unwrap();
    let response = client.request(request).await.unwrap();
    assert!(response.status().is_success());
    response.into_body().collect().await.unwrap();
}

/// The three clients of the bench, calling one upstream.
struct Clients {
    bare: Client<HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
    mesh: MeshClient,
    lean: MeshClient,
}

fn clients(runtime: &Runtime) -> Clients {
    let (addr, mesh, lean) = runtime.block_on(async {
        let addr = upstream().await;
        let lean = ["timeout", "retry", "circuit_breaker", "bulkhead"];
        (
            addr,
            mesh_client(addr, &[]).await,
            mesh_client(addr, &lean).await,
        )
    });
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Clients {
        bare: Client::builder(TokioExecutor::new()).build(connector),
        uri: format!("http://{addr}/item").parse().unwrap(),
        mesh,
        lean,
    }
}

fn client(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let Clients {
        bare: hyper_client,
        uri,
        mesh,
        lean,
    } = clients(&runtime);

    let mut group = c.benchmark_group("client/sequential");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare hyper-util", |b| {
        b.to_async(&runtime).iter(|| bare(&hyper_client, &uri))
    });
    group.bench_function("MeshClient, whole stack", |b| {
        b.to_async(&runtime).iter(|| via_mesh(&mesh))
    });
    group.finish();

    let mut group = c.benchmark_group("client/concurrent");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("bare hyper-util", |b| {
        b.to_async(&runtime)
            .iter(|| join_all((0..BATCH).map(|_| bare(&hyper_client, &uri))))
    });
    group.bench_function("MeshClient, whole stack", |b| {
        b.to_async(&runtime)
            .iter(|| join_all((0..BATCH).map(|_| via_mesh(&mesh))))
    });
    group.bench_function("MeshClient, trace + metrics + balance only", |b| {
        b.to_async(&runtime)
            .iter(|| join_all((0..BATCH).map(|_| via_mesh(&lean))))
    });
    group.finish();
}

/// Rounds of the paired measurement, the first tenth of which warm up and are not counted.
const ROUNDS: usize = 300;
/// Batches of [`BATCH`] concurrent calls per client per round: a few milliseconds each.
const BATCHES_PER_ROUND: usize = 8;

/// Times `BATCHES_PER_ROUND` batches of concurrent calls made by `call`.
fn time_batches<F, Fut>(runtime: &Runtime, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            join_all((0..BATCH).map(|_| call())).await;
        }
        started.elapsed()
    })
}

/// The paired measurement: per round, the bare client and each mesh client make the same
/// batches of concurrent calls; a mesh client's ratio in that round is the bare client's time
/// over its own (its throughput relative to bare). Prints the median and quartiles of the
/// ratios over the counted rounds.
fn paired() {
    let runtime = Runtime::new().unwrap();
    let clients = clients(&runtime);
    let times = mesh_benches::paired_rounds(ROUNDS, 3, |candidate| {
        let elapsed = match candidate {
            0 => time_batches(&runtime, || bare(&clients.bare, &clients.uri)),
            1 => time_batches(&runtime, || via_mesh(&clients.mesh)),
            _ => time_batches(&runtime, || via_mesh(&clients.lean)),
        };
        elapsed.as_secs_f64()
    });
    let calls = (BATCH * BATCHES_PER_ROUND) as f64;
    let mut bare_rates: Vec<f64> = times[0].iter().map(|time| calls / time / 1000.0).collect();
    let (_, bare_median, _) = mesh_benches::quartiles(&mut bare_rates);
    println!(
        "\npaired: {} rounds of {BATCHES_PER_ROUND} batches of {BATCH} concurrent calls per client, bare hyper-util {bare_median:.1} k calls/s (median)",
        bare_rates.len()
    );
    println!("| client | throughput relative to bare, median | quartiles |");
    println!("|---|---|---|");
    let names = [
        "MeshClient, whole stack",
        "MeshClient, trace + metrics + balance",
    ];
    for (name, mesh_times) in names.iter().zip(&times[1..]) {
        let mut ratios: Vec<f64> = mesh_times
            .iter()
            .zip(&times[0])
            .map(|(time, bare)| bare / time)
            .collect();
        let (low, median, high) = mesh_benches::quartiles(&mut ratios);
        println!("| {name} | {median:.3} | {low:.3}–{high:.3} |");
    }
}

criterion_group!(benches, client);

fn main() {
    mesh_benches::run(benches, paired);
}
