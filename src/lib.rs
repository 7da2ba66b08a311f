//! mesh: an embeddable service-mesh framework for Rust.
//!
//! This facade re-exports the public API of the mesh crates; depend on `mesh` alone.
//! See [`mesh_core`] for the layers.
//!
//! ```
//! use mesh::resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
//!
//! let _layer = BulkheadLayer::new("inventory", BulkheadConfig::default().max_concurrent_calls(10));
//! ```
//!
//! # Features
//!
//! | feature | enables |
//! |---|---|
//! | `runtime` (default) | `Mesh`, `MeshClient`, `config`, `auth`, health and Prometheus metrics |
//! | `redis` | the Redis stores of the rate limiter and the bus's dedupe (and of the registry, with `registry`) |
//! | `amqp` | the RabbitMQ backend of the event bus |
//! | `dns-srv` | discovery from DNS SRV records |
//! | `registry` | `registry_server`: the registry and its API, to embed in a process |

pub use mesh_core::*;
/// The edge gateway (`mesh-gateway`) as a library: embed a gateway in a single-process mesh.
#[cfg(feature = "gateway")]
pub use mesh_gateway as gateway;
/// Declares an event payload's type: `#[derive(EventType)] #[event(type = "order.placed")]`
/// implements [`bus::EventType`].
pub use mesh_macros::EventType;
/// Turns one trait into a server router (`{Trait}Server`) and a typed client
/// (`{Trait}Client`) calling the service by its ID: `#[mesh::service(name = "inventory")]`.
/// See `docs/service-macro.md`.
#[cfg(feature = "runtime")]
pub use mesh_macros::service;
/// The registry server (`mesh-registry`) as a library: embed a registry in a single-process
/// mesh or in tests.
#[cfg(feature = "registry")]
pub use mesh_registry as registry_server;

/// The getting-started guide's code, compiled and run as a doctest.
#[cfg(all(doctest, feature = "registry", feature = "runtime"))]
#[doc = include_str!("../docs/getting-started.md")]
pub struct GettingStarted;
