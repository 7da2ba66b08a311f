//! A circuit breaker with Resilience4j's semantics, and a fallback combinator.
//!
//! A [`Breaker`] records the outcome and duration of every call in a count-based or time-based
//! sliding window. Once the window holds `minimum_number_of_calls`, a failure rate or slow-call
//! rate at or above its threshold opens the circuit: calls fail fast with [`CircuitOpen`]
//! without reaching the upstream. After `wait_duration_in_open_state` the breaker lets
//! `permitted_number_of_calls_in_half_open_state` trial calls through; their rates decide
//! whether it closes again or reopens. It can also be disabled or forced open by hand, and
//! every state change is published on an event stream ([`Breaker::subscribe`]), logged and
//! counted in metrics.
//!
//! "After 5 payment failures the circuit opens":
//!
//! ```
//! use mesh_core::resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//!
//! let payment = CircuitBreakerLayer::new("payment", CircuitBreakerConfig::open_after_failures(5));
//! # let _ = payment;
//! ```
//!
//! A call that started in an earlier state (say, a slow call still running when the circuit
//! opened) does not count towards the state it finishes in: only calls the current state
//! admitted decide its next transition.

mod breaker;
mod classify;
mod config;
mod error;
mod fallback;
mod future;
mod layer;
mod machine;
mod service;
mod set;
mod window;

pub use self::{
    breaker::{Breaker, CallPermit, Metrics},
    classify::{Classify, ErrorsAreFailures, Outcome, ServerErrorsAreFailures},
    config::{CircuitBreakerConfig, SlidingWindowType},
    error::CircuitOpen,
    fallback::{Fallback, FallbackFuture, FallbackLayer},
    future::ResponseFuture,
    layer::CircuitBreakerLayer,
    machine::{State, StateTransition},
    service::CircuitBreaker,
    set::BreakerSet,
};
