//! Observability: W3C trace-context propagation, Prometheus metrics and health checks.
//!
//! A server extracts the caller's `traceparent` (or starts a trace) and makes it the
//! [current](TraceContext::current) context of the handler's task; every call the handler
//! makes through a `MeshClient` carries a child of it, so one
//! trace ID follows a request across services and into logs and error bodies.

#[cfg(feature = "runtime")]
pub mod health;
#[cfg(feature = "runtime")]
pub mod prometheus;
mod trace;

pub use self::trace::{TRACEPARENT, TraceContext};
