use std::{
    sync::{
        Mutex,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::resilience::circuit_breaker::Outcome;

/// What the balancer knows of one instance: load, latency and health.
#[derive(Debug)]
pub(super) struct Endpoint {
    pending: AtomicUsize,
    consecutive_failures: AtomicU32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Peak-EWMA latency estimate, in nanoseconds.
    rtt_ns: f64,
    updated: Instant,
    ejected_until: Option<Instant>,
    ejections: u32,
}

impl Endpoint {
    pub(super) fn new(default_rtt: Duration, now: Instant) -> Self {
        Self {
            pending: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            state: Mutex::new(State {
                rtt_ns: default_rtt.as_nanos() as f64,
                updated: now,
                ejected_until: None,
                ejections: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `latency × (in flight + 1)`, the latency decayed to `now`.
    pub(super) fn load(&self, now: Instant, decay: Duration) -> f64 {
        let state = self.state();
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        let rtt = state.rtt_ns * (-elapsed / decay.as_secs_f64()).exp();
        let pending = self.pending.load(Ordering::Relaxed) as f64;
        rtt.max(1.0) * (pending + 1.0)
    }

    pub(super) fn is_ejected(&self, now: Instant) -> bool {
        self.state().ejected_until.is_some_and(|until| now < until)
    }

    pub(super) fn start(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn cancel(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records a finished call; returns `true` when this failure reaches the ejection count.
    pub(super) fn finish(
        &self,
        rtt: Duration,
        outcome: Outcome,
        now: Instant,
        decay: Duration,
        failures_to_eject: u32,
    ) -> bool {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        let mut state = self.state();
        let rtt_ns = rtt.as_nanos() as f64;
        if rtt_ns > state.rtt_ns {
            // A peak is taken at once: a slowing instance loses traffic immediately.
            state.rtt_ns = rtt_ns;
        } else {
            let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
            let weight = (-elapsed / decay.as_secs_f64()).exp();
            state.rtt_ns = state.rtt_ns * weight + rtt_ns * (1.0 - weight);
        }
        state.updated = now;
        drop(state);
        match outcome {
            Outcome::Success => {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                return false;
            }
            Outcome::Ignored => return false,
            Outcome::Failure => {}
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures_to_eject > 0 && failures >= failures_to_eject
    }

    /// Ejects for `base × times ejected` (capped); returns the ejection's length.
    pub(super) fn eject(&self, now: Instant, base: Duration, max: Duration) -> Duration {
        let mut state = self.state();
        state.ejections += 1;
        let length = base.saturating_mul(state.ejections).min(max);
        state.ejected_until = Some(now + length);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        length
    }
}
