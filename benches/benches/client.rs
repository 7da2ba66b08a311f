//! A call through `MeshClient` with the whole client stack vs a bare hyper-util client, both to
//! the same local upstream, in one run.
//!
//! Run with `cargo bench -p mesh-benches --bench client`. Two shapes: one call at a time
//! (latency) and batches of 64 concurrent calls (throughput), the latter also with the
//! resilience layers switched off to show what they cost. docs/performance.md records the
//! ratios.

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh::{BoxBody, Mesh, MeshClient, axum, config::MeshConfig};

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

fn client(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, mesh, lean) = runtime.block_on(async {
        let addr = upstream().await;
        let lean = ["timeout", "retry", "circuit_breaker", "bulkhead"];
        (
            addr,
            mesh_client(addr, &[]).await,
            mesh_client(addr, &lean).await,
        )
    });
    let uri: http::Uri = format!("http://{addr}/item").parse().unwrap();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let hyper_client = Client::builder(TokioExecutor::new()).build(connector);

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

criterion_group!(benches, client);
criterion_main!(benches);
