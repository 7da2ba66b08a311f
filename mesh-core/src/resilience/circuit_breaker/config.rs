use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ensure};

/// How the breaker's sliding window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlidingWindowType {
    /// The last `sliding_window_size` calls.
    #[default]
    CountBased,
    /// The calls of the last `sliding_window_size` seconds.
    TimeBased,
}

/// Configuration of a [`Breaker`](super::Breaker), named and defaulted as in Resilience4j.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::circuit_breaker::{CircuitBreakerConfig, SlidingWindowType};
///
/// let config = CircuitBreakerConfig::default()
///     .sliding_window_type(SlidingWindowType::TimeBased)
///     .sliding_window_size(10)
///     .minimum_number_of_calls(20)
///     .failure_rate_threshold(50.0)
///     .slow_call_duration_threshold(Duration::from_millis(500))
///     .wait_duration_in_open_state(Duration::from_secs(5));
/// assert!(config.validate().is_ok());
/// let bad = CircuitBreakerConfig::default().failure_rate_threshold(120.0);
/// assert_eq!(bad.validate().unwrap_err().field(), "failure_rate_threshold");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    pub(super) sliding_window_type: SlidingWindowType,
    pub(super) sliding_window_size: u32,
    pub(super) minimum_number_of_calls: u32,
    pub(super) failure_rate_threshold: f64,
    pub(super) slow_call_rate_threshold: f64,
    #[serde(with = "humantime_serde")]
    pub(super) slow_call_duration_threshold: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) wait_duration_in_open_state: Duration,
    pub(super) permitted_number_of_calls_in_half_open_state: u32,
    #[serde(with = "humantime_serde")]
    pub(super) max_wait_duration_in_half_open_state: Duration,
    pub(super) automatic_transition_from_open_to_half_open_enabled: bool,
}

/// The largest time-based window, in seconds (one bucket per second).
const MAX_TIME_WINDOW_SECS: u32 = 3600;
/// The largest count-based window and half-open trial size.
const MAX_COUNT_WINDOW: u32 = 100_000;

impl Default for CircuitBreakerConfig {
    /// Resilience4j's defaults: a count window of 100 calls, 100 calls minimum, 50% failure
    /// rate, 100% slow-call rate at 60 s, 60 s open, 10 half-open calls.
    fn default() -> Self {
        Self {
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_secs(60),
            wait_duration_in_open_state: Duration::from_secs(60),
            permitted_number_of_calls_in_half_open_state: 10,
            max_wait_duration_in_half_open_state: Duration::ZERO,
            automatic_transition_from_open_to_half_open_enabled: false,
        }
    }
}

impl CircuitBreakerConfig {
    /// Opens after `failures` failed calls in a row, waits 30 s, then tries one call.
    ///
    /// ```
    /// use mesh_core::resilience::circuit_breaker::CircuitBreakerConfig;
    /// let config = CircuitBreakerConfig::open_after_failures(5);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn open_after_failures(failures: u32) -> Self {
        Self::default()
            .sliding_window_size(failures)
            .minimum_number_of_calls(failures)
            .failure_rate_threshold(100.0)
            .wait_duration_in_open_state(Duration::from_secs(30))
            .permitted_number_of_calls_in_half_open_state(1)
            .automatic_transition_from_open_to_half_open_enabled(true)
    }

    /// Count-based (default) or time-based window.
    pub fn sliding_window_type(mut self, kind: SlidingWindowType) -> Self {
        self.sliding_window_type = kind;
        self
    }

    /// Calls (count-based) or seconds (time-based) in the window.
    pub fn sliding_window_size(mut self, size: u32) -> Self {
        self.sliding_window_size = size;
        self
    }

    /// Calls the window must hold before rates are evaluated. For a count-based window the
    /// effective minimum is at most the window size, as in Resilience4j.
    pub fn minimum_number_of_calls(mut self, calls: u32) -> Self {
        self.minimum_number_of_calls = calls;
        self
    }

    /// The failure rate, in percent, at or above which the circuit opens.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate_threshold = percent;
        self
    }

    /// The slow-call rate, in percent, at or above which the circuit opens.
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_call_rate_threshold = percent;
        self
    }

    /// Calls taking at least this long are slow.
    pub fn slow_call_duration_threshold(mut self, duration: Duration) -> Self {
        self.slow_call_duration_threshold = duration;
        self
    }

    /// How long the circuit stays open before trial calls.
    pub fn wait_duration_in_open_state(mut self, duration: Duration) -> Self {
        self.wait_duration_in_open_state = duration;
        self
    }

    /// Trial calls admitted in the half-open state.
    pub fn permitted_number_of_calls_in_half_open_state(mut self, calls: u32) -> Self {
        self.permitted_number_of_calls_in_half_open_state = calls;
        self
    }

    /// Reopens when trial calls have not decided within this time (zero: wait for them).
    pub fn max_wait_duration_in_half_open_state(mut self, duration: Duration) -> Self {
        self.max_wait_duration_in_half_open_state = duration;
        self
    }

    /// Moves to half-open when the wait ends, instead of on the first call after it.
    pub fn automatic_transition_from_open_to_half_open_enabled(mut self, enabled: bool) -> Self {
        self.automatic_transition_from_open_to_half_open_enabled = enabled;
        self
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max_window = match self.sliding_window_type {
            SlidingWindowType::CountBased => MAX_COUNT_WINDOW,
            SlidingWindowType::TimeBased => MAX_TIME_WINDOW_SECS,
        };
        ensure(
            (1..=max_window).contains(&self.sliding_window_size),
            "sliding_window_size",
            "must be at least 1 and at most 100000 calls or 3600 seconds",
        )?;
        ensure(
            self.minimum_number_of_calls >= 1,
            "minimum_number_of_calls",
            "must be at least 1",
        )?;
        let percent = |p: f64| p > 0.0 && p <= 100.0;
        ensure(
            percent(self.failure_rate_threshold),
            "failure_rate_threshold",
            "must be above 0 and at most 100",
        )?;
        ensure(
            percent(self.slow_call_rate_threshold),
            "slow_call_rate_threshold",
            "must be above 0 and at most 100",
        )?;
        ensure(
            !self.slow_call_duration_threshold.is_zero(),
            "slow_call_duration_threshold",
            "must be greater than zero",
        )?;
        ensure(
            self.wait_duration_in_open_state >= Duration::from_millis(1),
            "wait_duration_in_open_state",
            "must be at least 1ms",
        )?;
        ensure(
            (1..=MAX_COUNT_WINDOW).contains(&self.permitted_number_of_calls_in_half_open_state),
            "permitted_number_of_calls_in_half_open_state",
            "must be between 1 and 100000",
        )
    }
}
