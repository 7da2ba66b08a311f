//! The control plane of mesh: a service registry that Rust services and Eureka clients share.
//!
//! Instances register with a lease and renew it; expired leases are evicted (unless
//! self-preservation judges the registry cut off rather than the instances dead); operators
//! override statuses; every change gets a revision, and watchers resume from the last revision
//! they saw. The same catalogue is served through the native `/v1` API and through Eureka's
//! REST API (`/eureka`, `/eureka/v2`) in Eureka's JSON and XML shapes, so a Spring Boot service
//! registered over Eureka is discoverable by a Rust client and the other way round. Changes are
//! pushed to watchers as they happen, over HTTP long-poll (`/v1/watch`) or a gRPC stream
//! ([`grpc`]), both on the same port.
//!
//! Writes need credentials once [`RegistryConfig::auth`] names some (HTTP Basic users, JWT
//! bearer tokens; see [`auth`]), and an instance may then be changed only by the identity that
//! registered it or by an operator; without credentials the binary listens on loopback only.
//! Input is checked ([`validate`]): identifiers hold no control characters and metadata is
//! bounded. Catalogue answers are rendered once per revision and shared by every reader.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mesh_registry::{Registry, RegistryConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let registry = Arc::new(Registry::new(RegistryConfig::default()));
//! registry.spawn_eviction();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8761").await?;
//! mesh_registry::serve(listener, registry, mesh_core::server::shutdown_signal()).await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod config_server;
pub mod eureka;
pub mod grpc;
pub mod registry;
mod render;
pub mod store;
pub mod summaries;
pub mod validate;

pub use mesh_core::registry::model;

pub use self::{
    auth::{AuthConfig, Caller, User},
    model::WatchAnswer,
    registry::{
        Access, LeaseRequest, RegisterError, Registry, RegistryConfig, SelfPreservationConfig,
    },
};

use std::{sync::Arc, time::Duration};

/// How long a connection may go without sending a whole request before the registry closes
/// it (a watch being answered is not held to it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the registry's API — native, Eureka and gRPC, on the one port — on `listener` until
/// `shutdown` completes, then lets the requests in flight finish. The connections are mesh's
/// own ([`mesh_core::server::serve_connections`]): one that sends no whole request for
/// [`IDLE_TIMEOUT`] is closed, so a client that trickles a head cannot hold it open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = api::router(registry.clone());
    let shutdown = async move {
        shutdown.await;
        registry.close_streams();
    };
    serve_router(listener, router, shutdown).await
}

/// [`serve`] for a router of one's own: the registry's API with the config server's
/// ([`api::router_with`]), say. Let `shutdown` call [`Registry::close_streams`] once it fires,
/// as [`serve`] does, or open dashboard streams hold the drain.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    mesh_core::server::serve_connections(listener, router, IDLE_TIMEOUT, shutdown).await
}
