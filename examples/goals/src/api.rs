//! The two services' contracts (each trait is the service's router and the typed client the
//! other calls it with) and the events they publish, with the JSON field names of the
//! reference design.

use std::time::SystemTime;

use mesh::{MeshError, bus::EventType};
use serde::{Deserialize, Serialize};

/// A client, as the client service keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its identifier.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its e-mail address.
    pub email: String,
}

/// What creates or changes a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientForm {
    /// The name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
}

/// A savings goal of one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Goal {
    /// Its identifier.
    pub id: u64,
    /// The client it belongs to.
    pub client_id: u64,
    /// Its name.
    pub name: String,
    /// The amount to reach.
    pub target_amount: f64,
}

/// What creates or changes a goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalForm {
    /// The client it belongs to.
    pub client_id: u64,
    /// Its name.
    pub name: String,
    /// The amount to reach.
    pub target_amount: f64,
}

/// A goal with its client's name, as the goal service knows it from its cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalView {
    /// The goal.
    #[serde(flatten)]
    pub goal: Goal,
    /// Its client's name, from the goal service's cache of clients.
    pub client_name: String,
}

/// The client service.
#[mesh::service(name = "client-service")]
pub trait Clients {
    /// Creates a client and publishes `client.created`.
    #[post("/api/clients", public)]
    async fn create(&self, form: ClientForm) -> Result<Client, MeshError>;

    /// One client; 404 when there is none.
    #[get("/api/clients/{id}", public)]
    async fn client(&self, id: u64) -> Result<Client, MeshError>;

    /// Changes a client and publishes `client.updated`.
    #[put("/api/clients/{id}", public)]
    async fn update(&self, id: u64, form: ClientForm) -> Result<Client, MeshError>;

    /// Deletes a client and publishes `client.deleted`; its goals follow by event.
    #[delete("/api/clients/{id}", public, idempotent)]
    async fn delete(&self, id: u64) -> Result<Client, MeshError>;

    /// The goals of a client, as the client service knows them: from its cache of goal
    /// references, kept current by goal events.
    #[get("/api/clients/{id}/goals", public)]
    async fn goals(&self, id: u64) -> Result<Vec<u64>, MeshError>;
}

/// The goal service.
#[mesh::service(name = "goal-service")]
pub trait Goals {
    /// Creates a goal once the client service confirms its client exists, and publishes
    /// `goal.created`.
    #[post("/api/goals", public)]
    async fn create(&self, form: GoalForm) -> Result<Goal, MeshError>;

    /// One goal with its client's name.
    #[get("/api/goals/{id}", public)]
    async fn goal(&self, id: u64) -> Result<GoalView, MeshError>;

    /// Changes a goal and publishes `goal.updated`.
    #[put("/api/goals/{id}", public)]
    async fn update(&self, id: u64, form: GoalForm) -> Result<Goal, MeshError>;

    /// Deletes a goal and publishes `goal.deleted`.
    #[delete("/api/goals/{id}", public, idempotent)]
    async fn delete(&self, id: u64) -> Result<Goal, MeshError>;

    /// The identifiers of a client's goals.
    #[get("/api/goals/of-client/{client_id}", public)]
    async fn of_client(&self, client_id: u64) -> Result<Vec<u64>, MeshError>;

    /// How many client events the goal service has handled (a duplicate is not handled
    /// twice).
    #[get("/api/goals/client-events", public)]
    async fn client_events_handled(&self) -> Result<u64, MeshError>;
}

/// What happened to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// It was created.
    Created,
    /// It changed.
    Updated,
    /// It was deleted.
    Deleted,
}

impl EventKind {
    /// The routing key's last word: `created`, `updated`, `deleted`.
    pub fn word(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
        }
    }
}

/// `ClientEvent` of the reference design, on `client.created|updated|deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientEvent {
    /// The client.
    pub client_id: u64,
    /// What happened.
    pub event_type: EventKind,
    /// Its name.
    pub client_name: String,
    /// Its e-mail address.
    pub client_email: String,
    /// When, as a local date-time in UTC (`2025-08-26T10:00:00`).
    pub timestamp: String,
    /// The service that published it.
    pub source: String,
}

impl EventType for ClientEvent {
    const TYPE: &'static str = "client.created";
}

/// `GoalEvent` of the reference design, on `goal.created|updated|deleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalEvent {
    /// The goal.
    pub goal_id: u64,
    /// What happened.
    pub event_type: EventKind,
    /// The client it belongs to.
    pub client_id: u64,
    /// Its name.
    pub goal_name: String,
    /// The amount to reach.
    pub target_amount: f64,
    /// When, as a local date-time in UTC.
    pub timestamp: String,
    /// The service that published it.
    pub source: String,
}

impl EventType for GoalEvent {
    const TYPE: &'static str = "goal.created";
}

/// Now as the reference design's `LocalDateTime`: seconds, no zone (UTC).
pub fn timestamp() -> String {
    let mut text = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    text.pop(); // the `Z`
    text
}

/// `payload` as an event of `kind` on `{entity}.{kind}` (the routing key the topic exchange
/// binds with `client.*` and `goal.*`), its subject the entity, so one entity's events keep
/// their order.
pub fn event<T: EventType>(
    source: &str,
    entity: &str,
    id: u64,
    kind: EventKind,
    payload: &T,
) -> Result<mesh::bus::Event, MeshError> {
    let mut event = mesh::bus::Event::new(source, payload)?;
    event.ty = format!("{entity}.{}", kind.word());
    Ok(event.with_subject(id.to_string()))
}
