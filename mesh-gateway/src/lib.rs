//! The edge API gateway of mesh: the single entry point that secures and routes every client
//! request, configured as Spring Cloud Gateway users write it.
//!
//! Routes match on `Path`, `Method`, `Host`, `Header`, `Query`, `Cookie`, `After`, `Before`,
//! `Between` and `RemoteAddr` predicates (compiled once at start), rewrite requests with
//! `StripPrefix`, `SetPath`, `RewritePath` and header filters,
//! need a valid JWT unless `public` (or one of a list of roles), may carry a rate limit and a
//! timeout, and forward to `lb://service-id` (discovery, balancing and the whole mesh client
//! stack) or a fixed `http://host:port`. Errors are mesh's JSON error bodies: 404 no route,
//! 401/403, 429 with `Retry-After`, 502, 503, 504.
//!
//! ```
//! use mesh_gateway::{Gateway, GatewayConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::MeshError> {
//! let config = GatewayConfig::from_yaml(r#"
//! routes:
//!   - id: all
//!     uri: http://127.0.0.1:9000
//!     predicates: ["Path=/**"]
//!     auth: public
//! "#)?;
//! let mesh = mesh_core::Mesh::builder("mesh-gateway")
//!     .config(mesh_core::config::MeshConfig::from_value("mesh-gateway", serde_json::json!({})))
//!     .build()
//!     .await?;
//! let gateway = Gateway::new(config, &mesh)?;
//! // Served as the binary serves it, relaying the requests of plain routes from their bytes:
//! // `mesh.server(gateway.clone()).relay(gateway).serve()`; with the server layers only:
//! // `mesh.server(gateway).serve()`; or nested in an application's router:
//! // `gateway.into_router()`.
//! # let _ = gateway;
//! # Ok(()) }
//! ```

pub mod access_log;
mod auth;
mod config;
mod cors;
mod error;
mod forward;
mod gateway;
mod headers;
mod path;
mod policy;
mod relay;
mod route;
mod upgrade;

pub use self::{
    config::{
        CorsConfig, EdgeAuthConfig, Fallback, GatewayConfig, RedisSettings, RouteAuth, RouteConfig,
    },
    gateway::Gateway,
    headers::{REQUEST_ID_HEADER, ROLES_HEADER, USER_HEADER, decode_roles, encode_roles},
    path::{PathRefused, PathRules},
    route::{
        filter::Filter,
        predicate::{Captures, PathPattern, Predicate},
    },
};
