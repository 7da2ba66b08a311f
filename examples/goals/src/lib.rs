//! The reference designs' client and goal services (`003` in `../shared/reference`), built on
//! mesh alone: each service with its own store and cache, `ClientEvent` and `GoalEvent` on the
//! `microservice.events` topic exchange (`client.events` bound with `client.*`,
//! `goal.events` with `goal.*`), goal creation checking synchronously that its client exists
//! (a typed client with a circuit breaker), each service's cache of the other's entities kept
//! current by the events, a deleted client's goals deleted by event, and retries with backoff,
//! the dead-letter queue and idempotency shown by `--demo`.
//!
//! ```no_run
//! use goals::{Goals, GoalsOptions, demo};
//! use mesh::{MeshError, error::ErrorKind};
//!
//! # async fn run() -> Result<(), MeshError> {
//! let goals = Goals::start(GoalsOptions::any_ports()).await?;
//! let outcome = demo::run(&goals).await;
//! goals.shutdown().await?;
//! outcome.map_err(|step| MeshError::new(ErrorKind::Internal, step))
//! # }
//! ```

pub mod api;
pub mod client;
pub mod demo;
pub mod goal;
pub mod system;

pub use self::system::{Goals, GoalsOptions};
