//! The layers and runtime of mesh, an embeddable service mesh for Rust.
//!
//! Every capability is a plain [`tower::Layer`], usable alone in any axum, hyper or tonic stack.
//! The resilience layers — [timeout and deadline](resilience::timeout), [retry](resilience::retry),
//! [circuit breaker](resilience::circuit_breaker), [bulkhead](resilience::bulkhead) and
//! [rate limit](resilience::rate_limit) — compose into the client stack in that order:
//!
//! ```
//! use std::time::Duration;
//!
//! use http::{Request, Response};
//! use http_body_util::Empty;
//! use mesh_core::error::{BoxError, ErrorKind, MeshError};
//! use mesh_core::resilience::{
//!     bulkhead::{BulkheadConfig, BulkheadLayer},
//!     circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer},
//!     rate_limit::{RateLimitConfig, RateLimitLayer},
//!     retry::{RetryConfig, RetryLayer},
//!     timeout::{TimeoutConfig, TimeoutLayer},
//! };
//! use mesh_core::BoxBody;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let upstream = tower::service_fn(|_req: http::Request<BoxBody>| async {
//!     Ok::<_, BoxError>(Response::new("inventory: 7"))
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new("inventory", TimeoutConfig::default().timeout(Duration::from_secs(2))))
//!     .layer(RetryLayer::new("inventory", RetryConfig::default().max_attempts(3)))
//!     // After 5 failures the circuit opens.
//!     .layer(CircuitBreakerLayer::new("inventory", CircuitBreakerConfig::open_after_failures(5)))
//!     .layer(BulkheadLayer::new("inventory", BulkheadConfig::default().max_concurrent_calls(32)))
//!     .layer(RateLimitLayer::new("inventory", RateLimitConfig::default().replenish_rate(100)))
//!     .service(upstream);
//!
//! let response = client.oneshot(Request::new(Empty::new())).await?;
//! assert_eq!(*response.body(), "inventory: 7");
//! # let _ = MeshError::new(ErrorKind::Internal, "unused");
//! # Ok(())
//! # }
//! ```
//!
//! Every layer fails with a small leaf error that [`MeshError::from_boxed`](error::MeshError::from_boxed)
//! turns into one [`MeshError`](error::MeshError) with an HTTP status.
//!
//! # Features
//!
//! | feature | enables |
//! |---|---|
//! | `redis` | [`RedisStore`](resilience::rate_limit::RedisStore), the distributed rate-limit backend, and `RedisDedupe` for the bus |
//! | `amqp` | `AmqpBus`, the RabbitMQ backend of the [`bus`] |
//! | `dns-srv` | `discovery::dns::resolve_srv`, discovery from DNS SRV records |

pub mod balance;
pub mod bus;
pub mod clock;
pub mod context;
pub mod discovery;
pub mod error;
pub mod registry;
pub mod resilience;

mod body;

pub use self::body::BoxBody;
