use std::{
    fmt,
    ops::{Deref, DerefMut},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::Counter;
use tokio::{sync::broadcast, time::Instant};

use super::{CircuitBreakerConfig, CircuitOpen, Outcome, State, StateTransition, machine::Machine};
use crate::error::ConfigError;

/// A circuit breaker's shared state: cheap to clone, every clone is the same breaker.
///
/// Use it through [`CircuitBreakerLayer`](super::CircuitBreakerLayer), or directly around any
/// call with [`try_acquire`](Self::try_acquire) and [`CallPermit::record`]:
///
/// ```
/// use mesh_core::resilience::circuit_breaker::{Breaker, CircuitBreakerConfig, Outcome, State};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = Breaker::new("payment", CircuitBreakerConfig::open_after_failures(2)).unwrap();
/// for _ in 0..2 {
///     breaker.try_acquire().unwrap().record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// assert!(breaker.try_acquire().is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// A breaker that does not keep its state alive; see [`BreakerSet`](super::BreakerSet).
#[derive(Clone)]
pub(super) struct WeakBreaker(Weak<Shared>);

impl WeakBreaker {
    /// The breaker, while any clone of it lives.
    pub(super) fn upgrade(&self) -> Option<Breaker> {
        self.0.upgrade().map(|shared| Breaker { shared })
    }

    /// Whether `breaker` is this one.
    pub(super) fn is(&self, breaker: &Breaker) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&breaker.shared))
    }
}

struct Shared {
    name: Arc<str>,
    config: CircuitBreakerConfig,
    machine: Mutex<Machine>,
    /// [`Machine::admits_all`] as of the last change, written under the machine's lock:
    /// while the breaker is closed, admission reads this instead of taking the lock.
    admits_all: AtomicU64,
    events: broadcast::Sender<StateTransition>,
    calls: CallCounters,
}

/// The locked machine; letting go of it publishes what admission needs to the lock-free path,
/// before the lock is released.
struct Locked<'a> {
    machine: MutexGuard<'a, Machine>,
    admits_all: &'a AtomicU64,
}

impl Deref for Locked<'_> {
    type Target = Machine;

    fn deref(&self) -> &Machine {
        &self.machine
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.admits_all
            .store(self.machine.admits_all(), Ordering::Release);
    }
}

/// Counter handles registered once, so recording a call does not look metrics up by name.
struct CallCounters {
    successful: Counter,
    slow_successful: Counter,
    failed: Counter,
    slow_failed: Counter,
    ignored: Counter,
    not_permitted: Counter,
}

impl CallCounters {
    fn new(name: &Arc<str>) -> Self {
        let counter = |kind: &'static str| {
            metrics::counter!(
                "mesh_circuit_breaker_calls_total",
                "name" => name.clone(),
                "kind" => kind,
            )
        };
        Self {
            successful: counter("successful"),
            slow_successful: counter("slow_successful"),
            failed: counter("failed"),
            slow_failed: counter("slow_failed"),
            ignored: counter("ignored"),
            not_permitted: counter("not_permitted"),
        }
    }
}

/// Permission for one call. Record its outcome with [`record`](Self::record); dropping it
/// unrecorded (a cancelled call) hands a half-open trial slot back.
#[must_use = "a permit must record the call's outcome"]
pub struct CallPermit {
    breaker: Breaker,
    generation: u64,
    started: Instant,
    recorded: bool,
}

/// A snapshot of the closed-state window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The breaker's state.
    pub state: State,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failed_calls: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Failed calls in percent of all calls (0 when empty).
    pub failure_rate: f64,
    /// Slow calls in percent of all calls (0 when empty).
    pub slow_call_rate: f64,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker named `name` (the label of its metrics and logs).
    pub fn new(
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let machine = Machine::new(&config, Instant::now());
        let (events, _) = broadcast::channel(64);
        let breaker = Self {
            shared: Arc::new(Shared {
                calls: CallCounters::new(&name),
                name,
                config,
                admits_all: AtomicU64::new(machine.admits_all()),
                machine: Mutex::new(machine),
                events,
            }),
        };
        breaker.export_state(State::Closed);
        Ok(breaker)
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration the breaker was built with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.machine().state()
    }

    /// The closed-state window's counts and rates.
    pub fn metrics(&self) -> Metrics {
        let machine = self.machine();
        let totals = machine.totals(Instant::now());
        Metrics {
            state: machine.state(),
            calls: totals.calls,
            failed_calls: totals.failed,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
        }
    }

    /// A stream of every state transition from now on. A receiver that falls more than 64
    /// events behind skips the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<StateTransition> {
        self.shared.events.subscribe()
    }

    /// Whether `other` is this breaker (a clone of it), not another of the same name.
    pub(super) fn same_as(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A handle that does not keep this breaker alive.
    pub(super) fn downgrade(&self) -> WeakBreaker {
        WeakBreaker(Arc::downgrade(&self.shared))
    }

    /// Asks to make a call: a permit, or [`CircuitOpen`] when the breaker refuses.
    pub fn try_acquire(&self) -> Result<CallPermit, CircuitOpen> {
        crate::clock::call_started(|now| self.try_acquire_at(now))
    }

    fn try_acquire_at(&self, now: Instant) -> Result<CallPermit, CircuitOpen> {
        // Closed: nothing to decide and nothing to change, so no lock. A call admitted just as
        // the breaker opens carries the old generation, and its outcome is not counted.
        let admitted = match self.shared.admits_all.load(Ordering::Acquire) {
            0 => {
                let mut transitions = Vec::new();
                let admitted = self.machine().try_acquire(now, &mut transitions);
                self.publish(transitions);
                admitted
            }
            admits_all => Ok(admits_all - 1),
        };
        match admitted {
            Ok(generation) => Ok(CallPermit {
                breaker: self.clone(),
                generation,
                started: now,
                recorded: false,
            }),
            Err(state) => {
                self.shared.calls.not_permitted.increment(1);
                Err(CircuitOpen::new(self.shared.name.clone(), state))
            }
        }
    }

    /// Closes the breaker and clears its window.
    pub fn transition_to_closed(&self) {
        self.transition_to(State::Closed);
    }

    /// Opens the breaker now, as if the thresholds were crossed.
    pub fn transition_to_open(&self) {
        self.transition_to(State::Open);
    }

    /// Lets every call through and records nothing until changed by hand.
    pub fn transition_to_disabled(&self) {
        self.transition_to(State::Disabled);
    }

    /// Refuses every call until changed by hand.
    pub fn transition_to_forced_open(&self) {
        self.transition_to(State::ForcedOpen);
    }

    fn transition_to(&self, state: State) {
        let mut transitions = Vec::new();
        self.machine()
            .transition(state, Instant::now(), &mut transitions);
        self.publish(transitions);
    }

    fn record(&self, generation: u64, outcome: Outcome, started: Instant) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        let mut transitions = Vec::new();
        self.machine()
            .record(generation, outcome, elapsed, now, &mut transitions);
        let slow = elapsed >= self.shared.config.slow_call_duration_threshold;
        let calls = &self.shared.calls;
        match (outcome, slow) {
            (Outcome::Success, false) => &calls.successful,
            (Outcome::Success, true) => &calls.slow_successful,
            (Outcome::Failure, false) => &calls.failed,
            (Outcome::Failure, true) => &calls.slow_failed,
            (Outcome::Ignored, _) => &calls.ignored,
        }
        .increment(1);
        self.publish(transitions);
    }

    fn machine(&self) -> Locked<'_> {
        // The machine holds plain counters: a panic elsewhere cannot leave it inconsistent.
        Locked {
            machine: self
                .shared
                .machine
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            admits_all: &self.shared.admits_all,
        }
    }

    fn publish(&self, transitions: Vec<StateTransition>) {
        for transition in transitions {
            let name = &*self.shared.name;
            match transition.to {
                State::Open | State::ForcedOpen => {
                    tracing::warn!(breaker = name, from = %transition.from, to = %transition.to, "circuit breaker state changed");
                }
                _ => {
                    tracing::info!(breaker = name, from = %transition.from, to = %transition.to, "circuit breaker state changed");
                }
            }
            metrics::counter!(
                "mesh_circuit_breaker_transitions_total",
                "name" => self.shared.name.clone(),
                "from" => transition.from.as_str(),
                "to" => transition.to.as_str(),
            )
            .increment(1);
            self.export_state(transition.to);
            let _ = self.shared.events.send(transition);
            if transition.to == State::Open
                && self
                    .shared
                    .config
                    .automatic_transition_from_open_to_half_open_enabled
            {
                self.schedule_half_open();
            }
        }
    }

    /// Moves an open breaker to half-open when its wait ends, without waiting for a call.
    fn schedule_half_open(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(until) = self.machine().open_until() else {
            return;
        };
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        runtime.spawn(async move {
            tokio::time::sleep_until(until).await;
            if let Some(shared) = weak.upgrade() {
                let breaker = Breaker { shared };
                let mut transitions = Vec::new();
                breaker.machine().advance(Instant::now(), &mut transitions);
                breaker.publish(transitions);
            }
        });
    }

    fn export_state(&self, current: State) {
        for state in State::ALL {
            metrics::gauge!(
                "mesh_circuit_breaker_state",
                "name" => self.shared.name.clone(),
                "state" => state.as_str(),
            )
            .set(if state == current { 1.0 } else { 0.0 });
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish()
    }
}

// === impl CallPermit ===

impl CallPermit {
    /// Records how the call went; its duration is measured from the permit's creation.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.generation, outcome, self.started);
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.machine().release(self.generation);
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("breaker", &self.breaker.shared.name)
            .field("generation", &self.generation)
            .finish()
    }
}
