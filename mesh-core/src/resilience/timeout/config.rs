use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ensure};

/// Configuration of the [`Timeout`](super::Timeout) layer.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::timeout::TimeoutConfig;
///
/// let config = TimeoutConfig::default().timeout(Duration::from_millis(800));
/// assert!(config.validate().is_ok());
/// assert_eq!(TimeoutConfig::default().timeout(Duration::ZERO).validate().unwrap_err().field(), "timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    #[serde(with = "humantime_serde")]
    pub(super) timeout: Duration,
    pub(super) propagate: bool,
}

impl Default for TimeoutConfig {
    /// A 10 s timeout (tarpc's default deadline), propagated downstream.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            propagate: true,
        }
    }
}

impl TimeoutConfig {
    /// The longest a call may take, including every retry behind this layer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the remaining budget is sent downstream in the
    /// [`TIMEOUT_HEADER`](super::TIMEOUT_HEADER) (default `true`).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            !self.timeout.is_zero(),
            "timeout",
            "must be greater than zero",
        )
    }
}
