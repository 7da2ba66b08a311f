//! `mesh-registry`: the registry server. Listens on `MESH_REGISTRY_ADDR` (default
//! `127.0.0.1:8761`); keeps its registrations in Redis when `MESH_REGISTRY_REDIS_URL` is set
//! (replicas sharing it serve one registry), in memory otherwise; `MESH_LOG` sets the log
//! filter (default `info`). SIGTERM or Ctrl-C stops it gracefully.

use std::sync::Arc;

use mesh_registry::{Registry, RegistryConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("MESH_REGISTRY_ADDR").unwrap_or_else(|_| "127.0.0.1:8761".into());
    let config = RegistryConfig::default();
    let registry = match std::env::var("MESH_REGISTRY_REDIS_URL") {
        Ok(url) => {
            let store = mesh_registry::store::RedisStore::connect(&url, "mesh:registry:").await?;
            tracing::info!("registrations kept in Redis");
            Arc::new(Registry::with_store(config, store))
        }
        Err(_) => Arc::new(Registry::new(config)),
    };
    registry.spawn_eviction();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "mesh-registry listening");
    mesh_registry::serve(listener, registry, mesh_core::server::shutdown_signal()).await?;
    Ok(())
}
