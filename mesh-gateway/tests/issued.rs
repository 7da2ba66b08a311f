//! The gateway verifying what mesh's auth toolkit issues: ES256 tokens from a `TokenIssuer`
//! whose keys it fetches from the issuer's JWKS, across a key rotation, without a restart.

use std::net::SocketAddr;

use axum::{Router, routing::any};
use mesh_core::{
    Mesh,
    auth::{IssuerSettings, TokenIssuer},
    config::MeshConfig,
    runtime::Running,
};
use mesh_gateway::{Gateway, GatewayConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `router` on a free port.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A gateway with an admin route to `upstream`, verifying tokens with the keys at `jwks`.
async fn gateway(upstream: SocketAddr, jwks: SocketAddr) -> Running {
    let yaml = format!(
        r#"
routes:
  - id: admin
    uri: http://{upstream}
    predicates: [Path=/admin/**]
    auth: [admin]
auth:
  jwt:
    jwks_url: http://{jwks}/.well-known/jwks.json
    issuer: auth-service
    audience: shop
"#
    );
    let config = GatewayConfig::from_yaml(&yaml).unwrap();
    let mesh = Mesh::builder("issued-gateway")
        .config(MeshConfig::from_value(
            "issued-gateway",
            json!({"registry": {"register": false}}),
        ))
        .build()
        .await
        .unwrap();
    let gateway = Gateway::new(config, &mesh).unwrap();
    mesh.server(gateway).start().await.unwrap()
}

/// The status of `GET path` with `token`.
async fn status(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).unwrap_or("0").parse().unwrap()
}

#[tokio::test]
async fn the_gateway_verifies_issued_tokens_across_a_key_rotation() {
    let settings = IssuerSettings::new("auth-service").audience("shop");
    let issuer = TokenIssuer::new(settings.clone()).unwrap();
    let jwks = serve(issuer.jwks_router()).await;
    let upstream = serve(Router::new().fallback(any(|| async { "admin page" }))).await;
    let gateway = gateway(upstream, jwks).await;
    let addr = gateway.local_addr();

    let admin = issuer.issue("ada", &["admin".into()]).unwrap();
    assert_eq!(status(addr, "/admin/users", &admin.token).await, 200);
    let customer = issuer.issue("bob", &["customer".into()]).unwrap();
    assert_eq!(status(addr, "/admin/users", &customer.token).await, 403);

    // A rotation: tokens of the new key verify at once, those of the old one still do.
    issuer.rotate().unwrap();
    let rotated = issuer.issue("ada", &["admin".into()]).unwrap();
    assert_ne!(rotated.kid, admin.kid);
    assert_eq!(status(addr, "/admin/users", &rotated.token).await, 200);
    assert_eq!(status(addr, "/admin/users", &admin.token).await, 200);

    // Another key ring's token, and a customer's token with its role raised, are refused.
    let elsewhere = TokenIssuer::new(settings).unwrap();
    let forged = elsewhere.issue("mallory", &["admin".into()]).unwrap();
    assert_eq!(status(addr, "/admin/users", &forged.token).await, 401);
    let mut parts: Vec<String> = customer.token.split('.').map(str::to_owned).collect();
    let raised = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            parts[1].as_bytes(),
        )
        .unwrap(),
    )
    .unwrap()
    .replace("customer", "admin");
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        raised.as_bytes(),
    );
    assert_eq!(status(addr, "/admin/users", &parts.join(".")).await, 401);
}
