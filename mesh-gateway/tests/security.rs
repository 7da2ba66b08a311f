//! The gateway under attack: every class of hostile or careless request, each on the typed and
//! relay paths (and over HTTP/2 where it applies), asserting the status, the JSON error and
//! what the upstream was given. The upstream counts only requests it received whole, so "the
//! upstream saw nothing" means no request reached a handler complete.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::Request, response::IntoResponse, routing::any};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mesh_core::{Mesh, config::MeshConfig, runtime::Running};
use mesh_gateway::{Gateway, GatewayConfig, decode_roles};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRIVATE_PEM: &[u8] = include_bytes!("../../tests/fixtures/rsa-private.pem");
const PUBLIC_PEM: &str = include_str!("../../tests/fixtures/rsa-public.pem");
/// `{"alg":"none","typ":"JWT"}`, base64url-encoded.
const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
/// The body limit the gateways here are served with.
const BODY_LIMIT: usize = 1024;
/// The head limit the gateways here are served with.
const HEAD_LIMIT: usize = 8 * 1024;

/// A request an upstream received whole: its method, target and fields as they came.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn value(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An upstream that notes each request it reads whole and answers `200` with its target.
async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let noted = seen.clone();
    let router = Router::new().fallback(any(move |request: Request| {
        let noted = noted.clone();
        async move {
            let target = request.uri().to_string();
            let fields = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.to_string(), value)
                })
                .collect();
            let Ok(_) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
                return http::StatusCode::BAD_REQUEST.into_response();
            };
            noted.lock().unwrap().push(Seen {
                target: target.clone(),
                fields,
            });
            Json(json!({ "target": target })).into_response()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

/// How a gateway is served: every class runs both ways.
#[derive(Clone, Copy, Debug)]
enum Serving {
    Typed,
    Relayed,
}

/// A gateway in front of `upstream` with a public, a token and an admin route, RS256 tokens
/// from `auth-service` for `shop`, and the management endpoints on their own address.
async fn gateway(serving: Serving, upstream: SocketAddr, extra: &str) -> Running {
    let yaml = format!(
        r#"
routes:
  - id: public
    uri: http://{upstream}
    predicates: [Path=/public/**]
    auth: public
  - id: admin
    uri: http://{upstream}
    predicates: [Path=/admin/**]
    auth: [admin]
  - id: api
    uri: http://{upstream}
    predicates: [Path=/api/**]
auth:
  jwt:
    public_key: |
{key}
    issuer: auth-service
    audience: shop
{extra}
"#,
        key = PUBLIC_PEM
            .lines()
            .map(|line| format!("      {line}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let config = GatewayConfig::from_yaml(&yaml).unwrap();
    let name = format!("security-{}", nanos());
    let mesh = Mesh::builder(name.as_str())
        .config(MeshConfig::from_value(
            name.as_str(),
            json!({
                "registry": {"register": false},
                "server": {"body_limit": BODY_LIMIT, "max_head_bytes": HEAD_LIMIT},
                "management": {"address": "127.0.0.1:0"},
            }),
        ))
        .build()
        .await
        .unwrap();
    let gateway = Gateway::new(config, &mesh).unwrap();
    match serving {
        Serving::Typed => mesh.server(gateway).start().await.unwrap(),
        Serving::Relayed => mesh
            .server(gateway.clone())
            .relay(gateway)
            .start()
            .await
            .unwrap(),
    }
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims from `auth-service` for `shop`, changed by `extra` (a `null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "sub": "alice",
        "roles": ["customer"],
        "iss": "auth-service",
        "aud": "shop",
        "exp": now() + 600,
    });
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn rs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap(),
    )
    .unwrap()
}

/// An answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The error's `kind`, when the body is mesh's JSON error.
    fn kind(&self) -> &str {
        self.body["error"]["kind"].as_str().unwrap_or_default()
    }
}

/// Sends `head` (and `body`) as bytes on a new connection and reads the one answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    parse(&bytes)
}

/// A `GET` of `target` with `Host` and `fields`, closing the connection after.
async fn get(addr: SocketAddr, target: &str, fields: &[(&str, &str)]) -> Answer {
    let mut head = format!("GET {target} HTTP/1.1\r\nhost: gateway.test\r\nconnection: close\r\n");
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    raw(addr, &head, b"").await
}

fn parse(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let fields: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = fields
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Answer {
        status,
        fields,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    }
}

/// A request over HTTP/2 (prior knowledge) with `fields` (a name may repeat).
async fn h2(addr: SocketAddr, path: &str, fields: &[(&str, &str)]) -> Answer {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let status = response.status().as_u16();
    let fields = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        fields,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// Asserts a refusal: `status`, mesh's JSON error of `kind`, and nothing new upstream.
fn refused(answer: &Answer, status: u16, kind: &str, seen: &Mutex<Vec<Seen>>, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(answer.kind(), kind, "{what}: {answer:?}");
    assert!(
        answer.body["error"]["message"].as_str().is_some(),
        "{what}: {answer:?}"
    );
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "{what} reached the upstream: {seen:?}");
}

/// Takes what the upstream has seen so far.
fn taken(seen: &Mutex<Vec<Seen>>) -> Vec<Seen> {
    std::mem::take(&mut *seen.lock().unwrap())
}

/// Paths are normalised before routes match and go upstream normalised; what cannot be
/// normalised safely is a `400`. Over HTTP/1.1 and HTTP/2.
async fn paths_are_normalised_before_routing(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let addr = gateway.local_addr();

    // Climbing out of a public route into a guarded one lands in the guarded one.
    for attack in [
        "/public/../admin/secret",
        "/public/x/../../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/%2E./admin/secret",
        "/public/./../admin/secret",
        "//admin/secret",
        "/%61dmin/secret",
    ] {
        let answer = get(addr, attack, &[]).await;
        refused(&answer, 401, "unauthorized", &seen, attack);
        assert_eq!(answer.field("www-authenticate"), Some("Bearer"), "{attack}");
        let answer = h2(addr, attack, &[]).await;
        refused(&answer, 401, "unauthorized", &seen, attack);
    }

    // A path that stays in the public route goes upstream as the route matched it.
    for (given, forwarded) in [
        ("/public/x/../admin/secret", "/public/admin/secret"),
        ("/public//a/./b/%7Euser?q=1", "/public/a/b/~user?q=1"),
        ("/public/a/b/..", "/public/a/"),
    ] {
        let answer = get(addr, given, &[]).await;
        assert_eq!(answer.status, 200, "{given}: {answer:?}");
        assert_eq!(taken(&seen)[0].target, forwarded, "{given}");
        let answer = h2(addr, given, &[]).await;
        assert_eq!(answer.status, 200, "{given}: {answer:?}");
        assert_eq!(taken(&seen)[0].target, forwarded, "{given}");
    }

    // What cannot be normalised safely.
    for attack in [
        "/public/..;/admin/secret",
        "/public/%2e%2e;x/admin/secret",
        "/public/%2fadmin",
        "/public/%2F..%2Fadmin",
        "/public/%5c..%5cadmin",
        "/public/%00",
        "/public/%0d%0aX-Mesh-User:%20admin",
        "/public/%zz",
        "/../admin/secret",
        "/public/../../admin",
    ] {
        let answer = get(addr, attack, &[]).await;
        refused(&answer, 400, "bad_request", &seen, attack);
        let answer = h2(addr, attack, &[]).await;
        refused(&answer, 400, "bad_request", &seen, attack);
    }
    // A backslash is not even a URI character: refused before routing, as a bad request.
    let answer = get(addr, "/public/..\\admin", &[]).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(seen.lock().unwrap().is_empty());
}

/// `paths:` only refuses more.
async fn stricter_path_rules_refuse_more(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let strict = "paths: { refuse_semicolons: true, refuse_encoded_percent: true, \
                  refuse_doubled_slashes: true }";
    let gateway = gateway(serving, upstream, strict).await;
    let addr = gateway.local_addr();
    for attack in [
        "/public/a;jsessionid=1",
        "/public/%252e%252e/x",
        "/public//a",
    ] {
        let answer = get(addr, attack, &[]).await;
        refused(&answer, 400, "bad_request", &seen, attack);
    }
    assert_eq!(get(addr, "/public/a/../b", &[]).await.status, 200);
    assert_eq!(taken(&seen)[0].target, "/public/b");
}

/// Fields named like the identity or forwarding fields, but with underscores, never reach the
/// upstream, whatever their case.
async fn underscored_names_of_managed_fields_are_dropped(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let addr = gateway.local_addr();
    let token = rs256(&claims(json!({})));
    let bearer = format!("Bearer {token}");
    for (path, auth) in [("/public/x", None), ("/api/x", Some(bearer.as_str()))] {
        let mut fields = vec![
            ("x_mesh_user", "admin"),
            ("X_Mesh_Roles", "admin"),
            ("x-mesh_user", "admin"),
            ("X_Forwarded_For", "10.9.9.9"),
            ("x_real_ip", "10.9.9.9"),
            ("x_custom", "kept"),
        ];
        if let Some(auth) = auth {
            fields.push(("authorization", auth));
        }
        // What the upstream saw of one request: no managed name in any spelling but the
        // gateway's own, which are there exactly when the caller is verified.
        let only_managed = |seen: &[Seen], what: &str| {
            let names: Vec<String> = seen[0]
                .fields
                .iter()
                .map(|(name, _)| name.replace('_', "-"))
                .collect();
            let users = names.iter().filter(|n| *n == "x-mesh-user").count();
            let roles = names.iter().filter(|n| *n == "x-mesh-roles").count();
            let expected = usize::from(auth.is_some());
            assert_eq!(
                (users, roles),
                (expected, expected),
                "{what} {path}: {names:?}"
            );
            assert_eq!(seen[0].value("x-mesh-user"), auth.map(|_| "alice"));
            assert!(!names.iter().any(|n| n == "x-real-ip"), "{what}: {names:?}");
            assert_eq!(seen[0].value("x-forwarded-for"), Some("127.0.0.1"));
            assert_eq!(seen[0].value("x_custom"), Some("kept"));
        };
        // Twice: the second time the token is in the cache and the relay path may take it.
        for _ in 0..2 {
            let answer = get(addr, path, &fields).await;
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
            only_managed(&taken(&seen), "HTTP/1.1");
        }
        // HTTP/2 carries the same names (lowercase, as HTTP/2 requires).
        let lowercase: Vec<(String, &str)> = fields
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), *value))
            .collect();
        let lowercase: Vec<(&str, &str)> =
            lowercase.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let answer = h2(addr, path, &lowercase).await;
        assert_eq!(answer.status, 200, "HTTP/2 {path}: {answer:?}");
        only_managed(&taken(&seen), "HTTP/2");
    }
}

/// A configured issuer or audience is required: a token without the claim is refused, as are
/// the forgeries that already were (`alg: none`, key confusion, tampering, time claims).
async fn tokens_are_held_to_every_configured_claim(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let addr = gateway.local_addr();
    let good = rs256(&claims(json!({})));
    let claims_part = good.split('.').nth(1).unwrap();
    let key_confusion = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(PUBLIC_PEM.as_bytes()),
    )
    .unwrap();
    let tampered = {
        let forged = rs256(&claims(json!({"roles": ["admin"]})));
        let signature = good.rsplit('.').next().unwrap();
        let mut parts: Vec<&str> = forged.split('.').collect();
        parts[2] = signature;
        parts.join(".")
    };
    let refusals = [
        ("no iss", rs256(&claims(json!({"iss": null})))),
        ("no aud", rs256(&claims(json!({"aud": null})))),
        ("another iss", rs256(&claims(json!({"iss": "elsewhere"})))),
        ("another aud", rs256(&claims(json!({"aud": "billing"})))),
        ("no exp", rs256(&claims(json!({"exp": null})))),
        ("expired", rs256(&claims(json!({"exp": now() - 3600})))),
        (
            "not yet valid",
            rs256(&claims(json!({"nbf": now() + 3600}))),
        ),
        ("alg none", format!("{NONE_HEADER}.{claims_part}.")),
        ("key confusion", key_confusion),
        ("tampered", tampered),
        ("malformed", "not.a.token".to_owned()),
    ];
    for (what, token) in &refusals {
        let bearer = format!("Bearer {token}");
        let answer = get(addr, "/api/orders", &[("authorization", &bearer)]).await;
        refused(&answer, 401, "unauthorized", &seen, what);
        assert_eq!(answer.field("www-authenticate"), Some("Bearer"), "{what}");
    }
    // The scheme is read in any case (RFC 9110 §11.1), over HTTP/1.1 and HTTP/2.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let bearer = format!("{scheme} {good}");
        let answer = get(addr, "/api/orders", &[("authorization", &bearer)]).await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
        let answer = h2(addr, "/api/orders", &[("authorization", &bearer)]).await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
    }
    taken(&seen);
    // A valid token without the role is a 403.
    let bearer = format!("Bearer {good}");
    let answer = get(addr, "/admin/users", &[("authorization", &bearer)]).await;
    refused(&answer, 403, "forbidden", &seen, "no role");
}

/// A request with two `Authorization` fields is refused; only what was verified goes on.
async fn a_second_authorization_is_refused(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let addr = gateway.local_addr();
    let good = format!("Bearer {}", rs256(&claims(json!({}))));
    let admin = format!("Bearer {}", rs256(&claims(json!({"roles": ["admin"]}))));
    // Warm the token cache, so the relay path would take the request if it did not look.
    assert_eq!(
        get(addr, "/api/x", &[("authorization", &good)])
            .await
            .status,
        200
    );
    let sent = taken(&seen);
    assert_eq!(sent[0].value("authorization"), Some(good.as_str()));
    for path in ["/api/x", "/public/x", "/admin/x"] {
        for pair in [[&good, &admin], [&good, &"Basic YTpi".to_owned()]] {
            let fields = [
                ("authorization", pair[0].as_str()),
                ("authorization", pair[1]),
            ];
            let answer = get(addr, path, &fields).await;
            refused(&answer, 400, "bad_request", &seen, path);
            let answer = h2(addr, path, &fields).await;
            refused(&answer, 400, "bad_request", &seen, path);
        }
    }
}

/// The gateway is the edge: a client's forwarding fields are dropped and the gateway's own
/// set, unless the client is a configured trusted proxy.
async fn forwarding_fields_are_trusted_only_from_trusted_proxies(serving: Serving) {
    let spoofed = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/evil"),
        ("x-real-ip", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9;proto=https"),
    ];
    let (upstream, seen) = upstream().await;
    let untrusting = gateway(serving, upstream, "").await;
    let answer = get(untrusting.local_addr(), "/public/x", &spoofed).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen_once = taken(&seen);
    let sent = &seen_once[0];
    assert_eq!(sent.value("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(sent.value("x-forwarded-proto"), Some("http"));
    assert_eq!(sent.value("x-forwarded-host"), Some("gateway.test"));
    for dropped in [
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    ] {
        assert_eq!(sent.value(dropped), None, "{dropped}: {sent:?}");
    }
    // Over HTTP/2 the host is the request's authority.
    let answer = h2(untrusting.local_addr(), "/public/x", &spoofed).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen_once = taken(&seen);
    let sent = &seen_once[0];
    let authority = untrusting.local_addr().to_string();
    assert_eq!(sent.value("x-forwarded-host"), Some(authority.as_str()));
    assert_eq!(sent.value("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(sent.value("x-real-ip"), None);
    // A client's deadline bounds its call at the gateway and goes no further.
    let answer = get(
        untrusting.local_addr(),
        "/public/x",
        &[("mesh-timeout", "99S")],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(taken(&seen)[0].value("mesh-timeout"), None);
    // HTTP/1.0 needs no Host: the client's X-Forwarded-Host does not stand in for one.
    let answer = raw(
        untrusting.local_addr(),
        "GET /public/x HTTP/1.0\r\nx-forwarded-host: evil.example\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(taken(&seen)[0].value("x-forwarded-host"), None);

    let trusting = gateway(serving, upstream, "trusted_proxies: [127.0.0.0/8]").await;
    let answer = get(trusting.local_addr(), "/public/x", &spoofed).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen_once = taken(&seen);
    let sent = &seen_once[0];
    assert_eq!(
        sent.value("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(sent.value("x-forwarded-proto"), Some("https"));
    assert_eq!(sent.value("x-forwarded-host"), Some("evil.example"));
    assert_eq!(sent.value("x-real-ip"), Some("203.0.113.9"));
}

/// RFC 9112's framing rules are the gateway's: one `Host`; one head limit on both paths
/// (`431`); a chunked body over the limit is a `413`, one with broken chunks a `400`.
async fn framing_rules_are_held_at_the_edge(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let addr = gateway.local_addr();

    let answer = raw(
        addr,
        "GET /public/x HTTP/1.1\r\nconnection: close\r\n\r\n",
        b"",
    )
    .await;
    refused(&answer, 400, "bad_request", &seen, "no Host");
    let answer = raw(
        addr,
        "GET /public/x HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
        b"",
    )
    .await;
    refused(&answer, 400, "bad_request", &seen, "two Hosts");

    // Over the head limit: a large field (read by mesh's own path), or many fields (hyper's).
    for many in [false, true] {
        let mut head = "GET /public/x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n".to_owned();
        if many {
            for i in 0..80 {
                head.push_str(&format!("x-f{i}: {}\r\n", "v".repeat(100)));
            }
        } else {
            head.push_str(&format!("x-long: {}\r\n", "v".repeat(HEAD_LIMIT)));
        }
        head.push_str("\r\n");
        let answer = raw(addr, &head, b"").await;
        assert_eq!(answer.status, 431, "many fields: {many}: {answer:?}");
        assert!(seen.lock().unwrap().is_empty());
    }
    // Over HTTP/2 the limit is the connection's SETTINGS_MAX_HEADER_LIST_SIZE; a head over it
    // is answered 431 (hyper's client sends it regardless).
    let long = "v".repeat(HEAD_LIMIT);
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{addr}/public/x"))
        .header("x-long", long.as_str())
        .body(Full::default())
        .unwrap();
    let answer = client.request(request).await.unwrap();
    assert_eq!(answer.status(), 431, "HTTP/2: {answer:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "an HTTP/2 head over the limit went upstream"
    );

    let chunked = "POST /public/upload HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\
                   transfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n";
    // Within the limit, a chunked body goes through.
    let answer = raw(addr, chunked, b"5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    taken(&seen);
    let over = format!(
        "{:x}\r\n{}\r\n0\r\n\r\n",
        BODY_LIMIT + 1,
        "x".repeat(BODY_LIMIT + 1)
    );
    let answer = raw(addr, chunked, over.as_bytes()).await;
    refused(
        &answer,
        413,
        "payload_too_large",
        &seen,
        "a chunked body over the limit",
    );
    let answer = raw(addr, chunked, b"zz\r\nhello\r\n0\r\n\r\n").await;
    refused(&answer, 400, "bad_request", &seen, "broken chunk framing");
    let declared = format!(
        "POST /public/upload HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        BODY_LIMIT + 1
    );
    let answer = raw(addr, &declared, &[b'x'; BODY_LIMIT + 1]).await;
    refused(
        &answer,
        413,
        "payload_too_large",
        &seen,
        "a declared body over the limit",
    );
}

/// A role with a comma stays one role in `x-mesh-roles`.
async fn roles_reach_the_upstream_unambiguously(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    let roles = ["customer", "admin,ops", "100%"];
    let bearer = format!("Bearer {}", rs256(&claims(json!({ "roles": roles }))));
    for _ in 0..2 {
        let answer = get(
            gateway.local_addr(),
            "/api/x",
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let seen_once = taken(&seen);
        let sent = seen_once[0].value("x-mesh-roles").unwrap();
        assert_eq!(sent, "customer,admin%2Cops,100%25");
        assert_eq!(decode_roles(sent), roles);
    }
    // `admin,ops` is not `admin`.
    let answer = get(
        gateway.local_addr(),
        "/admin/x",
        &[("authorization", &bearer)],
    )
    .await;
    refused(
        &answer,
        403,
        "forbidden",
        &seen,
        "a role that only contains admin",
    );
}

/// `/metrics` and `/health` are served on the management address, not the public port, where
/// their paths are routed like any other.
async fn management_endpoints_are_not_on_the_public_port(serving: Serving) {
    let (upstream, seen) = upstream().await;
    let gateway = gateway(serving, upstream, "").await;
    for path in ["/metrics", "/health", "/health/ready"] {
        let answer = get(gateway.local_addr(), path, &[]).await;
        refused(&answer, 404, "not_found", &seen, path);
    }
    let management = gateway.management_addr().unwrap();
    assert!(management.ip().is_loopback());
    let metrics = get(management, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(get(management, "/health", &[]).await.status, 200);
    let other = get(management, "/public/x", &[]).await;
    assert_eq!(
        other.status, 404,
        "the management address serves nothing else"
    );
    assert!(seen.lock().unwrap().is_empty());
}

macro_rules! on_both_paths {
    ($($name:ident),* $(,)?) => {
        mod typed {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Serving::Typed).await;
                }
            )*
        }
        mod relayed {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Serving::Relayed).await;
                }
            )*
        }
    };
}

on_both_paths!(
    paths_are_normalised_before_routing,
    stricter_path_rules_refuse_more,
    underscored_names_of_managed_fields_are_dropped,
    tokens_are_held_to_every_configured_claim,
    a_second_authorization_is_refused,
    forwarding_fields_are_trusted_only_from_trusted_proxies,
    framing_rules_are_held_at_the_edge,
    roles_reach_the_upstream_unambiguously,
    management_endpoints_are_not_on_the_public_port,
);
