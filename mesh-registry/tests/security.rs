//! The registry's security matrix, over real sockets: who may write, what input is refused,
//! and that every refusal is mesh's JSON error and leaves the registry as it was.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_core::{
    auth::JwtConfig,
    discovery::{InstanceStatus, ServiceId},
    registry::model::Registration,
};
use mesh_registry::{
    AuthConfig, Registry, RegistryConfig, User,
    store::{MemoryStore, Store},
};
use serde_json::Value;
use tokio::net::TcpListener;

const JWT_SECRET: &str = "a registry test secret, long enough for HS256";

/// Spring Cloud Netflix's registration (Jackson codec).
const SPRING_BOOT_JSON: &str = r#"{"instance":{
  "instanceId":"192.168.1.10:inventory-service:8081","hostName":"192.168.1.10",
  "app":"INVENTORY-SERVICE","ipAddr":"192.168.1.10","status":"UP","overriddenStatus":"UNKNOWN",
  "port":{"$":8081,"@enabled":"true"},"securePort":{"$":443,"@enabled":"false"},"countryId":1,
  "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
  "leaseInfo":{"renewalIntervalInSecs":30,"durationInSecs":90},
  "metadata":{"management.port":"8081"},"vipAddress":"inventory-service"}}"#;

/// Eureka's XStream XML (older Java clients).
const XML_REGISTRATION: &str = r#"<instance><instanceId>10.0.0.5:order-service:5000</instanceId>
  <hostName>10.0.0.5</hostName><app>ORDER-SERVICE</app><ipAddr>10.0.0.5</ipAddr><status>UP</status>
  <port enabled="true">5000</port><securePort enabled="false">443</securePort>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs></leaseInfo>
  <metadata class="java.util.Collections$EmptyMap"/><vipAddress>order-service</vipAddress></instance>"#;

/// py-eureka-client (string ports).
const PY_EUREKA_JSON: &str = r#"{"instance": {"instanceId": "10.0.0.7:notification:5001",
  "hostName": "10.0.0.7", "app": "NOTIFICATION", "ipAddr": "10.0.0.7", "status": "UP",
  "port": {"$": "5001", "@enabled": "true"}, "securePort": {"$": "443", "@enabled": "false"},
  "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
  "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90}, "vipAddress": "notification"}}"#;

/// eureka-js-client (boolean `@enabled`, the host name is the id).
const EUREKA_JS_JSON: &str = r#"{"instance":{"hostName":"cart-1","app":"CART","ipAddr":"10.0.0.8",
  "vipAddress":"cart","port":{"$":3000,"@enabled":true},
  "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
  "status":"UP"}}"#;

struct Server {
    registry: Arc<Registry>,
    base: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the status and that the body is mesh's JSON error of `kind`.
    fn is_error(&self, status: StatusCode, kind: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{}",
            self.body
        );
        let json = self.json();
        assert_eq!(json["error"]["kind"], kind, "{}", self.body);
        assert!(json["error"]["message"].is_string(), "{}", self.body);
        self
    }
}

fn secured() -> RegistryConfig {
    RegistryConfig {
        auth: AuthConfig {
            users: vec![
                User::new("orders", "orders-pw"),
                User::new("payments", "payments-pw"),
                User::operator("ops", "ops-pw"),
            ],
            jwt: Some(JwtConfig::with_secret(JWT_SECRET)),
            ..AuthConfig::default()
        },
        ..RegistryConfig::default()
    }
}

async fn start(config: RegistryConfig) -> Server {
    start_on(config, Arc::new(MemoryStore::new())).await
}

async fn start_on(config: RegistryConfig, store: Arc<dyn Store>) -> Server {
    let registry = Arc::new(Registry::try_with_store(config, store).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mesh_registry::serve(
        listener,
        registry.clone(),
        std::future::pending(),
    ));
    Server {
        registry,
        base: format!("http://{addr}"),
        http: Client::builder(TokioExecutor::new()).build_http(),
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn token(subject: &str, roles: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"sub": subject, "roles": roles, "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = self
            .http
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, service: &str, id: &str) -> Option<Registration> {
        self.registry
            .store()
            .get(&ServiceId::new(service), id)
            .await
            .unwrap()
    }

    /// Registers `orders-1` (host 10.0.0.1) as `orders` over the native API.
    async fn register_orders(&self) -> Registration {
        let answer = self
            .send(
                Method::POST,
                "/v1/services/orders/instances",
                Some(&basic("orders", "orders-pw")),
                Some("application/json"),
                r#"{"id": "orders-1", "host": "10.0.0.1", "port": 8080}"#,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(
            !answer.body.contains("\"owner\""),
            "owners are not shown: {}",
            answer.body
        );
        let registration = self.get("orders", "orders-1").await.unwrap();
        assert_eq!(registration.owner.as_deref(), Some("orders"));
        registration
    }
}

/// Every write the registry takes on `orders-1`, as (method, path, content type, body).
fn writes_on_orders_1() -> Vec<(Method, &'static str, Option<&'static str>, &'static str)> {
    let repoint_native = r#"{"id": "orders-1", "host": "6.6.6.6", "port": 8080}"#;
    let repoint_eureka = r#"{"instance":{"instanceId":"orders-1","hostName":"6.6.6.6","app":"ORDERS","port":{"$":8080,"@enabled":"true"}}}"#;
    vec![
        (
            Method::POST,
            "/v1/services/orders/instances",
            Some("application/json"),
            repoint_native,
        ),
        (
            Method::PUT,
            "/v1/services/orders/instances/orders-1/heartbeat",
            None,
            "",
        ),
        (
            Method::PUT,
            "/v1/services/orders/instances/orders-1/status",
            Some("application/json"),
            r#"{"status": "OUT_OF_SERVICE"}"#,
        ),
        (
            Method::DELETE,
            "/v1/services/orders/instances/orders-1",
            None,
            "",
        ),
        (
            Method::POST,
            "/eureka/apps/ORDERS",
            Some("application/json"),
            repoint_eureka,
        ),
        (
            Method::POST,
            "/eureka/v2/apps/ORDERS",
            Some("application/json"),
            repoint_eureka,
        ),
        (
            Method::PUT,
            "/eureka/apps/ORDERS/orders-1?status=DOWN",
            None,
            "",
        ),
        (
            Method::PUT,
            "/eureka/apps/ORDERS/orders-1/status?value=OUT_OF_SERVICE",
            None,
            "",
        ),
        (
            Method::DELETE,
            "/eureka/apps/ORDERS/orders-1/status",
            None,
            "",
        ),
        (
            Method::PUT,
            "/eureka/apps/ORDERS/orders-1/metadata?evil=1",
            None,
            "",
        ),
        (Method::DELETE, "/eureka/apps/ORDERS/orders-1", None, ""),
        (Method::DELETE, "/eureka/v2/apps/ORDERS/orders-1", None, ""),
    ]
}

/// Nothing about `orders-1` changed: address, status, lease, metadata, owner.
async fn assert_unchanged(server: &Server, before: &Registration, what: &str) {
    let now = server
        .get("orders", "orders-1")
        .await
        .unwrap_or_else(|| panic!("{what}: orders-1 was removed"));
    assert_eq!(&now, before, "{what}: orders-1 changed");
}

#[tokio::test]
async fn anonymous_and_wrong_credentials_are_401_and_change_nothing() {
    let server = start(secured()).await;
    let before = server.register_orders().await;
    let wrong = [
        None,
        Some(basic("orders", "wrong")),
        Some(basic("orders", "orders-p")),
        Some(basic("nobody", "orders-pw")),
        Some("Basic !!!not-base64".to_string()),
        Some("Bearer not.a.token".to_string()),
        Some("Digest whatever".to_string()),
    ];
    for auth in &wrong {
        for (method, path, content_type, body) in writes_on_orders_1() {
            let what = format!("{method} {path} with {auth:?}");
            let answer = server
                .send(method, path, auth.as_deref(), content_type, body)
                .await;
            answer.is_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert!(
                answer.headers.get(header::WWW_AUTHENTICATE).is_some(),
                "{what}: a 401 carries a challenge"
            );
            assert_unchanged(&server, &before, &what).await;
        }
    }
    // A new registration without credentials is refused too: nothing is added.
    let answer = server
        .send(
            Method::POST,
            "/eureka/apps/CART",
            None,
            Some("application/json"),
            EUREKA_JS_JSON,
        )
        .await;
    answer.is_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(server.get("cart", "cart-1").await.is_none());
}

#[tokio::test]
async fn another_identity_gets_403_and_changes_nothing() {
    let server = start(secured()).await;
    let before = server.register_orders().await;
    let foreign = [
        basic("payments", "payments-pw"),
        token("orders", &[]),
        token("payments", &["registry-writer"]),
    ];
    for auth in &foreign {
        for (method, path, content_type, body) in writes_on_orders_1() {
            let what = format!("{method} {path} as {auth}");
            let answer = server
                .send(method, path, Some(auth), content_type, body)
                .await;
            answer.is_error(StatusCode::FORBIDDEN, "forbidden");
            assert_unchanged(&server, &before, &what).await;
        }
    }
}

/// Which of two `Authorization` fields a proxy in front checked is not known: both orders
/// are refused, and nothing changes.
#[tokio::test]
async fn two_authorization_fields_are_refused_whichever_comes_first() {
    let server = start(secured()).await;
    let before = server.register_orders().await;
    let (owner, other) = (
        basic("orders", "orders-pw"),
        basic("payments", "payments-pw"),
    );
    for [first, second] in [[&owner, &other], [&other, &owner]] {
        for (method, path, content_type, body) in writes_on_orders_1() {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(format!("{}{path}", server.base))
                .header(header::AUTHORIZATION, first.as_str())
                .header(header::AUTHORIZATION, second.as_str());
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let request = request.body(Full::new(Bytes::from(body))).unwrap();
            let response = server.http.request(request).await.unwrap();
            let what = format!("{method} {path} with {first} then {second}");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
            assert_unchanged(&server, &before, &what).await;
        }
    }
}

#[tokio::test]
async fn the_owner_and_operators_may_change_an_instance() {
    let server = start(secured()).await;
    let before = server.register_orders().await;
    let orders = basic("orders", "orders-pw");
    // Readers see the instance, not who owns it.
    for path in ["/v1/watch?since=0", "/v1/services"] {
        let answer = server.send(Method::GET, path, None, None, "").await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(answer.body.contains("orders-1"), "{path}: {}", answer.body);
        assert!(!answer.body.contains("owner"), "{path}: {}", answer.body);
    }
    let snapshot: mesh_registry::WatchAnswer = serde_json::from_str(
        &server
            .send(Method::GET, "/v1/watch?since=0", None, None, "")
            .await
            .body,
    )
    .unwrap();
    assert!(
        matches!(snapshot, mesh_registry::WatchAnswer::Snapshot(s) if s.registrations.len() == 1)
    );

    let answer = server
        .send(
            Method::PUT,
            "/v1/services/orders/instances/orders-1/heartbeat",
            Some(&orders),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = server
        .send(
            Method::PUT,
            "/eureka/apps/ORDERS/orders-1/metadata?version=2",
            Some(&orders),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let now = server.get("orders", "orders-1").await.unwrap();
    assert_eq!(now.instance.metadata["version"], "2");
    let answer = server
        .send(Method::GET, "/v1/watch?since=1&timeout=1ms", None, None, "")
        .await;
    assert!(answer.body.contains("\"MODIFIED\""), "{}", answer.body);
    assert!(!answer.body.contains("owner"), "{}", answer.body);

    // An operator overrides the status and keeps the owner.
    for operator in [
        basic("ops", "ops-pw"),
        token("someone", &["registry-operator"]),
    ] {
        let answer = server
            .send(
                Method::PUT,
                "/eureka/apps/ORDERS/orders-1/status?value=OUT_OF_SERVICE",
                Some(&operator),
                None,
                "",
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let now = server.get("orders", "orders-1").await.unwrap();
        assert_eq!(now.status(), InstanceStatus::OutOfService);
        assert_eq!(now.owner, before.owner);
    }
    // An operator may re-point it; the owner stays, and may still renew.
    let answer = server
        .send(
            Method::POST,
            "/v1/services/orders/instances",
            Some(&basic("ops", "ops-pw")),
            Some("application/json"),
            r#"{"id": "orders-1", "host": "10.0.0.2", "port": 8080}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let now = server.get("orders", "orders-1").await.unwrap();
    assert_eq!(
        (now.instance.host.as_str(), now.owner.as_deref()),
        ("10.0.0.2", Some("orders"))
    );
    let answer = server
        .send(
            Method::PUT,
            "/v1/services/orders/instances/orders-1/heartbeat",
            Some(&orders),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = server
        .send(
            Method::DELETE,
            "/v1/services/orders/instances/orders-1",
            Some(&basic("ops", "ops-pw")),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert!(server.get("orders", "orders-1").await.is_none());
}

#[tokio::test]
async fn tokens_own_what_they_register_and_may_need_a_role() {
    let mut config = secured();
    config.auth.jwt_write_role = Some("registry-writer".into());
    let server = start(config).await;
    let body = r#"{"id": "tok-1", "host": "10.0.0.9", "port": 80}"#;
    let answer = server
        .send(
            Method::POST,
            "/v1/services/billing/instances",
            Some(&token("billing", &[])),
            Some("application/json"),
            body,
        )
        .await;
    answer.is_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(server.get("billing", "tok-1").await.is_none());

    let writer = token("billing", &["registry-writer"]);
    let answer = server
        .send(
            Method::POST,
            "/v1/services/billing/instances",
            Some(&writer),
            Some("application/json"),
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let owner = server.get("billing", "tok-1").await.unwrap().owner;
    assert_eq!(owner.as_deref(), Some("jwt:billing"));

    // The Basic user `billing` (were there one) is not the token subject `billing`; another
    // subject with the role is someone else.
    let answer = server
        .send(
            Method::DELETE,
            "/v1/services/billing/instances/tok-1",
            Some(&token("other", &["registry-writer"])),
            None,
            "",
        )
        .await;
    answer.is_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(server.get("billing", "tok-1").await.is_some());
    let answer = server
        .send(
            Method::DELETE,
            "/v1/services/billing/instances/tok-1",
            Some(&writer),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

#[tokio::test]
async fn eureka_clients_with_basic_credentials_register_renew_and_cancel() {
    let server = start(secured()).await;
    let orders = basic("orders", "orders-pw");
    let clients = [
        (
            "/eureka/apps/INVENTORY-SERVICE",
            "application/json",
            SPRING_BOOT_JSON,
            "inventory-service",
            "192.168.1.10:inventory-service:8081",
        ),
        (
            "/eureka/apps/ORDER-SERVICE",
            "application/xml",
            XML_REGISTRATION,
            "order-service",
            "10.0.0.5:order-service:5000",
        ),
        (
            "/eureka/apps/NOTIFICATION",
            "application/json",
            PY_EUREKA_JSON,
            "notification",
            "10.0.0.7:notification:5001",
        ),
        (
            "/eureka/v2/apps/CART",
            "application/json",
            EUREKA_JS_JSON,
            "cart",
            "cart-1",
        ),
    ];
    for (path, content_type, body, service, id) in clients {
        let answer = server
            .send(Method::POST, path, Some(&orders), Some(content_type), body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{path}: {}",
            answer.body
        );
        assert_eq!(
            server.get(service, id).await.unwrap().owner.as_deref(),
            Some("orders")
        );
        let renew = format!("{path}/{}?status=UP", id.replace(':', "%3A"));
        let answer = server
            .send(Method::PUT, &renew, Some(&orders), None, "")
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{renew}: {}", answer.body);
        // Re-registering (a restarted client) is the owner's right.
        let answer = server
            .send(Method::POST, path, Some(&orders), Some(content_type), body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{path}: {}",
            answer.body
        );
    }
    // Reads stay open by default.
    let answer = server
        .send(Method::GET, "/eureka/apps", None, None, "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .body
            .contains("<apps__hashcode>UP_4_</apps__hashcode>"),
        "{}",
        answer.body
    );
    for (path, _, _, service, id) in clients {
        let cancel = format!("{path}/{}", id.replace(':', "%3A"));
        let answer = server
            .send(Method::DELETE, &cancel, Some(&orders), None, "")
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{cancel}: {}", answer.body);
        assert!(server.get(service, id).await.is_none());
    }
}

#[tokio::test]
async fn the_registry_client_sends_the_urls_credentials() {
    use mesh_core::{discovery::Instance, registry::RegistryClient};
    let server = start(secured()).await;
    let url = server.base.replace("http://", "http://orders:orders-pw@");
    let client = RegistryClient::new(&url).unwrap();
    let instance = Instance::new("orders", "10.0.0.3", 8080);
    client
        .register(&instance, Duration::from_secs(5), Duration::from_secs(15))
        .await
        .unwrap();
    let owner = server.get("orders", &instance.id).await.unwrap().owner;
    assert_eq!(owner.as_deref(), Some("orders"));
    assert!(client.renew(&instance.service, &instance.id).await.unwrap());

    let stranger = RegistryClient::new(&server.base).unwrap();
    let error = stranger
        .renew(&instance.service, &instance.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    let wrong =
        RegistryClient::new(&server.base.replace("http://", "http://orders:nope@")).unwrap();
    let error = wrong
        .deregister(&instance.service, &instance.id)
        .await
        .unwrap_err();
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert!(!error.to_string().contains("nope"));
    assert!(server.get("orders", &instance.id).await.is_some());

    client
        .deregister(&instance.service, &instance.id)
        .await
        .unwrap();
    assert!(server.get("orders", &instance.id).await.is_none());

    // Without credentials configured, the same client works anonymously.
    let open = start(RegistryConfig::default()).await;
    let client = RegistryClient::new(&open.base).unwrap();
    client
        .register(&instance, Duration::from_secs(5), Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(open.get("orders", &instance.id).await.unwrap().owner, None);
}

#[tokio::test]
async fn protected_reads_need_credentials_but_health_does_not() {
    let mut config = secured();
    config.auth.protect_reads = true;
    let server = start(config).await;
    for path in [
        "/eureka/apps",
        "/v1/services",
        "/v1/watch?since=0&timeout=1ms",
        "/metrics",
    ] {
        let answer = server.send(Method::GET, path, None, None, "").await;
        answer.is_error(StatusCode::UNAUTHORIZED, "unauthorized");
        let answer = server
            .send(
                Method::GET,
                path,
                Some(&basic("payments", "payments-pw")),
                None,
                "",
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    let answer = server.send(Method::GET, "/health", None, None, "").await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = server
        .send(
            Method::POST,
            "/mesh.registry.v1.Registry/Watch",
            None,
            Some("application/grpc"),
            "",
        )
        .await;
    assert_eq!(
        answer.headers.get("grpc-status").unwrap(),
        "16",
        "gRPC's unauthenticated"
    );
}

#[tokio::test]
async fn an_unowned_registration_is_left_to_operators() {
    // Made while the registry took anonymous writes (a Redis store carried over, say).
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let open = Registry::with_store(RegistryConfig::default(), store.clone());
    open.register(
        mesh_core::discovery::Instance::new("orders", "10.0.0.1", 8080),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let server = start_on(secured(), store).await;
    let id = "10.0.0.1:orders:8080";
    let path = format!("/v1/services/orders/instances/{}", id.replace(':', "%3A"));
    let answer = server
        .send(
            Method::DELETE,
            &path,
            Some(&basic("orders", "orders-pw")),
            None,
            "",
        )
        .await;
    answer.is_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(server.get("orders", id).await.is_some());
    let answer = server
        .send(
            Method::DELETE,
            &path,
            Some(&basic("ops", "ops-pw")),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

#[tokio::test]
async fn owners_are_kept_in_redis() {
    let Ok(url) = std::env::var("MESH_TEST_REDIS_URL") else {
        eprintln!("MESH_TEST_REDIS_URL not set: skipping the Redis ownership test");
        return;
    };
    let prefix = format!("mesh:test:security:{}:", std::process::id());
    let store = mesh_registry::store::RedisStore::connect(&url, &prefix)
        .await
        .unwrap();
    let server = start_on(secured(), store.clone()).await;
    let before = server.register_orders().await;
    for (method, path, content_type, body) in writes_on_orders_1() {
        let answer = server
            .send(
                method.clone(),
                path,
                Some(&basic("payments", "payments-pw")),
                content_type,
                body,
            )
            .await;
        answer.is_error(StatusCode::FORBIDDEN, "forbidden");
        assert_unchanged(&server, &before, &format!("{method} {path} (Redis)")).await;
    }
    // A second replica on the same Redis knows the owner too.
    let replica = start_on(secured(), store).await;
    let answer = replica
        .send(
            Method::DELETE,
            "/v1/services/orders/instances/orders-1",
            Some(&basic("payments", "payments-pw")),
            None,
            "",
        )
        .await;
    answer.is_error(StatusCode::FORBIDDEN, "forbidden");
    let answer = replica
        .send(
            Method::DELETE,
            "/v1/services/orders/instances/orders-1",
            Some(&basic("orders", "orders-pw")),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

#[tokio::test]
async fn metadata_beyond_the_limits_is_refused_with_the_limit_named() {
    let server = start(RegistryConfig::default()).await;
    let too_many: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    let too_big = serde_json::json!({"blob": "x".repeat(8 * 1024)});
    for (metadata, limit) in [
        (Value::Object(too_many), "max_metadata_entries"),
        (too_big, "max_metadata_bytes"),
    ] {
        let native =
            serde_json::json!({"id": "m-1", "host": "10.0.0.1", "port": 80, "metadata": metadata});
        let answer = server
            .send(
                Method::POST,
                "/v1/services/meta/instances",
                None,
                Some("application/json"),
                native.to_string(),
            )
            .await;
        answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(limit)
        );
        let eureka = serde_json::json!({"instance": {"instanceId": "m-1", "hostName": "10.0.0.1",
            "app": "META", "port": {"$": 80, "@enabled": "true"}, "metadata": metadata}});
        let answer = server
            .send(
                Method::POST,
                "/eureka/apps/META",
                None,
                Some("application/json"),
                eureka.to_string(),
            )
            .await;
        answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(answer.body.contains(limit), "{}", answer.body);
        assert!(
            server.get("meta", "m-1").await.is_none(),
            "nothing was registered"
        );
    }
    // At the limits exactly, it is accepted; a metadata update past them is not.
    let at_limit: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("k{i:02}"), Value::from("x".repeat(124))))
        .collect();
    let body =
        serde_json::json!({"id": "m-1", "host": "10.0.0.1", "port": 80, "metadata": at_limit});
    let answer = server
        .send(
            Method::POST,
            "/v1/services/meta/instances",
            None,
            Some("application/json"),
            body.to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let before = server.get("meta", "m-1").await.unwrap();
    let answer = server
        .send(
            Method::PUT,
            "/eureka/apps/META/m-1/metadata?one=more",
            None,
            None,
            "",
        )
        .await;
    answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(server.get("meta", "m-1").await.unwrap(), before);

    // The limits are configuration.
    let strict = start(RegistryConfig {
        max_metadata_entries: 1,
        ..RegistryConfig::default()
    })
    .await;
    let answer = strict
        .send(
            Method::POST,
            "/v1/services/meta/instances",
            None,
            Some("application/json"),
            r#"{"host": "10.0.0.1", "port": 80, "metadata": {"a": "1", "b": "2"}}"#,
        )
        .await;
    answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn control_characters_in_identifiers_are_refused() {
    let server = start(RegistryConfig::default()).await;
    let native = [
        r#"{"id": "a\nINFO forged line", "host": "10.0.0.1", "port": 80}"#,
        r#"{"id": "ok", "host": "10.0.0.1\r\n", "port": 80}"#,
        r#"{"id": "ok", "host": "10.0.0.1", "port": 80, "zone": "z\u001b[31m"}"#,
        r#"{"id": "ok", "host": "10.0.0.1", "port": 80, "metadata": {"k\n": "v"}}"#,
    ];
    for body in native {
        let answer = server
            .send(
                Method::POST,
                "/v1/services/svc/instances",
                None,
                Some("application/json"),
                body,
            )
            .await;
        answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let eureka = r#"{"instance":{"instanceId":"x\ny","hostName":"h","app":"SVC","port":{"$":1,"@enabled":"true"}}}"#;
    let answer = server
        .send(
            Method::POST,
            "/eureka/apps/SVC",
            None,
            Some("application/json"),
            eureka,
        )
        .await;
    answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
    for (method, path) in [
        (Method::POST, "/v1/services/s%0Avc/instances"),
        (Method::PUT, "/v1/services/svc/instances/a%0Ab/heartbeat"),
        (Method::DELETE, "/eureka/apps/SVC/a%0D%0Ab"),
        (Method::PUT, "/eureka/apps/SVC/a%0Ab?status=UP"),
    ] {
        let answer = server
            .send(
                method.clone(),
                path,
                None,
                Some("application/json"),
                r#"{"host": "10.0.0.1", "port": 80}"#,
            )
            .await;
        answer.is_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let snapshot = server.registry.snapshot().await.unwrap();
    assert!(snapshot.registrations.is_empty(), "nothing was registered");
}

#[tokio::test]
async fn unknown_paths_are_404_unless_the_client_speaks_grpc() {
    let server = start(RegistryConfig::default()).await;
    for path in [
        "/nope",
        "/v1/nope",
        "/eureka/nope/deeper",
        "/mesh.registry.v1.Registry/Nope",
    ] {
        let answer = server.send(Method::GET, path, None, None, "").await;
        answer.is_error(StatusCode::NOT_FOUND, "not_found");
    }
    let answer = server
        .send(Method::POST, "/nope", None, Some("application/grpc"), "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers.get("grpc-status").unwrap(), "12");
}

#[tokio::test]
async fn rejections_are_json_with_their_status() {
    let server = start(RegistryConfig::default()).await;
    let register = "/v1/services/svc/instances";
    server
        .send(
            Method::POST,
            register,
            None,
            Some("application/json"),
            "{not json",
        )
        .await
        .is_error(StatusCode::BAD_REQUEST, "bad_request");
    server
        .send(
            Method::POST,
            register,
            None,
            Some("application/json"),
            r#"{"host": 1}"#,
        )
        .await
        .is_error(StatusCode::BAD_REQUEST, "bad_request");
    server
        .send(
            Method::POST,
            register,
            None,
            None,
            r#"{"host": "h", "port": 1}"#,
        )
        .await
        .is_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    server
        .send(
            Method::POST,
            register,
            None,
            Some("text/plain"),
            r#"{"host": "h", "port": 1}"#,
        )
        .await
        .is_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!(r#"{{"host": "{}", "port": 1}}"#, "h".repeat(300_000));
    for path in [register, "/eureka/apps/SVC"] {
        server
            .send(
                Method::POST,
                path,
                None,
                Some("application/json"),
                huge.clone(),
            )
            .await
            .is_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    server
        .send(Method::PATCH, "/v1/services", None, None, "")
        .await
        .is_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    server
        .send(Method::GET, "/v1/watch?since=abc", None, None, "")
        .await
        .is_error(StatusCode::BAD_REQUEST, "bad_request");
    server
        .send(
            Method::POST,
            "/eureka/apps/SVC",
            None,
            Some("application/xml"),
            "<instance>",
        )
        .await
        .is_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        server
            .registry
            .snapshot()
            .await
            .unwrap()
            .registrations
            .is_empty()
    );
}

/// Starts the binary with `env`, returns the log lines up to "listening" and the child.
fn start_binary(env: &[(&str, String)]) -> (Vec<String>, std::process::Child) {
    use std::io::{BufRead, BufReader};
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-registry"));
    command
        .env_remove("MESH_REGISTRY_USERS")
        .env_remove("MESH_REGISTRY_REDIS_URL")
        .env("NO_COLOR", "1")
        .env("MESH_LOG", "info")
        .stdout(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("mesh-registry listening");
        lines.push(line);
        if done {
            break;
        }
    }
    (lines, child)
}

#[test]
fn without_credentials_the_binary_listens_on_loopback_only_and_says_why() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (lines, mut child) = start_binary(&[("MESH_REGISTRY_ADDR", format!("0.0.0.0:{port}"))]);
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    // ECS JSON lines: the warning is one, at level `warn`.
    let warning: serde_json::Value = lines
        .iter()
        .find(|line| line.contains("no registry credentials are configured"))
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap_or_else(|| panic!("no warning: {log}"));
    assert_eq!(warning["log.level"], "warn", "{log}");
    assert!(log.contains("MESH_REGISTRY_USERS"), "{log}");
    assert!(
        lines.last().unwrap().contains(&format!("127.0.0.1:{port}")),
        "{log}"
    );

    let (lines, mut child) = start_binary(&[
        ("MESH_REGISTRY_ADDR", format!("0.0.0.0:{port}")),
        ("MESH_REGISTRY_USERS", "orders:hunter2".to_string()),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(!log.contains("no registry credentials"), "{log}");
    assert!(
        !log.contains("hunter2"),
        "the password is never logged: {log}"
    );
    assert!(
        lines.last().unwrap().contains(&format!("0.0.0.0:{port}")),
        "{log}"
    );
}

#[tokio::test]
async fn with_a_service_per_identity_writers_register_only_their_own_service() {
    let mut config = secured();
    config.auth.service_per_identity = true;
    let server = start(config).await;
    server.register_orders().await;
    let body = r#"{"id": "fake-orders", "host": "6.6.6.6", "port": 8080}"#;
    for auth in [basic("payments", "payments-pw"), token("payments", &[])] {
        let answer = server
            .send(
                Method::POST,
                "/v1/services/orders/instances",
                Some(&auth),
                Some("application/json"),
                body,
            )
            .await;
        answer.is_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(server.get("orders", "fake-orders").await.is_none());
    }
    let answer = server
        .send(
            Method::POST,
            "/eureka/apps/CART",
            Some(&basic("payments", "payments-pw")),
            Some("application/json"),
            EUREKA_JS_JSON,
        )
        .await;
    answer.is_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(server.get("cart", "cart-1").await.is_none());
    // Operators are not bound to a service.
    let answer = server
        .send(
            Method::POST,
            "/v1/services/orders/instances",
            Some(&basic("ops", "ops-pw")),
            Some("application/json"),
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}
