use std::{cell::RefCell, time::Duration};

use http::{
    HeaderMap, HeaderValue,
    header::{HeaderName, RETRY_AFTER},
};

// Spring Cloud Gateway's names, parsed once rather than on each answer.
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const REPLENISH_RATE: HeaderName = HeaderName::from_static("x-ratelimit-replenish-rate");
const BURST_CAPACITY: HeaderName = HeaderName::from_static("x-ratelimit-burst-capacity");
const REQUESTED_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-requested-tokens");

/// The rate a key may use: `replenish_rate` tokens per `period`, `burst_capacity` at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Tokens added per period.
    pub replenish_rate: u32,
    /// The bucket's size.
    pub burst_capacity: u32,
    /// The period `replenish_rate` is counted over.
    pub period: Duration,
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u32,
    retry_after: Duration,
    quota: Quota,
    requested: u32,
}

impl Quota {
    /// Microseconds between two tokens (GCRA's emission interval), at least 1.
    pub(crate) fn interval_micros(&self) -> u64 {
        (self.period.as_micros() / u128::from(self.replenish_rate.max(1))).max(1) as u64
    }
}

impl Decision {
    /// An admission that did not consult a store (fail-open after a store error).
    pub(crate) fn unchecked(quota: Quota, requested: u32) -> Self {
        Self {
            allowed: true,
            remaining: 0,
            retry_after: Duration::ZERO,
            quota,
            requested,
        }
    }

    /// Builds a decision from a store's raw answer.
    pub(crate) fn from_parts(
        allowed: bool,
        remaining: u64,
        retry_after_micros: u64,
        quota: Quota,
        requested: u32,
    ) -> Self {
        Self {
            allowed,
            remaining: remaining.min(u64::from(quota.burst_capacity)) as u32,
            retry_after: Duration::from_micros(retry_after_micros),
            quota,
            requested,
        }
    }

    /// Whether the call may proceed.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Whole tokens left in the bucket after this decision.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the refused call would be admitted (zero when allowed).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The quota the decision was made under.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Writes `X-RateLimit-Remaining`, `-Replenish-Rate`, `-Burst-Capacity`,
    /// `-Requested-Tokens` (Spring Cloud Gateway's names) and, when refused, `Retry-After` in
    /// whole seconds, rounded up.
    ///
    /// ```
    /// # use mesh_core::resilience::rate_limit::{LocalStore, Quota, RateLimitStore};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let quota = Quota { replenish_rate: 1, burst_capacity: 1, period: Duration::from_secs(1) };
    /// let store = LocalStore::new();
    /// store.check("k", quota, 1, 0).await.unwrap();
    /// let refused = store.check("k", quota, 1, 0).await.unwrap();
    /// let mut headers = http::HeaderMap::new();
    /// refused.write_headers(&mut headers);
    /// assert_eq!(headers["retry-after"], "1");
    /// assert_eq!(headers["x-ratelimit-remaining"], "0");
    /// # }
    /// ```
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(REMAINING, self.remaining.into());
        let [replenish_rate, burst_capacity, requested] = quota_values(self);
        headers.insert(REPLENISH_RATE, replenish_rate);
        headers.insert(BURST_CAPACITY, burst_capacity);
        headers.insert(REQUESTED_TOKENS, requested);
        if !self.allowed {
            let secs = self.retry_after.as_micros().div_ceil(1_000_000).max(1);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs as u64));
        }
    }
}

/// The values of `X-RateLimit-Replenish-Rate`, `-Burst-Capacity` and `-Requested-Tokens`.
/// They are a limiter's constants, so the last ones are kept per thread: answers clone them
/// rather than format and allocate three values each.
fn quota_values(decision: &Decision) -> [HeaderValue; 3] {
    type Values = Option<([u32; 3], [HeaderValue; 3])>;
    thread_local! {
        static LAST: RefCell<Values> = const { RefCell::new(None) };
    }
    let numbers = [
        decision.quota.replenish_rate,
        decision.quota.burst_capacity,
        decision.requested,
    ];
    LAST.with_borrow_mut(|last| match last {
        Some((cached, values)) if *cached == numbers => values.clone(),
        _ => {
            let values = numbers.map(HeaderValue::from);
            *last = Some((numbers, values.clone()));
            values
        }
    })
}

/// GCRA: given the key's stored theoretical arrival time, decides and returns the new one.
/// All times are microseconds; the Redis script performs the same arithmetic.
pub(crate) fn decide(
    stored_tat: Option<u64>,
    now: u64,
    quota: Quota,
    requested: u32,
) -> (Decision, Option<u64>) {
    let interval = quota.interval_micros();
    let tolerance = interval * u64::from(quota.burst_capacity);
    let tat = stored_tat.unwrap_or(now).max(now);
    let new_tat = tat + interval * u64::from(requested);
    let allow_at = new_tat.saturating_sub(tolerance);
    if now < allow_at {
        // Saturating: a quota shrunk by a live reload may leave an old TAT beyond the bucket.
        let remaining = tolerance.saturating_sub(tat - now) / interval;
        let decision = Decision::from_parts(false, remaining, allow_at - now, quota, requested);
        (decision, None)
    } else {
        let remaining = (tolerance - (new_tat - now)) / interval;
        let decision = Decision::from_parts(true, remaining, 0, quota, requested);
        (decision, Some(new_tat))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn quota(rate: u32, burst: u32) -> Quota {
        Quota {
            replenish_rate: rate,
            burst_capacity: burst,
            period: Duration::from_secs(1),
        }
    }

    /// The quota's values are kept per thread between answers: a decision under another
    /// quota (another limiter's) still writes its own.
    #[test]
    fn headers_tell_each_decisions_own_quota() {
        let headers_of = |rate, burst, requested| {
            let (decision, _) = decide(None, 0, quota(rate, burst), requested);
            let mut headers = HeaderMap::new();
            decision.write_headers(&mut headers);
            [
                "x-ratelimit-remaining",
                "x-ratelimit-replenish-rate",
                "x-ratelimit-burst-capacity",
                "x-ratelimit-requested-tokens",
            ]
            .map(|name| headers[name].to_str().unwrap().to_owned())
        };
        assert_eq!(headers_of(10, 20, 1), ["19", "10", "20", "1"]);
        assert_eq!(headers_of(10, 20, 1), ["19", "10", "20", "1"]);
        assert_eq!(headers_of(5, 7, 2), ["5", "5", "7", "2"]);
        assert_eq!(headers_of(10, 20, 3), ["17", "10", "20", "3"]);
    }

    proptest! {
        /// However calls arrive, no window of time admits more tokens than the bucket plus
        /// what refilled during it.
        #[test]
        fn never_admits_more_than_burst_plus_refill(
            rate in 1u32..50,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..200_000, 1..200),
        ) {
            let quota = quota(rate, burst);
            let mut tat = None;
            let mut now = 0;
            let mut admitted = 0u64;
            for gap in gaps {
                now += gap;
                let (decision, new_tat) = decide(tat, now, quota, 1);
                if decision.allowed() {
                    admitted += 1;
                    tat = new_tat;
                } else {
                    prop_assert!(decision.retry_after() > Duration::ZERO);
                }
            }
            let refill = now / quota.interval_micros();
            prop_assert!(admitted <= u64::from(burst) + refill);
        }
    }
}
