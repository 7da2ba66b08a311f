//! The client service: clients in its own store, `client.*` events for every change, and a
//! cache of each client's goal references kept current by `goal.*` events.

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh, MeshError,
    axum::http::StatusCode,
    bus::{Bus, BusError, Subscription, SubscriptionConfig},
    cache::{Cache, Change},
};
use shop::store::{Store, Table};

use crate::api::{
    Client, ClientEvent, ClientForm, Clients, EventKind, GoalEvent, GoalsClient, event,
};

/// How long a client's goal references are kept before they are asked again.
const GOAL_REFS_TTL: Duration = Duration::from_secs(300);

/// The client service.
#[derive(Clone)]
pub struct ClientService {
    clients: Arc<Table<Client>>,
    sequence: Arc<Table<u64>>,
    bus: Arc<dyn Bus>,
    goals: GoalsClient,
    goal_refs: Cache<Vec<u64>>,
}

impl ClientService {
    /// The service on `mesh`, its tables in `store`, its cache's keys under `namespace`.
    pub async fn new(mesh: &Mesh, store: &Store, namespace: &str) -> Result<Self, MeshError> {
        Ok(Self {
            clients: Arc::new(store.table("client-service", "clients")),
            sequence: Arc::new(store.table("client-service", "sequence")),
            bus: mesh.bus().await?,
            goals: GoalsClient::new(mesh),
            goal_refs: mesh.cache(namespace, "goal-refs").await?,
        })
    }

    /// Follows `goal.*` on the `goal.events` queue: a goal's change evicts its client's
    /// goal references, which the next read loads again from the goal service.
    pub async fn follow_goals(&self) -> Result<Subscription, BusError> {
        let config = SubscriptionConfig::new("goal", "events", ["goal.*"]);
        self.goal_refs
            .follow(&*self.bus, config, |event| {
                let goal: GoalEvent = event.data().ok()?;
                Some(Change::Evict(goal.client_id.to_string()))
            })
            .await
    }

    async fn publish(&self, client: &Client, kind: EventKind) -> Result<(), MeshError> {
        let payload = ClientEvent {
            client_id: client.id,
            event_type: kind,
            client_name: client.name.clone(),
            client_email: client.email.clone(),
            timestamp: crate::api::timestamp(),
            source: "client-service".into(),
        };
        let event = event("client-service", "client", client.id, kind, &payload)?;
        self.bus.publish(event).await?;
        Ok(())
    }
}

impl std::fmt::Debug for ClientService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientService").finish_non_exhaustive()
    }
}

fn not_found(id: u64) -> MeshError {
    MeshError::custom(
        StatusCode::NOT_FOUND,
        "client_not_found",
        format!("client {id} does not exist"),
    )
}

fn checked(form: &ClientForm) -> Result<(), MeshError> {
    if form.name.trim().is_empty() || !form.email.contains('@') {
        return Err(MeshError::custom(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "a client needs a name and an e-mail address",
        ));
    }
    Ok(())
}

impl Clients for ClientService {
    async fn create(&self, form: ClientForm) -> Result<Client, MeshError> {
        checked(&form)?;
        let id = self
            .sequence
            .update("clients", |next| {
                let id = next.unwrap_or(0) + 1;
                *next = Some(id);
                id
            })
            .await?;
        let client = Client {
            id,
            name: form.name,
            email: form.email,
        };
        self.clients.put(&id.to_string(), client.clone()).await?;
        self.publish(&client, EventKind::Created).await?;
        Ok(client)
    }

    async fn client(&self, id: u64) -> Result<Client, MeshError> {
        self.clients
            .get(&id.to_string())
            .await?
            .ok_or_else(|| not_found(id))
    }

    async fn update(&self, id: u64, form: ClientForm) -> Result<Client, MeshError> {
        checked(&form)?;
        let updated = self
            .clients
            .update(&id.to_string(), |row| {
                let client = row.as_mut()?;
                client.name = form.name;
                client.email = form.email;
                Some(client.clone())
            })
            .await?
            .ok_or_else(|| not_found(id))?;
        self.publish(&updated, EventKind::Updated).await?;
        Ok(updated)
    }

    async fn delete(&self, id: u64) -> Result<Client, MeshError> {
        let deleted = self
            .clients
            .update(&id.to_string(), Option::take)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.publish(&deleted, EventKind::Deleted).await?;
        Ok(deleted)
    }

    async fn goals(&self, id: u64) -> Result<Vec<u64>, MeshError> {
        self.client(id).await?;
        let goals = self.goals.clone();
        let refs = self
            .goal_refs
            .get_or_load(&id.to_string(), GOAL_REFS_TTL, || async move {
                goals.of_client(id).await.map(Some)
            })
            .await
            .map_err(|error| {
                MeshError::new(mesh::error::ErrorKind::Unavailable, error.to_string())
            })?;
        Ok(refs.unwrap_or_default())
    }
}
