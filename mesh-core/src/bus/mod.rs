//! The event bus: at-least-once events between services, on RabbitMQ or in process.
//!
//! An [`Event`] carries CloudEvents attributes (id, source, type, time, subject — the partition
//! key —, content type, traceparent) and a JSON payload. [`Bus::publish`] returns once the
//! broker confirmed the event, and fails when no subscription's binding matches its type
//! (nothing is lost silently). [`Bus::subscribe`] runs a handler for a consumer group: a durable
//! queue `{service}.{binding}` bound with topic patterns (`client.*`, `order.#`). The handler's
//! outcome decides:
//!
//! - success: the event is acknowledged and its id remembered by the [`DedupeStore`], so a
//!   redelivered or republished copy does not run the handler again;
//! - failure (an error or a panic): the event is retried after an exponential backoff (by
//!   default 1 s, ×2, at most 10 s) without blocking the events behind it, up to
//!   `max_attempts` (3); then it goes to the dead-letter queue `{queue}.dlq` with the reason and
//!   the attempt count.
//!
//! Events with the same subject are handled in publication order; different subjects run in
//! parallel, one partition per unit of `concurrency`. An optional event log keeps every
//! published event (a RabbitMQ stream queue, or a list in memory) so a service can replay
//! from an offset or a time to rebuild its state. [`MemoryBus`] (the embedded default) and,
//! with the `amqp` feature, `AmqpBus` pass the same behaviour suite.

#[cfg(feature = "amqp")]
mod amqp;
mod dedupe;
mod error;
mod event;
mod handler;
mod memory;
mod policy;
mod replay;
mod settings;
mod topic;

use std::{fmt, future::Future, pin::Pin, sync::Arc};

#[cfg(feature = "amqp")]
pub use self::amqp::AmqpBus;
#[cfg(feature = "redis")]
pub use self::dedupe::RedisDedupe;
pub use self::{
    dedupe::{DedupeFuture, DedupeStore, MemoryDedupe},
    error::BusError,
    event::{Event, EventType},
    handler::Handler,
    memory::MemoryBus,
    policy::{DeadLetter, SubscriptionConfig},
    replay::ReplayFrom,
    settings::BusSettings,
    topic::matches as topic_matches,
};

/// The future bus operations answer with.
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// An event bus backend.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `event` to the topic exchange under its type, returning once the broker has
    /// it (publisher confirm).
    fn publish(&self, event: Event) -> BusFuture<'_, ()>;

    /// Starts consuming for a consumer group; the subscription runs until dropped or closed.
    fn subscribe(
        &self,
        config: SubscriptionConfig,
        handler: Arc<dyn Handler>,
    ) -> BusFuture<'_, Subscription>;

    /// Takes up to `max` dead letters of a consumer group's queue, oldest first.
    fn dead_letters(&self, queue: &str, max: usize) -> BusFuture<'_, Vec<DeadLetter>>;
}

/// A bus shows as its kind only: what it connects to is in its settings.
impl fmt::Debug for dyn Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Bus")
    }
}

/// A running subscription. Dropping it stops consuming; unacknowledged events stay queued.
#[derive(Debug)]
pub struct Subscription {
    queue: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscription {
    pub(crate) fn new(queue: String, tasks: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self { queue, tasks }
    }

    /// The consumer group's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
