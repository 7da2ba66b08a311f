use serde::Deserialize;

use crate::{
    balance::BalanceConfig,
    error::ConfigError,
    resilience::{
        bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig,
        rate_limit::RateLimitConfig, retry::RetryConfig, timeout::TimeoutConfig,
    },
};

/// The settings of a [`MeshClient`](super::MeshClient) for one service: the
/// `clients.<service>` section of the configuration.
///
/// ```yaml
/// clients:
///   inventory-service:
///     timeout: { timeout: 2s }
///     retry: { max_attempts: 3, initial_backoff: 50ms }
///     circuit_breaker: { sliding_window_size: 10, failure_rate_threshold: 50 }
///     bulkhead: { max_concurrent_calls: 64 }
///     rate_limit: { replenish_rate: 100, burst_capacity: 200 }
///     disable: [bulkhead]
///     instances: ["127.0.0.1:9001"]   # a fixed list instead of the registry
///     token_relay: caller              # the caller's token goes along (`off`: never)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// Per-call timeout and deadline propagation.
    pub timeout: TimeoutConfig,
    /// Retries with backoff and budget.
    pub retry: RetryConfig,
    /// The per-service circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Concurrency limit.
    pub bulkhead: BulkheadConfig,
    /// An optional rate limit on calls to the service; none by default.
    pub rate_limit: Option<RateLimitConfig>,
    /// Load balancing and outlier ejection.
    pub balance: BalanceConfig,
    /// Layers switched off.
    pub disable: Vec<Switchable>,
    /// Fixed instances (`host:port`) used instead of discovery.
    pub instances: Vec<String>,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Largest response body the JSON helpers read.
    pub max_response_bytes: usize,
    /// Whether a call made while serving a verified request carries that request's token
    /// (`caller`, the default) or none of its own (`off`).
    pub token_relay: TokenRelay,
}

/// What a call carries of the caller being served: `clients.<service>.token_relay`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRelay {
    /// The current [`Caller`](crate::auth::Caller)'s bearer token goes along as
    /// `Authorization`, unless the call sets its own: the next service sees the end user.
    #[default]
    Caller,
    /// Nothing is added.
    Off,
}

/// A client layer that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Switchable {
    /// The timeout (deadline propagation goes with it).
    Timeout,
    /// Retries.
    Retry,
    /// The circuit breaker.
    CircuitBreaker,
    /// The bulkhead.
    Bulkhead,
}

/// Default cap on a response body read by the JSON helpers: 16 MiB.
pub(super) const DEFAULT_MAX_RESPONSE_BYTES: usize = crate::http1::Limits::ANSWER.body_bytes;

impl ClientSettings {
    /// Whether `layer` is on.
    pub fn enabled(&self, layer: Switchable) -> bool {
        !self.disable.contains(&layer)
    }

    /// The body cap, its default when unset.
    pub(super) fn response_limit(&self) -> usize {
        if self.max_response_bytes == 0 {
            DEFAULT_MAX_RESPONSE_BYTES
        } else {
            self.max_response_bytes
        }
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.timeout.validate()?;
        self.retry.validate()?;
        self.circuit_breaker.validate()?;
        self.bulkhead.validate()?;
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.validate()?;
        }
        self.balance.validate()
    }
}
