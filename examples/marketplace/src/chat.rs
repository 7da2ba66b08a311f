//! The chat service: buyers and sellers talk in real time over Socket.IO (socketioxide), on
//! the polling and the WebSocket transports, through the gateway like every other request. A
//! socket is its user's (the token the gateway verified, from its cookie) and joins the room
//! named after them; a `message` event (`{"to": …, "text": …}`) is kept, pushed as `message`
//! to the recipient's and the sender's rooms, acknowledged with the kept message, and told to
//! the notification service as `chat.message`. `POST /chat/messages` sends the same way over
//! HTTP; `GET /chat/with/{other}` is the conversation. A message goes only to a user the chat
//! service knows from `user.signed-up`; a session is its user's only ([`crate::sessions`]).

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh,
    auth::{Caller, Identity, random_token},
    axum::middleware::from_fn_with_state,
    bus::Bus,
    error::{ErrorKind, MeshError},
    server::{Application, IntoApplication},
};
use serde_json::{Value, json};
use shop::store::{Store, Table};
use socketioxide::{
    SocketIo,
    extract::{AckSender, SocketRef, TryData},
    handler::ConnectHandler,
};

use crate::{
    api::{Chat, ChatMessage, ChatServer, MessageForm, MessageSent, UserSignedUp},
    events::{follow, publish},
    sessions::{Sessions, guard},
};

/// The most messages a conversation keeps (the oldest go first).
const KEPT_PER_CONVERSATION: usize = 500;
/// The longest message, in bytes.
const MAX_TEXT_BYTES: usize = 2000;
/// The largest Socket.IO packet taken, on either transport.
const MAX_PACKET_BYTES: usize = 64 * 1024;

/// Conversations, and the Socket.IO server that pushes their messages.
#[derive(Clone)]
pub struct ChatService {
    conversations: Arc<Table<Vec<ChatMessage>>>,
    /// The users messages may go to, from `user.signed-up`.
    users: Arc<Table<bool>>,
    io: Option<SocketIo>,
    bus: Arc<dyn Bus>,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService").finish_non_exhaustive()
    }
}

/// The key of the conversation between `a` and `b`, whoever writes.
fn conversation_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}|{b}")
    } else {
        format!("{b}|{a}")
    }
}

impl ChatService {
    /// The service on `mesh`, its conversations in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        Ok(Self {
            conversations: Arc::new(store.table("chat-service", "conversations")),
            users: Arc::new(store.table("chat-service", "users")),
            io: None,
            bus: mesh.bus().await?,
        })
    }

    /// Learns each new user (`user.signed-up`), so messages may go to them.
    pub async fn follow_signups(&self) -> Result<mesh::bus::Subscription, mesh::bus::BusError> {
        let users = self.users.clone();
        follow(
            &self.bus,
            "chat-service",
            &["user.signed-up"],
            move |event| {
                let users = users.clone();
                async move {
                    let UserSignedUp { username } = event.data()?;
                    users.put(&username, true).await?;
                    Ok(())
                }
            },
        )
        .await
    }

    /// Keeps a message from `from`, pushes it to both users' sockets and tells the others.
    async fn deliver(&self, from: &str, form: MessageForm) -> Result<ChatMessage, MeshError> {
        let to = form.to.as_str();
        if to.is_empty()
            || to.len() > 64
            || to == from
            || form.text.trim().is_empty()
            || form.text.len() > MAX_TEXT_BYTES
        {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a message goes to another user and has 1 to 2,000 bytes of text",
            ));
        }
        if self.users.get(to).await?.is_none() {
            return Err(MeshError::new(
                ErrorKind::NotFound,
                format!("no user `{to}`"),
            ));
        }
        let message = ChatMessage {
            id: random_token(9)?,
            from: from.to_owned(),
            to: to.to_owned(),
            text: form.text,
        };
        let kept = message.clone();
        self.conversations
            .update(&conversation_key(from, to), move |conversation| {
                let conversation = conversation.get_or_insert_with(Vec::new);
                conversation.push(kept);
                let excess = conversation.len().saturating_sub(KEPT_PER_CONVERSATION);
                conversation.drain(..excess);
            })
            .await?;
        if let Some(io) = &self.io {
            let rooms = [message.to.clone(), message.from.clone()];
            if let Err(error) = io.to(rooms).emit("message", &message).await {
                tracing::warn!(%error, "a chat message was not pushed");
            }
        }
        let sent = MessageSent {
            message: message.clone(),
        };
        publish(&self.bus, "chat-service", &message.id, &message.to, &sent).await?;
        Ok(message)
    }
}

impl Chat for ChatService {
    async fn send(&self, form: MessageForm) -> Result<ChatMessage, MeshError> {
        let me = Caller::require()?;
        self.deliver(&me.subject, form).await
    }

    async fn conversation(&self, other: String) -> Result<Vec<ChatMessage>, MeshError> {
        let me = Caller::require()?;
        let key = conversation_key(&me.subject, &other);
        Ok(self.conversations.get(&key).await?.unwrap_or_default())
    }
}

/// The Socket.IO namespace `/`, as a connect middleware: it runs before the client is told it
/// is connected (a connect handler runs after, so an event sent at once could find no handler
/// yet). A socket joins its user's room, and sends with `message`.
fn admit(socket: SocketRef, chat: ChatService) -> Result<(), &'static str> {
    // The server's token check lets no socket through without a user; this is its guard.
    let user = socket
        .req_parts()
        .extensions
        .get::<Identity>()
        .map(|identity| identity.subject.clone())
        .ok_or("a bearer token is required")?;
    socket.join(user.clone());
    socket.on(
        "message",
        move |TryData(form): TryData<Value>, ack: AckSender| {
            let (chat, user) = (chat.clone(), user.clone());
            async move {
                let answer = match read_form(form) {
                    Ok(form) => match chat.deliver(&user, form).await {
                        Ok(message) => json!({"ok": message}),
                        Err(error) => json!({"error": error.message()}),
                    },
                    Err(error) => json!({"error": error}),
                };
                ack.send(&answer).ok();
            }
        },
    );
    Ok(())
}

/// A `message` event's data: an object with `to` and `text`, or what is wrong with it.
fn read_form(data: Result<Value, impl std::fmt::Display>) -> Result<MessageForm, String> {
    let data = data.map_err(|e| format!("a message does not read: {e}"))?;
    if !data.is_object() {
        return Err("a message is an object: {\"to\": …, \"text\": …}".into());
    }
    serde_json::from_value(data).map_err(|e| format!("a message does not read: {e}"))
}

impl IntoApplication for ChatService {
    /// The contract's routes, with the Socket.IO server at `/socket.io/` in front of them.
    /// It pings every 5 s, so a polling request is never held longer than a gateway's
    /// default 10 s call timeout.
    fn into_application(mut self) -> Application {
        let (layer, io) = SocketIo::builder()
            .ping_interval(Duration::from_secs(5))
            .ping_timeout(Duration::from_secs(5))
            .max_payload(MAX_PACKET_BYTES as u64)
            .ws_max_message_size(MAX_PACKET_BYTES)
            .ws_max_frame_size(MAX_PACKET_BYTES)
            .build_layer();
        self.io = Some(io.clone());
        let chat = self.clone();
        let connected = || async {};
        io.ns(
            "/",
            connected.with(move |socket: SocketRef| {
                let chat = chat.clone();
                async move { admit(socket, chat) }
            }),
        );
        let sessions = Arc::new(Sessions::default());
        let router = ChatServer::new(self)
            .into_router()
            .layer(layer)
            .layer(from_fn_with_state(sessions, guard));
        Application::described(router, ChatServer::<ChatService>::METADATA)
    }
}
