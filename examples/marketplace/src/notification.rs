//! The notification service: files a notification for the user each event concerns — a
//! welcome on `user.signed-up`, the seller's new order on `order.placed`, the buyer's delivery
//! on `order.completed`, the recipient's new message on `chat.message` — once per event.

use std::sync::Arc;

use mesh::{
    Mesh,
    auth::Caller,
    bus::{Bus, BusError, Event, Subscription},
    error::{BoxError, MeshError},
};
use shop::store::{Store, Table};

use crate::{
    api::{MessageSent, Notification, Notifications, OrderCompleted, OrderPlaced, UserSignedUp},
    events::follow,
};

/// The most notifications a user keeps (the oldest go first).
const KEPT_PER_USER: usize = 200;

/// Each user's notifications.
#[derive(Debug, Clone)]
pub struct NotificationService {
    inbox: Arc<Table<Vec<Notification>>>,
    bus: Arc<dyn Bus>,
}

impl NotificationService {
    /// The service on `mesh`, its inboxes in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        Ok(Self {
            inbox: Arc::new(store.table("notification-service", "inbox")),
            bus: mesh.bus().await?,
        })
    }

    /// Follows the events it tells users of.
    pub async fn follow(&self) -> Result<Subscription, BusError> {
        let inbox = self.inbox.clone();
        let patterns = ["user.signed-up", "order.*", "chat.message"];
        follow(&self.bus, "notification-service", &patterns, move |event| {
            let inbox = inbox.clone();
            async move { file(&inbox, &event).await }
        })
        .await
    }
}

/// Files `event` in its user's inbox. An event that does not read is an error: retried, then
/// dead-lettered.
async fn file(inbox: &Table<Vec<Notification>>, event: &Event) -> Result<(), BoxError> {
    let (user, text) = match event.ty.as_str() {
        "user.signed-up" => {
            let UserSignedUp { username } = event.data()?;
            let text = format!("welcome to the marketplace, {username}");
            (username, text)
        }
        "order.placed" => {
            let OrderPlaced { order } = event.data()?;
            let text = format!(
                "{} ordered \"{}\" (order {})",
                order.buyer, order.title, order.id
            );
            (order.seller, text)
        }
        "order.completed" => {
            let OrderCompleted { order } = event.data()?;
            let text = format!(
                "{} delivered \"{}\": you may review order {}",
                order.seller, order.title, order.id
            );
            (order.buyer, text)
        }
        "chat.message" => {
            let MessageSent { message } = event.data()?;
            (message.to, format!("new message from {}", message.from))
        }
        other => return Err(format!("no notification for `{other}` events").into()),
    };
    let notification = Notification {
        event_id: event.id.clone(),
        kind: event.ty.clone(),
        text,
    };
    inbox
        .update(&user, move |mine| {
            let mine = mine.get_or_insert_with(Vec::new);
            // The bus dedupes; this guards the inbox as well, so a replay never tells twice.
            if !mine.iter().any(|n| n.event_id == notification.event_id) {
                mine.push(notification);
            }
            let excess = mine.len().saturating_sub(KEPT_PER_USER);
            mine.drain(..excess);
        })
        .await?;
    Ok(())
}

impl Notifications for NotificationService {
    async fn mine(&self) -> Result<Vec<Notification>, MeshError> {
        let me = Caller::require()?;
        Ok(self.inbox.get(&me.subject).await?.unwrap_or_default())
    }
}
