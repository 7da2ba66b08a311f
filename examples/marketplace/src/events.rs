//! Publishing and following the marketplace's events: one topic exchange (`bus.exchange`), each
//! service's queue named `{service}.marketplace`, retried with backoff and dead-lettered after
//! the last attempt.

use std::{future::Future, sync::Arc};

use mesh::{
    MeshError,
    bus::{Bus, BusError, Event, EventType, Subscription, SubscriptionConfig},
    error::BoxError,
};

/// Publishes `payload` from `source` about `subject`. The event's ID is `{type}/{key}`: told
/// twice (a retried request), the consumers' dedupe tells it once.
pub async fn publish<T: EventType>(
    bus: &Arc<dyn Bus>,
    source: &str,
    key: &str,
    subject: &str,
    payload: &T,
) -> Result<(), MeshError> {
    let mut event = Event::new(source, payload)?.with_subject(subject);
    event.id = format!("{}/{key}", T::TYPE);
    bus.publish(event).await?;
    Ok(())
}

/// Follows the events matching `patterns` as `service`: `handle` is called for each; an
/// error retries it, then dead-letters it.
pub async fn follow<H, F>(
    bus: &Arc<dyn Bus>,
    service: &str,
    patterns: &[&str],
    handle: H,
) -> Result<Subscription, BusError>
where
    H: Fn(Event) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let config = SubscriptionConfig::new(service, "marketplace", patterns.iter().copied());
    bus.subscribe(config, Arc::new(handle)).await
}
