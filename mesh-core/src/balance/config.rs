use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ensure};

/// How an instance is picked for a request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Power of two choices over peak-EWMA latency weighted by in-flight requests.
    #[default]
    PeakEwma,
    /// Each instance in turn.
    RoundRobin,
    /// At random, in proportion to instance weights.
    Weighted,
    /// By the hash of a request header's value, on a ring with virtual nodes: a key stays on
    /// its instance while the pool changes, except for the share that must move.
    ConsistentHash {
        /// The header whose value is the key; requests without it are spread at random.
        header: String,
    },
}

/// Outlier ejection settings (Envoy's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EjectionConfig {
    /// Failures in a row that eject an instance (0 disables ejection).
    pub consecutive_failures: u32,
    /// Ejection time for the first ejection; the n-th lasts n times as long.
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// The largest share of the pool, in percent, ejected at once (at least one instance).
    pub max_ejection_percent: u32,
}

/// Configuration of the [`Balance`](super::Balance) layer.
///
/// ```
/// use mesh_core::balance::{BalanceConfig, Strategy};
/// let config = BalanceConfig::default().strategy(Strategy::RoundRobin);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalanceConfig {
    pub(super) strategy: Strategy,
    #[serde(with = "humantime_serde")]
    pub(super) default_rtt: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) decay: Duration,
    pub(super) ejection: EjectionConfig,
}

impl Default for EjectionConfig {
    /// 5 failures in a row, 30 s base, 5 min at most, half the pool at most.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

impl Default for BalanceConfig {
    /// Peak-EWMA with linkerd's defaults (30 ms initial latency, 10 s decay) and default
    /// ejection.
    fn default() -> Self {
        Self {
            strategy: Strategy::PeakEwma,
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            ejection: EjectionConfig::default(),
        }
    }
}

impl BalanceConfig {
    /// The selection strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The latency assumed for an instance before it answered.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// How fast a latency peak is forgotten.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// Outlier ejection settings.
    pub fn ejection(mut self, ejection: EjectionConfig) -> Self {
        self.ejection = ejection;
        self
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.decay.is_zero(), "decay", "must be greater than zero")?;
        if let Strategy::ConsistentHash { header } = &self.strategy {
            ensure(
                http::header::HeaderName::try_from(header.as_str()).is_ok(),
                "strategy.header",
                "must name a valid header",
            )?;
        }
        ensure(
            self.ejection.max_ejection_percent <= 100,
            "ejection.max_ejection_percent",
            "must be at most 100",
        )?;
        ensure(
            self.ejection.base_ejection_time <= self.ejection.max_ejection_time,
            "ejection.base_ejection_time",
            "must not exceed max_ejection_time",
        )
    }
}
