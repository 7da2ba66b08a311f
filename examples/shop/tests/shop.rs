//! The shop end to end, over real sockets, through its gateway: the whole demo scenario on the
//! embedded defaults and (when the machine has them) on RabbitMQ and Redis, and a notification
//! told once when the broker delivers its event twice.

use mesh::bus::Event;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_behaves_on_rabbitmq_redis_and_postgresql() {
    let (Ok(amqp), Ok(redis), Ok(database)) = (
        std::env::var("MESH_TEST_AMQP_URL"),
        std::env::var("MESH_TEST_REDIS_URL"),
        std::env::var("DATABASE_URL"),
    ) else {
        eprintln!(
            "skipped: MESH_TEST_AMQP_URL, MESH_TEST_REDIS_URL and DATABASE_URL are not all set"
        );
        return;
    };
    // An exchange and tables of this run's own, so other runs' events and rows stay out.
    let run = format!("shop-test-{}", std::process::id());
    let shop = start(vec![
        ("MESH_BUS_URL".into(), amqp),
        ("MESH_BUS__EXCHANGE".into(), run.clone()),
        ("MESH_REDIS_URL".into(), redis),
        ("DATABASE_URL".into(), database),
        ("SHOP_DATA_NAMESPACE".into(), run),
    ])
    .await;
    demo::run(shop.gateway, ADMIN_PASSWORD).await.unwrap();
    shop.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_twice_is_told_once() {
    let shop = start(Vec::new()).await;
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
