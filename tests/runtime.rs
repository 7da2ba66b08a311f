//! The mesh runtime end to end: several services in one process, on real sockets, sharing an
//! embedded registry.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use mesh::{
    MeshClient,
    axum::{Router, extract::State, routing::get},
    error::{ErrorKind, MeshError},
    resilience::circuit_breaker::State as CircuitState,
};
use serde_json::json;
use support::{Killable, call, get as http_get, registry, start};

/// B answers with the port it listens on, so callers see which instance answered.
fn b_router(name: &'static str) -> Router {
    Router::new().route("/who", get(move || async move { name }))
}

/// A answers by asking B, with a fallback once B's circuit is open.
fn a_router(b: MeshClient) -> Router {
    Router::new().route(
        "/ask",
        get(|State(b): State<MeshClient>| async move {
            let answer: Result<String, MeshError> = b.get_json("/who-json").await;
            match answer {
                Ok(who) => Ok(who),
                Err(error) if error.kind() == ErrorKind::CircuitOpen => Ok("fallback".to_owned()),
                Err(error) => Err(error),
            }
        })
        .with_state(b),
    )
}

fn b_json_router(name: &'static str) -> Router {
    Router::new().route(
        "/who-json",
        get(move || async move { mesh::axum::Json(name) }),
    )
}

/// Waits until the registry lists `count` instances of `service`.
async fn until_registered(registry: &Arc<mesh_registry::Registry>, service: &str, count: usize) {
    let discovery = registry.discover(service).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut discovery = discovery;
        while discovery.snapshot().len() != count {
            discovery.changed().await;
        }
    })
    .await
    .expect("instances registered");
}

#[tokio::test]
async fn a_calls_b_by_service_id_across_two_instances() {
    let registry = registry();
    let _b1 = start("b", b_json_router("b1"), &registry, json!({})).await;
    let _b2 = start("b", b_json_router("b2"), &registry, json!({})).await;
    until_registered(&registry, "b", 2).await;
    let a_mesh = support::mesh("a", &registry, json!({})).await;
    let a = a_mesh
        .server(a_router(a_mesh.client("b")))
        .start()
        .await
        .unwrap();

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = http_get(a.local_addr(), "/ask").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.insert(body);
    }
    assert_eq!(
        seen,
        ["b1", "b2"].iter().map(|s| s.to_string()).collect(),
        "both instances of b answered"
    );
}

/// A `MeshClient` is a tower service: here behind a concurrency limit of tower's own, called
/// with a body type of the caller's.
#[tokio::test]
async fn a_mesh_client_is_a_tower_service_that_layers_compose_with() {
    use tower::{ServiceBuilder, ServiceExt};

    let registry = registry();
    let _b = start("b", b_json_router("b1"), &registry, json!({})).await;
    until_registered(&registry, "b", 1).await;
    let a_mesh = support::mesh("a", &registry, json!({})).await;
    let layered = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(a_mesh.client("b"));
    let request = http::Request::get("/who-json")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let answer = layered.oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "\"b1\"");
    let missing = http::Request::get("/who-json").body(String::new()).unwrap();
    let error = a_mesh.client("nobody").oneshot(missing).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoInstances);
}

#[tokio::test]
async fn killing_one_b_makes_no_call_of_a_fail() {
    let registry = registry();
    let b1 = Killable::start("b", b_json_router("b1"), &registry);
    let _b2 = start("b", b_json_router("b2"), &registry, json!({})).await;
    until_registered(&registry, "b", 2).await;
    let a_mesh = support::mesh(
        "a",
        &registry,
        json!({"clients": {"b": {"retry": {"initial_backoff": "1ms", "max_backoff": "5ms"}}}}),
    )
    .await;
    let a = a_mesh
        .server(a_router(a_mesh.client("b")))
        .start()
        .await
        .unwrap();
    assert_eq!(http_get(a.local_addr(), "/ask").await.0, StatusCode::OK);

    b1.kill();
    // b1 stays registered (a crash does not deregister): retries and ejection carry A.
    for i in 0..50 {
        let (status, body) = http_get(a.local_addr(), "/ask").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "b2"), "call {i}");
    }
}

#[tokio::test]
async fn killing_every_b_opens_as_circuit_and_as_fallback_answers() {
    let registry = registry();
    let b1 = Killable::start("b", b_json_router("b1"), &registry);
    let b2 = Killable::start("b", b_json_router("b2"), &registry);
    until_registered(&registry, "b", 2).await;
    let a_mesh = support::mesh(
        "a",
        &registry,
        json!({"clients": {"b": {
            "retry": {"max_attempts": 1},
            "circuit_breaker": {"sliding_window_size": 4, "minimum_number_of_calls": 4},
        }}}),
    )
    .await;
    let a = a_mesh
        .server(a_router(a_mesh.client("b")))
        .start()
        .await
        .unwrap();
    assert_eq!(http_get(a.local_addr(), "/ask").await.0, StatusCode::OK);

    b1.kill();
    b2.kill();
    let mut failures = 0;
    let mut answer = None;
    for _ in 0..20 {
        match http_get(a.local_addr(), "/ask").await {
            (StatusCode::OK, body) => {
                answer = Some(body);
                break;
            }
            (status, _) => {
                assert!(status.is_server_error(), "{status}");
                failures += 1;
            }
        }
    }
    assert_eq!(answer.as_deref(), Some("fallback"));
    assert!(
        (2..=4).contains(&failures),
        "the circuit opened after the window filled: {failures} failures first"
    );
}

#[tokio::test]
async fn renewals_carry_the_services_traffic_and_open_circuits_to_the_registry() {
    let registry = registry();
    let b = Killable::start("b", b_json_router("b1"), &registry);
    until_registered(&registry, "b", 1).await;
    let a_mesh = support::mesh(
        "a",
        &registry,
        json!({
            "registry": {"renewal_interval": "100ms"},
            "clients": {"b": {
                "retry": {"max_attempts": 1},
                "circuit_breaker": {"sliding_window_size": 2, "minimum_number_of_calls": 2},
            }},
        }),
    )
    .await;
    let a = a_mesh
        .server(a_router(a_mesh.client("b")))
        .start()
        .await
        .unwrap();
    let a_id = a.instance().expect("a registers").id.clone();
    let summary = |registry: &Arc<mesh_registry::Registry>| {
        registry
            .summaries()
            .get(&"a".into(), &a_id)
            .map(|reported| reported.summary)
    };
    assert_eq!(http_get(a.local_addr(), "/ask").await.0, StatusCode::OK);
    let closed = until(|| {
        summary(&registry)
            .filter(|summary| summary.requests_per_second > 0.0 && !summary.breakers.is_empty())
    })
    .await;
    assert_eq!(closed.breakers[0].name, "b");
    assert_eq!(closed.breakers[0].state, CircuitState::Closed);
    assert!(closed.mean_latency_ms > 0.0);

    b.kill();
    let mut server_errors = 0;
    for _ in 0..5 {
        if http_get(a.local_addr(), "/ask").await.0.is_server_error() {
            server_errors += 1;
        }
    }
    assert!(server_errors > 0, "calls failed before the circuit opened");
    let open = until(|| {
        summary(&registry).filter(|summary| summary.breakers[0].state == CircuitState::Open)
    })
    .await;
    assert!(
        open.breakers[0].failure_rate >= 0.5,
        "the window that opened it failed at the threshold or above: {open:?}"
    );
}

/// Polls `found` until it finds something, for at most 10 s.
async fn until<T>(mut found: impl FnMut() -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(value) = found() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("found within 10 s")
}

#[tokio::test]
async fn a_deadline_set_at_a_expires_bs_work() {
    let registry = registry();
    let (cancelled_tx, cancelled_rx) = tokio::sync::oneshot::channel::<()>();
    let cancelled_tx = Arc::new(std::sync::Mutex::new(Some(cancelled_tx)));
    let finished = Arc::new(AtomicUsize::new(0));
    let b_work = {
        let finished = finished.clone();
        Router::new().route(
            "/who-json",
            get(move || {
                let guard = DropSignal(cancelled_tx.lock().unwrap().take());
                let finished = finished.clone();
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    mesh::axum::Json("late")
                }
            }),
        )
    };
    let _b = start("b", b_work, &registry, json!({})).await;
    until_registered(&registry, "b", 1).await;
    let a_mesh = support::mesh("a", &registry, json!({})).await;
    let a = a_mesh
        .server(a_router(a_mesh.client("b")))
        .start()
        .await
        .unwrap();

    // The caller gives A 300 ms; A passes what is left to B.
    let (status, _, body) = call(
        a.local_addr(),
        "GET",
        "/ask",
        &[("mesh-timeout", "300m")],
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("\"kind\":\"timeout\""), "{body}");
    tokio::time::timeout(Duration::from_secs(5), cancelled_rx)
        .await
        .expect("B's handler was dropped when the deadline passed")
        .unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

/// Sends on drop: tells a test that a handler future was dropped.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn a_config_change_alters_as_retry_count_live() {
    let registry = registry();
    let hits = Arc::new(AtomicUsize::new(0));
    let failing = {
        let hits = hits.clone();
        Router::new().route(
            "/who-json",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::SERVICE_UNAVAILABLE }
            }),
        )
    };
    let _b = start("b", failing, &registry, json!({})).await;
    until_registered(&registry, "b", 1).await;
    let dir = std::env::temp_dir().join(format!("mesh-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mesh.yaml");
    let yaml = |attempts: u32| {
        format!(
            "clients:\n  b:\n    retry: {{max_attempts: {attempts}, initial_backoff: 1ms, max_backoff: 2ms}}\n    circuit_breaker: {{minimum_number_of_calls: 1000}}\n"
        )
    };
    std::fs::write(&file, yaml(2)).unwrap();
    let a_mesh = mesh::Mesh::builder("a")
        .config_file(&file)
        .registry(registry.clone() as Arc<dyn mesh::registry::RegistryApi>)
        .build()
        .await
        .unwrap();
    let b = a_mesh.client("b");

    let error = b.get_json::<String>("/who-json").await.unwrap_err();
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hits.swap(0, Ordering::SeqCst), 2);

    std::fs::write(&file, yaml(4)).unwrap();
    assert!(a_mesh.config().reload().await.unwrap());
    b.get_json::<String>("/who-json").await.unwrap_err();
    assert_eq!(
        hits.swap(0, Ordering::SeqCst),
        4,
        "the new retry count applies"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn metrics_carry_the_red_series_with_route_and_status() {
    let registry = registry();
    let b = start("metered", b_router("b1"), &registry, json!({})).await;
    assert_eq!(http_get(b.local_addr(), "/who").await.0, StatusCode::OK);
    assert_eq!(
        http_get(b.local_addr(), "/nowhere").await.0,
        StatusCode::NOT_FOUND
    );

    let (status, headers, text) = call(b.local_addr(), "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let line = |needle: &[&str]| text.lines().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        line(&[
            "mesh_server_requests_total{",
            "service=\"metered\"",
            "route=\"/who\"",
            "status=\"200\"",
            "method=\"GET\""
        ]),
        "{text}"
    );
    assert!(
        line(&[
            "mesh_server_requests_total{",
            "service=\"metered\"",
            "status=\"404\""
        ]),
        "{text}"
    );
    assert!(
        line(&[
            "mesh_server_request_duration_seconds_bucket{",
            "route=\"/who\""
        ]),
        "{text}"
    );
    assert!(
        text.contains("# TYPE mesh_server_requests_total counter"),
        "{text}"
    );
}

/// Any HTTP service can be served, not only a router: the runtime's endpoints answer beside it
/// and its answers are counted under the route their `RouteLabel` names.
#[tokio::test]
async fn a_plain_service_is_served_with_the_runtime_endpoints_beside_it() {
    let registry = registry();
    let echo = tower::service_fn(|request: mesh::axum::extract::Request| async move {
        let mut response = mesh::axum::response::Response::new(mesh::axum::body::Body::from(
            request.uri().path().to_owned(),
        ));
        response
            .extensions_mut()
            .insert(mesh::observe::RouteLabel("echo".into()));
        Ok::<_, std::convert::Infallible>(response)
    });
    let running = support::mesh("plain", &registry, json!({}))
        .await
        .server(echo)
        .start()
        .await
        .unwrap();
    let addr = running.local_addr();

    assert_eq!(
        http_get(addr, "/any/path").await,
        (StatusCode::OK, "/any/path".to_owned())
    );
    assert_eq!(http_get(addr, "/health/live").await.0, StatusCode::OK);
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mesh_server_requests_total{")
                && l.contains("service=\"plain\"")
                && l.contains("route=\"echo\"")
                && l.contains("status=\"200\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn graceful_shutdown_deregisters_first_then_drains_an_in_flight_request() {
    let registry = registry();
    let (slow, held) = held_route();
    let b = start("slow", slow, &registry, json!({})).await;
    until_registered(&registry, "slow", 1).await;
    shutdown_drains_a_held_request(b, &registry, "slow", held).await;
}

/// A `/slow` route whose one request waits until released: the router, the signal that the
/// request has entered the handler and the sender that lets it finish.
fn held_route() -> (Router, Held) {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let slot = Arc::new(std::sync::Mutex::new(Some((entered_tx, release_rx))));
    let router = Router::new().route(
        "/slow",
        get(move || {
            let (entered, release) = slot.lock().unwrap().take().unwrap();
            async move {
                let _ = entered.send(());
                let _ = release.await;
                "done"
            }
        }),
    );
    (router, (entered_rx, release_tx))
}

type Held = (
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
);

/// Sends a request to `/slow`, shuts `service` down while it is held, and checks that the
/// service deregisters first and the request then completes before the service exits.
async fn shutdown_drains_a_held_request(
    service: mesh::runtime::Running,
    registry: &Arc<mesh_registry::Registry>,
    name: &str,
    (entered, release): Held,
) {
    let addr = service.local_addr();
    let in_flight = tokio::spawn(async move { http_get(addr, "/slow").await });
    entered.await.unwrap();

    let shutdown = tokio::spawn(service.shutdown());
    // Deregistered while the request is still in flight...
    until_registered(registry, name, 0).await;
    assert!(!in_flight.is_finished());
    // ...which then completes before the service exits.
    release.send(()).unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "done".to_owned())
    );
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_input_and_panics_get_json_errors_and_the_service_goes_on() {
    let registry = registry();
    let router = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .route(
            "/echo",
            mesh::axum::routing::post(|body: bytes::Bytes| async move { body.len().to_string() }),
        );
    let service = start(
        "fragile",
        router,
        &registry,
        json!({"server": {"body_limit": 1024}}),
    )
    .await;
    let addr = service.local_addr();

    let (status, body) = http_get(addr, "/panic").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["kind"], "internal");
    assert_eq!(body["error"]["trace_id"].as_str().unwrap().len(), 32);

    let (status, _, _) = call(addr, "POST", "/echo", &[], vec![b'x'; 4096]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, body) = call(addr, "POST", "/echo", &[], vec![b'x'; 512]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "512"));

    let (status, _, body) = call(
        addr,
        "GET",
        "/health",
        &[("mesh-timeout", "soon")],
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(http_get(addr, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test]
async fn readiness_runs_the_dependency_checks() {
    let registry = registry();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = healthy.clone();
    let service = mesh::Mesh::builder("checked")
        .config(mesh::config::MeshConfig::from_value("checked", json!({})))
        .registry(registry.clone() as Arc<dyn mesh::registry::RegistryApi>)
        .health_check("cache", Duration::from_secs(1), move || {
            let up = probe.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused".to_owned())
                }
            }
        })
        .build()
        .await
        .unwrap()
        .server(Router::new())
        .start()
        .await
        .unwrap();
    let addr = service.local_addr();

    let (status, body) = http_get(addr, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"status": "UP", "components": {"cache": {"status": "UP"}}})
    );
    healthy.store(false, Ordering::SeqCst);
    let (status, body) = http_get(addr, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("connection refused"), "{body}");
    assert_eq!(http_get(addr, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test]
async fn upstream_errors_keep_status_and_body() {
    let registry = registry();
    let router = Router::new().route(
        "/who-json",
        get(|| async { MeshError::new(ErrorKind::NotFound, "no such sku") }),
    );
    let _b = start("b", router, &registry, json!({})).await;
    until_registered(&registry, "b", 1).await;
    let a = support::mesh("a", &registry, json!({})).await;
    let error = a
        .client("b")
        .get_json::<String>("/who-json")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Upstream);
    assert_eq!(error.status(), StatusCode::NOT_FOUND);
    assert!(error.message().contains("no such sku"), "{error}");
    let body: serde_json::Value = serde_json::from_slice(error.upstream_body().unwrap()).unwrap();
    assert_eq!(body["error"]["kind"], "not_found");
}

#[tokio::test]
async fn a_client_without_registry_uses_configured_instances() {
    let registry = registry();
    let b = start(
        "b",
        b_json_router("fixed"),
        &registry,
        json!({"registry": {"register": false}}),
    )
    .await;
    let a = mesh::Mesh::builder("a")
        .config(mesh::config::MeshConfig::from_value(
            "a",
            json!({"clients": {"b": {"instances": [b.local_addr().to_string()]}}}),
        ))
        .build()
        .await
        .unwrap();
    let who: String = a.client("b").get_json("/who-json").await.unwrap();
    assert_eq!(who, "fixed");
    let error = a.client("c").get_json::<String>("/x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn promtool_accepts_the_metrics() {
    let Ok(promtool) = which_promtool() else {
        eprintln!("skipped: promtool is not installed");
        return;
    };
    let registry = registry();
    let b = start("exposed", b_json_router("b1"), &registry, json!({})).await;
    until_registered(&registry, "exposed", 1).await;
    let a = support::mesh("caller", &registry, json!({})).await;
    let _: String = a.client("exposed").get_json("/who-json").await.unwrap();
    http_get(b.local_addr(), "/nowhere").await;

    let (_, text) = http_get(b.local_addr(), "/metrics").await;
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn which_promtool() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file())
        .ok_or(())
}

/// A registry that refuses the first registrations, as one still starting would.
struct Flaky {
    registry: Arc<mesh_registry::Registry>,
    refusals: AtomicUsize,
}

impl mesh::registry::RegistryApi for Flaky {
    fn register<'a>(
        &'a self,
        instance: &'a mesh::discovery::Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> mesh::registry::RegistryFuture<'a, ()> {
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async {
                Err(MeshError::new(ErrorKind::Unavailable, "registry starting"))
            });
        }
        mesh::registry::RegistryApi::register(
            self.registry.as_ref(),
            instance,
            renewal_interval,
            lease_duration,
        )
    }

    fn renew<'a>(
        &'a self,
        service: &'a mesh::discovery::ServiceId,
        id: &'a str,
    ) -> mesh::registry::RegistryFuture<'a, bool> {
        mesh::registry::RegistryApi::renew(self.registry.as_ref(), service, id)
    }

    fn deregister<'a>(
        &'a self,
        service: &'a mesh::discovery::ServiceId,
        id: &'a str,
    ) -> mesh::registry::RegistryFuture<'a, ()> {
        mesh::registry::RegistryApi::deregister(self.registry.as_ref(), service, id)
    }

    fn watch(
        &self,
        cursor: Option<mesh_registry::model::Cursor>,
        wait: Duration,
    ) -> mesh::registry::RegistryFuture<'_, mesh_registry::WatchAnswer> {
        mesh::registry::RegistryApi::watch(self.registry.as_ref(), cursor, wait)
    }
}

#[tokio::test]
async fn a_service_starts_while_the_registry_is_away_and_registers_when_it_is_back() {
    let registry = registry();
    let flaky = Arc::new(Flaky {
        registry: registry.clone(),
        refusals: AtomicUsize::new(2),
    });
    let running = mesh::Mesh::builder("patient")
        .config(mesh::config::MeshConfig::from_value("patient", json!({})))
        .registry(flaky)
        .build()
        .await
        .unwrap()
        .server(b_router("up"))
        .start()
        .await
        .unwrap();
    assert_eq!(http_get(running.local_addr(), "/who").await.1, "up");
    assert!(!running.is_registered().await);
    until_registered(&registry, "patient", 1).await;
    assert!(running.is_registered().await);
    running.shutdown().await.unwrap();
    until_registered(&registry, "patient", 0).await;
}

#[tokio::test]
async fn serve_runs_until_its_shutdown_signal() {
    let registry = registry();
    let mesh = support::mesh("signalled", &registry, json!({})).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        mesh.server(b_router("s"))
            .shutdown(async {
                let _ = stopped.await;
            })
            .serve(),
    );
    until_registered(&registry, "signalled", 1).await;
    assert!(!serving.is_finished());
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    until_registered(&registry, "signalled", 0).await;
}

#[tokio::test]
async fn a_client_speaks_http2_when_told() {
    let registry = registry();
    let router = Router::new().route(
        "/who-json",
        get(|request: mesh::axum::extract::Request| async move {
            mesh::axum::Json(format!("{:?}", request.version()))
        }),
    );
    let _b = start("h2", router, &registry, json!({})).await;
    until_registered(&registry, "h2", 1).await;
    let a = support::mesh("a", &registry, json!({"clients": {"h2": {"http2": true}}})).await;
    let version: String = a.client("h2").get_json("/who-json").await.unwrap();
    assert_eq!(version, "HTTP/2.0");
    let a1 = support::mesh("a", &registry, json!({})).await;
    let version: String = a1.client("h2").get_json("/who-json").await.unwrap();
    assert_eq!(version, "HTTP/1.1");
}

#[tokio::test]
async fn worker_threads_share_one_port_and_drain_on_shutdown() {
    let registry = registry();
    let (slow, held) = held_route();
    let router = slow.route(
        "/thread",
        get(|| async { std::thread::current().name().unwrap_or("").to_owned() }),
    );
    let service = start(
        "workers",
        router,
        &registry,
        json!({"server": {"threads": 2}}),
    )
    .await;
    until_registered(&registry, "workers", 1).await;
    let addr = service.local_addr();
    // Each call is a new connection; the kernel spreads them over both workers' listeners.
    let mut threads = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, thread) = http_get(addr, "/thread").await;
        assert_eq!(status, StatusCode::OK);
        threads.insert(thread);
    }
    assert_eq!(
        threads.into_iter().collect::<Vec<_>>(),
        ["mesh-worker-0", "mesh-worker-1"]
    );

    shutdown_drains_a_held_request(service, &registry, "workers", held).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "every worker stopped listening"
    );
}
