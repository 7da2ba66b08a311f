//! The server layers, each a tower layer of its own, usable around any axum router or tonic
//! service without the runtime:
//!
//! - [`edge`]: the gateway's proof on every request, so a service refuses direct access;
//! - [`jwt`]: a valid bearer token on every path not made public, the caller's identity for
//!   the handler;
//! - [`trace`]: each request served in its W3C trace context and a `request` span;
//! - [`metrics`]: RED metrics by route pattern and status;
//! - [`catch_panic`]: a handler's panic answered `500` (gRPC `INTERNAL`), the process going on.
//!
//! Each answers a gRPC call (`content-type: application/grpc…`) with a gRPC status, and any
//! other request with mesh's JSON error body. The runtime (`Mesh::server`) puts all four around
//! a service's application, with its endpoints, deadline honouring and body limit.
//!
//! ```
//! use mesh_core::axum::{Router, routing::get};
//! use mesh_core::auth::{JwtConfig, JwtVerifier};
//! use mesh_core::server::layers::{
//!     CatchPanicLayer, JwtAuthLayer, RequestMetricsLayer, ServerTraceLayer, label_routes,
//! };
//! use tower::ServiceBuilder;
//!
//! # fn run() -> Result<(), mesh_core::MeshError> {
//! let verifier = JwtVerifier::new(JwtConfig::with_jwks_url("http://auth/.well-known/jwks.json"))?;
//! let router = label_routes(Router::new().route("/orders/{id}", get(|| async { "order" })));
//! let app = router.layer(
//!     ServiceBuilder::new()
//!         .layer(RequestMetricsLayer::new("order-service"))
//!         .layer(ServerTraceLayer::new("order-service"))
//!         .layer(CatchPanicLayer::new())
//!         .layer(JwtAuthLayer::new(verifier)),
//! );
//! # let _: Router = app;
//! # Ok(()) }
//! ```

mod answer;
pub mod catch_panic;
pub mod edge;
pub mod jwt;
pub mod metrics;
pub(crate) mod stack;
pub mod trace;

pub use self::{
    answer::AnswerBody,
    catch_panic::{CatchPanic, CatchPanicLayer},
    edge::{EdgeProofCheck, EdgeProofLayer},
    jwt::{JwtAuth, JwtAuthLayer},
    metrics::{RequestMetrics, RequestMetricsLayer, label_routes},
    trace::{ServerTrace, ServerTraceLayer},
};
