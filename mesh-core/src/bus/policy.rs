use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{DedupeStore, Event, Handler};
use crate::error::panic_message;
use crate::observe::{
    Baggage, TraceContext,
    span::{HopSpan, Kind, Parent},
};
use crate::resilience::retry::Backoff;

/// A consumer group's subscription.
///
/// ```
/// use mesh_core::bus::SubscriptionConfig;
/// let config = SubscriptionConfig::new("notification-service", "orders", ["order.*"]);
/// assert_eq!(config.queue(), "notification-service.orders");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// The subscribing service.
    pub service: String,
    /// The binding's name within the service.
    pub binding: String,
    /// Topic patterns the queue is bound with.
    pub patterns: Vec<String>,
    /// Events in flight per partition before the broker waits (prefetch per partition).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Partitions handled in parallel; events with one subject share a partition.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts per event, the first included, before it is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Growth of the delay per retry.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// The longest delay between attempts.
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long an unconsumed event stays queued.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub message_ttl: Duration,
    /// Whether the queue lives only as long as this subscription (RabbitMQ: exclusive and
    /// auto-deleted, not durable): for events every instance sees once, with a queue of its
    /// own named after it (a configuration refresh), not for a consumer group's work.
    #[serde(default)]
    pub transient: bool,
}

fn default_prefetch() -> u16 {
    32
}
fn default_concurrency() -> usize {
    4
}
fn default_attempts() -> u32 {
    3
}
fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max() -> Duration {
    Duration::from_secs(10)
}
fn default_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl SubscriptionConfig {
    /// A subscription of `service` named `binding` to `patterns`, with the reference designs'
    /// defaults: 3 attempts, 1 s backoff doubling to 10 s, 24 h message TTL, 4 partitions.
    pub fn new(
        service: impl Into<String>,
        binding: impl Into<String>,
        patterns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            service: service.into(),
            binding: binding.into(),
            patterns: patterns.into_iter().map(Into::into).collect(),
            prefetch: default_prefetch(),
            concurrency: default_concurrency(),
            max_attempts: default_attempts(),
            initial_backoff: default_initial(),
            multiplier: default_multiplier(),
            max_backoff: default_max(),
            message_ttl: default_ttl(),
            transient: false,
        }
    }

    /// The consumer group's durable queue: `{service}.{binding}`.
    pub fn queue(&self) -> String {
        format!("{}.{}", self.service, self.binding)
    }

    /// The dead-letter queue: `{queue}.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue())
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(
            self.initial_backoff,
            self.multiplier,
            self.max_backoff,
            false,
        )
    }

    pub(crate) fn partition(&self, event: &Event) -> usize {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        event.partition_key().hash(&mut hasher);
        (hasher.finish() % self.concurrency.max(1) as u64) as usize
    }
}

/// An event that exhausted its attempts, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// The last failure.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The span of publishing `event` on `system` (`rabbitmq`, say) to the exchange
/// `destination`, in the trace its `traceparent` names, as the publishing service's. An event
/// that starts a trace carries the sampler's decision on.
pub(crate) fn publish_span(event: &mut Event, system: &'static str, destination: &str) -> HopSpan {
    let Some(mut context) = event.traceparent.as_deref().and_then(TraceContext::parse) else {
        return HopSpan::default();
    };
    // The publish span's parent is the hop the event was made in, when that is this task's.
    let parent = TraceContext::current()
        .filter(|current| current.trace_id() == context.trace_id())
        .map(|context| Parent {
            context,
            remote: false,
        });
    let span = HopSpan::start(
        &event.source,
        Kind::Producer,
        || format!("publish {}", event.ty).into(),
        &mut context,
        parent,
        || {
            let mut attributes = vec![
                ("messaging.system", system.into()),
                ("messaging.operation.type", "send".into()),
                ("messaging.operation.name", "publish".into()),
                ("messaging.destination.name", destination.to_owned().into()),
                ("messaging.message.id", event.id.clone().into()),
            ];
            if system == "rabbitmq" {
                let routing_key = event.ty.clone().into();
                attributes.push(("messaging.rabbitmq.destination.routing_key", routing_key));
            }
            attributes
        },
    );
    if parent.is_none() {
        event.traceparent = Some(context.to_string());
    }
    span
}

/// What to do with an event after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Handled (or handled before): acknowledge.
    Done,
    /// Failed: try again after `delay` as attempt `attempt`.
    Retry { delay: Duration, attempt: u32 },
    /// Failed for the last time.
    Dead { reason: String, attempts: u32 },
}

/// Runs a handler for one delivery: dedupe, panic capture, retry decision. Shared by every
/// backend, so they behave alike.
#[derive(Clone)]
pub(crate) struct Runner {
    /// The backend, as OpenTelemetry's `messaging.system` names it.
    pub(crate) system: &'static str,
    pub(crate) queue: String,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) dedupe: Arc<dyn DedupeStore>,
    pub(crate) config: SubscriptionConfig,
    metrics: QueueMetrics,
}

/// A queue's handling metrics, registered (at zero) when its subscription starts.
#[derive(Clone)]
struct QueueMetrics {
    handled: metrics::Counter,
    retried: metrics::Counter,
    dead_lettered: metrics::Counter,
    handler_seconds: metrics::Histogram,
}

impl Runner {
    /// Handles the events of `config`'s queue on the backend `system` with `handler`.
    pub(crate) fn new(
        system: &'static str,
        handler: Arc<dyn Handler>,
        dedupe: Arc<dyn DedupeStore>,
        config: SubscriptionConfig,
    ) -> Self {
        let queue = config.queue();
        let label = || queue.clone();
        let metrics = QueueMetrics {
            handled: metrics::counter!("mesh_bus_handled_total", "queue" => label()),
            retried: metrics::counter!("mesh_bus_retried_total", "queue" => label()),
            dead_lettered: metrics::counter!("mesh_bus_dead_lettered_total", "queue" => label()),
            handler_seconds: metrics::histogram!("mesh_bus_handler_seconds", "queue" => label()),
        };
        for counter in [&metrics.handled, &metrics.retried, &metrics.dead_lettered] {
            counter.increment(0);
        }
        Self {
            system,
            queue,
            handler,
            dedupe,
            config,
            metrics,
        }
    }

    pub(crate) async fn run(&self, event: &Event, attempt: u32) -> Verdict {
        match self.dedupe.seen(&self.queue, &event.id).await {
            Ok(true) => {
                tracing::debug!(queue = %self.queue, id = %event.id, "duplicate event skipped");
                return Verdict::Done;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "dedupe store unavailable, handling anyway"),
        }
        // The consume span: a child of the publish span the event carries, so the handler's
        // own calls (a MeshClient's, another publish) continue the publisher's trace.
        let publish = event.traceparent.as_deref().and_then(TraceContext::parse);
        let mut context = publish.map_or_else(TraceContext::root, |parent| parent.child());
        let mut hop = HopSpan::start(
            &self.config.service,
            Kind::Consumer,
            || format!("process {}", event.ty).into(),
            &mut context,
            publish.map(|context| Parent {
                context,
                remote: true,
            }),
            || {
                vec![
                    ("messaging.system", self.system.into()),
                    ("messaging.operation.type", "process".into()),
                    ("messaging.operation.name", "process".into()),
                    ("messaging.destination.name", event.ty.clone().into()),
                    ("messaging.consumer.group.name", self.queue.clone().into()),
                    ("messaging.message.id", event.id.clone().into()),
                    ("messaging.delivery.attempt", i64::from(attempt).into()),
                ]
            },
        );
        let span = tracing::debug_span!(
            "bus.consume",
            queue = %self.queue,
            event.id = %event.id,
            event.r#type = %event.ty,
            trace_id = %context.trace_id(),
            span_id = %context.span_id(),
            parent_span_id = %publish.map(|p| p.span_id()).unwrap_or_default(),
            attempt,
        );
        let started = tokio::time::Instant::now();
        let baggage = event
            .baggage
            .as_deref()
            .and_then(|b| Baggage::parse(b.as_bytes()));
        // Called in the context too: what a handler does before its future belongs to the
        // event's trace.
        let handling = Baggage::sync_scope(baggage.clone(), || {
            context.sync_scope(|| self.handler.handle(event.clone()))
        });
        let outcome = context
            .scope(Baggage::scope(
                baggage,
                AssertUnwindSafe(handling).catch_unwind(),
            ))
            .instrument(span)
            .await;
        self.metrics
            .handler_seconds
            .record(started.elapsed().as_secs_f64());
        if hop.is_recording() {
            match &outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => hop.fail("handler_error", || error.to_string()),
                Err(_) => hop.fail("handler_panic", || "the handler panicked".to_owned()),
            }
        }
        // The handling's span ends here, before the dedupe and the acknowledgement (with
        // `otlp`, dropping it is what finishes it).
        #[cfg_attr(not(feature = "otlp"), allow(clippy::drop_non_drop))]
        drop(hop);
        let reason = match outcome {
            Ok(Ok(())) => {
                if let Err(error) = self.dedupe.remember(&self.queue, &event.id).await {
                    tracing::warn!(%error, "dedupe store unavailable, event not remembered");
                }
                self.metrics.handled.increment(1);
                return Verdict::Done;
            }
            Ok(Err(error)) => error.to_string(),
            Err(panic) => format!("handler panicked: {}", panic_message(panic.as_ref())),
        };
        if attempt >= self.config.max_attempts {
            tracing::warn!(queue = %self.queue, id = %event.id, attempt, %reason, "event dead-lettered");
            self.metrics.dead_lettered.increment(1);
            Verdict::Dead {
                reason,
                attempts: attempt,
            }
        } else {
            let delay = self.config.backoff().delay(attempt);
            tracing::debug!(queue = %self.queue, id = %event.id, attempt, ?delay, %reason, "event retried");
            self.metrics.retried.increment(1);
            Verdict::Retry {
                delay,
                attempt: attempt + 1,
            }
        }
    }
}
