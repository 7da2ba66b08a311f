//! Procedural macros of mesh.
//!
//! This crate will hold `#[mesh::service]`, which turns one trait into a server router and a typed
//! client. It exports no macro yet; use it through the `mesh` facade once it does.
