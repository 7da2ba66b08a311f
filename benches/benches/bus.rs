//! The event bus on RabbitMQ against raw lapin with the same settings, in one run: publish
//! throughput with confirms, one at a time and pipelined ([`IN_FLIGHT`] publishes awaiting
//! their confirms on the one channel), and publish-to-handle latency.
//!
//! Run with `cargo bench -p mesh-benches --bench bus` (RabbitMQ at `MESH_TEST_AMQP_URL`, by
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`). Results are recorded in
//! docs/performance.md.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use mesh::{
    bus::{AmqpBus, Bus, Event, EventType, SubscriptionConfig},
    error::BoxError,
};
use serde::{Deserialize, Serialize};

const MESSAGES: usize = 1_000;
/// Publishes in flight at once in the pipelined mode.
const IN_FLIGHT: usize = 64;
const LATENCY_SAMPLES: usize = 300;
/// Raw and mesh runs alternate, so a slow moment of the broker hits both; medians are reported.
const ROUNDS: usize = 5;

#[derive(Serialize, Deserialize)]
struct Tick {
    n: usize,
}

impl EventType for Tick {
    const TYPE: &'static str = "bench.tick";
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn event(n: usize) -> Event {
    Event::new("bench", &Tick { n })
        .unwrap()
        .with_subject("bench")
}

/// Publishes per second of `MESSAGES` publishes made by `publish`, `in_flight` at a time.
async fn rate<F: Future<Output = ()>>(in_flight: usize, publish: impl Fn(usize) -> F) -> f64 {
    let started = Instant::now();
    futures_util::stream::iter(0..MESSAGES)
        .map(publish)
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>()
        .await;
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// What one side measured: publishes per second one at a time and pipelined, and latencies.
struct Measured {
    one_at_a_time: f64,
    pipelined: f64,
    latencies: Vec<Duration>,
}

/// The bus's subscription: one handler at a time, the other settings the defaults.
fn subscription_config() -> SubscriptionConfig {
    let mut config = SubscriptionConfig::new("bench", "ticks", ["bench.*"]);
    config.concurrency = 1;
    config
}

/// What raw lapin sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    /// The event's JSON with no properties but persistence.
    Bare,
    /// The event's JSON with the properties and header the bus sends (content type, message
    /// ID, type and the `traceparent` header), into a queue with the subscription's message
    /// TTL, consumed with its prefetch.
    Same,
}

/// The properties raw lapin sends `event` with.
fn raw_properties(message: Message, event: &Event) -> BasicProperties {
    let persistent = BasicProperties::default().with_delivery_mode(2);
    match message {
        Message::Bare => persistent,
        Message::Same => {
            let mut headers = FieldTable::default();
            if let Some(traceparent) = &event.traceparent {
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(traceparent.clone().into()),
                );
            }
            persistent
                .with_content_type("application/cloudevents+json".into())
                .with_message_id(event.id.as_str().into())
                .with_type(event.ty.as_str().into())
                .with_headers(headers)
        }
    }
}

/// Raw lapin: persistent, mandatory publishes on a confirm channel to a topic exchange, each
/// confirm awaited by its publisher, and a manual-ack consumer — what the bus does, without
/// the bus.
async fn raw(url: &str, exchange: &str, message: Message) -> Measured {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = format!("{exchange}.raw");
    let subscription = subscription_config();
    let mut arguments = FieldTable::default();
    if message == Message::Same {
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(subscription.message_ttl.as_millis() as i64),
        );
    }
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            "bench.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publish = |(payload, properties): (Vec<u8>, BasicProperties)| {
        let channel = channel.clone();
        async move {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    "bench.tick".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &payload,
                    properties,
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(confirm.is_ack());
        }
    };
    // The consumer runs during the publishes, as the bus's subscription does.
    let consumer_channel = connection.create_channel().await.unwrap();
    if message == Message::Same {
        let prefetch = usize::from(subscription.prefetch) * subscription.concurrency;
        consumer_channel
            .basic_qos(prefetch as u16, BasicQosOptions::default())
            .await
            .unwrap();
    }
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let _ = sender.send(());
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    let encoded = |n: usize| {
        let event = event(n);
        publish((
            serde_json::to_vec(&event).unwrap(),
            raw_properties(message, &event),
        ))
    };
    let one_at_a_time = rate(1, encoded).await;
    let pipelined = rate(IN_FLIGHT, encoded).await;
    for _ in 0..2 * MESSAGES {
        received.recv().await.unwrap();
    }
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let sent = Instant::now();
        encoded(n).await;
        received.recv().await.unwrap();
        latencies.push(sent.elapsed());
    }
    Measured {
        one_at_a_time,
        pipelined,
        latencies,
    }
}

async fn mesh_bus(url: &str, exchange: &str) -> Measured {
    let bus = AmqpBus::connect(url)
        .await
        .unwrap()
        .with_exchange(exchange)
        .await
        .unwrap();
    let handled: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>> = Arc::default();
    let signal = handled.clone();
    let handler = move |_: Event| {
        let signal = signal.clone();
        async move {
            if let Some(sender) = signal.lock().unwrap().as_ref() {
                let _ = sender.send(());
            }
            Ok::<(), BoxError>(())
        }
    };
    let _subscription = bus
        .subscribe(subscription_config(), Arc::new(handler))
        .await
        .unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    *handled.lock().unwrap() = Some(sender);

    let publish = |n: usize| {
        let bus = &bus;
        async move { bus.publish(event(n)).await.unwrap() }
    };
    let one_at_a_time = rate(1, publish).await;
    let pipelined = rate(IN_FLIGHT, publish).await;
    for _ in 0..2 * MESSAGES {
        receiver.recv().await.unwrap();
    }
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let sent = Instant::now();
        publish(n).await;
        receiver.recv().await.unwrap();
        latencies.push(sent.elapsed());
    }
    Measured {
        one_at_a_time,
        pipelined,
        latencies,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("MESH_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    if Connection::connect(&url, ConnectionProperties::default())
        .await
        .is_err()
    {
        eprintln!("skipped: no RabbitMQ at {url}");
        return;
    }
    let run = std::process::id();
    let (mut bare_runs, mut raw_runs, mut mesh_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let exchange = |side: &str| format!("mesh.bench.{side}.{run}.{round}");
        bare_runs.push(raw(&url, &exchange("bare"), Message::Bare).await);
        raw_runs.push(raw(&url, &exchange("raw"), Message::Same).await);
        mesh_runs.push(mesh_bus(&url, &exchange("mesh")).await);
    }
    let median = |runs: &[Measured], rate: fn(&Measured) -> f64| {
        let mut rates: Vec<f64> = runs.iter().map(rate).collect();
        rates.sort_by(f64::total_cmp);
        rates[ROUNDS / 2]
    };
    let pooled = |runs: &[Measured]| {
        let mut latencies: Vec<Duration> =
            runs.iter().flat_map(|run| run.latencies.clone()).collect();
        latencies.sort();
        latencies
    };
    let (bare_latency, raw_latency, mesh_latency) =
        (pooled(&bare_runs), pooled(&raw_runs), pooled(&mesh_runs));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| measure | raw lapin, bare message | raw lapin, same message | mesh bus | mesh vs same message | mesh vs bare message |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, rate) in [
        (
            "one at a time",
            (|m| m.one_at_a_time) as fn(&Measured) -> f64,
        ),
        ("pipelined, 64 in flight", |m| m.pipelined),
    ] {
        let (bare_rate, raw_rate, mesh_rate) = (
            median(&bare_runs, rate),
            median(&raw_runs, rate),
            median(&mesh_runs, rate),
        );
        println!(
            "| publishes per second, each confirmed, {name} (median of {ROUNDS} × {MESSAGES}) | {bare_rate:.0} | {raw_rate:.0} | {mesh_rate:.0} | {:.2} | {:.2} |",
            mesh_rate / raw_rate,
            mesh_rate / bare_rate
        );
    }
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (bare, raw, mesh) = (
            percentile(&bare_latency, p),
            percentile(&raw_latency, p),
            percentile(&mesh_latency, p),
        );
        println!(
            "| publish → handled, {name} ({ROUNDS} × {LATENCY_SAMPLES}) | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} | {:.2} |",
            ms(bare),
            ms(raw),
            ms(mesh),
            ms(mesh) / ms(raw),
            ms(mesh) / ms(bare)
        );
    }
}
