//! The registry client: keep an instance registered, and follow services' instances.
//!
//! [`RegistryClient`] speaks `mesh-registry`'s native API. [`RegistryClient::keep_registered`]
//! registers an instance, renews its lease in the background, registers again if the registry
//! forgot it (a restart, an eviction), and deregisters on [`Registered::deregister`] — the
//! first step of a graceful shutdown. [`RegistryClient::discover`] follows one service into a
//! [`Discovery`](crate::discovery::Discovery): a long-poll watch applies each change as the
//! registry makes it, resumes from its last revision after a reconnect (from a full snapshot
//! when the registry restarted on an empty store since: revisions carry the store's epoch),
//! and keeps the last known instances while the registry is unreachable or, restarted, is
//! still warming up. [`follow`] does the same from any
//! [`RegistryApi`], such as a registry running in this process. [`keep_registered`] works over
//! any [`RegistryApi`] too.

mod client;
pub mod model;
pub mod summary;

pub use self::client::{
    Registered, RegistryApi, RegistryClient, RegistryFuture, Report, follow, keep_registered,
    keep_registered_reporting,
};
