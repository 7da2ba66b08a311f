//! The shop end to end, over real sockets, through its gateway: the whole demo scenario, a
//! notification told once when the broker delivers its event twice, and a poison event
//! dead-lettered — each on the embedded defaults and (when the machine has them) on RabbitMQ,
//! Redis and PostgreSQL. The config server's answer is checked too.

use std::time::Duration;

use mesh::bus::{Event, EventType};
use serde::{Deserialize, Serialize};
use shop::{
    Shop, ShopOptions,
    api::{Line, Order, OrderPaid, OrderStatus},
    demo::{self, ShopClient},
};

const ADMIN_PASSWORD: &str = "the admin password of the tests";

async fn start(env: Vec<(String, String)>) -> Shop {
    Shop::start(ShopOptions {
        gateway_addr: "127.0.0.1:0".parse().unwrap(),
        registry_addr: None,
        admin_password: ADMIN_PASSWORD.into(),
        env,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_behaves_on_the_embedded_defaults() {
    let shop = start(Vec::new()).await;
    demo::run(shop.gateway, ADMIN_PASSWORD).await.unwrap();
    shop.shutdown().await.unwrap();
}

/// The environment that puts the shop on RabbitMQ, Redis and PostgreSQL, with an exchange and
/// tables of this run's own (so other runs' events and rows stay out); `None` when the machine
/// does not have all three.
fn real_backends(test: &str) -> Option<Vec<(String, String)>> {
    let run = format!("shop-{test}-{}", std::process::id());
    let mut env = mesh_testkit::real_backends("SHOP_DATA_NAMESPACE", &run)?;
    env.push(("MESH_BUS__EXCHANGE".into(), run));
    Some(env)
}

/// On the real backends the scenarios run one after another: the notification service's
/// queue is one per broker, whatever the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_behaves_on_rabbitmq_redis_and_postgresql() {
    let Some(env) = real_backends("demo") else {
        return;
    };
    let shop = start(env).await;
    demo::run(shop.gateway, ADMIN_PASSWORD).await.unwrap();
    shop.shutdown().await.unwrap();
    if let Some(env) = real_backends("twice") {
        an_event_delivered_twice_is_told_once(env).await;
    }
    if let Some(env) = real_backends("poison") {
        a_poison_event_is_dead_lettered(env).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_twice_is_told_once_on_the_embedded_defaults() {
    an_event_delivered_twice_is_told_once(Vec::new()).await;
}

async fn an_event_delivered_twice_is_told_once(env: Vec<(String, String)>) {
    let shop = start(env).await;
    let client = ShopClient::new(shop.gateway);
    let (token, _) = client
        .login("carol", "carol's good password")
        .await
        .unwrap();
    let paid = |id: &str| {
        let order = Order {
            id: id.into(),
            customer: "carol".into(),
            lines: vec![Line {
                sku: "tea".into(),
                quantity: 1,
            }],
            total_cents: 450,
            status: OrderStatus::Paid,
            reason: None,
        };
        Event::new("order-service", &OrderPaid { order })
            .unwrap()
            .with_subject("carol")
    };
    let event = paid("ord-replayed");
    // The broker redelivers: the same event (same ID) arrives twice. Then a marker: the
    // events of one subject are handled in order, so once it is told, both copies were.
    shop.bus.publish(event.clone()).await.unwrap();
    shop.bus.publish(event.clone()).await.unwrap();
    shop.bus.publish(paid("ord-marker")).await.unwrap();
    demo::wait_for_notification(&client, &token, "order ord-marker is paid")
        .await
        .unwrap();
    let inbox = client
        .get("/api/notifications", Some(&token))
        .await
        .unwrap();
    let told = inbox
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event_id"] == event.id.as_str())
        .count();
    assert_eq!(told, 1, "{}", inbox.body);
    shop.shutdown().await.unwrap();
}

/// An `order.placed` event whose data is not an order: a publisher's bug.
#[derive(Debug, Serialize, Deserialize)]
struct Garbled {
    nonsense: bool,
}

impl EventType for Garbled {
    const TYPE: &'static str = "order.placed";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_on_the_embedded_defaults() {
    a_poison_event_is_dead_lettered(Vec::new()).await;
}

/// The notification service tries a poison event three times (1 s, then 2 s apart), then
/// moves it to its dead-letter queue, and goes on with the next.
async fn a_poison_event_is_dead_lettered(env: Vec<(String, String)>) {
    let shop = start(env).await;
    let poison = Event::new("order-service", &Garbled { nonsense: true })
        .unwrap()
        .with_subject("mallory");
    shop.bus.publish(poison.clone()).await.unwrap();
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters.extend(
            shop.bus
                .dead_letters("notification-service.events", 10)
                .await
                .unwrap()
                .into_iter()
                .filter(|letter| letter.event.id == poison.id),
        );
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [letter] = &letters[..] else {
        panic!("{} dead letters of the poison event", letters.len());
    };
    assert_eq!(letter.attempts, 3);
    assert!(letter.reason.contains("order"), "{}", letter.reason);
    shop.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_config_server_serves_the_order_services_configuration() {
    let shop = start(Vec::new()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let url = format!("http://{}/config/order-service/default", shop.registry);
    let answer = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let environment: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let source = &environment["propertySources"][0];
    assert!(
        source["name"]
            .as_str()
            .unwrap()
            .ends_with("order-service.yml"),
        "{environment}"
    );
    assert_eq!(
        source["source"]["clients.payment-service.circuit_breaker.sliding_window_size"],
        5
    );
    shop.shutdown().await.unwrap();
}
