//! The notification service: consumes order and payment events (at least once from the bus,
//! handled once thanks to its dedupe), keeps each user's notifications, and pushes each to the
//! user's open WebSockets (`GET /notifications/stream`, through the gateway).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use mesh::{
    auth::Caller,
    axum::{
        Router,
        extract::ws::{Message, WebSocket, WebSocketUpgrade},
        response::Response,
        routing::get,
    },
    bus::{Bus, BusError, Event, Subscription, SubscriptionConfig},
    error::{BoxError, MeshError},
    server::{Application, IntoApplication},
};
use tokio::sync::broadcast;

use crate::{
    api::{
        Notification, Notifications, NotificationsServer, OrderFailed, OrderPaid, OrderPlaced,
        OrderStatus, PaymentCompleted,
    },
    store::{Store, Table},
};

/// How many notifications a slow socket may fall behind before it misses some.
const SOCKET_BACKLOG: usize = 64;

/// Each user's notifications, and the live sockets to push new ones to.
#[derive(Debug, Clone)]
pub struct NotificationService {
    inbox: Arc<Table<Vec<Notification>>>,
    live: Arc<Live>,
}

/// Each user's channel to their open sockets.
#[derive(Debug, Default)]
struct Live {
    channels: Mutex<HashMap<String, broadcast::Sender<Notification>>>,
}

impl Live {
    fn channels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Notification>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of `user`'s new notifications.
    fn listen(&self, user: &str) -> broadcast::Receiver<Notification> {
        self.channels()
            .entry(user.to_owned())
            .or_insert_with(|| broadcast::channel(SOCKET_BACKLOG).0)
            .subscribe()
    }

    /// Pushes `notification` to `user`'s open sockets, if any; forgets a user with none.
    fn push(&self, user: &str, notification: &Notification) {
        let mut channels = self.channels();
        if let Some(channel) = channels.get(user)
            && channel.send(notification.clone()).is_err()
        {
            channels.remove(user);
        }
    }
}

impl NotificationService {
    /// The service, its table in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            inbox: Arc::new(store.table("notification-service", "inbox")),
            live: Arc::default(),
        }
    }

    /// Subscribes to order and payment events on `bus` (queue `notification-service.events`,
    /// retried with backoff, dead-lettered after the last attempt).
    pub async fn subscribe(&self, bus: &Arc<dyn Bus>) -> Result<Subscription, BusError> {
        let (inbox, live) = (self.inbox.clone(), self.live.clone());
        let config =
            SubscriptionConfig::new("notification-service", "events", ["order.*", "payment.*"]);
        bus.subscribe(
            config,
            Arc::new(move |event: Event| {
                let (inbox, live) = (inbox.clone(), live.clone());
                async move { deliver(&inbox, &live, &event).await }
            }),
        )
        .await
    }
}

/// Files `event` in its user's inbox and pushes it to their sockets. An event that does not
/// read is an error: retried, then dead-lettered.
async fn deliver(
    inbox: &Table<Vec<Notification>>,
    live: &Live,
    event: &Event,
) -> Result<(), BoxError> {
    let (user, text) = match event.ty.as_str() {
        "order.placed" => {
            let OrderPlaced { order } = event.data()?;
            let text = match order.status {
                OrderStatus::PendingPayment => format!(
                    "order {} is placed; its payment is delayed: pay again once it is back",
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
    let new = inbox
        .update(&user, |mine| {
            let mine = mine.get_or_insert_with(Vec::new);
            // The bus dedupes; this guards the inbox as well, so a replay never tells twice.
            let new = !mine.iter().any(|n| n.event_id == notification.event_id);
            if new {
                mine.push(notification.clone());
            }
            new
        })
        .await?;
    if new {
        live.push(&user, &notification);
    }
    Ok(())
}

impl IntoApplication for NotificationService {
    /// The contract's routes and `GET /notifications/stream`, the WebSocket.
    fn into_application(self) -> Application {
        let live = self.live.clone();
        let stream = Router::new().route(
            "/notifications/stream",
            get(move |upgrade: WebSocketUpgrade| stream(upgrade, live.clone())),
        );
        let router = NotificationsServer::new(self).into_router().merge(stream);
        Application::described(router, NotificationsServer::<NotificationService>::METADATA)
    }
}

/// Opens the caller's socket: each new notification is sent as a JSON text message.
async fn stream(upgrade: WebSocketUpgrade, live: Arc<Live>) -> Result<Response, MeshError> {
    let me = Caller::require()?;
    let notifications = live.listen(&me.subject);
    Ok(upgrade.on_upgrade(move |socket| push(socket, notifications)))
}

/// Sends what arrives on `notifications` until the client goes away.
async fn push(mut socket: WebSocket, mut notifications: broadcast::Receiver<Notification>) {
    loop {
        tokio::select! {
            received = notifications.recv() => match received {
                Ok(notification) => {
                    let Ok(text) = serde_json::to_string(&notification) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // Fell behind: what was missed is in the inbox.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

impl Notifications for NotificationService {
    async fn mine(&self) -> Result<Vec<Notification>, MeshError> {
        let me = Caller::require()?;
        Ok(self.inbox.get(&me.subject).await?.unwrap_or_default())
    }
}
