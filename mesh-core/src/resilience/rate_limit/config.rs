use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{KeySource, Quota};
use crate::error::{ConfigError, ensure};

/// What the limiter does when its store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Admit the call (Spring Cloud Gateway's behaviour): availability over strictness.
    #[default]
    FailOpen,
    /// Refuse the call with [`StoreUnavailable`](super::StoreUnavailable).
    FailClosed,
}

/// Configuration of the [`RateLimit`](super::RateLimit) layer.
///
/// Spring Cloud Gateway's `RedisRateLimiter` settings map one to one, and its camelCase names
/// are accepted as written:
///
/// ```
/// use mesh_core::resilience::rate_limit::{KeySource, RateLimitConfig};
///
/// let config: RateLimitConfig = serde_json::from_str(
///     r#"{"replenishRate": 10, "burstCapacity": 20, "requestedTokens": 1, "key": "peer_ip"}"#,
/// ).unwrap();
/// assert_eq!(
///     config,
///     RateLimitConfig::default()
///         .replenish_rate(10)
///         .burst_capacity(20)
///         .requested_tokens(1)
///         .key(KeySource::PeerIp),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(alias = "replenishRate")]
    pub(super) replenish_rate: u32,
    #[serde(alias = "burstCapacity")]
    pub(super) burst_capacity: u32,
    #[serde(alias = "requestedTokens")]
    pub(super) requested_tokens: u32,
    #[serde(with = "humantime_serde")]
    pub(super) period: Duration,
    pub(super) key: KeySource,
    pub(super) failure_policy: FailurePolicy,
    #[serde(with = "humantime_serde")]
    pub(super) store_timeout: Duration,
    #[serde(alias = "includeHeaders")]
    pub(super) include_headers: bool,
}

impl Default for RateLimitConfig {
    /// 10 tokens per second, a burst of 20, one token per call, one global bucket, fail open,
    /// 50 ms for the store to answer, and admitted responses without the decision.
    fn default() -> Self {
        Self {
            replenish_rate: 10,
            burst_capacity: 20,
            requested_tokens: 1,
            period: Duration::from_secs(1),
            key: KeySource::Global,
            failure_policy: FailurePolicy::FailOpen,
            store_timeout: Duration::from_millis(50),
            include_headers: false,
        }
    }
}

impl RateLimitConfig {
    /// Tokens added per period (Spring's `replenishRate`).
    pub fn replenish_rate(mut self, rate: u32) -> Self {
        self.replenish_rate = rate;
        self
    }

    /// The most tokens a key can hold (Spring's `burstCapacity`).
    pub fn burst_capacity(mut self, burst: u32) -> Self {
        self.burst_capacity = burst;
        self
    }

    /// Tokens each call costs (Spring's `requestedTokens`).
    pub fn requested_tokens(mut self, tokens: u32) -> Self {
        self.requested_tokens = tokens;
        self
    }

    /// The period `replenish_rate` is counted over (default one second; Spring expresses
    /// "1 request per minute" as `replenishRate: 1, requestedTokens: 60`, here it is also
    /// `replenish_rate: 1, period: 1m`).
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// What the bucket is keyed by.
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// Fail open or closed when the store cannot answer.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// How long the store may take before the failure policy applies.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Whether admitted responses carry the limiter's [`Decision`](super::Decision) as an
    /// extension, from which HTTP layers write `X-RateLimit-*` headers (Spring's
    /// `includeHeaders`; the gateway writes them). Off by default: it costs an allocation per
    /// response, and the headers tell every caller its quota. Refusals always carry theirs.
    pub fn include_headers(mut self, include: bool) -> Self {
        self.include_headers = include;
        self
    }

    /// Whether admitted responses carry the decision (see
    /// [`include_headers`](Self::include_headers)).
    pub fn includes_headers(&self) -> bool {
        self.include_headers
    }

    /// The quota this configuration grants each key.
    pub fn quota(&self) -> Quota {
        Quota {
            replenish_rate: self.replenish_rate,
            burst_capacity: self.burst_capacity,
            period: self.period,
        }
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.replenish_rate >= 1,
            "replenish_rate",
            "must be at least 1",
        )?;
        ensure(
            self.burst_capacity >= 1,
            "burst_capacity",
            "must be at least 1",
        )?;
        ensure(
            (1..=self.burst_capacity).contains(&self.requested_tokens),
            "requested_tokens",
            "must be between 1 and burst_capacity",
        )?;
        ensure(
            self.period >= Duration::from_millis(1) && self.period <= Duration::from_secs(86_400),
            "period",
            "must be between 1ms and 1 day",
        )?;
        ensure(
            self.period.as_micros() >= u128::from(self.replenish_rate),
            "replenish_rate",
            "must not exceed one token per microsecond",
        )?;
        if let KeySource::Header(name) = &self.key {
            ensure(
                http::header::HeaderName::try_from(name.as_str()).is_ok(),
                "key",
                "must name a valid header",
            )?;
        }
        ensure(
            !self.store_timeout.is_zero(),
            "store_timeout",
            "must be greater than zero",
        )
    }
}
