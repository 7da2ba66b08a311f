//! What an instance tells the registry about itself with each renewal: its request rate, error
//! rate and latency since the last renewal, and the state of each circuit breaker it calls
//! through. The registry's dashboard shows it; nothing routes by it.
//!
//! A summary is small and bounded: at most [`MAX_BREAKERS`] breakers, names of at most
//! [`MAX_NAME_BYTES`], and [`MAX_SUMMARY_BYTES`] encoded. A registry refuses a larger one.

use serde::{Deserialize, Serialize};

use crate::resilience::circuit_breaker::State;

/// The most circuit breakers one summary names.
pub const MAX_BREAKERS: usize = 32;
/// The longest breaker name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// The largest summary a registry accepts, encoded as JSON.
pub const MAX_SUMMARY_BYTES: usize = 8 * 1024;

/// One instance's traffic and breakers, as reported with a renewal.
///
/// ```
/// use mesh_core::registry::summary::{BreakerSummary, InstanceSummary};
/// use mesh_core::resilience::circuit_breaker::State;
///
/// let summary = InstanceSummary {
///     requests_per_second: 120.0,
///     error_rate: 0.02,
///     mean_latency_ms: 3.5,
///     breakers: vec![BreakerSummary { name: "payment-service".into(), state: State::Open, failure_rate: 0.8 }],
/// };
/// assert!(summary.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSummary {
    /// Requests answered per second since the previous summary.
    pub requests_per_second: f64,
    /// The share of those answers that were server errors (5xx), from 0 to 1.
    pub error_rate: f64,
    /// The mean time to answer them, in milliseconds.
    pub mean_latency_ms: f64,
    /// The circuit breakers of the services this instance calls.
    #[serde(default)]
    pub breakers: Vec<BreakerSummary>,
}

/// A circuit breaker's state, named after the service it guards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSummary {
    /// The breaker's name: the called service's ID.
    pub name: String,
    /// Its state.
    pub state: State,
    /// The failure rate of its current window, from 0 to 1 (0 while the window is empty).
    pub failure_rate: f64,
}

impl InstanceSummary {
    /// Checks the bounds a registry enforces, naming the first one crossed.
    pub fn validate(&self) -> Result<(), &'static str> {
        let rates = [
            self.requests_per_second,
            self.error_rate,
            self.mean_latency_ms,
        ];
        if rates.iter().any(|rate| !rate.is_finite() || *rate < 0.0) || self.error_rate > 1.0 {
            return Err("rates must be finite and not negative, and error_rate at most 1");
        }
        if self.breakers.len() > MAX_BREAKERS {
            return Err("a summary names at most 32 circuit breakers");
        }
        for breaker in &self.breakers {
            if breaker.name.is_empty() || breaker.name.len() > MAX_NAME_BYTES {
                return Err("a breaker name has 1 to 128 bytes");
            }
            if !(0.0..=1.0).contains(&breaker.failure_rate) {
                return Err("a breaker's failure_rate is from 0 to 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(name: &str) -> BreakerSummary {
        BreakerSummary {
            name: name.into(),
            state: State::HalfOpen,
            failure_rate: 0.5,
        }
    }

    #[test]
    fn reads_back_what_it_writes_with_state_names_as_resilience4j_spells_them() {
        let summary = InstanceSummary {
            requests_per_second: 10.0,
            error_rate: 0.1,
            mean_latency_ms: 2.0,
            breakers: vec![breaker("payment-service")],
        };
        let json = serde_json::to_string(&summary).unwrap();
        assert!(json.contains(r#""state":"HALF_OPEN""#), "{json}");
        assert_eq!(
            serde_json::from_str::<InstanceSummary>(&json).unwrap(),
            summary
        );
    }

    #[test]
    fn bounds_are_enforced() {
        let valid = InstanceSummary::default();
        assert!(valid.validate().is_ok());
        let too_many = InstanceSummary {
            breakers: (0..=MAX_BREAKERS)
                .map(|i| breaker(&format!("s{i}")))
                .collect(),
            ..valid.clone()
        };
        assert!(too_many.validate().is_err());
        let long_name = InstanceSummary {
            breakers: vec![breaker(&"x".repeat(MAX_NAME_BYTES + 1))],
            ..valid.clone()
        };
        assert!(long_name.validate().is_err());
        let not_a_rate = InstanceSummary {
            error_rate: f64::NAN,
            ..valid.clone()
        };
        assert!(not_a_rate.validate().is_err());
        let negative = InstanceSummary {
            requests_per_second: -1.0,
            ..valid
        };
        assert!(negative.validate().is_err());
    }

    #[test]
    fn unknown_fields_and_states_are_refused() {
        assert!(
            serde_json::from_str::<InstanceSummary>(
                r#"{"requests_per_second":1,"error_rate":0,"mean_latency_ms":0,"extra":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<InstanceSummary>(r#"{"requests_per_second":1,"error_rate":0,"mean_latency_ms":0,"breakers":[{"name":"a","state":"AJAR","failure_rate":0}]}"#).is_err());
    }
}
