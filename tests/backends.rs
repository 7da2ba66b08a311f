//! The backends a service's configuration names: the same code on the embedded defaults and on
//! RabbitMQ and Redis, chosen by `bus.url` and `redis.url` alone.

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh,
    auth::{Grant, RefreshError, RefreshTokens},
    bus::{Event, EventType, SubscriptionConfig},
    config::MeshConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: u32,
}

impl EventType for OrderPlaced {
    const TYPE: &'static str = "order.placed";
}

async fn mesh(name: &str, config: serde_json::Value) -> Mesh {
    Mesh::builder(name)
        .config(MeshConfig::from_value(name, config))
        .build()
        .await
        .unwrap()
}

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("skipped: {name} is not set");
    }
    value
}

/// Publishes an event through `mesh.bus()` and receives it through a subscription of the
/// same bus: what a service does, whichever backend the configuration names.
async fn an_event_goes_round(mesh: &Mesh) {
    let bus = mesh.bus().await.unwrap();
    assert!(
        Arc::ptr_eq(&bus, &mesh.bus().await.unwrap()),
        "one bus per service"
    );
    let (sent, mut received) = mpsc::unbounded_channel();
    let binding = format!("backends-{}", fastrand_id());
    let _subscription = bus
        .subscribe(
            SubscriptionConfig::new(mesh.name().as_str(), binding, ["order.*"]),
            Arc::new(move |event: Event| {
                let sent = sent.clone();
                async move {
                    sent.send(event.data::<OrderPlaced>()?).ok();
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let event = Event::new(mesh.name().as_str(), &OrderPlaced { order: 7 }).unwrap();
    bus.publish(event).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the event arrives")
        .unwrap();
    assert_eq!(got, OrderPlaced { order: 7 });
}

#[tokio::test]
async fn services_naming_one_in_process_bus_share_it_and_no_other_hears_it() {
    let url = format!("memory://backends-{}", fastrand_id());
    let on = |url: &str| json!({"bus": {"url": url}});
    let publisher = mesh("order-service", on(&url)).await;
    let consumer = mesh("notification-service", on(&url)).await;
    let elsewhere = mesh("audit-service", on("memory")).await;
    let bus = |mesh: &Mesh| {
        let mesh = mesh.clone();
        async move { mesh.bus().await.unwrap() }
    };
    assert!(Arc::ptr_eq(&bus(&publisher).await, &bus(&consumer).await));
    assert!(!Arc::ptr_eq(&bus(&publisher).await, &bus(&elsewhere).await));
    let (sent, mut received) = mpsc::unbounded_channel();
    let mut subscriptions = Vec::new();
    for service in [&consumer, &elsewhere] {
        let sent = sent.clone();
        let name = service.name().to_string();
        let handler = Arc::new(move |_: Event| {
            sent.send(name.clone()).ok();
            async { Ok(()) }
        });
        let config = SubscriptionConfig::new(service.name().as_str(), "orders", ["order.*"]);
        let bus = service.bus().await.unwrap();
        subscriptions.push(bus.subscribe(config, handler).await.unwrap());
    }
    let event = Event::new("order-service", &OrderPlaced { order: 7 }).unwrap();
    publisher.bus().await.unwrap().publish(event).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
    assert_eq!(heard.unwrap().as_deref(), Some("notification-service"));
    // The service on a bus of its own heard nothing.
    tokio::task::yield_now().await;
    assert!(received.try_recv().is_err());
}

fn fastrand_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn the_bus_is_in_memory_by_default() {
    let mesh = mesh("orders", serde_json::json!({})).await;
    an_event_goes_round(&mesh).await;
}

#[tokio::test]
async fn bus_url_moves_the_same_code_to_rabbitmq() {
    let Some(url) = env("MESH_TEST_AMQP_URL") else {
        return;
    };
    let mesh = mesh("orders", serde_json::json!({"bus": {"url": url}})).await;
    an_event_goes_round(&mesh).await;
}

#[tokio::test]
async fn a_bus_url_that_names_no_backend_is_a_configuration_error() {
    let mesh = mesh(
        "orders",
        serde_json::json!({"bus": {"url": "kafka://broker"}}),
    )
    .await;
    let error = mesh.bus().await.err().unwrap();
    assert_eq!(error.kind(), mesh::error::ErrorKind::Config, "{error}");
}

#[tokio::test]
async fn the_environment_names_the_backends() {
    let Some(url) = env("MESH_TEST_REDIS_URL") else {
        return;
    };
    let config = MeshConfig::builder("auth")
        .env_vars([("MESH_REDIS_URL", url.as_str()), ("MESH_BUS_URL", "memory")])
        .load()
        .await
        .unwrap();
    let mesh = Mesh::builder("auth").config(config).build().await.unwrap();
    assert_eq!(mesh.redis_url().unwrap(), Some(url));
}

/// Two instances of an auth service: a refresh token issued by one is rotated by the other
/// only when they share Redis.
async fn shared_between_instances(config: serde_json::Value) -> Result<(), RefreshError> {
    let ttl = Duration::from_secs(60);
    let one = mesh("auth", config.clone()).await;
    let other = mesh("auth", config).await;
    let issued = RefreshTokens::new(one.refresh_store().unwrap(), ttl)
        .start(Grant::new("ada", ["customer"]))
        .await?;
    RefreshTokens::new(other.refresh_store().unwrap(), ttl)
        .rotate(&issued)
        .await
        .map(drop)
}

#[tokio::test]
async fn refresh_tokens_live_in_memory_by_default_and_in_redis_with_redis_url() {
    assert_eq!(
        shared_between_instances(serde_json::json!({})).await,
        Err(RefreshError::Invalid),
        "in memory, each instance has its own"
    );
    let Some(url) = env("MESH_TEST_REDIS_URL") else {
        return;
    };
    shared_between_instances(serde_json::json!({"redis": {"url": url}}))
        .await
        .unwrap();
}
