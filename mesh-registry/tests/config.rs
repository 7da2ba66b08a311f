//! The config server over real HTTP, on a real git repository made here (a branch and a tag
//! with values of their own): Spring Cloud Config's JSON, resolution order, the renderings,
//! secrets, labels, and credentials.

use std::{path::Path, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_registry::{
    AuthConfig, Registry, RegistryConfig, User, api::router_with, config_server::ConfigServer,
};
use mesh_testkit::{TempDir, git};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const KEY: &str = "the config server's test key";

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// A repository: `main` (tagged `v1`) and `next`, which changes `orders-dev.yml`; `main`
/// checked out. Returns its directory, the commit of `main` and of `next`.
fn repository(secret: &str) -> (TempDir, String, String) {
    let dir = TempDir::new("mesh-config");
    let path = dir.path();
    git(path, &["init", "-q"]);
    write(
        path,
        "application.yml",
        "greeting: hello\nshared: from-application\nlist: [a, b]\n",
    );
    write(
        path,
        "application-dev.yml",
        "shared: from-application-dev\n",
    );
    write(path, "orders.yml", "timeout: 1s\nshared: from-orders\n");
    write(
        path,
        "orders-dev.yml",
        &format!(
            "timeout: 2s\ndb:\n  password: '{{cipher}}{secret}'\n  user: orders\nbroken: '{{cipher}}bm90IGEgY2lwaGVy'\n"
        ),
    );
    write(
        path,
        "orders-prod.properties",
        "timeout=5s\nmode = strict\n",
    );
    write(path, "notes.txt", "not configuration\n");
    git(path, &["add", "."]);
    git(path, &["commit", "-q", "-m", "first"]);
    git(path, &["tag", "v1"]);
    let main = git(path, &["rev-parse", "HEAD"]);
    git(path, &["checkout", "-q", "-b", "next"]);
    write(path, "orders-dev.yml", "timeout: 3s\n");
    git(path, &["commit", "-q", "-am", "next"]);
    let next = git(path, &["rev-parse", "HEAD"]);
    git(path, &["checkout", "-q", "main"]);
    (dir, main, next)
}

async fn serve(registry: RegistryConfig, config: ConfigServer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = router_with(Arc::new(Registry::new(registry)), Some(Arc::new(config)));
    tokio::spawn(mesh_registry::serve_router(
        listener,
        router,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

async fn call(method: &str, url: &str, auth: Option<&str>, body: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some(auth) = auth {
        request = request.header("authorization", format!("Basic {}", STANDARD.encode(auth)));
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let (status, body) = call("GET", url, None, "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn names(environment: &Value) -> Vec<String> {
    environment["propertySources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|source| {
            let name = source["name"].as_str().unwrap();
            name.rsplit('/').next().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn spring_shaped_environments_at_labels_with_secrets_and_renderings() {
    let log = Log::capture();
    let secret = mesh_registry::config_server::cipher::Cipher::new(KEY).encrypt("s3cr3t-pw");
    let (dir, main, next) = repository(&secret);
    let server = ConfigServer::open(dir.path(), Some(KEY)).unwrap();
    let url = serve(RegistryConfig::default(), server).await;

    let (status, dev) = get_json(&format!("{url}/config/orders/dev")).await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    assert_eq!(dev["name"], "orders");
    assert_eq!(dev["profiles"], json!(["dev"]));
    assert_eq!(dev["label"], "main");
    assert_eq!(dev["version"], main.as_str());
    assert_eq!(dev["state"], Value::Null);
    assert_eq!(
        names(&dev),
        [
            "orders-dev.yml",
            "application-dev.yml",
            "orders.yml",
            "application.yml"
        ],
        "most specific first"
    );
    let first = &dev["propertySources"][0]["source"];
    assert_eq!(first["timeout"], "2s");
    assert_eq!(
        first["db.password"], "s3cr3t-pw",
        "decrypted before it is served"
    );
    assert_eq!(first["db.user"], "orders");
    assert_eq!(
        first["invalid.broken"], "<n/a>",
        "as Spring serves what will not decrypt"
    );
    assert!(first.get("broken").is_none());
    assert_eq!(dev["propertySources"][3]["source"]["list[1]"], "b");

    // Several profiles: the last named wins; a `.properties` file is read as such.
    let (_, both) = get_json(&format!("{url}/config/orders/dev,prod")).await;
    assert_eq!(
        names(&both),
        [
            "orders-prod.properties",
            "orders-dev.yml",
            "application-dev.yml",
            "orders.yml",
            "application.yml"
        ]
    );
    assert_eq!(both["propertySources"][0]["source"]["mode"], "strict");

    // Labels: a branch, a tag, a commit; a missing one is a JSON 404.
    let (_, on_next) = get_json(&format!("{url}/config/orders/dev/next")).await;
    assert_eq!(on_next["label"], "next");
    assert_eq!(on_next["version"], next.as_str());
    assert_eq!(on_next["propertySources"][0]["source"]["timeout"], "3s");
    let (_, tagged) = get_json(&format!("{url}/config/orders/dev/v1")).await;
    assert_eq!(tagged["version"], main.as_str());
    assert_eq!(tagged["propertySources"][0]["source"]["timeout"], "2s");
    let (_, by_commit) = get_json(&format!("{url}/config/orders/dev/{next}")).await;
    assert_eq!(by_commit["propertySources"][0]["source"]["timeout"], "3s");
    let (status, missing) = get_json(&format!("{url}/config/orders/dev/nowhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["kind"], "not_found");
    let (status, _) = get_json(&format!("{url}/config/orders/dev/main..next")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no revision syntax in a label"
    );
    let (status, _) = get_json(&format!("{url}/config/..%2Fetc/dev")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The renderings: merged, the most specific value winning.
    let (status, yaml) = call("GET", &format!("{url}/config/orders-dev.yml"), None, "").await;
    assert_eq!(status, StatusCode::OK);
    let yaml: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(yaml["timeout"], "2s");
    assert_eq!(yaml["shared"], "from-application-dev");
    assert_eq!(yaml["db"]["password"], "s3cr3t-pw");
    assert_eq!(yaml["list"], json!(["a", "b"]));
    let (_, properties) = call(
        "GET",
        &format!("{url}/config/orders-dev.properties"),
        None,
        "",
    )
    .await;
    assert!(
        properties
            .lines()
            .any(|line| line == "db.password=s3cr3t-pw"),
        "{properties}"
    );
    assert!(
        properties.lines().any(|line| line == "list[0]=a"),
        "{properties}"
    );
    let (_, rendered) = get_json(&format!("{url}/config/next/orders-dev.json")).await;
    assert_eq!(rendered["timeout"], "3s", "a label before the file");
    assert_eq!(rendered["shared"], "from-application-dev");

    // Encrypt and decrypt for operators.
    let (status, encrypted) = call(
        "POST",
        &format!("{url}/config/encrypt"),
        None,
        "another secret",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, plain) = call("POST", &format!("{url}/config/decrypt"), None, &encrypted).await;
    assert_eq!((status, plain.as_str()), (StatusCode::OK, "another secret"));
    let foreign = mesh_registry::config_server::cipher::Cipher::new("another key").encrypt("x");
    let (status, refused) = call("POST", &format!("{url}/config/decrypt"), None, &foreign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("does not decrypt"), "{refused}");

    let logged = log.text();
    assert!(
        logged.contains("invalid"),
        "the broken value is logged: {logged}"
    );
    for secret in ["s3cr3t-pw", "another secret", KEY] {
        assert!(!logged.contains(secret), "{secret} in the log: {logged}");
    }
}

#[tokio::test]
async fn a_plain_directory_has_no_labels_and_no_key_means_no_encryption() {
    let dir = TempDir::new("mesh-config-plain");
    write(dir.path(), "application.properties", "greeting=hi\n");
    let url = serve(
        RegistryConfig::default(),
        ConfigServer::open(dir.path(), None).unwrap(),
    )
    .await;
    let (status, environment) = get_json(&format!("{url}/config/billing/default")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(environment["label"], Value::Null);
    assert_eq!(environment["version"], Value::Null);
    assert_eq!(names(&environment), ["application.properties"]);
    let (status, _) = get_json(&format!("{url}/config/billing/default/main")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call("POST", &format!("{url}/config/encrypt"), None, "x").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("MESH_CONFIG_ENCRYPT_KEY"), "{body}");
}

#[tokio::test]
async fn nobody_reads_configuration_anonymously_once_credentials_exist() {
    let dir = TempDir::new("mesh-config-secured");
    write(dir.path(), "application.yml", "greeting: hi\n");
    let secured = RegistryConfig {
        auth: AuthConfig {
            users: vec![User::new("orders", "orders-pw")],
            ..AuthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let url = serve(secured, ConfigServer::open(dir.path(), Some(KEY)).unwrap()).await;
    for (method, path) in [
        ("GET", "/config/orders/default"),
        ("GET", "/config/orders-default.yml"),
        ("POST", "/config/encrypt"),
        ("POST", "/config/decrypt"),
    ] {
        let (status, _) = call(method, &format!("{url}{path}"), None, "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let (status, _) = call(method, &format!("{url}{path}"), Some("orders:wrong"), "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (status, body) = call(
        "GET",
        &format!("{url}/config/orders/default"),
        Some("orders:orders-pw"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// What this test thread logs, kept.
struct Log {
    kept: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Log {
    fn capture() -> Self {
        let kept: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
        let writer = kept.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(writer.clone()))
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        Self {
            kept,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept.lock().unwrap()).into_owned()
    }
}

struct Writer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
