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

/// Raw lapin: persistent, mandatory publishes on a confirm channel to a topic exchange, each
/// confirm awaited by its publisher, and a manual-ack consumer — what the bus does, without
/// the bus.
async fn raw(url: &str, exchange: &str) -> Measured {
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
    let encoded = |n: usize| publish(serde_json::to_vec(&event(n)).unwrap());
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
    let mut config = SubscriptionConfig::new("bench", "ticks", ["bench.*"]);
    config.concurrency = 1;
    let _subscription = bus.subscribe(config, Arc::new(handler)).await.unwrap();
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
    let (mut raw_runs, mut mesh_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        raw_runs.push(raw(&url, &format!("mesh.bench.raw.{run}.{round}")).await);
        mesh_runs.push(mesh_bus(&url, &format!("mesh.bench.mesh.{run}.{round}")).await);
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
    let (raw_latency, mesh_latency) = (pooled(&raw_runs), pooled(&mesh_runs));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| measure | raw lapin | mesh bus | ratio |");
    println!("|---|---|---|---|");
    for (name, rate) in [
        (
            "one at a time",
            (|m| m.one_at_a_time) as fn(&Measured) -> f64,
        ),
        ("pipelined, 64 in flight", |m| m.pipelined),
    ] {
        let (raw_rate, mesh_rate) = (median(&raw_runs, rate), median(&mesh_runs, rate));
        println!(
            "| publishes per second, each confirmed, {name} (median of {ROUNDS} × {MESSAGES}) | {raw_rate:.0} | {mesh_rate:.0} | {:.2} |",
            mesh_rate / raw_rate
        );
    }
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
