//! The breakers of one process part (a mesh's clients), listed for reporting.

use std::sync::Mutex;

use super::{Breaker, breaker::WeakBreaker};

/// The breakers created for one purpose, such as every client of a mesh, held weakly: a
/// breaker dropped with its client leaves the set on its own.
///
/// ```
/// use mesh_core::resilience::circuit_breaker::{Breaker, BreakerSet, CircuitBreakerConfig};
///
/// let set = BreakerSet::default();
/// let payment = Breaker::new("payment", CircuitBreakerConfig::default()).unwrap();
/// set.track(&payment);
/// set.track(&payment);
/// assert_eq!(set.breakers().len(), 1);
/// drop(payment);
/// assert!(set.breakers().is_empty());
/// ```
#[derive(Default)]
pub struct BreakerSet {
    tracked: Mutex<Vec<WeakBreaker>>,
}

impl BreakerSet {
    /// Adds `breaker`, once however often it is tracked.
    pub fn track(&self, breaker: &Breaker) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        tracked.retain(|weak| weak.upgrade().is_some());
        if !tracked.iter().any(|weak| weak.is(breaker)) {
            tracked.push(breaker.downgrade());
        }
    }

    /// The tracked breakers still alive, in the order they were tracked.
    pub fn breakers(&self) -> Vec<Breaker> {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        tracked.retain(|weak| weak.upgrade().is_some());
        tracked.iter().filter_map(WeakBreaker::upgrade).collect()
    }
}

impl std::fmt::Debug for BreakerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerSet")
            .field("breakers", &self.breakers().len())
            .finish()
    }
}
