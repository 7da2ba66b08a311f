//! mesh-gateway against nginx, both proxying to the same local upstream, in one run.
//!
//! Run with `cargo bench -p mesh-benches --bench gateway` (nginx on the PATH, or at
//! `MESH_BENCH_NGINX`). Each round sends 64 concurrent keep-alive clients' requests for 5 s
//! through the gateway (the minimal public `Path=/**` route, no auth) and then through nginx
//! (`proxy_pass` with upstream keep-alive, `worker_processes auto`); rounds alternate three
//! times and the medians are reported: requests per second, p50 and p99 latency. Results are
//! recorded in docs/performance.md.

use std::{
    net::SocketAddr,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh::{Mesh, axum, config::MeshConfig};

const CONNECTIONS: usize = 64;
const ROUND: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

async fn upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|| async { "hello from upstream" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn gateway(upstream: SocketAddr) -> mesh::server::Running {
    let yaml = format!(
        r#"routes: [{{id: all, uri: "http://{upstream}", predicates: ["Path=/**"], auth: public}}]"#
    );
    let config = mesh_gateway::GatewayConfig::from_yaml(&yaml).unwrap();
    let mesh = Mesh::builder("mesh-gateway")
        .config(MeshConfig::from_value(
            "mesh-gateway",
            serde_json::json!({}),
        ))
        .build()
        .await
        .unwrap();
    let router = mesh_gateway::Gateway::new(config, &mesh)
        .unwrap()
        .into_router();
    mesh.start(router).await.unwrap()
}

/// nginx proxying to `upstream`, listening on a free port.
fn nginx(upstream: SocketAddr) -> Option<(Child, SocketAddr, std::path::PathBuf)> {
    let binary = std::env::var("MESH_BENCH_NGINX").unwrap_or_else(|_| "nginx".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("mesh-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).ok()?;
    let conf = format!(
        "daemon off;\nworker_processes auto;\nerror_log {dir}/logs/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
           upstream app {{ server {upstream}; keepalive 128; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://app;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).ok()?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some((child, addr, dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Requests per second, p50 and p99, for `CONNECTIONS` clients hammering `addr` for `ROUND`.
async fn load(addr: SocketAddr) -> (f64, Duration, Duration) {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(200_000)));
    let uri: http::Uri = format!("http://{addr}/item").parse().unwrap();
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (uri, latencies) = (uri.clone(), latencies.clone());
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
                let mut mine = Vec::new();
                while started.elapsed() < ROUND {
                    let sent = Instant::now();
                    let request = http::Request::get(uri.clone()).body(Empty::new()).unwrap();
                    let response = client.request(request).await.unwrap();
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap();
                    mine.push(sent.elapsed());
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        at(0.5),
        at(0.99),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let upstream = upstream().await;
    let gateway = gateway(upstream).await;
    let Some((mut nginx, nginx_addr, dir)) = nginx(upstream) else {
        eprintln!("skipped: nginx could not be started (set MESH_BENCH_NGINX to its path)");
        return;
    };
    let (mut mesh_runs, mut nginx_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let g = load(gateway.local_addr()).await;
        let n = load(nginx_addr).await;
        println!(
            "round {round}: mesh-gateway {:.0} req/s (p50 {:?}, p99 {:?}); nginx {:.0} req/s (p50 {:?}, p99 {:?})",
            g.0, g.1, g.2, n.0, n.1, n.2
        );
        mesh_runs.push(g);
        nginx_runs.push(n);
    }
    let summary = |runs: &[(f64, Duration, Duration)]| {
        (
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1.as_secs_f64() * 1e3).collect()),
            median(runs.iter().map(|r| r.2.as_secs_f64() * 1e3).collect()),
        )
    };
    let (g, n) = (summary(&mesh_runs), summary(&nginx_runs));
    println!("| measure | mesh-gateway | nginx | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| requests per second (median of {ROUNDS}) | {:.0} | {:.0} | {:.2} |",
        g.0,
        n.0,
        g.0 / n.0
    );
    println!(
        "| p50 latency | {:.2} ms | {:.2} ms | {:.2} |",
        g.1,
        n.1,
        g.1 / n.1
    );
    println!(
        "| p99 latency | {:.2} ms | {:.2} ms | {:.2} |",
        g.2,
        n.2,
        g.2 / n.2
    );
    // TERM, not KILL: nginx's master then stops its workers too.
    let _ = Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(dir);
}
