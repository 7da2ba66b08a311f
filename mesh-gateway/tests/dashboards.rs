//! The Grafana dashboards under `docs/grafana/` query only what mesh exports: every metric
//! name in their queries is found in the `/metrics` of a busy mesh — a gateway routing through
//! the registry to a service that calls another through every client layer, times out,
//! retries, opens its circuit and publishes events a third service handles — or in the
//! registry's.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::StatusCode, routing::get};
use mesh_core::{
    Mesh,
    bus::{Event, EventType, SubscriptionConfig},
};
use mesh_gateway::{Gateway, GatewayConfig};
use mesh_registry::{Registry, RegistryConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every metric name the dashboards' queries use.
fn queried_metrics() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana");
    let mut names = BTreeSet::new();
    let mut dashboards = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                exprs.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            if let Some(query) = variable["query"]["query"].as_str() {
                exprs.push(query.to_owned());
            }
        }
        for expr in exprs {
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("mesh_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    assert_eq!(dashboards, 5, "the five dashboards in {dir}");
    names
}

/// The body of `GET path` at `addr`.
async fn get_text(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: mesh.test\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: u32,
}

impl EventType for OrderPlaced {
    const TYPE: &'static str = "order.placed";
}

async fn mesh(name: &str, registry: &Arc<Registry>, config: Value) -> Mesh {
    mesh_testkit::mesh(name, registry.clone(), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_query_is_exported_by_a_busy_mesh() {
    let queried = queried_metrics();
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_addr = listener.local_addr().unwrap();
    tokio::spawn(mesh_registry::serve(
        listener,
        registry.clone(),
        std::future::pending(),
    ));
    // On RabbitMQ when the machine has it (its queue depth is RabbitMQ's alone).
    let amqp = std::env::var("MESH_TEST_AMQP_URL").ok();
    let bus = match &amqp {
        Some(url) => json!({"url": url, "exchange": format!("dashboards-{}", std::process::id())}),
        None => json!({"url": format!("memory://dashboards-{}", std::process::id())}),
    };

    let flaky = Arc::new(AtomicUsize::new(0));
    let stock = mesh("stock", &registry, json!({"bus": bus})).await;
    let stock = stock
        .server(
            Router::new()
                .route("/ok", get(|| async { "ok" }))
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        "late"
                    }),
                )
                .route(
                    "/flaky",
                    get(move || {
                        // Every other call is a 503: retried, and failures for the breaker.
                        let n = flaky.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n.is_multiple_of(2) {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            }
                        }
                    }),
                ),
        )
        .start()
        .await
        .unwrap();

    let orders_config = json!({
        "bus": bus,
        // Spans go nowhere (nothing listens), but the export is installed.
        "observe": {"otlp": {"endpoint": "http://127.0.0.1:9"}},
        "clients": {"stock": {
            // Not propagated: the stock service would cut `slow` at the same instant, and its
            // 504 could beat the client's own timeout.
            "timeout": {"timeout": "100ms", "propagate": false},
            "retry": {"max_attempts": 2, "initial_backoff": "1ms"},
            "circuit_breaker": {"sliding_window_size": 2, "minimum_number_of_calls": 2,
                                "failure_rate_threshold": 50.0, "wait_duration_in_open_state": "60s"},
            "bulkhead": {"max_concurrent_calls": 8},
            "rate_limit": {"replenish_rate": 1000, "burst_capacity": 1000},
        }},
    });
    let orders = mesh("orders", &registry, orders_config).await;
    let (client, publisher) = (orders.client("stock"), orders.bus().await.unwrap());
    let orders = orders
        .server(Router::new().route(
            "/orders/{path}",
            get(
                move |axum::extract::Path(path): axum::extract::Path<String>| {
                    let (client, publisher) = (client.clone(), publisher.clone());
                    async move {
                        let request = http::Request::get(format!("/{path}"))
                            .body(Default::default())
                            .unwrap();
                        let status = match client.send(request).await {
                            Ok(answer) => answer.status().as_u16().to_string(),
                            Err(error) => error.kind().as_str().to_owned(),
                        };
                        let event = Event::new("orders", &OrderPlaced { order: 1 }).unwrap();
                        publisher.publish(event).await.unwrap();
                        status
                    }
                },
            ),
        ))
        .start()
        .await
        .unwrap();

    let notifier = mesh("notifier", &registry, json!({"bus": bus})).await;
    let (handled, mut told) = tokio::sync::mpsc::unbounded_channel();
    let _subscription = notifier
        .bus()
        .await
        .unwrap()
        .subscribe(
            SubscriptionConfig::new("notifier", "dashboards", ["order.*"]),
            Arc::new(move |_: Event| {
                handled.send(()).ok();
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();

    // The gateway as its binary runs it: relaying, with its access log.
    mesh_gateway::access_log::AccessLog::stdout();
    let routes = GatewayConfig::from_yaml(
        "routes:\n  - id: orders\n    uri: lb://orders\n    predicates: [Path=/orders/**]\n    auth: public\n",
    )
    .unwrap();
    let edge = mesh(
        "mesh-gateway",
        &registry,
        json!({"registry": {"register": false}}),
    )
    .await;
    let gateway = Gateway::new(routes, &edge).unwrap();
    let gateway = edge
        .server(gateway.clone())
        .relay(gateway)
        .start()
        .await
        .unwrap();

    // Busy: answers, a timeout, retries, then the circuit opening.
    let mut outcomes = Vec::new();
    for path in ["ok", "slow", "flaky", "flaky", "flaky", "ok"] {
        let answer = get_text(gateway.local_addr(), &format!("/orders/{path}")).await;
        outcomes.push(answer.rsplit("\r\n").next().unwrap_or_default().to_owned());
    }
    assert!(outcomes.contains(&"timeout".to_owned()), "{outcomes:?}");
    assert!(
        outcomes.contains(&"circuit_open".to_owned()),
        "{outcomes:?}"
    );
    for _ in 0..outcomes.len() {
        tokio::time::timeout(Duration::from_secs(10), told.recv())
            .await
            .expect("every event is handled");
    }
    // RabbitMQ's queue depth is sampled every few seconds.
    if amqp.is_some() {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    let exported = get_text(gateway.local_addr(), "/metrics").await
        + &get_text(registry_addr, "/metrics").await;
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| amqp.is_some() || name.as_str() != "mesh_bus_queue_depth")
        .filter(|name| {
            !exported.lines().any(|line| {
                line.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboards, not exported: {missing:?}"
    );
    assert!(queried.len() >= 25, "{queried:?}");
    for running in [gateway, orders, stock] {
        running.shutdown().await.unwrap();
    }
}
