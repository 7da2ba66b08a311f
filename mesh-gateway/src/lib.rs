//! The edge API gateway of mesh.
//!
//! This crate will hold the route matcher, filters, per-route policies and the `mesh-gateway`
//! binary. Nothing is public yet: the gateway is built on the mesh runtime, which comes first.
//!
//! ```
//! // The crate links against mesh-core; its API arrives with the gateway capability.
//! use mesh_gateway as _;
//! ```
