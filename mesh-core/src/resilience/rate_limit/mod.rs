//! Rate limiting with GCRA, keyed per caller, on a local or a Redis store.
//!
//! The generic cell rate algorithm keeps one timestamp per key (the theoretical arrival time),
//! which makes it a token bucket without the bookkeeping: `replenish_rate` tokens per `period`,
//! at most `burst_capacity` at once, `requested_tokens` per call — exactly Spring Cloud
//! Gateway's `RedisRateLimiter` parameters. The key comes from a [`KeySource`]: one global
//! bucket, a header, the peer IP or the authenticated subject.
//!
//! Two stores behave the same: [`LocalStore`] (a dashmap, the embedded default, expired keys
//! swept) and, with the `redis` feature, [`RedisStore`] (one atomic Lua script per decision,
//! keys expiring with the bucket), so several replicas share one limit. When the store fails,
//! the [`FailurePolicy`] admits (fail open) or refuses (fail closed) the call.
//!
//! Every [`Decision`] carries `remaining` and `retry_after`: a refusal is the [`RateLimited`]
//! error, an admission rides along as a response extension when the configuration asks for it
//! ([`RateLimitConfig::include_headers`]), and [`Decision::write_headers`] turns either into
//! `Retry-After` and `X-RateLimit-*` headers.

mod config;
mod error;
mod gcra;
mod health;
mod key;
mod layer;
mod local;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::{
    config::{FailurePolicy, RateLimitConfig},
    error::{MissingKey, RateLimited, StoreUnavailable},
    gcra::{Decision, Quota},
    key::{KeyParts, KeySource},
    layer::RateLimitLayer,
    local::LocalStore,
    service::{RateLimit, ResponseFuture},
    store::{RateLimitStore, StoreError, StoreFuture},
};
