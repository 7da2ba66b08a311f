//! Layered configuration: defaults < file < profile file < config server < environment.

use std::{path::PathBuf, time::Duration};

use mesh::{
    axum::{Json, Router, routing::get},
    client::ClientSettings,
    config::MeshConfig,
    error::ErrorKind,
    resilience::retry::RetryConfig,
    server::ServerSettings,
};
use serde_json::json;

/// Loads `file` alone: no environment, no defaults.
async fn load(file: impl Into<PathBuf>) -> Result<MeshConfig, mesh::error::MeshError> {
    MeshConfig::builder("orders")
        .file(file)
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .await
}

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn each_layer_overrides_the_one_below_key_by_key() {
    let dir = dir("layers");
    std::fs::write(
        dir.join("mesh.yaml"),
        "server:\n  address: 127.0.0.1:7000\n  body_limit: 100\nclients:\n  inventory-service:\n    retry: {max_attempts: 2, initial_backoff: 10ms}\n",
    )
    .unwrap();
    std::fs::write(dir.join("mesh-prod.yaml"), "server:\n  body_limit: 200\n").unwrap();
    let config = MeshConfig::builder("orders")
        .file(dir.join("mesh.yaml"))
        .defaults(json!({"server": {"drain_timeout": "5s", "body_limit": 50}}))
        .env_vars([
            ("MESH_PROFILE", "prod"),
            ("MESH_CLIENTS__INVENTORY_SERVICE__RETRY__MAX_ATTEMPTS", "5"),
            ("MESH_SERVER__ADDRESS", "127.0.0.1:7001"),
            ("UNRELATED", "x"),
        ])
        .load()
        .await
        .unwrap();
    assert_eq!(config.profile(), Some("prod"));
    let snapshot = config.snapshot();
    let server: ServerSettings = snapshot.section("server").unwrap();
    assert_eq!(
        server.address,
        "127.0.0.1:7001".parse().unwrap(),
        "environment wins"
    );
    assert_eq!(
        server.body_limit, 200,
        "the profile file beats the file and the defaults"
    );
    assert_eq!(
        server.drain_timeout,
        Duration::from_secs(5),
        "defaults fill the rest"
    );

    let client: ClientSettings = snapshot
        .merged_section(&["clients.inventory-service", "clients.inventory_service"])
        .unwrap();
    assert_eq!(
        client.retry,
        RetryConfig::default()
            .max_attempts(5)
            .initial_backoff(Duration::from_millis(10)),
        "the environment's `_` spelling of the service merges over the file's `-`"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn errors_name_the_key_and_the_file() {
    let dir = dir("errors");
    std::fs::write(
        dir.join("mesh.yaml"),
        "clients:\n  inventory:\n    retry:\n      max_attempts: many\n",
    )
    .unwrap();
    let config = load(dir.join("mesh.yaml")).await.unwrap();
    let error = config
        .snapshot()
        .section::<ClientSettings>("clients.inventory")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error
            .message()
            .contains("`clients.inventory.retry.max_attempts`"),
        "{error}"
    );
    assert!(error.message().contains("mesh.yaml"), "{error}");

    std::fs::write(dir.join("mesh.yaml"), "server: [unclosed\n").unwrap();
    let error = config.reload().await.unwrap_err();
    assert!(error.message().contains("mesh.yaml"), "{error}");
    assert_eq!(
        config.snapshot().revision(),
        1,
        "a bad file keeps the last configuration"
    );

    let missing = load(dir.join("absent.yaml")).await.unwrap_err();
    assert!(missing.message().contains("absent.yaml"), "{missing}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// mesh's own config server, behind credentials, read by mesh's config client with the
/// credentials in its URL (as Spring clients write them).
#[tokio::test]
async fn a_service_reads_mesh_s_config_server_with_the_credentials_in_its_url() {
    let repo = dir("config-repo");
    std::fs::write(
        repo.join("application.yml"),
        "clients:\n  inventory:\n    retry:\n      max_attempts: 9\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("orders-prod.yml"),
        "clients:\n  inventory:\n    retry:\n      max_attempts: 4\n",
    )
    .unwrap();
    let registry = mesh_registry::Registry::new(mesh_registry::RegistryConfig {
        auth: mesh_registry::AuthConfig {
            users: vec![mesh_registry::User::new("orders", "orders-pw")],
            ..Default::default()
        },
        ..Default::default()
    });
    let server = mesh_registry::config_server::ConfigServer::open(&repo, None).unwrap();
    let router = mesh_registry::api::router_with(
        std::sync::Arc::new(registry),
        Some(std::sync::Arc::new(server)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mesh_registry::serve_router(
        listener,
        router,
        std::future::pending(),
    ));

    let dir = dir("client");
    let with = |url: String| {
        std::fs::write(
            dir.join("mesh.yaml"),
            format!("config_server:\n  url: {url}\n  fail_fast: true\n"),
        )
        .unwrap();
        MeshConfig::builder("orders")
            .file(dir.join("mesh.yaml"))
            .profile("prod")
            .load()
    };
    let config = with(format!("http://orders:orders-pw@{addr}/config"))
        .await
        .unwrap();
    let retry: RetryConfig = config
        .snapshot()
        .section("clients.inventory.retry")
        .unwrap();
    assert_eq!(retry, RetryConfig::default().max_attempts(4));
    let refused = with(format!("http://orders:wrong-pw@{addr}/config"))
        .await
        .unwrap_err();
    assert!(refused.message().contains("401"), "{refused}");
    assert!(!refused.message().contains("wrong-pw"), "{refused}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(repo).unwrap();
}

#[tokio::test]
async fn the_config_server_layer_sits_between_the_files_and_the_environment() {
    // Spring Cloud Config's answer: the first property source has the highest precedence.
    let server = Router::new().route(
        "/config/orders/prod",
        get(|| async {
            Json(json!({
                "name": "orders",
                "profiles": ["prod"],
                "label": null,
                "version": "abc123",
                "propertySources": [
                    {"name": "orders-prod.yml", "source": {"clients.inventory.retry.max_attempts": 4, "server.body_limit": 300}},
                    {"name": "application.yml", "source": {"clients.inventory.retry.max_attempts": 9, "server.drain_timeout": "7s"}}
                ]
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { mesh::axum::serve(listener, server).await });

    let dir = dir("server");
    std::fs::write(
        dir.join("mesh.yaml"),
        format!("config_server:\n  url: http://{addr}/config\nserver:\n  body_limit: 100\n"),
    )
    .unwrap();
    let config = MeshConfig::builder("orders")
        .file(dir.join("mesh.yaml"))
        .profile("prod")
        .env_vars([("MESH_SERVER__BODY_LIMIT", "400")])
        .load()
        .await
        .unwrap();
    let snapshot = config.snapshot();
    let retry: RetryConfig = snapshot.section("clients.inventory.retry").unwrap();
    assert_eq!(retry, RetryConfig::default().max_attempts(4));
    let server: ServerSettings = snapshot.section("server").unwrap();
    assert_eq!(server.body_limit, 400);
    assert_eq!(server.drain_timeout, Duration::from_secs(7));

    // Unreachable and not fail-fast: the service starts on its other layers.
    std::fs::write(
        dir.join("mesh.yaml"),
        "config_server:\n  url: http://127.0.0.1:1/config\n",
    )
    .unwrap();
    let config = load(dir.join("mesh.yaml")).await.unwrap();
    assert!(config.snapshot().value("server").is_none());
    std::fs::write(
        dir.join("mesh.yaml"),
        "config_server:\n  url: http://127.0.0.1:1/config\n  fail_fast: true\n",
    )
    .unwrap();
    let error = load(dir.join("mesh.yaml")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn subscribers_see_a_changed_file_once_reloaded() {
    let dir = dir("watch");
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, "server:\n  body_limit: 100\n").unwrap();
    let config = load(&file).await.unwrap();
    let mut changes = config.subscribe();
    assert!(!config.reload().await.unwrap(), "nothing changed yet");
    std::fs::write(&file, "server:\n  body_limit: 200\n").unwrap();
    assert!(config.reload().await.unwrap());
    assert!(changes.has_changed().unwrap());
    let snapshot = changes.borrow_and_update().clone();
    assert_eq!(snapshot.revision(), 2);
    assert_eq!(
        snapshot
            .section::<ServerSettings>("server")
            .unwrap()
            .body_limit,
        200
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn watching_the_files_publishes_a_change_without_a_call() {
    let dir = dir("poll");
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, "server:\n  body_limit: 100\n").unwrap();
    let config = load(&file).await.unwrap();
    let mut changes = config.subscribe();
    let watcher = config.watch_files(Duration::from_millis(20));
    // A different length guarantees a different file even within one mtime tick.
    std::fs::write(&file, "server:\n  body_limit: 20000\n").unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the watcher noticed the change")
        .unwrap();
    let body_limit = changes
        .borrow()
        .section::<ServerSettings>("server")
        .unwrap()
        .body_limit;
    assert_eq!(body_limit, 20000);
    watcher.abort();
    std::fs::remove_dir_all(dir).unwrap();
}

use mesh_testkit::git;

/// The rate limit `clients.inventory.rate_limit` in a configuration file.
fn rate_limit(rate: u32) -> String {
    format!(
        "clients:\n  inventory:\n    rate_limit:\n      replenish_rate: {rate}\n      burst_capacity: {rate}\n"
    )
}

/// A change committed to the config repository reaches a running service through
/// `POST /actuator/busrefresh` on `bus`: its configuration and its client's rate limit change
/// without a restart; a refresh for another service changes nothing.
async fn a_committed_change_reaches_a_running_service_over(
    bus: std::sync::Arc<dyn mesh::bus::Bus>,
) {
    let repo = mesh_testkit::TempDir::new("mesh-refresh-repo");
    let repo = repo.path();
    std::fs::write(repo.join("orders.yml"), rate_limit(5)).unwrap();
    git(repo, &["init", "-q"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "five"]);
    let server = mesh_registry::config_server::ConfigServer::open(repo, None)
        .unwrap()
        .with_bus(bus.clone());
    let router = mesh_registry::api::router_with(
        std::sync::Arc::new(mesh_registry::Registry::new(Default::default())),
        Some(std::sync::Arc::new(server)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap();
    tokio::spawn(mesh_registry::serve_router(
        listener,
        router,
        std::future::pending(),
    ));

    // The service `orders`, calling `inventory` at a fixed address.
    let inventory = Router::new().route("/stock", get(|| async { Json(json!(3)) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inventory_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { mesh::axum::serve(listener, inventory).await });
    let service_dir = mesh_testkit::TempDir::new("mesh-refresh-service");
    let service_dir = service_dir.path();
    std::fs::write(
        service_dir.join("mesh.yaml"),
        format!(
            "config_server:\n  url: http://{registry}/config\n  fail_fast: true\nregistry:\n  register: false\nclients:\n  inventory:\n    instances: [\"{inventory_addr}\"]\n"
        ),
    )
    .unwrap();
    let config = MeshConfig::builder("orders")
        .file(service_dir.join("mesh.yaml"))
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .await
        .unwrap();
    let orders = mesh::Mesh::builder("orders")
        .config(config)
        .bus(bus.clone())
        .build()
        .await
        .unwrap();
    let running = orders
        .server(Router::new().route("/", get(|| async { "orders" })))
        .start()
        .await
        .unwrap();
    let client = orders.client("inventory");
    let limit = |client: &mesh::MeshClient| {
        client
            .settings()
            .and_then(|settings| settings.rate_limit)
            .map(|limit| format!("{limit:?}"))
            .unwrap_or_default()
    };
    let _: u32 = client.get_json("/stock").await.unwrap();
    assert!(
        limit(&client).contains("replenish_rate: 5"),
        "{}",
        limit(&client)
    );

    std::fs::write(repo.join("orders.yml"), rate_limit(50)).unwrap();
    git(repo, &["commit", "-q", "-am", "fifty"]);
    let refresh = |path: &'static str| async move {
        let (status, _, _) = mesh_test_post(registry, path).await;
        status
    };
    // For another service: nothing changes.
    assert_eq!(
        refresh("/actuator/busrefresh/payments").await,
        http::StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: u32 = client.get_json("/stock").await.unwrap();
    assert!(
        limit(&client).contains("replenish_rate: 5"),
        "{}",
        limit(&client)
    );
    // For every service: the new limit is in force without a restart.
    assert_eq!(
        refresh("/actuator/busrefresh").await,
        http::StatusCode::NO_CONTENT
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let _: u32 = client.get_json("/stock").await.unwrap();
        if limit(&client).contains("replenish_rate: 50") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", limit(&client));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A change the server cannot read: the service keeps its last good configuration.
    std::fs::write(repo.join("orders.yml"), "clients: [unclosed\n").unwrap();
    git(repo, &["commit", "-q", "-am", "broken"]);
    assert_eq!(
        refresh("/actuator/busrefresh/orders").await,
        http::StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: u32 = client.get_json("/stock").await.unwrap();
    assert!(
        limit(&client).contains("replenish_rate: 50"),
        "{}",
        limit(&client)
    );
    running.shutdown().await.unwrap();
}

async fn mesh_test_post(
    addr: std::net::SocketAddr,
    path: &str,
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(format!("http://{addr}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_change_reaches_a_running_service_over_the_memory_bus() {
    a_committed_change_reaches_a_running_service_over(std::sync::Arc::new(
        mesh::bus::MemoryBus::new(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_change_reaches_a_running_service_over_rabbitmq() {
    if let Some(bus) = mesh_testkit::rabbitmq_bus("refresh").await {
        a_committed_change_reaches_a_running_service_over(bus).await;
    }
}
