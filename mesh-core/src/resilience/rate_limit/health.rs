//! Whether the store is worth asking: after a few failures in a row the limiter stops waiting
//! for it and decides by its failure policy at once, asking again once a while has passed; and
//! store trouble is logged once per interval with a count, not once per request.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// Failures in a row after which the store is not asked for a while.
pub(super) const FAILURES_TO_SKIP: u32 = 3;
/// How long the limiter decides without the store before asking it again.
pub(super) const SKIP_FOR: Duration = Duration::from_secs(1);
/// How often store trouble is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The store's recent health, shared by every clone of a limiter.
#[derive(Debug, Default)]
pub(super) struct StoreHealth {
    failures: AtomicU32,
    /// Set while the store is skipped: the common case (a healthy store) reads only this.
    skipping: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    skip_until: Option<Instant>,
    logged: Option<Instant>,
    /// Decisions made without the store since the last log line.
    unlogged: u64,
}

impl StoreHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to decide without asking the store now.
    pub(super) fn skip(&self) -> bool {
        if !self.skipping.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let state = self.state();
        state.skip_until.is_some_and(|until| now < until)
    }

    /// The store answered.
    pub(super) fn succeeded(&self) {
        if self.failures.swap(0, Ordering::Relaxed) > 0 {
            self.skipping.store(false, Ordering::Relaxed);
            self.state().skip_until = None;
        }
    }

    /// The store failed (`asked`), or was skipped; `Some(count)` when it is time to log, with
    /// the decisions made without the store since the last line.
    pub(super) fn failed(&self, asked: bool) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state();
        if asked && self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURES_TO_SKIP {
            state.skip_until = Some(now + SKIP_FOR);
            self.skipping.store(true, Ordering::Relaxed);
        }
        state.unlogged += 1;
        if state.logged.is_some_and(|at| now < at + LOG_EVERY) {
            return None;
        }
        state.logged = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn trouble_is_logged_once_per_interval_with_a_count() {
        let health = StoreHealth::default();
        assert_eq!(health.failed(true), Some(1), "the first failure is logged");
        for _ in 0..999 {
            assert_eq!(health.failed(false), None, "then not for {LOG_EVERY:?}");
        }
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(
            health.failed(false),
            Some(1000),
            "then once, counting what went unlogged"
        );
        health.succeeded();
        assert!(!health.skip(), "a store that answers is asked again");
    }
}
