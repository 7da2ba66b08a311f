//! The breakers of one part of a process (a mesh's clients), listed for reporting.

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
/// let stock = Breaker::new("stock", CircuitBreakerConfig::default()).unwrap();
/// set.track(&payment);
/// set.track(&stock);
/// set.track(&payment);
/// assert_eq!(set.breakers().len(), 2);
/// drop(stock);
/// assert_eq!(set.breakers()[0].name(), "payment");
/// drop(payment);
/// assert!(set.breakers().is_empty());
/// ```
#[derive(Default)]
pub struct BreakerSet {
    tracked: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    breakers: Vec<WeakBreaker>,
    /// How many were alive at the last pruning: the list is pruned again once it doubles, so
    /// clients made and dropped per call cost a push each, not a scan.
    alive: usize,
}

impl Tracked {
    fn prune(&mut self) {
        self.breakers.retain(|weak| weak.upgrade().is_some());
        self.alive = self.breakers.len();
    }
}

impl BreakerSet {
    /// Adds `breaker`, once however often it is tracked in a row.
    pub fn track(&self, breaker: &Breaker) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if tracked.breakers.last().is_some_and(|last| last.is(breaker)) {
            return;
        }
        if tracked.breakers.len() >= 2 * tracked.alive + 16 {
            tracked.prune();
        }
        tracked.breakers.push(breaker.downgrade());
    }

    /// The tracked breakers still alive, each once, in the order they were first tracked.
    pub fn breakers(&self) -> Vec<Breaker> {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        tracked.prune();
        let mut alive: Vec<Breaker> = Vec::with_capacity(tracked.breakers.len());
        for breaker in tracked.breakers.iter().filter_map(WeakBreaker::upgrade) {
            if !alive.iter().any(|seen| seen.same_as(&breaker)) {
                alive.push(breaker);
            }
        }
        alive
    }
}

impl std::fmt::Debug for BreakerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerSet")
            .field("breakers", &self.breakers().len())
            .finish()
    }
}
