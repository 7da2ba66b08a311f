//! The control plane of mesh: a service registry and configuration server.
//!
//! This crate will hold the registry store (leases, renewals, eviction, self-preservation), its
//! native `/v1/` HTTP API and gRPC watch stream, the Eureka-compatible REST API and the Spring
//! Cloud Config-compatible configuration server. Nothing is public yet: the registry is built on
//! the discovery types of [`mesh_core`], which come next.
//!
//! ```
//! // The crate links against mesh-core; its API arrives with the registry capability.
//! use mesh_registry as _;
//! ```
