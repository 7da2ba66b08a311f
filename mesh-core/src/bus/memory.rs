use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::sync::mpsc;

use super::{
    Bus, BusError, BusFuture, DeadLetter, DedupeStore, Event, Handler, MemoryDedupe, ReplayFrom,
    Subscription, SubscriptionConfig,
    policy::{Runner, Verdict, publish_span},
    topic,
};

/// The in-process bus: the embedded default, with the same semantics as RabbitMQ — topic
/// bindings, retries with backoff, dead letters, dedupe and per-subject ordering. A queue lives
/// as long as its subscription.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Every published event with its time, when the log is enabled.
    log: Mutex<Option<Vec<(SystemTime, Event)>>>,
    queues: Mutex<HashMap<String, Queue>>,
    dead: Mutex<HashMap<String, VecDeque<DeadLetter>>>,
    dedupe: Arc<dyn DedupeStore>,
}

#[derive(Debug)]
struct Queue {
    config: SubscriptionConfig,
    partitions: Vec<mpsc::Sender<(Event, u32)>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus remembering handled events in memory for a day.
    pub fn new() -> Self {
        Self::with_dedupe(Arc::new(MemoryDedupe::default()))
    }

    /// A bus with its own dedupe store.
    pub fn with_dedupe(dedupe: Arc<dyn DedupeStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                log: Mutex::new(None),
                queues: Mutex::new(HashMap::new()),
                dead: Mutex::new(HashMap::new()),
                dedupe,
            }),
        }
    }
}

impl MemoryBus {
    /// Keeps every event published from now on, for [`replay`](Self::replay).
    pub fn enable_event_log(&self) {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Vec::new);
    }

    /// Runs `handler` on the logged events from `from` on, in publication order; returns how
    /// many it handled. Stops at the first handler error.
    pub async fn replay(&self, from: ReplayFrom, handler: &dyn Handler) -> Result<u64, BusError> {
        let events: Vec<Event> = {
            let log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            let log = log.as_deref().unwrap_or_default();
            log.iter()
                .enumerate()
                .filter(|(offset, (at, _))| match from {
                    ReplayFrom::Start => true,
                    ReplayFrom::Offset(first) => *offset as u64 >= first,
                    ReplayFrom::Time(since) => *at >= since,
                })
                .map(|(_, (_, event))| event.clone())
                .collect()
        };
        let mut handled = 0;
        for event in events {
            handler
                .handle(event)
                .await
                .map_err(|e| BusError::Invalid(format!("replay handler failed: {e}")))?;
            handled += 1;
        }
        Ok(handled)
    }
}

impl Bus for MemoryBus {
    fn publish(&self, mut event: Event) -> BusFuture<'_, ()> {
        Box::pin(async move {
            let mut span = publish_span(&mut event, "mesh_memory", "mesh.events");
            let targets: Vec<_> = {
                let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
                queues.retain(|_, queue| queue.partitions.iter().all(|p| !p.is_closed()));
                queues
                    .values()
                    .filter(|queue| {
                        queue
                            .config
                            .patterns
                            .iter()
                            .any(|p| topic::matches(p, &event.ty))
                    })
                    .map(|queue| queue.partitions[queue.config.partition(&event)].clone())
                    .collect()
            };
            if let Some(log) = self
                .inner
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                log.push((SystemTime::now(), event.clone()));
            }
            let mut delivered = false;
            for partition in targets {
                // A queue whose subscription just ended is gone, as in-memory queues live with
                // their subscriptions.
                delivered |= partition.send((event.clone(), 1)).await.is_ok();
            }
            if !delivered {
                span.fail("unroutable", || {
                    format!("no queue is bound to `{}`", event.ty)
                });
                return Err(BusError::Unroutable(event.ty));
            }
            metrics::counter!("mesh_bus_published_total").increment(1);
            Ok(())
        })
    }

    fn subscribe(
        &self,
        config: SubscriptionConfig,
        handler: Arc<dyn Handler>,
    ) -> BusFuture<'_, Subscription> {
        Box::pin(async move {
            let queue_name = config.queue();
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            if queues
                .get(&queue_name)
                .is_some_and(|q| q.partitions.iter().all(|p| !p.is_closed()))
            {
                return Err(BusError::AlreadySubscribed(queue_name));
            }
            let runner = Runner::new(
                "mesh_memory",
                handler,
                self.inner.dedupe.clone(),
                config.clone(),
            );
            let mut partitions = Vec::new();
            let mut tasks = Vec::new();
            for _ in 0..config.concurrency.max(1) {
                let (sender, receiver) = mpsc::channel(usize::from(config.prefetch.max(1)));
                tasks.push(tokio::spawn(work(
                    runner.clone(),
                    sender.downgrade(),
                    receiver,
                    self.inner.clone(),
                )));
                partitions.push(sender);
            }
            queues.insert(queue_name.clone(), Queue { config, partitions });
            Ok(Subscription::new(queue_name, tasks))
        })
    }

    fn dead_letters(&self, queue: &str, max: usize) -> BusFuture<'_, Vec<DeadLetter>> {
        let mut dead = self.inner.dead.lock().unwrap_or_else(|p| p.into_inner());
        let letters = dead
            .get_mut(queue)
            .map(|letters| {
                let n = letters.len().min(max);
                letters.drain(..n).collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(letters)))
    }
}

/// One partition: events one after another; a retry waits beside the queue, not in it.
async fn work(
    runner: Runner,
    requeue: mpsc::WeakSender<(Event, u32)>,
    mut receiver: mpsc::Receiver<(Event, u32)>,
    inner: Arc<Inner>,
) {
    let consumed = metrics::counter!("mesh_bus_consumed_total", "queue" => runner.queue.clone());
    while let Some((event, attempt)) = receiver.recv().await {
        consumed.increment(1);
        match runner.run(&event, attempt).await {
            Verdict::Done => {}
            Verdict::Retry { delay, attempt } => {
                let requeue = requeue.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(partition) = requeue.upgrade() {
                        let _ = partition.send((event, attempt)).await;
                    }
                });
            }
            Verdict::Dead { reason, attempts } => {
                inner
                    .dead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(runner.queue.clone())
                    .or_default()
                    .push_back(DeadLetter {
                        event,
                        reason,
                        attempts,
                    });
            }
        }
    }
}
