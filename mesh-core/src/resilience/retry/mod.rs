//! Retries with exponential backoff, full jitter and a retry budget.
//!
//! [`Retry`] retries a call when the [`Classify`] policy says its outcome is retryable (by
//! default: connection errors, timeouts, and 502/503/504), up to `max_attempts`, sleeping an
//! exponentially growing, fully jittered delay between attempts. Three rules keep retries from
//! making an outage worse:
//!
//! - a **retry budget** (as Finagle and linkerd): retries may add at most `percent_can_retry` of
//!   recent requests plus `min_retries_per_second`, so a failing upstream sees little extra load;
//! - only **idempotent methods** (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are retried unless
//!   the request carries the [`Idempotent`] extension or the config allows every method;
//! - the request body is buffered for replay only up to `max_replay_body_bytes`; a larger
//!   body is streamed once and never retried, and no retry starts past the request's
//!   [`Deadline`](crate::resilience::timeout::Deadline).

mod backoff;
mod body;
mod budget;
mod classify;
mod config;
mod error;
mod head;
mod layer;
mod service;

pub use self::{
    backoff::Backoff,
    classify::{Classify, RetryOnStatus},
    config::{RetryBudgetConfig, RetryConfig},
    error::NotSent,
    layer::RetryLayer,
    service::{ResponseFuture, Retry},
};

/// A request extension marking a call safe to retry whatever its method (the route says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Idempotent;
