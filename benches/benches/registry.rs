//! Registry load: propagation latency from a deregistration to every watcher, registration and
//! renewal throughput, and memory per instance.
//!
//! Run with `cargo bench -p mesh-benches --bench registry`. The registry runs in this process
//! on a real socket; watchers and clients use mesh's registry client over HTTP. Results are
//! recorded in docs/performance.md.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mesh::{
    discovery::{Discovery, Instance, ServiceId},
    registry::RegistryClient,
    registry_server::{LeaseRequest, Registry, RegistryConfig, api::router},
};

const SERVICES: usize = 1_000;
const INSTANCES_PER_SERVICE: usize = 10;
const WATCHERS: usize = 100;
const TRIALS: usize = 30;
const RENEWAL_CLIENTS: usize = 32;
const RENEWAL_SECONDS: u64 = 3;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn instance(service: usize, n: usize) -> Instance {
    let mut instance = Instance::new(
        format!("svc-{service}").as_str(),
        format!("10.{}.{}.{n}", service / 250, service % 250),
        8080,
    );
    instance.id = format!("svc-{service}-{n}");
    instance
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router(registry.clone())).into_future());
    let client = RegistryClient::new(&url).unwrap();

    // Registrations over HTTP, and the memory they take.
    let before = resident_bytes();
    let started = Instant::now();
    let mut registering = tokio::task::JoinSet::new();
    for worker in 0..RENEWAL_CLIENTS {
        let client = client.clone();
        registering.spawn(async move {
            for service in (worker..SERVICES).step_by(RENEWAL_CLIENTS) {
                for n in 0..INSTANCES_PER_SERVICE {
                    client
                        .register(
                            &instance(service, n),
                            Duration::from_secs(30),
                            Duration::from_secs(90),
                        )
                        .await
                        .unwrap();
                }
            }
        });
    }
    registering.join_all().await;
    let registration_rate =
        (SERVICES * INSTANCES_PER_SERVICE) as f64 / started.elapsed().as_secs_f64();
    let per_instance =
        resident_bytes().saturating_sub(before) / (SERVICES * INSTANCES_PER_SERVICE) as u64;

    // Renewals over HTTP.
    let renewals = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(RENEWAL_SECONDS);
    let mut renewing = tokio::task::JoinSet::new();
    for worker in 0..RENEWAL_CLIENTS {
        let client = client.clone();
        let renewals = renewals.clone();
        renewing.spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let service = i % SERVICES;
                let id = format!("svc-{service}-{}", i % INSTANCES_PER_SERVICE);
                assert!(
                    client
                        .renew(&ServiceId::new(&format!("svc-{service}")), &id)
                        .await
                        .unwrap()
                );
                renewals.fetch_add(1, Ordering::Relaxed);
                i += RENEWAL_CLIENTS;
            }
        });
    }
    renewing.join_all().await;
    let renewal_rate = renewals.load(Ordering::Relaxed) as f64 / RENEWAL_SECONDS as f64;

    // Propagation: 100 watchers follow svc-0; deregister one of its instances and time how long
    // each watcher takes to drop it.
    let mut watchers: Vec<Discovery> = Vec::new();
    for _ in 0..WATCHERS {
        watchers.push(client.discover("svc-0").await);
    }
    let service = ServiceId::new("svc-0");
    let mut latencies = Vec::with_capacity(WATCHERS * TRIALS);
    for trial in 0..TRIALS {
        let leaving = instance(0, trial % INSTANCES_PER_SERVICE);
        let t0 = Instant::now();
        let waits: Vec<_> = watchers
            .iter()
            .cloned()
            .map(|mut discovery| {
                let id = leaving.id.clone();
                tokio::spawn(async move {
                    while discovery.snapshot().iter().any(|i| i.id == id) {
                        discovery.changed().await;
                    }
                    t0.elapsed()
                })
            })
            .collect();
        registry.cancel(&service, &leaving.id).await.unwrap();
        for wait in waits {
            latencies.push(wait.await.unwrap());
        }
        registry
            .register(leaving, LeaseRequest::default(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();

    println!("| measure | mesh-registry |");
    println!("|---|---|");
    println!(
        "| deregistration → all {WATCHERS} watchers, p50 / p99 ({} samples, {} instances registered) | {:.2} ms / {:.2} ms |",
        latencies.len(),
        SERVICES * INSTANCES_PER_SERVICE,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| registrations per second (HTTP, {RENEWAL_CLIENTS} clients) | {registration_rate:.0} |"
    );
    println!("| renewals per second (HTTP, {RENEWAL_CLIENTS} clients) | {renewal_rate:.0} |");
    println!("| resident memory per registered instance | {per_instance} bytes |");
}
