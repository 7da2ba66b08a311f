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
//! | `redis` | the Redis backend of the distributed rate limiter |

pub use mesh_core::*;
