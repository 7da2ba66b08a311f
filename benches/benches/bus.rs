//! The event bus on RabbitMQ against raw lapin with the same settings, in one run: publish
//! throughput with confirms, and publish-to-handle latency.
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
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};
use mesh::{
    bus::{AmqpBus, Bus, Event, EventType, SubscriptionConfig},
    error::BoxError,
};
use serde::{Deserialize, Serialize};

const MESSAGES: usize = 1_000;
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

/// Raw lapin: persistent, mandatory publishes on a confirm channel to a topic exchange, each
/// confirm awaited, and a manual-ack consumer — what the bus does, without the bus.
async fn raw(url: &str, exchange: &str) -> (f64, Vec<Duration>) {
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
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
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
    let publish = |payload: Vec<u8>| {
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
                    BasicProperties::default().with_delivery_mode(2),
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
    let started = Instant::now();
    for n in 0..MESSAGES {
        publish(serde_json::to_vec(&event(n)).unwrap()).await;
    }
    let throughput = MESSAGES as f64 / started.elapsed().as_secs_f64();
    for _ in 0..MESSAGES {
        received.recv().await.unwrap();
    }
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let sent = Instant::now();
        publish(serde_json::to_vec(&event(n)).unwrap()).await;
        received.recv().await.unwrap();
        latencies.push(sent.elapsed());
    }
    (throughput, latencies)
}

async fn mesh_bus(url: &str, exchange: &str) -> (f64, Vec<Duration>) {
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
    let mut config = SubscriptionConfig::new("bench", "ticks", ["bench.*"]);
    config.concurrency = 1;
    let _subscription = bus.subscribe(config, Arc::new(handler)).await.unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    *handled.lock().unwrap() = Some(sender);

    let started = Instant::now();
    for n in 0..MESSAGES {
        bus.publish(event(n)).await.unwrap();
    }
    let throughput = MESSAGES as f64 / started.elapsed().as_secs_f64();
    for _ in 0..MESSAGES {
        receiver.recv().await.unwrap();
    }
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let sent = Instant::now();
        bus.publish(event(n)).await.unwrap();
        receiver.recv().await.unwrap();
        latencies.push(sent.elapsed());
    }
    (throughput, latencies)
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
    let (mut raw_rates, mut mesh_rates) = (Vec::new(), Vec::new());
    let (mut raw_latency, mut mesh_latency) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (rate, latency) = raw(&url, &format!("mesh.bench.raw.{run}.{round}")).await;
        raw_rates.push(rate);
        raw_latency.extend(latency);
        let (rate, latency) = mesh_bus(&url, &format!("mesh.bench.mesh.{run}.{round}")).await;
        mesh_rates.push(rate);
        mesh_latency.extend(latency);
    }
    raw_rates.sort_by(f64::total_cmp);
    mesh_rates.sort_by(f64::total_cmp);
    let (raw_rate, mesh_rate) = (raw_rates[ROUNDS / 2], mesh_rates[ROUNDS / 2]);
    raw_latency.sort();
    mesh_latency.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| measure | raw lapin | mesh bus | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| publishes per second, each confirmed (median of {ROUNDS} × {MESSAGES}) | {raw_rate:.0} | {mesh_rate:.0} | {:.2} |",
        mesh_rate / raw_rate
    );
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (raw, mesh) = (percentile(&raw_latency, p), percentile(&mesh_latency, p));
        println!(
            "| publish → handled, {name} ({ROUNDS} × {LATENCY_SAMPLES}) | {:.2} ms | {:.2} ms | {:.2} |",
            ms(raw),
            ms(mesh),
            ms(mesh) / ms(raw)
        );
    }
}
