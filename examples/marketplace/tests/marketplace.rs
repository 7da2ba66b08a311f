//! The marketplace end to end: the scripted scenario on the embedded defaults and on RabbitMQ,
//! Redis and PostgreSQL, and a chat message delivered over Socket.IO through the gateway by
//! npm's `socket.io-client` on the polling and the WebSocket transports.

use std::{net::SocketAddr, path::Path, process::Command};

use marketplace::{Marketplace, MarketplaceOptions, demo, demo::Browser};
use serde_json::Value;

async fn start(env: Vec<(String, String)>) -> Marketplace {
    Marketplace::start(MarketplaceOptions {
        gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        env,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_behaves_on_the_embedded_defaults() {
    let market = start(Vec::new()).await;
    let outcome = demo::run(&market).await;
    market.shutdown().await.unwrap();
    outcome.unwrap();
}

/// RabbitMQ, Redis and PostgreSQL from the test environment, under names of this run's own;
/// `None` (the test says it was skipped) when they are not all set.
fn real_backends() -> Option<Vec<(String, String)>> {
    let run = format!("marketplace-test-{}", mesh_testkit::unique());
    let mut env = mesh_testkit::real_backends("MARKETPLACE_NAMESPACE", &run)?;
    env.push(("MESH_BUS__EXCHANGE".into(), run));
    Some(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_behaves_on_rabbitmq_redis_and_postgres() {
    let Some(env) = real_backends() else {
        return;
    };
    let market = start(env).await;
    let outcome = demo::run(&market).await;
    market.shutdown().await.unwrap();
    outcome.unwrap();
}

/// The Node project of the Socket.IO check, its packages installed from its lock file.
fn socketio_check() -> &'static Path {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketio"));
    if !dir.join("node_modules/socket.io-client").is_dir() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .expect("npm (Node.js) runs the Socket.IO check");
        assert!(installed.success(), "npm ci in {}", dir.display());
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_reaches_its_recipient_over_socket_io_through_the_gateway() {
    chat_over_socket_io(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_reaches_its_recipient_over_socket_io_on_rabbitmq_redis_and_postgres() {
    if let Some(env) = real_backends() {
        chat_over_socket_io(env).await;
    }
}

/// Two users chat through the gateway with npm's `socket.io-client`, on each transport, on
/// the backends `env` names.
async fn chat_over_socket_io(env: Vec<(String, String)>) {
    let dir = socketio_check();
    let market = start(env).await;
    let mut alice = Browser::new(market.gateway, "alice");
    let mut bob = Browser::new(market.gateway, "bob");
    alice.sign_up("alice's long password").await.unwrap();
    bob.sign_up("bob's long password").await.unwrap();
    // The chat service learns users from their signup events: once it knows bob, alice can
    // write to him (and not to a user who does not exist).
    let hello = serde_json::json!({"to": "bob", "text": "hello over HTTP"});
    let mut sent = alice
        .post("/api/chat/messages", hello.clone())
        .await
        .unwrap();
    for _ in 0..100 {
        if sent.status != 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sent = alice
            .post("/api/chat/messages", hello.clone())
            .await
            .unwrap();
    }
    assert_eq!(sent.status, 200, "{}", sent.body);
    let nobody = serde_json::json!({"to": "nobody", "text": "hello?"});
    let refused = alice.post("/api/chat/messages", nobody).await.unwrap();
    assert_eq!(refused.status, 404, "{}", refused.body);
    let cookie = |browser: &Browser| format!("mesh_token={}", browser.token().unwrap());
    for transport in ["polling", "websocket"] {
        let gateway = market.gateway.to_string();
        let (sender, recipient) = (cookie(&alice), cookie(&bob));
        let dir = dir.to_owned();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .args(["chat.mjs", &gateway, &sender, &recipient, transport])
                .current_dir(dir)
                .output()
                .expect("node runs")
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
        let text = format!("hello over {transport}");
        // Received by the recipient, as the sender's acknowledgement says it was kept.
        assert_eq!(seen["received"]["from"], "alice", "{seen}");
        assert_eq!(seen["received"]["to"], "bob", "{seen}");
        assert_eq!(seen["received"]["text"], text.as_str(), "{seen}");
        assert_eq!(seen["ack"]["ok"], seen["received"], "{seen}");
        assert_eq!(
            seen["transports"],
            serde_json::json!([transport, transport])
        );
        assert_eq!(seen["refusedWithoutCookie"], true, "{seen}");
        // Malformed messages are acknowledged with what is wrong, not dropped.
        for ack in seen["malformed"].as_array().unwrap() {
            assert!(
                ack["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{seen}"
            );
        }
        // A session is its user's: another user naming it is refused.
        if transport == "polling" {
            assert_eq!(seen["hijack"], 403, "{seen}");
        }
        // Kept in the conversation and told to the notification service.
        let conversation = bob.get("/api/chat/with/alice").await.unwrap();
        assert!(
            conversation
                .body
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["text"] == text.as_str()),
            "{}",
            conversation.body
        );
    }
    bob.notified("new message from alice").await.unwrap();
    market.shutdown().await.unwrap();
}
