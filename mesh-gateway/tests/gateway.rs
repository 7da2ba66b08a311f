//! The gateway on real sockets: routing and filters, the auth matrix, rate limits, and the
//! error statuses.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Json, Router, extract::Request, response::IntoResponse, routing::any};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mesh_core::{Mesh, config::MeshConfig, error::ErrorKind, runtime::Running};
use mesh_gateway::{Gateway, GatewayConfig};
use mesh_registry::{Registry, RegistryConfig};
use serde_json::{Value, json};

const SECRET: &str = "a shared secret of at least thirty-two bytes";

/// An upstream that answers with what it received (but for `/stream`, a chunked answer, and
/// `/status/401`, which refuses with its own `WWW-Authenticate` and request ID).
async fn echo() -> SocketAddr {
    let router = Router::new().fallback(any(|request: Request| async move {
        let path = request.uri().path().to_owned();
        if path.ends_with("/stream") {
            let chunks = ["one ", "two"].map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk)));
            return axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                .into_response();
        }
        if path.ends_with("/status/401") {
            let refusal = [("www-authenticate", "Basic"), ("x-request-id", "upstream")];
            return (StatusCode::UNAUTHORIZED, refusal).into_response();
        }
        echoed(request).await.into_response()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The echo's answer: what it received.
async fn echoed(request: Request) -> impl IntoResponse {
    {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or_default())))
            .collect();
        if request.uri().path().starts_with("/slow") && request.uri().query() != Some("fast") {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        if request.uri().path() == "/login" {
            return (
                [("server", "echo"), ("x-upstream", "yes")],
                Json(json!({"token": token(&["customer"]), "expires_in": 60})),
            );
        }
        let (method, uri) = (request.method().to_string(), request.uri().to_string());
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (
            [("server", "echo"), ("x-upstream", "yes")],
            Json(json!({
                "method": method,
                "uri": uri,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            })),
        )
    }
}

fn token(roles: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "roles": roles, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// How a gateway is served: every scenario runs both ways, and must pass both ways.
#[derive(Clone, Copy, Debug)]
enum Serving {
    /// As a service, every request through the typed path.
    Typed,
    /// With the gateway as the server's relay too, as the binary serves it.
    Relayed,
}

impl Serving {
    async fn start(self, mesh: &Mesh, gateway: Gateway) -> Running {
        match self {
            Self::Typed => mesh.server(gateway).start().await.unwrap(),
            Self::Relayed => mesh
                .server(gateway.clone())
                .relay(gateway)
                .start()
                .await
                .unwrap(),
        }
    }
}

async fn gateway(serving: Serving, yaml: &str, registry: Option<Arc<Registry>>) -> Running {
    let config = GatewayConfig::from_yaml(yaml).unwrap();
    // A name of its own, so that its metrics are its own in this process's recorder.
    let name = format!("mesh-gateway-{}", nanos());
    let mut builder = Mesh::builder(name.as_str()).config(MeshConfig::from_value(
        name.as_str(),
        json!({"registry": {"register": false}}),
    ));
    if let Some(registry) = registry {
        builder = builder.registry(registry);
    }
    let mesh = builder.build().await.unwrap();
    let gateway = Gateway::new(config, &mesh).unwrap();
    serving.start(&mesh, gateway).await
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Value) {
    let (status, headers, body) = send(addr, method, path, headers, "").await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Sends a request with `body`; the answer's body as bytes.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// The value of the Prometheus series `series` (name and labels, as the text shows it) in a
/// server's `/metrics`; 0 when it is not there.
async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (_, _, text) = send(addr, "GET", "/metrics", &[], "").await;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn routes(upstream: SocketAddr) -> String {
    format!(
        r#"
routes:
  - id: products
    uri: http://{upstream}
    predicates: [Path=/api/products/**, Method=GET]
    filters: [StripPrefix=1, "AddRequestHeader=X-Source, gateway", RemoveResponseHeader=Server, "AddResponseHeader=X-Served-By, mesh"]
    auth: public
  - id: legacy
    uri: http://{upstream}
    predicates: ["Path=/legacy/items/{{id}}"]
    filters: ["SetPath=/v2/items/{{id}}"]
    auth: public
  - id: orders
    uri: http://{upstream}
    predicates: [Path=/api/orders/**]
    filters: [StripPrefix=1]
    auth: [customer]
  - id: profile
    uri: http://{upstream}
    predicates: [Path=/api/profile]
    filters: [StripPrefix=1]
  - id: limited
    uri: http://{upstream}
    predicates: [Path=/limited]
    auth: public
    rate_limit: {{ replenish_rate: 1, burst_capacity: 2, key: peer_ip, include_headers: true }}
  - id: slow
    uri: http://{upstream}
    predicates: [Path=/slow]
    auth: public
    timeout: 100ms
  - id: down
    uri: http://127.0.0.1:1
    predicates: [Path=/down]
    auth: public
  - id: nobody
    uri: lb://nobody
    predicates: [Path=/nobody]
    auth: public
  - id: login
    uri: http://{upstream}
    predicates: [Path=/auth/login, Method=POST]
    filters: [StripPrefix=1]
    auth: public
    login: true
  - id: logout
    uri: http://{upstream}
    predicates: [Path=/auth/logout]
    filters: [StripPrefix=1]
    auth: public
    logout: true
auth:
  jwt: {{ secret: "{SECRET}" }}
cors:
  allowed_origins: [https://shop.example.com]
"#
    )
}

async fn routes_match_and_filters_rewrite(serving: Serving) {
    let upstream = echo().await;
    let gateway = gateway(serving, &routes(upstream), None).await;
    let addr = gateway.local_addr();

    let (status, headers, body) = call(
        addr,
        "GET",
        "/api/products/7?color=red",
        &[("x-mesh-user", "mallory")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uri"], "/products/7?color=red");
    assert_eq!(body["headers"]["x-source"], "gateway");
    assert!(
        body["headers"].get("x-mesh-user").is_none(),
        "a client cannot pose as a user"
    );
    assert!(body["headers"]["x-request-id"].as_str().unwrap().len() >= 16);
    assert_eq!(headers["x-served-by"], "mesh");
    assert!(headers.get("server").is_none());
    assert_eq!(
        headers["x-request-id"],
        body["headers"]["x-request-id"].as_str().unwrap()
    );
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-host"], addr.to_string());

    let (_, _, body) = call(
        addr,
        "GET",
        "/legacy/items/42",
        &[("x-request-id", "abc"), ("x-forwarded-for", "10.0.0.1")],
    )
    .await;
    assert_eq!(body["uri"], "/v2/items/42");
    assert_eq!(body["headers"]["x-request-id"], "abc");
    assert_eq!(
        body["headers"]["x-forwarded-for"], "127.0.0.1",
        "a client that is no trusted proxy names no proxies before it"
    );

    // An ID the gateway cannot use is replaced, upstream and in the answer alike.
    let oversized = "x".repeat(129);
    let (_, headers, body) = call(
        addr,
        "GET",
        "/legacy/items/42",
        &[("x-request-id", &oversized)],
    )
    .await;
    let replaced = body["headers"]["x-request-id"].as_str().unwrap();
    assert!(replaced.len() >= 16 && replaced.len() <= 128, "{replaced}");
    assert_eq!(headers["x-request-id"], replaced);

    let (status, _, body) = call(addr, "POST", "/api/products/7", &[]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "Method=GET does not match a POST"
    );
    assert_eq!(body["error"]["kind"], "not_found");

    // The path and header filters are applied on the relay path too: it took every request
    // that had a route.
    assert_eq!(relayed(&gateway).await, on_relay_path(serving, 3));
}

async fn tokens_and_roles_guard_the_routes(serving: Serving) {
    let upstream = echo().await;
    let gateway = gateway(serving, &routes(upstream), None).await;
    let addr = gateway.local_addr();
    let customer = format!("Bearer {}", token(&["customer"]));
    let visitor = format!("Bearer {}", token(&["visitor"]));

    let (status, headers, body) = call(addr, "GET", "/api/profile", &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "routes need a token by default"
    );
    assert_eq!(body["error"]["kind"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = call(
        addr,
        "GET",
        "/api/profile",
        &[("authorization", "Bearer forged")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, body) = call(addr, "GET", "/api/profile", &[("authorization", &visitor)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["headers"]["x-mesh-user"], "alice");
    assert_eq!(body["headers"]["x-mesh-roles"], "visitor");
    assert_eq!(
        body["headers"]["authorization"],
        visitor.as_str(),
        "the token is relayed"
    );

    let (status, _, body) =
        call(addr, "GET", "/api/orders/1", &[("authorization", &visitor)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a valid token without the role"
    );
    assert_eq!(body["error"]["kind"], "forbidden");
    let (status, _, _) = call(
        addr,
        "GET",
        "/api/orders/1",
        &[("authorization", &customer)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let cookie = format!("theme=dark; mesh_token={}", token(&["customer"]));
    let (status, _, body) = call(addr, "GET", "/api/orders/1", &[("cookie", &cookie)]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the token may come in the gateway's cookie"
    );
    assert!(
        body["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
}

async fn a_burst_beyond_the_limit_gets_429_with_retry_after(serving: Serving) {
    let upstream = echo().await;
    let gateway = gateway(serving, &routes(upstream), None).await;
    let addr = gateway.local_addr();
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, headers, _) = call(addr, "GET", "/limited", &[]).await;
        statuses.push(status.as_u16());
        let header = headers["x-ratelimit-remaining"].to_str().unwrap();
        remaining.push(header.to_owned());
        if status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = headers.get("retry-after").cloned();
        }
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(
        remaining,
        ["1", "0", "0", "0"],
        "include_headers: X-RateLimit-* on answers and refusals"
    );
    assert!(
        retry_after
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

async fn upstream_failures_have_their_statuses(serving: Serving) {
    let upstream = echo().await;
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let gateway = gateway(serving, &routes(upstream), Some(registry)).await;
    let addr = gateway.local_addr();
    let (status, _, body) = call(addr, "GET", "/slow", &[]).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("timeout"))
    );
    let (status, _, body) = call(addr, "GET", "/slow?fast", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["headers"]["mesh-timeout"], "100000u",
        "the route's timeout goes upstream as the call's budget"
    );
    let (status, _, body) = call(addr, "GET", "/down", &[]).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("transport"))
    );
    let (status, _, body) = call(addr, "GET", "/nobody", &[]).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_instances"))
    );
    // Every one but the `lb://` route's.
    assert_eq!(relayed(&gateway).await, on_relay_path(serving, 3));
}

async fn lb_routes_reach_registered_instances(serving: Serving) {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let catalog = Mesh::builder("catalog")
        .config(MeshConfig::from_value("catalog", json!({})))
        .registry(registry.clone())
        .build()
        .await
        .unwrap()
        .server(Router::new().route("/items", any(|| async { Json(json!(["pen"])) })))
        .start()
        .await
        .unwrap();
    assert!(catalog.is_registered().await);
    let gateway = gateway(
        serving,
        r#"
routes:
  - id: catalog
    uri: lb://catalog
    predicates: [Path=/shop/**]
    filters: [StripPrefix=1]
    auth: public
"#,
        Some(registry),
    )
    .await;
    let (status, _, body) = call(gateway.local_addr(), "GET", "/shop/items", &[]).await;
    assert_eq!((status, body), (StatusCode::OK, json!(["pen"])));
}

/// Socket.IO's polling transport: every request of a session (its `sid`, or its cookie) must
/// reach the instance that holds the session.
async fn sticky_sessions_stay_on_their_instance(serving: Serving) {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let mut chats = Vec::new();
    for name in ["chat-1", "chat-2"] {
        let chat = Mesh::builder("chat")
            .config(MeshConfig::from_value("chat", json!({})))
            .registry(registry.clone())
            .build()
            .await
            .unwrap()
            .server(Router::new().route("/socket.io/", any(move || async move { name })))
            .start()
            .await
            .unwrap();
        chats.push(chat);
    }
    let mut discovery = registry.discover("chat").await;
    while discovery.snapshot().len() < 2 {
        discovery.changed().await;
    }
    let gateway = gateway(
        serving,
        r#"
routes:
  - id: chat
    uri: lb://chat
    predicates: [Path=/socket.io/**]
    auth: public
    sticky: {query: sid, cookie: io}
"#,
        Some(registry),
    )
    .await;
    let instance = |path: String, headers: Vec<(&'static str, String)>| {
        let addr = gateway.local_addr();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, _, body) = send(addr, "GET", &path, &headers, "").await;
            assert_eq!(status, StatusCode::OK);
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    let mut used = std::collections::BTreeSet::new();
    for session in 0..16 {
        let poll = format!("/socket.io/?EIO=4&transport=polling&sid=session-{session}");
        let first = instance(poll.clone(), Vec::new()).await;
        for _ in 0..4 {
            assert_eq!(instance(poll.clone(), Vec::new()).await, first, "{poll}");
        }
        used.insert(first);
    }
    assert_eq!(used.len(), 2, "sessions spread over both instances");
    let by_cookie = || {
        instance(
            "/socket.io/?EIO=4".into(),
            vec![("cookie", "io=web-7".into())],
        )
    };
    let first = by_cookie().await;
    for _ in 0..4 {
        assert_eq!(by_cookie().await, first, "the cookie's session stays");
    }
}

/// 40 requests at once on an `lb://` route, each held by the upstream until all 40 have
/// arrived: a default bulkhead (25 calls) would refuse 15 of them with `503`.
async fn an_lb_route_takes_concurrent_load_without_a_default_bulkhead(serving: Serving) {
    const AT_ONCE: usize = 40;
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let arrived = Arc::new(tokio::sync::Semaphore::new(0));
    let all_here = arrived.clone();
    let catalog = Mesh::builder("held")
        .config(MeshConfig::from_value("held", json!({})))
        .registry(registry.clone())
        .build()
        .await
        .unwrap()
        .server(Router::new().route(
            "/items",
            any(move || {
                let all_here = all_here.clone();
                async move {
                    all_here.add_permits(1);
                    // Held until every request is here (or, when some never come, a while).
                    let everyone = all_here.acquire_many(AT_ONCE as u32);
                    if let Ok(Ok(permits)) =
                        tokio::time::timeout(std::time::Duration::from_secs(2), everyone).await
                    {
                        all_here.add_permits(AT_ONCE + 1);
                        drop(permits);
                    }
                    "item"
                }
            }),
        ))
        .start()
        .await
        .unwrap();
    assert!(catalog.is_registered().await);
    let gateway = gateway(
        serving,
        r#"
routes:
  - id: held
    uri: lb://held
    predicates: [Path=/items]
    auth: public
"#,
        Some(registry),
    )
    .await;
    let addr = gateway.local_addr();
    let calls = (0..AT_ONCE).map(|_| async move { call(addr, "GET", "/items", &[]).await.0 });
    let statuses = futures_util::future::join_all(calls).await;
    let refused = statuses.iter().filter(|s| **s != StatusCode::OK).count();
    assert_eq!(refused, 0, "{statuses:?}");
    drop(arrived);
}

#[tokio::test]
async fn a_bad_configuration_is_refused_at_start() {
    let mesh = Mesh::builder("mesh-gateway")
        .config(MeshConfig::from_value("mesh-gateway", json!({})))
        .build()
        .await
        .unwrap();
    for (yaml, needle) in [
        (
            "routes: [{id: a, uri: 'http://x:1', predicates: ['Path=/a']}]",
            "needs a token",
        ),
        (
            "routes: [{id: b, uri: 'http://x:1', predicates: ['Teleport=1'], auth: public}]",
            "unknown predicate",
        ),
        (
            "routes: [{id: c, uri: 'ftp://x', predicates: ['Path=/c'], auth: public}]",
            "lb://service-id",
        ),
        (
            "routes: [{id: d, uri: 'http://x:1', predicates: [], auth: public}]",
            "at least one predicate",
        ),
        (
            "routes: [{id: s, uri: 'http://x:1', predicates: ['Path=/s'], auth: public, sticky: {query: sid}}]",
            "`lb://` service",
        ),
        (
            "routes: [{id: t, uri: 'lb://chat', predicates: ['Path=/t'], auth: public, sticky: {}}]",
            "needs a `query` parameter or a `cookie`",
        ),
    ] {
        let config = GatewayConfig::from_yaml(yaml).unwrap();
        let error = Gateway::new(config, &mesh).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(needle), "{error}");
    }
    let error = GatewayConfig::from_yaml("routes: [{id: e, uri: 'http://x:1', timeout: soon}]")
        .unwrap_err();
    assert!(error.message().contains("routes[0].timeout"), "{error}");
}

async fn hot_reload_under_load_fails_no_request(serving: Serving) {
    let old = echo().await;
    let new = Router::new().fallback(any(|| async { Json(json!({"uri": "new"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, new).await });
    let yaml = |upstream: SocketAddr| {
        format!(
            "routes: [{{id: all, uri: 'http://{upstream}', predicates: ['Path=/**'], auth: public}}]"
        )
    };
    let config = MeshConfig::from_value(
        "mesh-gateway",
        serde_json::to_value(serde_norway::from_str::<Value>(&yaml(old)).unwrap()).unwrap(),
    );
    let mesh = Mesh::builder("mesh-gateway")
        .config(config.clone())
        .build()
        .await
        .unwrap();
    let gateway = Gateway::new(config.snapshot().section("").unwrap(), &mesh).unwrap();
    let _following = gateway.follow(&config);
    let running = serving.start(&mesh, gateway).await;
    let addr = running.local_addr();

    let (warm, warmed) = tokio::sync::oneshot::channel();
    let load = tokio::spawn(async move {
        let mut answers = Vec::new();
        let mut warm = Some(warm);
        for i in 0..300 {
            let (status, _, body) = call(addr, "GET", "/item", &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            answers.push(body["uri"].as_str().unwrap().to_owned());
            if i == 20 {
                let _ = warm.take().unwrap().send(());
            }
        }
        answers
    });
    warmed.await.unwrap();
    config.set(
        "routes",
        serde_norway::from_str::<Value>(&yaml(new_addr)).unwrap()["routes"].clone(),
    );
    let answers = load.await.unwrap();
    assert_eq!(answers.first().map(String::as_str), Some("/item"));
    assert_eq!(
        answers.last().map(String::as_str),
        Some("new"),
        "the new routes took over"
    );
    // An invalid change keeps the running routes.
    config.set(
        "routes",
        json!([{"id": "bad", "uri": "ftp://x", "predicates": ["Path=/**"], "auth": "public"}]),
    );
    tokio::task::yield_now().await;
    let (status, _, body) = call(addr, "GET", "/item", &[]).await;
    assert_eq!(
        (status, body["uri"].as_str()),
        (StatusCode::OK, Some("new"))
    );
}

async fn login_sets_the_cookie_and_logout_clears_it(serving: Serving) {
    let upstream = echo().await;
    let gateway = gateway(serving, &routes(upstream), None).await;
    let addr = gateway.local_addr();
    let (status, headers, body) = call(addr, "POST", "/auth/login", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers["set-cookie"].to_str().unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        cookie,
        format!("mesh_token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure")
    );
    // The first request verifies the cookie's token; the second finds it in the cache (and,
    // on the relay path, is relayed).
    for _ in 0..2 {
        let (status, _, body) = call(
            addr,
            "GET",
            "/api/orders/1",
            &[
                ("cookie", &format!("theme=dark; mesh_token={token}")),
                ("authorization", "Basic c2VjcmV0"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the cookie authenticates");
        assert_eq!(
            body["headers"]["authorization"],
            format!("Bearer {token}"),
            "the cookie's token goes upstream as a bearer token"
        );
        assert_eq!(body["headers"]["x-mesh-user"], "alice");
    }

    let (_, headers, _) = call(addr, "POST", "/auth/logout", &[]).await;
    assert_eq!(
        headers["set-cookie"],
        "mesh_token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
    );
    assert_eq!(relayed(&gateway).await, on_relay_path(serving, 1));

    // With `cookie_only`, the cookie holds the token and the answer no longer shows it.
    let yaml = routes(upstream).replace("auth:\n", "auth:\n  cookie_only: true\n");
    assert!(yaml.contains("cookie_only"));
    let gateway = self::gateway(serving, &yaml, None).await;
    let (status, headers, body) = call(gateway.local_addr(), "POST", "/auth/login", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers["set-cookie"].to_str().unwrap();
    let token = cookie
        .strip_prefix("mesh_token=")
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    assert!(token.split('.').count() == 3, "{cookie}");
    assert!(body.get("token").is_none(), "{body}");
    assert!(!body.to_string().contains(token), "{body}");
}

/// The requests `gateway` relayed.
async fn relayed(gateway: &Running) -> u64 {
    let series = format!(
        "mesh_server_relayed_requests_total{{service=\"{}\"}}",
        gateway.mesh().name()
    );
    metric(gateway.local_addr(), &series).await
}

/// What a scenario expects relayed: `requests` on the relay path, none on the typed one.
fn on_relay_path(serving: Serving, requests: u64) -> u64 {
    match serving {
        Serving::Typed => 0,
        Serving::Relayed => requests,
    }
}

async fn cors_is_answered_at_the_edge(serving: Serving) {
    let upstream = echo().await;
    let gateway = gateway(serving, &routes(upstream), None).await;
    let addr = gateway.local_addr();
    let preflight = [
        ("origin", "https://shop.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let (status, headers, _) = call(addr, "OPTIONS", "/api/orders/1", &preflight).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "no token needed for a preflight"
    );
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let (status, _, _) = call(
        addr,
        "OPTIONS",
        "/api/orders/1",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, headers, _) = call(
        addr,
        "GET",
        "/api/products/1",
        &[("origin", "https://shop.example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["vary"], "Origin");
    let (_, headers, _) = call(
        addr,
        "GET",
        "/api/products/1",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());
    // An error answer is the browser's to read too.
    let (status, headers, _) = call(
        addr,
        "GET",
        "/down",
        &[("origin", "https://shop.example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    // The preflights took the typed path; the three requests with an origin, the relay path.
    assert_eq!(relayed(&gateway).await, on_relay_path(serving, 3));
}

/// An upstream that fails each path's first two calls with 503.
async fn flaky() -> (
    SocketAddr,
    Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
) {
    let calls: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let seen = calls.clone();
    let router = Router::new().fallback(any(move |request: Request| {
        let seen = seen.clone();
        async move {
            let mut calls = seen.lock().unwrap();
            let count = calls.entry(request.uri().path().to_owned()).or_default();
            *count += 1;
            if *count <= 2 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, calls)
}

async fn idempotent_calls_are_retried_and_failed_calls_fall_back(serving: Serving) {
    let (upstream, calls) = flaky().await;
    let echo = echo().await;
    let gateway = gateway(
        serving,
        &format!(
            r#"
routes:
  - id: flaky
    uri: http://{upstream}
    predicates: [Path=/flaky/**]
    auth: public
    retry: {{ max_attempts: 3, initial_backoff: 1ms, max_backoff: 2ms }}
  - id: broken
    uri: http://127.0.0.1:1
    predicates: [Path=/broken]
    auth: public
    circuit_breaker: {{ sliding_window_size: 2, minimum_number_of_calls: 2 }}
    fallback: {{ status: 200, body: {{ items: [], degraded: true }} }}
  - id: orders
    uri: http://127.0.0.1:1
    predicates: [Path=/orders/**]
    auth: public
    circuit_breaker: {{ sliding_window_size: 2, minimum_number_of_calls: 2 }}
    fallback: {{ uri: "forward:/fallback/orders" }}
  - id: orders-fallback
    uri: http://{echo}
    predicates: [Path=/fallback/**]
    auth: public
  - id: loop
    uri: http://127.0.0.1:1
    predicates: [Path=/loop]
    auth: public
    timeout: 1s
    fallback: {{ uri: "forward:/loop" }}
"#
        ),
        None,
    )
    .await;
    let addr = gateway.local_addr();
    let (status, _, _) = call(addr, "GET", "/flaky/a", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.lock().unwrap()["/flaky/a"], 3, "two retries");
    let (status, _, _) = call(addr, "POST", "/flaky/b", &[]).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a POST is not retried"
    );
    assert_eq!(calls.lock().unwrap()["/flaky/b"], 1);

    // Refused connections, then an open circuit: the static answer every time.
    for attempt in 0..3 {
        let (status, _, body) = call(addr, "GET", "/broken", &[]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"items": [], "degraded": true})),
            "call {attempt}"
        );
    }
    // `forward:` routes the request again with the fallback's path and the query kept.
    for attempt in 0..3 {
        let (status, _, body) = call(addr, "GET", "/orders/7?page=2", &[]).await;
        assert_eq!(status, StatusCode::OK, "call {attempt}");
        assert_eq!(body["uri"], "/fallback/orders?page=2");
        assert_eq!(body["method"], "GET");
    }
    // A fallback that forwards to its own route is followed once, never in a loop.
    let (status, _, _) = call(addr, "GET", "/loop", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_fallback_uri_must_forward_to_a_path() {
    let yaml = r#"
routes:
  - id: orders
    uri: http://127.0.0.1:1
    predicates: [Path=/orders/**]
    auth: public
    circuit_breaker: { sliding_window_size: 2 }
    fallback: { uri: "http://elsewhere/fallback" }
"#;
    let config = GatewayConfig::from_yaml(yaml).unwrap();
    let mesh = Mesh::builder("mesh-gateway")
        .config(MeshConfig::from_value(
            "mesh-gateway",
            json!({"registry": {"register": false}}),
        ))
        .build()
        .await
        .unwrap();
    let error = Gateway::new(config, &mesh).unwrap_err();
    assert!(
        error.to_string().contains("expected forward:/path"),
        "{error}"
    );
}

/// An upstream that accepts any protocol switch and then echoes bytes.
async fn upgrade_echo() -> SocketAddr {
    let router = Router::new().fallback(any(|mut request: Request| async move {
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = on_upgrade.await.unwrap();
            let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(axum::body::Body::empty())
            .unwrap()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Sends a protocol-switch request over a raw socket; returns the status line and, once
/// switched, the socket.
async fn switch(addr: SocketAddr, auth: Option<&str>) -> (String, tokio::net::TcpStream) {
    switch_from(addr, auth, None).await
}

/// A WebSocket handshake from a page of `origin` (none: not from a browser).
async fn switch_from(
    addr: SocketAddr,
    auth: Option<&str>,
    origin: Option<&str>,
) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let origin = origin
        .map(|origin| format!("origin: {origin}\r\n"))
        .unwrap_or_default();
    let handshake = format!(
        "GET /ws/chat HTTP/1.1\r\nhost: gateway\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}{origin}\r\n"
    );
    socket.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    (head.lines().next().unwrap().to_owned(), socket)
}

async fn a_protocol_switch_tunnels_through_the_route_and_its_auth(serving: Serving) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upgrade_echo().await;
    let gateway = gateway(
        serving,
        &format!(
            r#"
routes:
  - id: chat
    uri: http://{upstream}
    predicates: [Path=/ws/**]
    auth: [customer]
auth:
  jwt: {{ secret: "{SECRET}" }}
"#
        ),
        None,
    )
    .await;
    let (status, _) = switch(gateway.local_addr(), None).await;
    assert!(status.contains("401"), "{status}");
    let (status, _) = switch(gateway.local_addr(), Some(&token(&["visitor"]))).await;
    assert!(status.contains("403"), "{status}");

    // A page of another site may not open one with the user's credentials (cross-site
    // WebSocket hijacking); the gateway's own pages and allowed origins may.
    let customer = token(&["customer"]);
    let (status, _) = switch_from(
        gateway.local_addr(),
        Some(&customer),
        Some("https://evil.example"),
    )
    .await;
    assert!(status.contains("403"), "{status}");
    let (status, _) = switch_from(
        gateway.local_addr(),
        Some(&customer),
        Some("http://gateway"),
    )
    .await;
    assert!(status.contains("101"), "{status}");

    let (status, mut socket) = switch(gateway.local_addr(), Some(&customer)).await;
    assert!(status.contains("101"), "{status}");
    for message in [&b"hello"[..], b"through the gateway"] {
        socket.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        socket.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
}

async fn replicas_share_verified_tokens_and_rate_limits_through_redis(serving: Serving) {
    let Ok(redis) = std::env::var("MESH_TEST_REDIS_URL") else {
        eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
        return;
    };
    let upstream = echo().await;
    let run = format!("{}-{}", std::process::id(), nanos());
    let replica = |secret: &str| {
        format!(
            r#"
routes:
  - id: profile-{run}
    uri: http://{upstream}
    predicates: [Path=/profile]
  - id: limited-{run}
    uri: http://{upstream}
    predicates: [Path=/limited]
    auth: public
    rate_limit: {{ replenish_rate: 1, burst_capacity: 2 }}
auth:
  jwt: {{ secret: "{secret}" }}
redis:
  url: {redis}
"#
        )
    };
    let a = gateway(serving, &replica(SECRET), None).await;
    // B was given another key: it can only accept the token through the shared cache.
    let b = gateway(
        serving,
        &replica("another secret of at least thirty-two bytes!"),
        None,
    )
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let fresh = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "carol", "roles": [], "exp": exp, "jti": run}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = format!("Bearer {fresh}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(
        call(b.local_addr(), "GET", "/profile", &auth).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(a.local_addr(), "GET", "/profile", &auth).await.0,
        StatusCode::OK
    );
    let (status, _, body) = call(b.local_addr(), "GET", "/profile", &auth).await;
    assert_eq!(status, StatusCode::OK, "B found A's verification in Redis");
    assert_eq!(body["headers"]["x-mesh-user"], "carol");

    let statuses = [
        call(a.local_addr(), "GET", "/limited", &[]).await.0,
        call(b.local_addr(), "GET", "/limited", &[]).await.0,
        call(a.local_addr(), "GET", "/limited", &[]).await.0,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "one bucket for both replicas"
    );
}

/// Names no other run shares, so runs against one Redis do not meet.
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Routes the relay path takes, to `uri`: a public one, one that needs a role, one with a rate
/// limit.
fn relayable_routes(uri: &str, run: &str) -> String {
    format!(
        r#"
routes:
  - id: plain-{run}
    uri: {uri}
    predicates: [Path=/plain/**]
    auth: public
  - id: member-{run}
    uri: {uri}
    predicates: [Path=/member/**]
    auth: [customer]
  - id: burst-{run}
    uri: {uri}
    predicates: [Path=/burst]
    auth: public
    rate_limit: {{ replenish_rate: 1, burst_capacity: 2, key: peer_ip }}
auth:
  jwt: {{ secret: "{SECRET}" }}
# The test's client stands for a proxy in front of the gateway.
trusted_proxies: [127.0.0.1]
"#
    )
}

/// What a plain route to a fixed upstream sends upstream and answers is the same on both
/// paths: forwarding headers, request ID, trace context, no hop-by-hop field and no client
/// identity; bodies, `HEAD`, chunked answers, an upstream's `401`. On the relay path the server
/// counts each of those requests as relayed; on the typed path none is.
async fn plain_routes_forward_and_answer_alike(serving: Serving) {
    forward_and_answer_alike(serving, false).await;
}

/// The same through an `lb://` route, whose requests the relay path sends through the
/// service's client stack once its first call has built it.
async fn lb_routes_forward_and_answer_alike(serving: Serving) {
    forward_and_answer_alike(serving, true).await;
}

async fn forward_and_answer_alike(serving: Serving, balanced: bool) {
    let upstream = echo().await;
    let run = format!("{}-{}", std::process::id(), nanos());
    let (uri, registry) = if balanced {
        let registry = Arc::new(Registry::new(RegistryConfig::default()));
        let service = format!("echo-{run}");
        let instance =
            mesh_core::discovery::Instance::new(service.as_str(), "127.0.0.1", upstream.port());
        registry
            .register(instance, mesh_registry::LeaseRequest::default(), None)
            .await
            .unwrap();
        (format!("lb://{service}"), Some(registry))
    } else {
        (format!("http://{upstream}"), None)
    };
    let gateway = gateway(serving, &relayable_routes(&uri, &run), registry).await;
    let addr = gateway.local_addr();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, answer, body) = call(
        addr,
        "GET",
        "/plain/items?page=2",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-request-id", "req-1"),
            ("traceparent", parent),
            ("x-mesh-user", "mallory"),
            ("x-mesh-roles", "admin"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("te", "trailers"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uri"], "/plain/items?page=2");
    let seen = &body["headers"];
    assert_eq!(seen["host"], upstream.to_string());
    assert_eq!(seen["x-forwarded-host"], addr.to_string());
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-request-id"], "req-1");
    assert_eq!(seen["x-custom"], "kept");
    let traceparent = seen["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a span of its own"
    );
    for dropped in [
        "x-mesh-user",
        "x-mesh-roles",
        "proxy-authorization",
        "te",
        "connection",
    ] {
        assert!(
            seen.get(dropped).is_none(),
            "{dropped} went upstream: {seen}"
        );
    }
    assert_eq!(answer["x-request-id"], "req-1");
    assert_eq!(
        answer["server"], "echo",
        "the upstream's own fields come back"
    );

    // A request without an ID gets the trace's, upstream and in the answer.
    let (_, answer, body) = call(addr, "GET", "/plain/items", &[]).await;
    let id = answer["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(body["headers"]["x-request-id"], id);
    assert_eq!(body["headers"]["traceparent"].as_str().unwrap()[3..35], *id);

    let (status, _, body) = send(addr, "POST", "/plain/notes", &[], "a note").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["body"].as_str()),
        (StatusCode::OK, Some("a note"))
    );
    assert_eq!(body["headers"]["content-length"], "6");

    let (status, head, body) = send(addr, "HEAD", "/plain/items", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(head.contains_key("content-length"), "{head:?}");
    assert!(body.is_empty());

    let (status, _, body) = send(addr, "GET", "/plain/stream", &[], "").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"one two"[..]));

    let (status, refusal, _) = call(addr, "GET", "/plain/status/401", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refusal["www-authenticate"], "Bearer");
    assert_ne!(refusal["x-request-id"], "upstream");

    // An `lb://` route's first call builds its client's stack, on the typed path.
    let first_typed = u64::from(balanced);
    assert_eq!(
        relayed(&gateway).await,
        on_relay_path(serving, 6 - first_typed)
    );
    let ok = format!("mesh_gateway_requests_total{{route=\"plain-{run}\",status=\"200\"}}");
    assert_eq!(
        metric(addr, &ok).await,
        5,
        "the route's requests, counted on either path"
    );
}

/// Tokens and rate limits hold on the relay path: a token is verified once on the typed
/// path and then relayed from the cache with its identity; a missing token or role is still
/// refused; a burst past the limit gets `429` with `Retry-After`.
async fn relayed_routes_keep_their_auth_and_rate_limit(serving: Serving) {
    let upstream = echo().await;
    let run = format!("{}-{}", std::process::id(), nanos());
    let gateway = gateway(
        serving,
        &relayable_routes(&format!("http://{upstream}"), &run),
        None,
    )
    .await;
    let addr = gateway.local_addr();
    assert_eq!(
        call(addr, "GET", "/member/cart", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let customer = format!("Bearer {}", token(&["customer"]));
    for _ in 0..2 {
        let (status, _, body) =
            call(addr, "GET", "/member/cart", &[("authorization", &customer)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["headers"]["x-mesh-user"], "alice");
        assert_eq!(body["headers"]["x-mesh-roles"], "customer");
        assert_eq!(
            body["headers"]["authorization"],
            customer.as_str(),
            "relayed onward"
        );
    }
    let guest = format!("Bearer {}", token(&["guest"]));
    for _ in 0..2 {
        let status = call(addr, "GET", "/member/cart", &[("authorization", &guest)])
            .await
            .0;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let forged = format!("{customer}x");
    let status = call(addr, "GET", "/member/cart", &[("authorization", &forged)])
        .await
        .0;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = call(addr, "GET", "/burst", &[]).await;
        statuses.push(status);
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            assert!(headers.contains_key("x-request-id"));
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The second customer call (the first verified the token) and the three burst calls.
    assert_eq!(relayed(&gateway).await, on_relay_path(serving, 4));
}

/// Each scenario as a test on each serving path.
/// A service behind the gateway refuses a request sent to it directly, even with a valid
/// user token or a forged proof, and serves the same request through the gateway; the calls
/// it makes while serving one carry the proof on.
async fn services_answer_only_requests_through_the_gateway(serving: Serving) {
    use mesh_core::auth::edge::EdgeKeyPair;
    let keys = EdgeKeyPair::generate().unwrap();
    let forger = EdgeKeyPair::generate().unwrap();
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let edge = json!({"server": {"edge": {"jwt": {
        "public_key": keys.public_pem, "issuer": "mesh-gateway", "audience": "mesh-edge",
    }}}});
    let start = |name: &'static str, router: Router| {
        let (registry, edge) = (registry.clone(), edge.clone());
        async move {
            Mesh::builder(name)
                .config(MeshConfig::from_value(name, edge))
                .registry(registry)
                .build()
                .await
                .unwrap()
                .server(router)
                .start()
                .await
                .unwrap()
        }
    };
    let users = start(
        "users",
        Router::new()
            .route("/users/ada", any(|| async { Json(json!({"name": "Ada"})) }))
            // Echoes the proof back, as a careless service might.
            .route(
                "/users/echo",
                any(|request: Request| async move {
                    let proof = request.headers().get("mesh-edge").cloned();
                    ([("mesh-edge", proof.unwrap())], "echoed")
                }),
            ),
    )
    .await;
    let outside = echo().await;
    let caller_mesh = Mesh::builder("gigs")
        .config(MeshConfig::from_value("gigs", edge.clone()))
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    let users_client = caller_mesh.client("users");
    let gigs = caller_mesh
        .server(Router::new().route(
            "/gigs/1",
            any(move || {
                let users = users_client.clone();
                async move {
                    // Served under the gateway's proof, its call to `users` carries it.
                    let seller: Value = users.get_json("/users/ada").await.unwrap();
                    Json(json!({"gig": 1, "seller": seller["name"]}))
                }
            }),
        ))
        .start()
        .await
        .unwrap();
    let yaml = format!(
        r#"
routes:
  - id: gigs
    uri: lb://gigs
    predicates: [Path=/api/gigs/**]
    filters: [StripPrefix=1]
    auth: [buyer]
  - id: users
    uri: lb://users
    predicates: [Path=/api/users/**]
    filters: [StripPrefix=1]
    auth: [buyer]
  - id: outside
    uri: http://{outside}
    predicates: [Path=/outside/**]
    auth: [buyer]
auth:
  jwt: {{ secret: "{SECRET}" }}
edge:
  private_key: "{}"
"#,
        keys.private_pem.replace('\n', "\\n")
    );
    let gateway = gateway(serving, &yaml, Some(registry)).await;
    let bearer = format!("Bearer {}", token(&["buyer"]));
    let auth = [("authorization", bearer.as_str())];
    let (status, _, body) = call(gateway.local_addr(), "GET", "/api/gigs/1", &auth).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"gig": 1, "seller": "Ada"}))
    );
    // Sent directly, with the same user token: refused, as with a forged proof or one a
    // client passes through the gateway.
    let forged = mesh_core::auth::edge::EdgeSigner::new(
        mesh_core::auth::edge::EdgeSigning::with_private_key(forger.private_pem),
    )
    .unwrap()
    .token()
    .unwrap();
    let forged = forged.to_str().unwrap();
    for headers in [vec![auth[0]], vec![auth[0], ("mesh-edge", forged)]] {
        let (status, _, body) = call(gigs.local_addr(), "GET", "/gigs/1", &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {body}");
        assert!(body.to_string().contains("through the gateway"), "{body}");
        let (status, _, _) = call(users.local_addr(), "GET", "/users/ada", &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // A proof a client sends to the gateway is dropped there, so it proves nothing.
    let (status, _, _) = call(
        gateway.local_addr(),
        "GET",
        "/api/gigs/1",
        &[auth[0], ("mesh-edge", forged)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Probes and scrapers still reach the runtime's endpoints.
    let (status, _, _) = call(users.local_addr(), "GET", "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // A proof goes to the mesh's services only, never to a fixed upstream, and one a service
    // echoes never reaches the client.
    let (status, _, body) = call(gateway.local_addr(), "GET", "/outside/x", &auth).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["headers"].get("mesh-edge").is_none(), "{body}");
    let (status, headers, _) = call(gateway.local_addr(), "GET", "/api/users/echo", &auth).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("mesh-edge").is_none(), "{headers:?}");
}

macro_rules! on_both_paths {
    ($($name:ident $(($($flavor:tt)*))?),* $(,)?) => {
        mod typed {
            $(
                #[tokio::test$(($($flavor)*))?]
                async fn $name() {
                    super::$name(super::Serving::Typed).await;
                }
            )*
        }
        mod relayed {
            $(
                #[tokio::test$(($($flavor)*))?]
                async fn $name() {
                    super::$name(super::Serving::Relayed).await;
                }
            )*
        }
    };
}

on_both_paths!(
    routes_match_and_filters_rewrite,
    tokens_and_roles_guard_the_routes,
    a_burst_beyond_the_limit_gets_429_with_retry_after,
    upstream_failures_have_their_statuses,
    lb_routes_reach_registered_instances,
    sticky_sessions_stay_on_their_instance,
    services_answer_only_requests_through_the_gateway,
    an_lb_route_takes_concurrent_load_without_a_default_bulkhead(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    hot_reload_under_load_fails_no_request(flavor = "multi_thread", worker_threads = 2),
    login_sets_the_cookie_and_logout_clears_it,
    cors_is_answered_at_the_edge,
    idempotent_calls_are_retried_and_failed_calls_fall_back,
    a_protocol_switch_tunnels_through_the_route_and_its_auth,
    replicas_share_verified_tokens_and_rate_limits_through_redis,
    plain_routes_forward_and_answer_alike,
    lb_routes_forward_and_answer_alike,
    relayed_routes_keep_their_auth_and_rate_limit,
);

use mesh_testkit::git;

/// A route changed in the config repository and committed reaches a running gateway through
/// `POST /actuator/busrefresh` on `bus`, without a restart.
async fn a_committed_route_change_reaches_a_running_gateway_over(
    bus: Arc<dyn mesh_core::bus::Bus>,
) {
    let upstream = echo().await;
    let run = nanos();
    let root = std::env::temp_dir().join(format!("mesh-gateway-refresh-{run}"));
    let (repo, own) = (root.join("repo"), root.join("gateway"));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&own).unwrap();
    let routes = |prefix: &str| {
        format!(
            "routes:\n  - id: moving\n    uri: http://{upstream}\n    predicates: [Path=/{prefix}/**]\n    auth: public\n"
        )
    };
    std::fs::write(repo.join("mesh-gateway.yml"), routes("old")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "old"]);

    let server = mesh_registry::config_server::ConfigServer::open(&repo, None)
        .unwrap()
        .with_bus(bus.clone());
    let router = mesh_registry::api::router_with(
        Arc::new(Registry::new(RegistryConfig::default())),
        Some(Arc::new(server)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap();
    tokio::spawn(mesh_registry::serve_router(
        listener,
        router,
        std::future::pending(),
    ));

    // The gateway as the binary starts it: its file names the config server, the routes come
    // from the server, and the gateway follows the configuration.
    std::fs::write(
        own.join("gateway.yaml"),
        format!("config_server:\n  url: http://{registry}/config\n  fail_fast: true\nregistry:\n  register: false\n"),
    )
    .unwrap();
    let config = MeshConfig::builder("mesh-gateway")
        .file(own.join("gateway.yaml"))
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .await
        .unwrap();
    let mesh = Mesh::builder("mesh-gateway")
        .config(config.clone())
        .bus(bus)
        .build()
        .await
        .unwrap();
    let gateway = Gateway::new(config.snapshot().section("").unwrap(), &mesh).unwrap();
    let _following = gateway.follow(&config);
    let running = mesh
        .server(gateway.clone())
        .relay(gateway)
        .start()
        .await
        .unwrap();
    let addr = running.local_addr();
    assert_eq!(call(addr, "GET", "/old/x", &[]).await.0, StatusCode::OK);
    assert_eq!(
        call(addr, "GET", "/new/x", &[]).await.0,
        StatusCode::NOT_FOUND
    );

    std::fs::write(repo.join("mesh-gateway.yml"), routes("new")).unwrap();
    git(&repo, &["commit", "-q", "-am", "new"]);
    let (status, _, _) = send(registry, "POST", "/actuator/busrefresh", &[], "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call(addr, "GET", "/new/x", &[]).await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the route never moved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(addr, "GET", "/old/x", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    running.shutdown().await.unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_route_change_reaches_a_running_gateway_over_the_memory_bus() {
    a_committed_route_change_reaches_a_running_gateway_over(Arc::new(
        mesh_core::bus::MemoryBus::new(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_route_change_reaches_a_running_gateway_over_rabbitmq() {
    if let Some(bus) = mesh_testkit::rabbitmq_bus("gateway-refresh").await {
        a_committed_route_change_reaches_a_running_gateway_over(bus).await;
    }
}
