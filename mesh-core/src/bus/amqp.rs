use std::{collections::HashSet, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use tokio::sync::{Mutex, mpsc};

use super::{
    Bus, BusError, BusFuture, DeadLetter, DedupeStore, Event, Handler, MemoryDedupe, ReplayFrom,
    Subscription, SubscriptionConfig,
    policy::{Runner, Verdict, publish_span},
};

/// The topic exchange events are published to.
const DEFAULT_EXCHANGE: &str = "mesh.events";
const ATTEMPT: &str = "x-mesh-attempt";
const REASON: &str = "x-mesh-reason";
const ATTEMPTS: &str = "x-mesh-attempts";
const TRACEPARENT: &str = "traceparent";
/// The delay before reconnecting a consumer, growing to `MAX_RECONNECT_DELAY`.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The event bus on RabbitMQ.
///
/// Events go to a durable topic exchange (`mesh.events`) as persistent messages, `mandatory`,
/// on a channel with publisher confirms: [`Bus::publish`] returns once the broker confirmed,
/// and fails with [`BusError::Unroutable`] when no queue is bound to the event's type. After a
/// lost connection the next publish reconnects; a publish that cannot reach the broker fails
/// rather than vanishing.
///
/// Each subscription declares its durable queue `{service}.{binding}` (with the message TTL)
/// and its dead-letter queue, binds the patterns, and consumes with manual acks. A failed event
/// is republished to a retry queue `{queue}.retry.{delay_ms}` whose TTL is the delay and whose
/// dead-letter route leads back to the queue, so a failing event never blocks the ones behind
/// it; after the last attempt it is published to `{queue}.dlq` with `x-mesh-reason` and
/// `x-mesh-attempts` headers. A consumer whose connection drops reconnects with backoff.
#[derive(Debug)]
pub struct AmqpBus {
    url: String,
    exchange: String,
    dedupe: Arc<dyn DedupeStore>,
    /// The publishing connection and its confirm channel, read without a lock by every
    /// publish (many may be in flight on the channel, each awaiting its own confirm).
    publisher: ArcSwapOption<(Connection, Channel)>,
    /// Held while the publishing connection is reopened, so one publish reopens it.
    reopening: Mutex<()>,
}

fn unavailable(error: lapin::Error) -> BusError {
    BusError::Unavailable(Box::new(error))
}

impl AmqpBus {
    /// Connects to the broker at `url` (`amqp://user:pass@host:5672/%2f`) and declares the
    /// exchange.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let bus = Self {
            url: url.to_string(),
            exchange: DEFAULT_EXCHANGE.to_string(),
            dedupe: Arc::new(MemoryDedupe::default()),
            publisher: ArcSwapOption::empty(),
            reopening: Mutex::new(()),
        };
        bus.publisher_channel().await?;
        Ok(bus)
    }

    /// Uses `dedupe` (a `RedisDedupe`, to share it between a service's instances).
    pub fn with_dedupe(mut self, dedupe: Arc<dyn DedupeStore>) -> Self {
        self.dedupe = dedupe;
        self
    }

    /// Publishes to `exchange` instead of `mesh.events`.
    pub async fn with_exchange(mut self, exchange: &str) -> Result<Self, BusError> {
        self.exchange = exchange.to_string();
        self.publisher.store(None);
        self.publisher_channel().await?;
        Ok(self)
    }

    /// Keeps every event published to the exchange in the stream queue `log` (created if
    /// missing), for [`replay`](Self::replay). `max_age` bounds how long events are kept
    /// (RabbitMQ's `x-max-age`, such as `7D`).
    pub async fn enable_event_log(&self, log: &str, max_age: Option<&str>) -> Result<(), BusError> {
        let channel = self.publisher_channel().await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        );
        if let Some(max_age) = max_age {
            arguments.insert("x-max-age".into(), AMQPValue::LongString(max_age.into()));
        }
        declare_queue(&channel, log, arguments).await?;
        channel
            .queue_bind(
                log.into(),
                self.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    /// Runs `handler` on the events of the stream queue `log` from `from` on, in publication
    /// order, until no event arrived for `idle`; returns how many it handled. Stops at the first
    /// handler error.
    pub async fn replay(
        &self,
        log: &str,
        from: ReplayFrom,
        idle: Duration,
        handler: &dyn Handler,
    ) -> Result<u64, BusError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(unavailable)?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .basic_qos(256, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let offset = match from {
            ReplayFrom::Start => AMQPValue::LongString("first".into()),
            ReplayFrom::Offset(offset) => AMQPValue::LongLongInt(offset as i64),
            ReplayFrom::Time(at) => AMQPValue::Timestamp(
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
            ),
        };
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), offset);
        let mut deliveries = channel
            .basic_consume(
                log.into(),
                "".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(unavailable)?;
        let mut handled = 0;
        while let Ok(Some(delivery)) = tokio::time::timeout(idle, deliveries.next()).await {
            let delivery = delivery.map_err(unavailable)?;
            let event = Event::from_json(&delivery.data)?;
            handler
                .handle(event)
                .await
                .map_err(|e| BusError::Invalid(format!("replay handler failed: {e}")))?;
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Whether the publishing connection is up, for a readiness check.
    pub async fn is_connected(&self) -> bool {
        self.connected_channel().is_some()
    }

    /// The publishing channel, when it and its connection are up.
    fn connected_channel(&self) -> Option<Channel> {
        self.publisher
            .load()
            .as_deref()
            .filter(|(connection, channel)| {
                connection.status().connected() && channel.status().connected()
            })
            .map(|(_, channel)| channel.clone())
    }

    /// The publishing channel, reopened (by one caller, the others waiting for it) when the
    /// connection was lost.
    async fn publisher_channel(&self) -> Result<Channel, BusError> {
        if let Some(channel) = self.connected_channel() {
            return Ok(channel);
        }
        let _one = self.reopening.lock().await;
        if let Some(channel) = self.connected_channel() {
            return Ok(channel);
        }
        let (connection, channel) = open(&self.url, &self.exchange).await?;
        self.publisher
            .store(Some(Arc::new((connection, channel.clone()))));
        Ok(channel)
    }

    async fn try_publish(&self, event: &Event, payload: &[u8]) -> Result<(), BusError> {
        let channel = self.publisher_channel().await?;
        let mut headers = FieldTable::default();
        if let Some(traceparent) = &event.traceparent {
            headers.insert(
                TRACEPARENT.into(),
                AMQPValue::LongString(traceparent.clone().into()),
            );
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let exchange = self.exchange.as_str();
        let properties = properties(event, headers);
        let confirm =
            publish_confirmed(&channel, exchange, &event.ty, options, payload, properties).await?;
        if confirm.take_message().is_some() {
            return Err(BusError::Unroutable(event.ty.clone()));
        }
        Ok(())
    }
}

fn properties(event: &Event, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(event.id.as_str().into())
        .with_type(event.ty.as_str().into())
        .with_headers(headers)
}

/// Opens a connection and a channel with publisher confirms, and declares the exchange.
async fn open(url: &str, exchange: &str) -> Result<(Connection, Channel), BusError> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(unavailable)?;
    let channel = connection.create_channel().await.map_err(unavailable)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(unavailable)?;
    declare_exchange(&channel, exchange).await?;
    Ok((connection, channel))
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BusError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

/// How long a queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Durable, until deleted.
    Durable,
    /// As long as the connection that declared it: exclusive, auto-deleted.
    Subscription,
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), BusError> {
    declare_queue_for(channel, name, arguments, Lifetime::Durable).await
}

async fn declare_queue_for(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
    lifetime: Lifetime,
) -> Result<(), BusError> {
    let transient = lifetime == Lifetime::Subscription;
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: !transient,
                exclusive: transient,
                auto_delete: transient,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map(|_| ())
        .map_err(unavailable)
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(&ShortString::from(name)))
}

fn number(value: Option<&AMQPValue>) -> Option<u32> {
    match value? {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        _ => None,
    }
}

fn text(value: Option<&AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

impl Bus for AmqpBus {
    fn publish(&self, mut event: Event) -> BusFuture<'_, ()> {
        Box::pin(async move {
            let mut span = publish_span(&mut event, "rabbitmq", &self.exchange);
            let payload = event.to_json()?;
            // One reconnect: a connection that died since the last publish is reopened.
            let result = match self.try_publish(&event, &payload).await {
                Err(BusError::Unavailable(error)) => {
                    tracing::warn!(%error, "publish failed, reconnecting");
                    // Unless another publish has reopened it meanwhile.
                    if self.connected_channel().is_none() {
                        self.publisher.store(None);
                    }
                    self.try_publish(&event, &payload).await
                }
                other => other,
            };
            match &result {
                // Counted once the broker confirmed it.
                Ok(()) => metrics::counter!("mesh_bus_published_total").increment(1),
                Err(error) => span.fail("publish_failed", || error.to_string()),
            }
            result
        })
    }

    fn subscribe(
        &self,
        config: SubscriptionConfig,
        handler: Arc<dyn Handler>,
    ) -> BusFuture<'_, Subscription> {
        Box::pin(async move {
            let runner = Runner::new("rabbitmq", handler, self.dedupe.clone(), config);
            let consumer = Consumer {
                url: self.url.clone(),
                exchange: self.exchange.clone(),
                runner,
            };
            // The topology exists when this returns, so events published next are routed.
            let (connection, channel) = consumer.connect().await?;
            let queue = consumer.runner.queue.clone();
            let task = tokio::spawn(consumer.run(connection, channel));
            Ok(Subscription::new(queue, vec![task]))
        })
    }

    fn dead_letters(&self, queue: &str, max: usize) -> BusFuture<'_, Vec<DeadLetter>> {
        let dlq = format!("{queue}.dlq");
        Box::pin(async move {
            let channel = self.publisher_channel().await?;
            let mut letters = Vec::new();
            while letters.len() < max {
                let Some(message) = channel
                    .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                    .await
                    .map_err(unavailable)?
                else {
                    break;
                };
                let delivery = message.delivery;
                let event = Event::from_json(&delivery.data);
                let reason = text(header(&delivery, REASON)).unwrap_or_default();
                let attempts = number(header(&delivery, ATTEMPTS)).unwrap_or(0);
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
                letters.push(DeadLetter {
                    event: event?,
                    reason,
                    attempts,
                });
            }
            Ok(letters)
        })
    }
}

/// One subscription's consuming side.
struct Consumer {
    url: String,
    exchange: String,
    runner: Runner,
}

impl Consumer {
    /// Connects, declares the queue, its dead-letter queue and bindings, and sets the prefetch.
    async fn connect(&self) -> Result<(Connection, Channel), BusError> {
        let config = &self.runner.config;
        let (connection, channel) = open(&self.url, &self.exchange).await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(config.message_ttl.as_millis() as i64),
        );
        let lives = if config.transient {
            Lifetime::Subscription
        } else {
            Lifetime::Durable
        };
        declare_queue_for(&channel, &self.runner.queue, arguments, lives).await?;
        let dead_letters = config.dead_letter_queue();
        declare_queue_for(&channel, &dead_letters, FieldTable::default(), lives).await?;
        for pattern in &config.patterns {
            channel
                .queue_bind(
                    self.runner.queue.as_str().into(),
                    self.exchange.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        let prefetch = usize::from(config.prefetch).saturating_mul(config.concurrency.max(1));
        channel
            .basic_qos(
                prefetch.min(usize::from(u16::MAX)) as u16,
                BasicQosOptions::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok((connection, channel))
    }

    /// Consumes until dropped, reconnecting with backoff whenever the connection is lost.
    async fn run(self, connection: Connection, channel: Channel) {
        let mut session = Some((connection, channel));
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            let (connection, channel) = match session.take() {
                Some(session) => session,
                None => match self.connect().await {
                    Ok(session) => {
                        delay = FIRST_RECONNECT_DELAY;
                        session
                    }
                    Err(error) => {
                        tracing::warn!(queue = %self.runner.queue, %error, ?delay, "reconnecting the consumer");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                        continue;
                    }
                },
            };
            if let Err(error) = self.consume(&channel).await {
                tracing::warn!(queue = %self.runner.queue, %error, "consumer stopped");
            }
            drop(connection);
        }
    }

    /// Dispatches deliveries to partition workers until the consumer ends.
    async fn consume(&self, channel: &Channel) -> Result<(), BusError> {
        let mut deliveries = channel
            .basic_consume(
                self.runner.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let config = &self.runner.config;
        let declared = Arc::new(Mutex::new(HashSet::new()));
        let mut partitions = Vec::new();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..config.concurrency.max(1) {
            let (sender, receiver) = mpsc::channel(usize::from(config.prefetch.max(1)));
            partitions.push(sender);
            workers.spawn(work(
                self.runner.clone(),
                channel.clone(),
                receiver,
                declared.clone(),
            ));
        }
        let consumed =
            metrics::counter!("mesh_bus_consumed_total", "queue" => self.runner.queue.clone());
        let depth = tokio::spawn(report_depth(channel.clone(), self.runner.queue.clone()));
        let _stop_depth = AbortOnDrop(depth);
        while let Some(delivery) = deliveries.next().await {
            let delivery = delivery.map_err(unavailable)?;
            consumed.increment(1);
            let partition = match Event::from_json(&delivery.data) {
                Ok(event) => config.partition(&event),
                Err(_) => 0,
            };
            if partitions[partition].send(delivery).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// How often a consumer reports its queue's depth.
const DEPTH_INTERVAL: Duration = Duration::from_secs(10);

/// Reports the number of events waiting in `queue` as the `mesh_bus_queue_depth` gauge.
async fn report_depth(channel: Channel, queue: String) {
    let gauge = metrics::gauge!("mesh_bus_queue_depth", "queue" => queue.clone());
    let mut ticks = tokio::time::interval(DEPTH_INTERVAL);
    loop {
        ticks.tick().await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(state) => gauge.set(f64::from(state.message_count())),
            Err(_) => return,
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One partition's worker: deliveries one after another, each acknowledged once its outcome
/// (handled, scheduled for retry, dead-lettered) is safely with the broker.
async fn work(
    runner: Runner,
    channel: Channel,
    mut deliveries: mpsc::Receiver<Delivery>,
    declared: Arc<Mutex<HashSet<u64>>>,
) {
    while let Some(delivery) = deliveries.recv().await {
        let attempt = number(header(&delivery, ATTEMPT)).unwrap_or(1).max(1);
        let verdict = match Event::from_json(&delivery.data) {
            Ok(event) => runner.run(&event, attempt).await,
            Err(error) => Verdict::Dead {
                reason: error.to_string(),
                attempts: attempt,
            },
        };
        let settled = match verdict {
            Verdict::Done => Ok(()),
            Verdict::Retry { delay, attempt } => {
                retry(&runner, &channel, &delivery, delay, attempt, &declared).await
            }
            Verdict::Dead { reason, attempts } => {
                let mut headers = FieldTable::default();
                headers.insert(REASON.into(), AMQPValue::LongString(reason.into()));
                headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
                send(
                    &channel,
                    &runner.config.dead_letter_queue(),
                    &delivery,
                    headers,
                )
                .await
            }
        };
        let acked = match settled {
            Ok(()) => delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable),
            Err(error) => Err(error),
        };
        if let Err(error) = acked {
            // Unacknowledged, the delivery returns to the queue when the channel closes.
            tracing::warn!(queue = %runner.queue, %error, "delivery not settled");
            return;
        }
    }
}

/// Republishes to the retry queue of `delay`, declared on first use.
async fn retry(
    runner: &Runner,
    channel: &Channel,
    delivery: &Delivery,
    delay: Duration,
    attempt: u32,
    declared: &Mutex<HashSet<u64>>,
) -> Result<(), BusError> {
    let millis = delay.as_millis().max(1) as u64;
    let queue = format!("{}.retry.{millis}", runner.queue);
    if declared.lock().await.insert(millis) {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(millis as i64),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(runner.queue.as_str().into()),
        );
        declare_queue(channel, &queue, arguments).await?;
    }
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    send(channel, &queue, delivery, headers).await
}

/// Publishes a copy of `delivery` straight to `queue`, confirmed.
async fn send(
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    headers: FieldTable,
) -> Result<(), BusError> {
    let properties = delivery.properties.clone().with_headers(headers);
    let options = BasicPublishOptions::default();
    publish_confirmed(channel, "", queue, options, &delivery.data, properties).await?;
    Ok(())
}

/// Publishes and waits for the broker's confirm; a negative confirm is [`BusError::Refused`].
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    options: BasicPublishOptions,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<lapin::Confirmation, BusError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            payload,
            properties,
        )
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    if confirm.is_nack() {
        return Err(BusError::Refused);
    }
    Ok(confirm)
}
