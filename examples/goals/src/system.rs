//! Both services in one process: an embedded registry, each service its own mesh, one bus
//! (in process unless the environment names a broker: `MESH_BUS_URL`), stores in memory
//! (PostgreSQL with `DATABASE_URL`) and caches in memory (Redis with `MESH_REDIS_URL`).

use std::{net::SocketAddr, sync::Arc};

use mesh::{
    Mesh, MeshError,
    bus::{Bus, Subscription},
    registry_server::Registry,
    runtime::Running,
};
use serde_json::{Value, json};
use shop::{embedded::Embedded, store::Store};

use crate::{
    api::{ClientsServer, GoalsServer},
    client::ClientService,
    goal::GoalService,
};

/// The topic exchange of the reference design.
pub const EXCHANGE: &str = "microservice.events";

/// Where the services listen, and the environment they read.
#[derive(Debug, Clone)]
pub struct GoalsOptions {
    /// The client service's address (the design's port 8080; port 0: any free port).
    pub client_addr: SocketAddr,
    /// The goal service's address (the design's port 8081).
    pub goal_addr: SocketAddr,
    /// The environment the configuration reads: `MESH_BUS_URL`, `MESH_REDIS_URL`,
    /// `DATABASE_URL`, and `GOALS_NAMESPACE` (`goals` by default), which prefixes the tables
    /// and the Redis keys.
    pub env: Vec<(String, String)>,
}

impl GoalsOptions {
    /// Both services on free ports, reading this process's environment.
    pub fn any_ports() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            client_addr: any,
            goal_addr: any,
            env: std::env::vars().collect(),
        }
    }
}

/// The running system.
#[derive(Debug)]
pub struct Goals {
    /// Where the client service listens.
    pub client_addr: SocketAddr,
    /// Where the goal service listens.
    pub goal_addr: SocketAddr,
    /// A mesh of the system's own (`goals-demo`), to call the services by ID and to reach the
    /// bus as they do.
    pub caller: Mesh,
    /// The embedded registry.
    pub registry: Arc<Registry>,
    running: Vec<Running>,
    subscriptions: Vec<Subscription>,
}

impl Goals {
    /// Starts the client service, then the goal service.
    pub async fn start(options: GoalsOptions) -> Result<Goals, MeshError> {
        let embedded = Embedded::new("goals", options.env);
        let namespace = embedded
            .var("GOALS_NAMESPACE")
            .unwrap_or_else(|| "goals".into());
        let store = match embedded.var("DATABASE_URL") {
            Some(url) => Store::postgres(&url, &namespace).await?,
            None => Store::memory(),
        };
        let mesh = |name: &'static str, address: Option<SocketAddr>| {
            let mut config: Value = json!({"bus": {"exchange": EXCHANGE}});
            if let Some(address) = address {
                config["server"]["address"] = address.to_string().into();
            }
            embedded.mesh(name, config)
        };
        let client_mesh = mesh("client-service", Some(options.client_addr)).await?;
        let clients = ClientService::new(&client_mesh, &store, &namespace).await?;
        let goal_mesh = mesh("goal-service", Some(options.goal_addr)).await?;
        let goals = GoalService::new(&goal_mesh, &store, &namespace).await?;
        // The queues exist before either service publishes.
        let subscriptions = vec![clients.follow_goals().await?, goals.follow_clients().await?];
        let client_running = client_mesh
            .server(ClientsServer::new(clients))
            .start()
            .await?;
        let goal_running = goal_mesh.server(GoalsServer::new(goals)).start().await?;
        let caller = mesh("goals-demo", None).await?;
        Ok(Goals {
            client_addr: client_running.local_addr(),
            goal_addr: goal_running.local_addr(),
            caller,
            registry: embedded.registry.clone(),
            running: vec![client_running, goal_running],
            subscriptions,
        })
    }

    /// The bus the services share.
    pub async fn bus(&self) -> Result<Arc<dyn Bus>, MeshError> {
        self.caller.bus().await
    }

    /// Stops both services (each leaving the registry and draining).
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        self.subscriptions.clear();
        while let Some(running) = self.running.pop() {
            running.shutdown().await?;
        }
        Ok(())
    }
}
