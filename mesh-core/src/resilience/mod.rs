//! Resilience layers: timeout with deadline propagation, retry, circuit breaker, bulkhead and
//! rate limit.
//!
//! Each layer is a [`tower::Layer`] built from a serde `Config` (consuming setters, defaults,
//! `validate()` naming the bad field) and a name used in metrics and tracing. Every clone of a
//! layer's service shares one state (breaker, semaphore, limiter store, retry budget), so a
//! stack behaves the same however often the runtime clones it.

pub mod bulkhead;
pub mod circuit_breaker;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
