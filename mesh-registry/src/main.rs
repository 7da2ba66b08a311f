//! `mesh-registry`: the registry server. Listens on `MESH_REGISTRY_ADDR` (default
//! `127.0.0.1:8761`); `MESH_LOG` sets the log filter (default `info`).

use std::sync::Arc;

use mesh_registry::{Registry, RegistryConfig, api};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("MESH_REGISTRY_ADDR").unwrap_or_else(|_| "127.0.0.1:8761".into());
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    registry.spawn_eviction();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "mesh-registry listening");
    axum::serve(listener, api::router(registry))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
