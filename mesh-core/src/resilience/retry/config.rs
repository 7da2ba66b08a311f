use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ensure};

/// Configuration of the [`Retry`](super::Retry) layer.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::retry::RetryConfig;
///
/// let config = RetryConfig::default()
///     .max_attempts(4)
///     .initial_backoff(Duration::from_millis(50))
///     .max_backoff(Duration::from_secs(1));
/// assert!(config.validate().is_ok());
/// assert_eq!(RetryConfig::default().max_attempts(0).validate().unwrap_err().field(), "max_attempts");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub(super) max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub(super) initial_backoff: Duration,
    pub(super) multiplier: f64,
    #[serde(with = "humantime_serde")]
    pub(super) max_backoff: Duration,
    pub(super) jitter: bool,
    pub(super) retry_on_status: Vec<u16>,
    pub(super) retry_non_idempotent: bool,
    pub(super) max_replay_body_bytes: usize,
    pub(super) budget: RetryBudgetConfig,
}

/// The retry budget: how many retries recent traffic earns.
///
/// Every request deposits `percent_can_retry` of a retry; every retry withdraws one; on top,
/// `min_retries_per_second` are always allowed. Deposits expire after `ttl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    #[serde(with = "humantime_serde")]
    pub(super) ttl: Duration,
    pub(super) min_retries_per_second: u32,
    pub(super) percent_can_retry: f32,
}

// === impl RetryConfig ===

impl Default for RetryConfig {
    /// Three attempts, 100 ms initial backoff doubling up to 2 s with full jitter, retrying
    /// 502/503/504, 64 KiB replay buffer, and the default budget.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(2),
            jitter: true,
            retry_on_status: vec![502, 503, 504],
            retry_non_idempotent: false,
            max_replay_body_bytes: 64 * 1024,
            budget: RetryBudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Total attempts, the first included (`1` disables retries).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The delay cap before the first retry.
    pub fn initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// The factor the delay cap grows by with each retry.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The largest delay between attempts.
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Full jitter (a uniform delay between zero and the cap) when `true`, the cap itself when
    /// `false`.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The response statuses worth retrying.
    pub fn retry_on_status(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_on_status = statuses.into_iter().collect();
        self
    }

    /// Retries every method, not only idempotent ones. Use for routes known to be safe.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// The largest request body kept for replay; larger bodies are sent once, without retries.
    pub fn max_replay_body_bytes(mut self, bytes: usize) -> Self {
        self.max_replay_body_bytes = bytes;
        self
    }

    /// The retry budget.
    pub fn budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "multiplier",
            "must be a finite number of at least 1",
        )?;
        ensure(
            self.initial_backoff <= self.max_backoff,
            "initial_backoff",
            "must not exceed max_backoff",
        )?;
        ensure(
            self.retry_on_status.iter().all(|s| (100..600).contains(s)),
            "retry_on_status",
            "must hold HTTP status codes (100-599)",
        )?;
        self.budget.validate()
    }
}

// === impl RetryBudgetConfig ===

impl Default for RetryBudgetConfig {
    /// Finagle's and linkerd's defaults: 20% of requests plus 10 retries per second over 10 s.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_retries_per_second: 10,
            percent_can_retry: 0.2,
        }
    }
}

impl RetryBudgetConfig {
    /// How long a request's deposit counts (1 s to 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries always allowed per second, whatever the traffic.
    pub fn min_retries_per_second(mut self, min: u32) -> Self {
        self.min_retries_per_second = min;
        self
    }

    /// The share of recent requests that may be retried (0.2 = 20%; at most 1000).
    pub fn percent_can_retry(mut self, percent: f32) -> Self {
        self.percent_can_retry = percent;
        self
    }

    /// Checks the budget, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl),
            "budget.ttl",
            "must be between 1s and 60s",
        )?;
        ensure(
            self.min_retries_per_second < i32::MAX as u32,
            "budget.min_retries_per_second",
            "is too large",
        )?;
        ensure(
            (0.0..=1000.0).contains(&self.percent_can_retry),
            "budget.percent_can_retry",
            "must be between 0 and 1000",
        )
    }
}
