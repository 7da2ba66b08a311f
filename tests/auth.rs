//! JWT verification on a service's routes: the refusal matrix, key confusion, JWKS.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use http::StatusCode;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mesh::{
    auth::{Caller, Identity, JwtConfig, JwtVerifier},
    axum::{Extension, Json, Router, routing::get},
    error::ErrorKind,
    runtime::Running,
};
use serde_json::{Value, json};
use support::{call, registry, start};

const SECRET: &str = "a shared secret of at least thirty-two bytes";
const PRIVATE_PEM: &[u8] = include_bytes!("fixtures/rsa-private.pem");
const PUBLIC_PEM: &str = include_str!("fixtures/rsa-public.pem");
const JWKS: &str = include_str!("fixtures/jwks.json");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "sub": "alice",
        "roles": ["customer", "admin"],
        "iss": "auth-service",
        "aud": "shop",
        "exp": now() + 600,
    });
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap(),
    )
    .unwrap()
}

/// A service whose `/me` answers with the verified subject and roles.
async fn service(jwt: Value) -> Running {
    let router = Router::new()
        .route(
            "/me",
            get(|Extension(identity): Extension<Identity>| async move {
                Json(json!({"sub": identity.subject, "admin": identity.has_role("admin")}))
            }),
        )
        .route("/catalog/items", get(|| async { "public" }));
    start(
        "secured",
        router,
        &registry(),
        json!({"server": {"auth": {"jwt": jwt, "public": ["/catalog/**"]}}}),
    )
    .await
}

async fn get_with(running: &Running, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    let (status, response_headers, body) =
        call(running.local_addr(), "GET", path, &headers, Vec::new()).await;
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(response_headers["www-authenticate"], "Bearer");
    }
    (status, body)
}

#[tokio::test]
async fn every_bad_token_is_refused_and_a_good_one_reaches_the_handler() {
    let running = service(
        json!({"secret": SECRET, "issuer": "auth-service", "audience": "shop", "leeway": "0s"}),
    )
    .await;

    let (status, body) = get_with(&running, "/me", Some(&hs256(&claims(json!({}))))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"sub": "alice", "admin": true})
    );

    let bad = [
        ("missing", None),
        ("garbage", Some("not-a-token".to_owned())),
        ("expired", Some(hs256(&claims(json!({"exp": now() - 60}))))),
        (
            "not yet valid",
            Some(hs256(&claims(json!({"nbf": now() + 600})))),
        ),
        (
            "wrong issuer",
            Some(hs256(&claims(json!({"iss": "someone-else"})))),
        ),
        (
            "wrong audience",
            Some(hs256(&claims(json!({"aud": "billing"})))),
        ),
        (
            "no expiry",
            Some(hs256(
                &json!({"sub": "alice", "iss": "auth-service", "aud": "shop"}),
            )),
        ),
        (
            "other secret",
            Some(
                encode(
                    &Header::new(Algorithm::HS256),
                    &claims(json!({})),
                    &EncodingKey::from_secret(b"another secret of thirty-two bytes!!"),
                )
                .unwrap(),
            ),
        ),
        ("alg none", Some(unsigned(&claims(json!({}))))),
    ];
    for (case, token) in bad {
        let (status, body) = get_with(&running, "/me", token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized", "{case}");
    }

    assert_eq!(
        get_with(&running, "/catalog/items", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&running, "/health/ready", None).await.0,
        StatusCode::OK
    );
    assert_eq!(get_with(&running, "/metrics", None).await.0, StatusCode::OK);
}

/// `{"alg":"none"}` with the claims and an empty signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |bytes: &[u8]| {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    };
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn an_rsa_service_refuses_an_hmac_token_signed_with_its_public_key() {
    let running = service(json!({"public_key": PUBLIC_PEM})).await;
    let good = rs256(&claims(json!({})), None);
    assert_eq!(
        get_with(&running, "/me", Some(&good)).await.0,
        StatusCode::OK
    );

    // Key confusion: the public key's bytes used as an HMAC secret.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(PUBLIC_PEM.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        get_with(&running, "/me", Some(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let verifier = JwtVerifier::new(JwtConfig::with_public_key(PUBLIC_PEM)).unwrap();
    assert_eq!(
        verifier.verify(&forged).await.unwrap_err(),
        mesh::auth::AuthError::Algorithm
    );
}

/// A JWKS endpoint that counts its fetches: `jwks` while `up`, a 500 otherwise.
async fn counted_jwks(jwks: Value, up: Arc<AtomicBool>) -> (SocketAddr, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let keys = Router::new().route(
        "/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = up
                .load(Ordering::SeqCst)
                .then(|| Json(jwks.clone()))
                .ok_or(StatusCode::INTERNAL_SERVER_ERROR);
            async move { answer }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { mesh::axum::serve(listener, keys).await });
    (addr, fetches)
}

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_and_unknown_kids_cannot_hammer_the_key_server() {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let (addr, fetches) = counted_jwks(jwks, Arc::new(AtomicBool::new(true))).await;
    let running = service(json!({"jwks_url": format!("http://{addr}/jwks.json")})).await;
    let good = rs256(&claims(json!({})), Some("test-key-1"));
    assert_eq!(
        get_with(&running, "/me", Some(&good)).await.0,
        StatusCode::OK
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Each forged `kid` is refused. An unknown `kid` may ask for the set again (a rotation
    // may have published it), but not within ten seconds of the last fetch: forged ones
    // cannot make the service hammer its key server.
    for n in 0..20 {
        let unknown = rs256(&claims(json!({})), Some(&format!("forged-{n}")));
        assert_eq!(
            get_with(&running, "/me", Some(&unknown)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        get_with(&running, "/me", Some(&good)).await.0,
        StatusCode::OK,
        "the known key still verifies"
    );
}

#[tokio::test]
async fn an_unreachable_or_failing_jwks_is_a_503_and_is_not_asked_on_every_request() {
    let good = rs256(&claims(json!({})), Some("test-key-1"));
    let unreachable = service(json!({"jwks_url": "http://127.0.0.1:1/jwks.json"})).await;
    let (status, body) = get_with(&unreachable, "/me", Some(&good)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let (addr, fetches) = counted_jwks(jwks, Arc::new(AtomicBool::new(false))).await;
    let failing = service(json!({"jwks_url": format!("http://{addr}/jwks.json")})).await;
    for _ in 0..10 {
        let (status, body) = get_with(&failing, "/me", Some(&good)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "tried once, then held off"
    );
}

#[tokio::test]
async fn a_bad_auth_configuration_stops_the_service_at_start() {
    for (jwt, needle) in [
        (json!({"secret": "short"}), "32 bytes"),
        (
            json!({"secret": SECRET, "public_key": PUBLIC_PEM}),
            "exactly one",
        ),
        (
            json!({"public_key": PUBLIC_PEM, "algorithms": ["HS256"]}),
            "does not fit",
        ),
        (json!({"public_key": "/nonexistent/key.pem"}), "nonexistent"),
    ] {
        let error = mesh::Mesh::builder("secured")
            .config(mesh::config::MeshConfig::from_value(
                "secured",
                json!({"server": {"auth": {"jwt": jwt}}}),
            ))
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(needle), "{error}");
    }
}

/// A front service whose `/relayed` asks the back service who is calling, through a client of
/// `back` configured by `client`, and whose `/admin-only` checks the caller's role itself.
async fn front(registry: &Arc<mesh_registry::Registry>, name: &str, client: Value) -> Running {
    let jwt = json!({"secret": SECRET, "issuer": "auth-service", "audience": "shop"});
    let mesh = support::mesh(
        name,
        registry,
        json!({"server": {"auth": {"jwt": jwt}}, "clients": {"back": client}}),
    )
    .await;
    let back = mesh.client("back");
    let router = Router::new()
        .route(
            "/relayed",
            get(move || {
                let back = back.clone();
                async move {
                    let request = http::Request::get("/whoami")
                        .body(Default::default())
                        .unwrap();
                    let answer = back.send(request).await.unwrap();
                    let status = answer.status();
                    let body = answer.into_body().collect().await.unwrap().to_bytes();
                    format!("{} {}", status.as_u16(), String::from_utf8_lossy(&body))
                }
            }),
        )
        .route(
            "/admin-only",
            get(|| async { Caller::require_role("admin").map(|who| who.subject.clone()) }),
        );
    mesh.server(router).start().await.unwrap()
}

#[tokio::test]
async fn a_call_made_while_serving_a_verified_request_carries_the_callers_token() {
    let registry = registry();
    let jwt = json!({"secret": SECRET, "issuer": "auth-service", "audience": "shop"});
    let back = Router::new().route(
        "/whoami",
        get(|| async {
            Caller::current()
                .expect("a verified caller")
                .identity
                .subject
                .clone()
        }),
    );
    let _back = start(
        "back",
        back,
        &registry,
        json!({"server": {"auth": {"jwt": jwt}}}),
    )
    .await;
    let relaying = front(&registry, "front", json!({})).await;
    let withholding = front(&registry, "front-off", json!({"token_relay": "off"})).await;

    let token = hs256(&claims(json!({"sub": "carol", "roles": ["customer"]})));
    let (status, body) = get_with(&relaying, "/relayed", Some(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "200 carol"));
    let (status, body) = get_with(&withholding, "/relayed", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("401 "), "{body}");

    // The role check reads the same caller: a customer is refused, an admin let through.
    let (status, _) = get_with(&relaying, "/admin-only", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = hs256(&claims(json!({"sub": "dave", "roles": ["admin"]})));
    let (status, body) = get_with(&relaying, "/admin-only", Some(&admin)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "dave"));
}

/// A service requiring the gateway's proof takes, from a key it shares with user tokens, only
/// tokens with the gateway's claims: its `server.edge` names none, so `mesh-gateway` and
/// `mesh-edge` are required.
#[tokio::test]
async fn a_user_token_of_the_same_key_is_no_gateway_proof() {
    let running = start(
        "edge-secured",
        Router::new().route("/gigs", get(|| async { "served" })),
        &registry(),
        json!({"server": {"edge": {"jwt": {"secret": SECRET}}}}),
    )
    .await;
    let addr = running.local_addr();
    let proof = |extra: Value| {
        let token = hs256(&claims(extra));
        async move {
            let headers = [("mesh-edge", token.as_str())];
            call(addr, "GET", "/gigs", &headers, Vec::new()).await.0
        }
    };
    // A user's token: the auth service's issuer and audience.
    assert_eq!(proof(json!({})).await, StatusCode::FORBIDDEN);
    assert_eq!(
        proof(json!({"iss": "mesh-gateway", "aud": "shop"})).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        proof(json!({"iss": "mesh-gateway", "aud": "mesh-edge"})).await,
        StatusCode::OK
    );
}
