use std::time::Duration;

/// Exponential backoff with optional full jitter (AWS's "full jitter": a uniform delay between
/// zero and the exponentially growing cap).
///
/// ```
/// use std::time::Duration;
/// use mesh_core::resilience::retry::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1), false);
/// assert_eq!(backoff.delay(1), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3), Duration::from_millis(400));
/// assert_eq!(backoff.delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// A backoff starting at `initial`, growing by `multiplier`, capped at `max`.
    pub const fn new(initial: Duration, multiplier: f64, max: Duration, jitter: bool) -> Self {
        Self {
            initial,
            multiplier,
            max,
            jitter,
        }
    }

    /// The cap before retry number `retry` (1 for the first retry).
    pub fn cap(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(i32::MAX as u32) as i32;
        let factor = self.multiplier.powi(exponent);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(secs).map_or(self.max, |cap| cap.min(self.max))
    }

    /// The delay before retry number `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.cap(retry);
        if self.jitter {
            cap.mul_f64(fastrand::f64())
        } else {
            cap
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn delays_stay_within_the_cap(
            initial_ms in 0u64..10_000,
            extra_ms in 0u64..60_000,
            multiplier in 1.0f64..10.0,
            retry in 1u32..200,
        ) {
            let max = Duration::from_millis(initial_ms + extra_ms);
            let backoff = Backoff::new(Duration::from_millis(initial_ms), multiplier, max, true);
            let cap = backoff.cap(retry);
            prop_assert!(cap <= max);
            prop_assert!(backoff.cap(retry + 1) >= cap, "caps never shrink");
            prop_assert!(backoff.delay(retry) <= cap);
        }
    }
}
