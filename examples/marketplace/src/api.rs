//! The marketplace's contracts: one `#[mesh::service]` trait per service (its router and the
//! typed client the others call it with), and the events on the bus. JSON field names are
//! camelCase, as the reference design's Node services write them.

use mesh::{MeshError, bus::EventType};
use serde::{Deserialize, Serialize};

/// The most a gig may cost, in cents (a million): prices stay exact in any JSON client.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;

/// Refuses an ID that cannot be one (`400`): IDs are 1 to 64 letters, digits, `-` or `_`, so
/// none reaches a store, a path or an error message unbounded.
pub fn check_id(what: &str, id: &str) -> Result<(), MeshError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(MeshError::new(
            mesh::error::ErrorKind::BadRequest,
            format!("a {what} ID is 1 to 64 letters, digits, `-` or `_`"),
        ))
    }
}

/// A user's public profile, kept by the users service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The user name, the profile's key.
    pub username: String,
    /// The name other users see.
    pub display_name: String,
    /// What the user says about themselves.
    pub bio: String,
}

/// What a user may change of their profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileForm {
    /// The name other users see (1 to 64 characters).
    pub display_name: String,
    /// What the user says about themselves (at most 1,000 bytes).
    pub bio: String,
}

/// Profiles: each user's, created when they sign up.
#[mesh::service(name = "users-service")]
pub trait Users {
    /// A user's profile.
    #[get("/users/{username}")]
    async fn profile(&self, username: String) -> Result<Profile, MeshError>;

    /// Changes the caller's profile.
    #[put("/users/me")]
    async fn update_me(&self, form: ProfileForm) -> Result<Profile, MeshError>;
}

/// A service a seller offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gig {
    /// Its ID.
    pub id: String,
    /// The seller's user name.
    pub seller: String,
    /// The seller's display name, kept current by `user.updated` events.
    pub seller_name: String,
    /// What is offered.
    pub title: String,
    /// The details.
    pub description: String,
    /// The price in cents.
    pub price_cents: u64,
    /// How many reviews it has.
    pub reviews: u32,
    /// The sum of their ratings (the average is `ratingSum / reviews`).
    pub rating_sum: u32,
}

/// What a seller gives to offer a gig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GigForm {
    /// What is offered (1 to 120 characters).
    pub title: String,
    /// The details (at most 5,000 bytes).
    pub description: String,
    /// The price in cents (1 to [`MAX_PRICE_CENTS`]).
    pub price_cents: u64,
}

/// Gigs: sellers offer them, anyone signed in browses them.
#[mesh::service(name = "gigs-service")]
pub trait Gigs {
    /// Offers a gig, the caller its seller.
    #[post("/gigs")]
    async fn create(&self, form: GigForm) -> Result<Gig, MeshError>;

    /// Every gig.
    #[get("/gigs")]
    async fn list(&self) -> Result<Vec<Gig>, MeshError>;

    /// One gig.
    #[get("/gigs/{id}")]
    async fn gig(&self, id: String) -> Result<Gig, MeshError>;
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed by the buyer; the seller is at work.
    Placed,
    /// Delivered by the seller: the buyer may review it.
    Completed,
}

/// An order of a gig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Its ID.
    pub id: String,
    /// The gig ordered.
    pub gig_id: String,
    /// The gig's title when ordered.
    pub title: String,
    /// Who ordered.
    pub buyer: String,
    /// Who delivers.
    pub seller: String,
    /// The price when ordered, in cents.
    pub price_cents: u64,
    /// Where it stands.
    pub status: OrderStatus,
}

/// What a buyer gives to order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderForm {
    /// The gig to order.
    pub gig_id: String,
}

/// Orders between a buyer and a seller.
#[mesh::service(name = "orders-service")]
pub trait Orders {
    /// Orders a gig, the caller its buyer.
    #[post("/orders")]
    async fn place(&self, form: OrderForm) -> Result<Order, MeshError>;

    /// An order, for its buyer or its seller.
    #[get("/orders/{id}")]
    async fn order(&self, id: String) -> Result<Order, MeshError>;

    /// Marks an order delivered (its seller).
    #[post("/orders/{id}/complete")]
    async fn complete(&self, id: String) -> Result<Order, MeshError>;
}

/// A buyer's review of a completed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// The order reviewed (one review per order).
    pub order_id: String,
    /// The gig reviewed.
    pub gig_id: String,
    /// Who wrote it.
    pub reviewer: String,
    /// 1 to 5.
    pub rating: u8,
    /// What they said.
    pub comment: String,
}

/// What a buyer gives to review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewForm {
    /// The completed order.
    pub order_id: String,
    /// 1 to 5.
    pub rating: u8,
    /// At most 2,000 bytes.
    pub comment: String,
}

/// Reviews of completed orders.
#[mesh::service(name = "reviews-service")]
pub trait Reviews {
    /// Reviews a completed order (its buyer, once).
    #[post("/reviews")]
    async fn create(&self, form: ReviewForm) -> Result<Review, MeshError>;

    /// A gig's reviews.
    #[get("/reviews/gig/{gig_id}")]
    async fn of_gig(&self, gig_id: String) -> Result<Vec<Review>, MeshError>;
}

/// A chat message between two users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Its ID.
    pub id: String,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// What they wrote.
    pub text: String,
}

/// What a sender gives, over Socket.IO (`message` event) or HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageForm {
    /// The recipient's user name.
    pub to: String,
    /// What to say (1 to 2,000 bytes).
    pub text: String,
}

/// Chat history and sending over HTTP, beside the Socket.IO namespace.
#[mesh::service(name = "chat-service")]
pub trait Chat {
    /// Sends a message, as the `message` event over Socket.IO does.
    #[post("/chat/messages")]
    async fn send(&self, form: MessageForm) -> Result<ChatMessage, MeshError>;

    /// The caller's conversation with `other`, oldest first.
    #[get("/chat/with/{other}")]
    async fn conversation(&self, other: String) -> Result<Vec<ChatMessage>, MeshError>;
}

/// Something a user is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The event it came from (a notification is filed once per event).
    pub event_id: String,
    /// The event's type (`order.placed`, `chat.message`, …).
    pub kind: String,
    /// What the user reads.
    pub text: String,
}

/// Each user's notifications, filed from the other services' events.
#[mesh::service(name = "notification-service")]
pub trait Notifications {
    /// The caller's notifications, oldest first.
    #[get("/notifications")]
    async fn mine(&self) -> Result<Vec<Notification>, MeshError>;
}

/// `user.signed-up`: the auth service has a new user (the users service makes the profile,
/// the notification service welcomes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSignedUp {
    /// The new user's name.
    pub username: String,
}

impl EventType for UserSignedUp {
    const TYPE: &'static str = "user.signed-up";
}

/// `user.updated`: a profile changed (gigs update the seller's name, caches evict it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The profile as it is now.
    pub profile: Profile,
}

impl EventType for UserUpdated {
    const TYPE: &'static str = "user.updated";
}

/// `order.placed`: a buyer ordered (the seller is told).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order: Order,
}

impl EventType for OrderPlaced {
    const TYPE: &'static str = "order.placed";
}

/// `order.completed`: a seller delivered (the buyer is told, and may review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    /// The order.
    pub order: Order,
}

impl EventType for OrderCompleted {
    const TYPE: &'static str = "order.completed";
}

/// `review.created`: a gig was reviewed (the gig's rating follows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewCreated {
    /// The review.
    pub review: Review,
}

impl EventType for ReviewCreated {
    const TYPE: &'static str = "review.created";
}

/// `chat.message`: a message was sent (the recipient is told).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    /// The message.
    pub message: ChatMessage,
}

impl EventType for MessageSent {
    const TYPE: &'static str = "chat.message";
}
