use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ensure};

/// Configuration of the [`Bulkhead`](super::Bulkhead) layer, named as in Resilience4j.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::bulkhead::BulkheadConfig;
///
/// let config = BulkheadConfig::default()
///     .max_concurrent_calls(10)
///     .max_wait_duration(Duration::from_millis(20));
/// assert!(config.validate().is_ok());
/// assert_eq!(
///     BulkheadConfig::default().max_concurrent_calls(0).validate().unwrap_err().field(),
///     "max_concurrent_calls",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    pub(super) max_concurrent_calls: usize,
    #[serde(with = "humantime_serde")]
    pub(super) max_wait_duration: Duration,
}

/// The most slots a bulkhead counts.
const MAX_PERMITS: usize = usize::MAX >> 3;

impl Default for BulkheadConfig {
    /// Resilience4j's defaults: 25 concurrent calls, no waiting.
    fn default() -> Self {
        Self {
            max_concurrent_calls: 25,
            max_wait_duration: Duration::ZERO,
        }
    }
}

impl BulkheadConfig {
    /// Calls allowed in flight at once.
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls;
        self
    }

    /// How long a call may wait for a slot before [`BulkheadFull`](super::BulkheadFull).
    pub fn max_wait_duration(mut self, wait: Duration) -> Self {
        self.max_wait_duration = wait;
        self
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1..=MAX_PERMITS).contains(&self.max_concurrent_calls),
            "max_concurrent_calls",
            "must be at least 1",
        )
    }
}
