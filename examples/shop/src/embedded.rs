//! A system's services in one process, as the shop, goals and marketplace examples run: one
//! embedded registry, one in-process bus of the system's own (unless the environment names a
//! broker), and each service's mesh built from its code defaults and the environment.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use mesh::{
    Mesh, MeshError,
    config::MeshConfig,
    registry::RegistryApi,
    registry_server::{Registry, RegistryConfig},
};
use serde_json::Value;

/// The shared parts of a system run in one process.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The embedded registry every service registers with.
    pub registry: Arc<Registry>,
    /// `memory://{system}-{n}`: this system's in-process bus (a process may run several).
    bus: String,
    env: Vec<(String, String)>,
}

impl Embedded {
    /// The parts of `system`, its services reading `env` (`MESH_*` keys override their code
    /// defaults: `MESH_BUS_URL` moves the bus to RabbitMQ).
    pub fn new(system: &str, env: Vec<(String, String)>) -> Self {
        static SYSTEMS: AtomicU64 = AtomicU64::new(0);
        Self {
            registry: Arc::new(Registry::new(RegistryConfig::default())),
            bus: format!(
                "memory://{system}-{}",
                SYSTEMS.fetch_add(1, Ordering::Relaxed)
            ),
            env,
        }
    }

    /// The environment's value of `key`, when set and not empty.
    pub fn var(&self, key: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }

    /// The mesh of the service `name`: `config` (a JSON object) as its code defaults, on the
    /// system's bus, the environment over them, registered with the embedded registry.
    pub async fn mesh(&self, name: &str, mut config: Value) -> Result<Mesh, MeshError> {
        config["bus"]["url"] = self.bus.clone().into();
        let config = MeshConfig::builder(name)
            .defaults(config)
            .env_vars(self.env.clone())
            .load()
            .await?;
        let registry: Arc<dyn RegistryApi> = self.registry.clone();
        Mesh::builder(name)
            .config(config)
            .registry(registry)
            .build()
            .await
    }
}
