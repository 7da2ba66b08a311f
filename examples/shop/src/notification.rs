//! The notification service: consumes order and payment events (at least once from the bus,
//! handled once thanks to its dedupe) and keeps each user's notifications.

use std::sync::Arc;

use mesh::{
    auth::Caller,
    bus::{Bus, BusError, Event, Subscription, SubscriptionConfig},
    error::{BoxError, MeshError},
};

use crate::{
    api::{
        Notification, Notifications, OrderFailed, OrderPaid, OrderPlaced, OrderStatus,
        PaymentCompleted,
    },
    store::Table,
};

/// Each user's notifications.
#[derive(Debug, Default, Clone)]
pub struct NotificationService {
    inbox: Arc<Table<Vec<Notification>>>,
}

impl NotificationService {
    /// Subscribes to order and payment events on `bus` (queue `notification-service.events`,
    /// retried with backoff, dead-lettered after the last attempt).
    pub async fn subscribe(&self, bus: &Arc<dyn Bus>) -> Result<Subscription, BusError> {
        let inbox = self.inbox.clone();
        let config =
            SubscriptionConfig::new("notification-service", "events", ["order.*", "payment.*"]);
        bus.subscribe(
            config,
            Arc::new(move |event: Event| {
                let inbox = inbox.clone();
                async move { deliver(&inbox, &event) }
            }),
        )
        .await
    }
}

/// Files `event` in its user's inbox. An event that does not read is an error: retried,
/// then dead-lettered.
fn deliver(inbox: &Table<Vec<Notification>>, event: &Event) -> Result<(), BoxError> {
    let (user, text) = match event.ty.as_str() {
        "order.placed" => {
            let OrderPlaced { order } = event.data()?;
            let text = match order.status {
                OrderStatus::PendingPayment => format!(
                    "order {} is placed; payment is delayed and will be retried",
                    order.id
                ),
                _ => format!("order {} is placed", order.id),
            };
            (order.customer, text)
        }
        "order.paid" => {
            let OrderPaid { order } = event.data()?;
            (
                order.customer,
                format!("order {} is paid: {} cents", order.id, order.total_cents),
            )
        }
        "order.failed" => {
            let OrderFailed { order } = event.data()?;
            let reason = order.reason.unwrap_or_default();
            (
                order.customer,
                format!("order {} failed: {reason}", order.id),
            )
        }
        "payment.completed" => {
            let PaymentCompleted { payment, customer } = event.data()?;
            (customer, format!("payment {} received", payment.payment_id))
        }
        other => return Err(format!("no notification for `{other}` events").into()),
    };
    let notification = Notification {
        event_id: event.id.clone(),
        kind: event.ty.clone(),
        text,
    };
    inbox.transact(|inboxes| {
        let mine = inboxes.entry(user).or_default();
        // The bus dedupes; this guards the inbox as well, so a replay never tells twice.
        if !mine.iter().any(|n| n.event_id == notification.event_id) {
            mine.push(notification);
        }
    });
    Ok(())
}

impl Notifications for NotificationService {
    async fn mine(&self) -> Result<Vec<Notification>, MeshError> {
        let me = Caller::require()?;
        Ok(self.inbox.get(&me.subject).unwrap_or_default())
    }
}
