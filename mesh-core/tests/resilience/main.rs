//! Behaviour tests of the resilience layers, on tower-test mocks and tokio's paused clock.

mod bulkhead;
mod circuit_breaker;
mod circuit_breaker_model;
mod rate_limit;
mod retry;
mod support;
mod timeout;
