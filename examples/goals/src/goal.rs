//! The goal service: goals in its own store, `goal.*` events for every change, a cache of
//! clients filled through the client service (a typed client with a circuit breaker) and kept
//! current by `client.*` events, and the cascade: a deleted client's goals are deleted too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mesh::{
    Mesh, MeshError,
    axum::http::StatusCode,
    bus::{Bus, BusError, Event, Subscription, SubscriptionConfig},
    cache::Cache,
    error::{BoxError, ErrorKind},
};
use shop::store::{Store, Table};

use crate::api::{
    Client, ClientEvent, ClientsClient, EventKind, Goal, GoalEvent, GoalForm, GoalView, Goals,
    event,
};

/// How long a client read from the client service is kept; events keep it current meanwhile.
const CLIENT_TTL: Duration = Duration::from_secs(600);

/// The goal service.
#[derive(Clone)]
pub struct GoalService {
    goals: Arc<Table<Goal>>,
    sequence: Arc<Table<u64>>,
    bus: Arc<dyn Bus>,
    clients: ClientsClient,
    known_clients: Cache<Client>,
    client_events: Arc<AtomicU64>,
}

impl GoalService {
    /// The service on `mesh`, its tables in `store`, its cache's keys under `namespace`.
    pub async fn new(mesh: &Mesh, store: &Store, namespace: &str) -> Result<Self, MeshError> {
        Ok(Self {
            goals: Arc::new(store.table("goal-service", "goals")),
            sequence: Arc::new(store.table("goal-service", "sequence")),
            bus: mesh.bus().await?,
            clients: ClientsClient::new(mesh),
            known_clients: mesh.cache(namespace, "clients").await?,
            client_events: Arc::default(),
        })
    }

    /// Follows `client.*` on the `client.events` queue: a created or updated client is put in
    /// the cache, a deleted one evicted and its goals deleted. An event that does not read is
    /// retried (1 s, then 2 s) and dead-lettered to `client.events.dlq` after three attempts.
    pub async fn follow_clients(&self) -> Result<Subscription, BusError> {
        let config = SubscriptionConfig::new("client", "events", ["client.*"]);
        let service = self.clone();
        self.bus
            .subscribe(
                config,
                Arc::new(move |event: Event| {
                    let service = service.clone();
                    async move { service.on_client_event(&event).await }
                }),
            )
            .await
    }

    async fn on_client_event(&self, event: &Event) -> Result<(), BoxError> {
        let changed: ClientEvent = event.data()?;
        let key = changed.client_id.to_string();
        match changed.event_type {
            EventKind::Created | EventKind::Updated => {
                let client = Client {
                    id: changed.client_id,
                    name: changed.client_name,
                    email: changed.client_email,
                };
                self.known_clients.put(&key, &client, CLIENT_TTL).await?;
            }
            EventKind::Deleted => {
                self.known_clients.invalidate(&key).await?;
                for goal in self.goals_of(changed.client_id).await? {
                    self.remove(goal.id).await?;
                }
            }
        }
        self.client_events.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn goals_of(&self, client_id: u64) -> Result<Vec<Goal>, MeshError> {
        let mut goals: Vec<Goal> = self
            .goals
            .values()
            .await?
            .into_iter()
            .filter(|goal| goal.client_id == client_id)
            .collect();
        goals.sort_by_key(|goal| goal.id);
        Ok(goals)
    }

    /// The client, from the cache or else the client service; `None` when it does not exist.
    async fn known_client(&self, id: u64) -> Result<Option<Client>, MeshError> {
        let clients = self.clients.clone();
        self.known_clients
            .get_or_load(&id.to_string(), CLIENT_TTL, || async move {
                match clients.client(id).await {
                    Ok(client) => Ok(Some(client)),
                    Err(error) if error.status() == StatusCode::NOT_FOUND => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await
            .map_err(|error| MeshError::new(ErrorKind::Unavailable, error.to_string()))
    }

    async fn publish(&self, goal: &Goal, kind: EventKind) -> Result<(), MeshError> {
        let payload = GoalEvent {
            goal_id: goal.id,
            event_type: kind,
            client_id: goal.client_id,
            goal_name: goal.name.clone(),
            target_amount: goal.target_amount,
            timestamp: crate::api::timestamp(),
            source: "goal-service".into(),
        };
        let event = event("goal-service", "goal", goal.id, kind, &payload)?;
        self.bus.publish(event).await?;
        Ok(())
    }

    async fn remove(&self, id: u64) -> Result<Option<Goal>, MeshError> {
        let removed = self.goals.update(&id.to_string(), Option::take).await?;
        if let Some(goal) = &removed {
            self.publish(goal, EventKind::Deleted).await?;
        }
        Ok(removed)
    }

    async fn checked(&self, form: &GoalForm) -> Result<Client, MeshError> {
        if form.name.trim().is_empty()
            || !form.target_amount.is_finite()
            || form.target_amount <= 0.0
        {
            return Err(MeshError::custom(
                StatusCode::BAD_REQUEST,
                "invalid_goal",
                "a goal needs a name and a positive target amount",
            ));
        }
        self.known_client(form.client_id).await?.ok_or_else(|| {
            MeshError::custom(
                StatusCode::NOT_FOUND,
                "client_not_found",
                format!("client {} does not exist", form.client_id),
            )
        })
    }
}

impl std::fmt::Debug for GoalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoalService").finish_non_exhaustive()
    }
}

fn not_found(id: u64) -> MeshError {
    MeshError::custom(
        StatusCode::NOT_FOUND,
        "goal_not_found",
        format!("goal {id} does not exist"),
    )
}

impl Goals for GoalService {
    async fn create(&self, form: GoalForm) -> Result<Goal, MeshError> {
        self.checked(&form).await?;
        let id = self
            .sequence
            .update("goals", |next| {
                let id = next.unwrap_or(0) + 1;
                *next = Some(id);
                id
            })
            .await?;
        let goal = Goal {
            id,
            client_id: form.client_id,
            name: form.name,
            target_amount: form.target_amount,
        };
        self.goals.put(&id.to_string(), goal.clone()).await?;
        self.publish(&goal, EventKind::Created).await?;
        Ok(goal)
    }

    async fn goal(&self, id: u64) -> Result<GoalView, MeshError> {
        let goal = self
            .goals
            .get(&id.to_string())
            .await?
            .ok_or_else(|| not_found(id))?;
        let client_name = self
            .known_client(goal.client_id)
            .await?
            .map(|client| client.name)
            .unwrap_or_default();
        Ok(GoalView { goal, client_name })
    }

    async fn update(&self, id: u64, form: GoalForm) -> Result<Goal, MeshError> {
        self.checked(&form).await?;
        let updated = self
            .goals
            .update(&id.to_string(), |row| {
                let goal = row.as_mut()?;
                goal.client_id = form.client_id;
                goal.name = form.name;
                goal.target_amount = form.target_amount;
                Some(goal.clone())
            })
            .await?
            .ok_or_else(|| not_found(id))?;
        self.publish(&updated, EventKind::Updated).await?;
        Ok(updated)
    }

    async fn delete(&self, id: u64) -> Result<Goal, MeshError> {
        self.remove(id).await?.ok_or_else(|| not_found(id))
    }

    async fn of_client(&self, client_id: u64) -> Result<Vec<u64>, MeshError> {
        Ok(self
            .goals_of(client_id)
            .await?
            .into_iter()
            .map(|goal| goal.id)
            .collect())
    }

    async fn client_events_handled(&self) -> Result<u64, MeshError> {
        Ok(self.client_events.load(Ordering::Relaxed))
    }
}
