//! The event bus: one behaviour suite, run against the in-memory bus and against RabbitMQ.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mesh_core::{
    bus::{
        Bus, BusError, DedupeStore, Event, EventType, Handler, MemoryBus, ReplayFrom,
        SubscriptionConfig,
    },
    error::BoxError,
    observe::TraceContext,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GoalUpdated {
    client: String,
    seq: u32,
}

impl EventType for GoalUpdated {
    const TYPE: &'static str = "goal.updated";
}

/// Names no other run shares, so runs against one broker do not meet.
fn nonce() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn config(service: &str, binding: &str) -> SubscriptionConfig {
    let mut config = SubscriptionConfig::new(service, binding, ["goal.*"]);
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_secs(1);
    config
}

fn event(client: &str, seq: u32) -> Event {
    Event::new(
        "goal-service",
        &GoalUpdated {
            client: client.into(),
            seq,
        },
    )
    .unwrap()
    .with_subject(client)
}

/// Waits until `done` holds, for at most 20 s.
async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn failing_twice_then_succeeding_runs_three_times_with_growing_delays(bus: &dyn Bus) {
    let service = format!("coach-{}", nonce());
    let runs: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = runs.clone();
    let handler = move |_: Event| {
        let seen = seen.clone();
        async move {
            let mut runs = seen.lock().unwrap();
            runs.push(Instant::now());
            if runs.len() < 3 {
                Err::<(), BoxError>("goal store down".into())
            } else {
                Ok(())
            }
        }
    };
    let _subscription = bus
        .subscribe(config(&service, "goals"), Arc::new(handler))
        .await
        .unwrap();
    bus.publish(event("ada", 1)).await.unwrap();
    eventually(|| runs.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 3, "handled once it succeeded, not again");
    let first = runs[1] - runs[0];
    let second = runs[2] - runs[1];
    assert!(first >= Duration::from_millis(100), "{first:?}");
    assert!(second >= Duration::from_millis(200), "{second:?}");
    assert!(second > first, "delays grow: {first:?} then {second:?}");
}

async fn an_always_failing_event_lands_in_the_dead_letter_queue(bus: &dyn Bus) {
    let service = format!("coach-{}", nonce());
    let config = config(&service, "goals");
    let queue = config.queue();
    let handler = |_: Event| async { Err::<(), BoxError>("invalid goal".into()) };
    let _subscription = bus.subscribe(config, Arc::new(handler)).await.unwrap();
    let published = event("bob", 1);
    bus.publish(published.clone()).await.unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while letters.is_empty() {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
        letters = bus.dead_letters(&queue, 10).await.unwrap();
    }
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event, published);
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].reason.contains("invalid goal"),
        "{}",
        letters[0].reason
    );
}

async fn a_redelivered_event_is_handled_once_and_a_panic_is_a_failure(bus: &dyn Bus) {
    let service = format!("coach-{}", nonce());
    let handled: Arc<Mutex<Vec<u32>>> = Arc::default();
    let panicked = Arc::new(Mutex::new(false));
    let (seen, flag) = (handled.clone(), panicked.clone());
    let handler = move |event: Event| {
        let (seen, flag) = (seen.clone(), flag.clone());
        async move {
            let goal: GoalUpdated = event.data()?;
            if goal.seq == 2 && !std::mem::replace(&mut *flag.lock().unwrap(), true) {
                panic!("goal 2 is cursed once");
            }
            seen.lock().unwrap().push(goal.seq);
            Ok::<(), BoxError>(())
        }
    };
    let _subscription = bus
        .subscribe(config(&service, "goals"), Arc::new(handler))
        .await
        .unwrap();
    let once = event("cy", 1);
    bus.publish(once.clone()).await.unwrap();
    bus.publish(once).await.unwrap();
    bus.publish(event("cy", 2)).await.unwrap();
    eventually(|| handled.lock().unwrap().contains(&2)).await;
    assert_eq!(
        *handled.lock().unwrap(),
        [1, 2],
        "the copy of 1 was skipped, 2 ran after its panic"
    );
}

async fn events_of_one_subject_keep_their_order(bus: &dyn Bus) {
    let service = format!("coach-{}", nonce());
    let mut config = config(&service, "goals");
    config.concurrency = 8;
    let seen: Arc<Mutex<HashMap<String, Vec<u32>>>> = Arc::default();
    let log = seen.clone();
    let handler = move |event: Event| {
        let log = log.clone();
        async move {
            let goal: GoalUpdated = event.data()?;
            // Uneven handling times: order must come from the partitioning, not from luck.
            if goal.seq.is_multiple_of(7) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            log.lock()
                .unwrap()
                .entry(goal.client)
                .or_default()
                .push(goal.seq);
            Ok::<(), BoxError>(())
        }
    };
    let _subscription = bus.subscribe(config, Arc::new(handler)).await.unwrap();
    for seq in 0..100 {
        for client in 0..10 {
            bus.publish(event(&format!("client-{client}"), seq))
                .await
                .unwrap();
        }
    }
    eventually(|| seen.lock().unwrap().values().map(Vec::len).sum::<usize>() == 1000).await;
    for (client, seqs) in seen.lock().unwrap().iter() {
        assert_eq!(*seqs, (0..100).collect::<Vec<_>>(), "{client} out of order");
    }
}

async fn an_event_nobody_subscribed_to_is_refused(bus: &dyn Bus) {
    #[derive(Serialize, Deserialize)]
    struct Orphan;
    impl EventType for Orphan {
        const TYPE: &'static str = "orphan.created";
    }
    let error = bus
        .publish(Event::new("x", &Orphan).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, BusError::Unroutable(ty) if ty == "orphan.created"));
}

async fn a_handler_continues_the_publishers_trace(bus: &dyn Bus) {
    let service = format!("coach-{}", nonce());
    /// The handler's trace context and the `traceparent` its event carried.
    type Seen = Option<(TraceContext, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let handler = move |event: Event| {
        let log = log.clone();
        async move {
            *log.lock().unwrap() = Some((TraceContext::current().unwrap(), event.traceparent));
            Ok::<(), BoxError>(())
        }
    };
    let _subscription = bus
        .subscribe(config(&service, "goals"), Arc::new(handler))
        .await
        .unwrap();
    let publisher = TraceContext::root();
    let event = publisher.scope(async { event("dee", 1) }).await;
    bus.publish(event).await.unwrap();
    eventually(|| seen.lock().unwrap().is_some()).await;
    let (consume, carried) = seen.lock().unwrap().take().unwrap();
    let publish = TraceContext::parse(&carried.unwrap()).unwrap();
    assert_eq!(
        publish.trace_id(),
        publisher.trace_id(),
        "publish continues the publisher's trace"
    );
    assert_ne!(
        publish.span_id(),
        publisher.span_id(),
        "publishing is a span of its own"
    );
    assert_eq!(
        consume.trace_id(),
        publisher.trace_id(),
        "the handler runs in the same trace"
    );
    assert_ne!(
        consume.span_id(),
        publish.span_id(),
        "consuming is a child span"
    );
}

/// Many publishes in flight at once (on one confirm channel, for RabbitMQ): each caller is
/// told its own event is confirmed, and every one is handled.
async fn publishes_in_flight_together_are_each_confirmed(bus: &dyn Bus) {
    publishes_in_flight(bus, false).await;
}

/// As above, with every tenth event of a type nobody subscribed to: each caller is told of its
/// own event, confirmed or unroutable. Run on the in-memory bus only: on RabbitMQ, lapin hands a
/// returned message to whichever confirmation resolves next, which under concurrent publishes
/// can be another caller's (a known defect of the AMQP bus, not yet fixed).
async fn publishes_in_flight_together_are_each_answered(bus: &dyn Bus) {
    publishes_in_flight(bus, true).await;
}

async fn publishes_in_flight(bus: &dyn Bus, with_strays: bool) {
    use futures_util::StreamExt;
    #[derive(Serialize, Deserialize)]
    struct Stray {
        seq: u32,
    }
    impl EventType for Stray {
        const TYPE: &'static str = "stray.created";
    }
    let service = format!("coach-{}", nonce());
    let (seen, handler) = collector();
    let _subscription = bus
        .subscribe(config(&service, "pipelined"), Arc::new(handler))
        .await
        .unwrap();
    let answers: Vec<(u32, Result<(), BusError>)> = futures_util::stream::iter(0..200u32)
        .map(|seq| async move {
            // Every tenth event is of a type nobody subscribed to, when asked.
            let event = if with_strays && seq % 10 == 0 {
                Event::new("x", &Stray { seq }).unwrap()
            } else {
                event(&format!("client-{}", seq % 7), seq)
            };
            (seq, bus.publish(event).await)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (seq, answer) in &answers {
        match answer {
            Ok(()) => assert!(!with_strays || seq % 10 != 0, "event {seq} was unroutable"),
            Err(BusError::Unroutable(ty)) => {
                assert_eq!((seq % 10, ty.as_str()), (0, "stray.created"));
            }
            Err(error) => panic!("event {seq}: {error}"),
        }
    }
    let mut confirmed: Vec<u32> = answers
        .iter()
        .filter(|(_, answer)| answer.is_ok())
        .map(|(seq, _)| *seq)
        .collect();
    confirmed.sort();
    assert_eq!(confirmed.len(), if with_strays { 180 } else { 200 });
    eventually(|| seen.lock().unwrap().len() == confirmed.len()).await;
    let mut handled = seen.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, confirmed);
}

async fn behaviour_suite(bus: &dyn Bus) {
    a_handler_continues_the_publishers_trace(bus).await;
    an_event_nobody_subscribed_to_is_refused(bus).await;
    publishes_in_flight_together_are_each_confirmed(bus).await;
    failing_twice_then_succeeding_runs_three_times_with_growing_delays(bus).await;
    an_always_failing_event_lands_in_the_dead_letter_queue(bus).await;
    a_redelivered_event_is_handled_once_and_a_panic_is_a_failure(bus).await;
    events_of_one_subject_keep_their_order(bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bus_passes_the_behaviour_suite() {
    let bus = MemoryBus::new();
    behaviour_suite(&bus).await;
    publishes_in_flight_together_are_each_answered(&bus).await;
}

/// A handler collecting the `seq` of each event it sees.
fn collector() -> (Arc<Mutex<Vec<u32>>>, impl Handler) {
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = seen.clone();
    let handler = move |event: Event| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(event.data::<GoalUpdated>()?.seq);
            Ok::<(), BoxError>(())
        }
    };
    (seen, handler)
}

#[tokio::test]
async fn the_memory_event_log_replays_from_the_start_or_an_offset() {
    let bus = MemoryBus::new();
    bus.enable_event_log();
    let _subscription = bus
        .subscribe(
            config("log", "all"),
            Arc::new(|_: Event| async { Ok::<(), BoxError>(()) }),
        )
        .await
        .unwrap();
    for seq in 0..20 {
        bus.publish(event("ada", seq)).await.unwrap();
    }
    let (seen, handler) = collector();
    assert_eq!(bus.replay(ReplayFrom::Start, &handler).await.unwrap(), 20);
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    let (seen, handler) = collector();
    assert_eq!(
        bus.replay(ReplayFrom::Offset(15), &handler).await.unwrap(),
        5
    );
    assert_eq!(*seen.lock().unwrap(), [15, 16, 17, 18, 19]);
}

#[tokio::test]
async fn a_consumer_group_has_one_subscription_per_process() {
    let bus = MemoryBus::new();
    let handler = Arc::new(|_: Event| async { Ok::<(), BoxError>(()) });
    let _first = bus
        .subscribe(config("a", "b"), handler.clone())
        .await
        .unwrap();
    let second = bus.subscribe(config("a", "b"), handler).await;
    assert!(matches!(second, Err(BusError::AlreadySubscribed(_))));
}

#[cfg(feature = "amqp")]
mod rabbitmq {
    use mesh_core::bus::AmqpBus;

    use super::*;

    /// The connection-loss test closes every connection on the broker: the tests here take
    /// turns, so it never cuts another one short.
    static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rabbitmq_bus_passes_the_behaviour_suite() {
        let Ok(url) = std::env::var("MESH_TEST_AMQP_URL") else {
            eprintln!("skipped: MESH_TEST_AMQP_URL is not set");
            return;
        };
        let _turn = BROKER.lock().await;
        let bus = AmqpBus::connect(&url)
            .await
            .unwrap()
            .with_exchange(&format!("mesh.test.{}", nonce()))
            .await
            .unwrap();
        behaviour_suite(&bus).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_event_log_replays_every_event_from_offset_zero() {
        let Ok(url) = std::env::var("MESH_TEST_AMQP_URL") else {
            eprintln!("skipped: MESH_TEST_AMQP_URL is not set");
            return;
        };
        let _turn = BROKER.lock().await;
        let run = nonce();
        let bus = AmqpBus::connect(&url)
            .await
            .unwrap()
            .with_exchange(&format!("mesh.test.{run}"))
            .await
            .unwrap();
        let log = format!("mesh-test-log-{run}");
        bus.enable_event_log(&log, Some("1h")).await.unwrap();
        for seq in 0..20 {
            bus.publish(event("ada", seq)).await.unwrap();
        }
        let (seen, handler) = collector();
        let idle = Duration::from_millis(500);
        assert_eq!(
            bus.replay(&log, ReplayFrom::Offset(0), idle, &handler)
                .await
                .unwrap(),
            20
        );
        assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
        let (seen, handler) = collector();
        assert_eq!(
            bus.replay(&log, ReplayFrom::Offset(18), idle, &handler)
                .await
                .unwrap(),
            2
        );
        assert_eq!(*seen.lock().unwrap(), [18, 19]);
    }

    /// Closes every broker connection, as an operator or a broker restart would.
    fn close_all_connections() -> bool {
        std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "mesh connection-loss test"])
            .output()
            .is_ok_and(|output| output.status.success())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_connection_loses_no_confirmed_event_and_the_consumer_handles_each_once() {
        let Ok(url) = std::env::var("MESH_TEST_AMQP_URL") else {
            eprintln!("skipped: MESH_TEST_AMQP_URL is not set");
            return;
        };
        let _turn = BROKER.lock().await;
        if !close_all_connections() {
            eprintln!("skipped: rabbitmqctl cannot close connections on this machine");
            return;
        }
        let bus = AmqpBus::connect(&url)
            .await
            .unwrap()
            .with_exchange(&format!("mesh.test.{}", nonce()))
            .await
            .unwrap();
        // How many times the handler ran for each event.
        let handled: Arc<Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
        let log = handled.clone();
        let handler = move |event: Event| {
            let log = log.clone();
            async move {
                *log.lock().unwrap().entry(event.id).or_insert(0) += 1;
                Ok::<(), BoxError>(())
            }
        };
        let service = format!("coach-{}", nonce());
        let _subscription = bus
            .subscribe(config(&service, "goals"), Arc::new(handler))
            .await
            .unwrap();

        let mut confirmed = Vec::new();
        let mut refused = 0;
        for seq in 0..300 {
            if seq == 100 {
                assert!(
                    tokio::task::spawn_blocking(close_all_connections)
                        .await
                        .unwrap()
                );
            }
            let event = event(&format!("client-{}", seq % 10), seq);
            match bus.publish(event.clone()).await {
                Ok(()) => confirmed.push(event.id),
                Err(_) => refused += 1,
            }
        }
        assert!(confirmed.len() >= 290, "{refused} publishes failed");
        eventually(|| {
            let handled = handled.lock().unwrap();
            confirmed.iter().all(|id| handled.contains_key(id))
        })
        .await;
        // Redelivered or republished, an event reaches the handler once.
        let handled = handled.lock().unwrap();
        let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "handled more than once: {twice:?}");
    }
}

/// The behaviour every dedupe store must show.
async fn dedupe_suite(store: &dyn DedupeStore, group: &str) {
    assert!(!store.seen(group, "event-1").await.unwrap());
    store.remember(group, "event-1").await.unwrap();
    assert!(store.seen(group, "event-1").await.unwrap());
    assert!(!store.seen(group, "event-2").await.unwrap());
    let other = format!("{group}-other");
    assert!(
        !store.seen(&other, "event-1").await.unwrap(),
        "groups are separate"
    );
}

#[tokio::test(start_paused = true)]
async fn the_memory_dedupe_forgets_after_its_retention() {
    let store = mesh_core::bus::MemoryDedupe::new(Duration::from_secs(60));
    dedupe_suite(&store, "group").await;
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(!store.seen("group", "event-1").await.unwrap());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_dedupe_passes_the_same_suite() {
    let Ok(url) = std::env::var("MESH_TEST_REDIS_URL") else {
        eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
        return;
    };
    let prefix = format!("mesh-test:dedupe:{}:", nonce());
    let store = mesh_core::bus::RedisDedupe::connect(&url, &prefix, Duration::from_secs(1))
        .await
        .unwrap();
    dedupe_suite(&store, "group").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        !store.seen("group", "event-1").await.unwrap(),
        "the key expired"
    );
}
