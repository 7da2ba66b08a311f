use std::{fmt, time::Duration};

use tokio::time::Instant;

use super::{
    CircuitBreakerConfig, Outcome, SlidingWindowType,
    window::{CountWindow, TimeWindow, Totals, Window},
};

/// The state of a circuit breaker, written as Resilience4j names it (`HALF_OPEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// Calls are refused until the wait ends.
    Open,
    /// A limited number of trial calls decide between closing and reopening.
    HalfOpen,
    /// Calls flow and nothing is recorded (set by hand).
    Disabled,
    /// Calls are refused until the state is changed by hand.
    ForcedOpen,
}

/// A change of state, as published on the breaker's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTransition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// The breaker's state machine. Time is passed in, so the machine is deterministic.
#[derive(Debug)]
pub(super) struct Machine {
    state: State,
    /// Bumped on every transition; permits of older generations no longer count.
    generation: u64,
    closed: Window,
    minimum_calls: u32,
    failure_threshold: f64,
    slow_threshold: f64,
    slow_duration: Duration,
    wait_in_open: Duration,
    max_wait_in_half_open: Duration,
    half_open_calls: u32,
    half_open: CountWindow,
    half_open_left: u32,
    /// When the current state was entered.
    since: Instant,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl State {
    /// Resilience4j's name of the state (`CLOSED`, `OPEN`, `HALF_OPEN`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
            Self::Disabled => "DISABLED",
            Self::ForcedOpen => "FORCED_OPEN",
        }
    }

    /// Every state, for exporting one gauge per state.
    pub const ALL: [State; 5] = [
        Self::Closed,
        Self::Open,
        Self::HalfOpen,
        Self::Disabled,
        Self::ForcedOpen,
    ];
}

impl Machine {
    pub(super) fn new(config: &CircuitBreakerConfig, now: Instant) -> Self {
        let (closed, minimum_calls) = match config.sliding_window_type {
            SlidingWindowType::CountBased => (
                Window::Count(CountWindow::new(config.sliding_window_size)),
                config
                    .minimum_number_of_calls
                    .min(config.sliding_window_size),
            ),
            SlidingWindowType::TimeBased => (
                Window::Time(TimeWindow::new(config.sliding_window_size, now)),
                config.minimum_number_of_calls,
            ),
        };
        let half_open_calls = config.permitted_number_of_calls_in_half_open_state;
        Self {
            state: State::Closed,
            generation: 0,
            closed,
            minimum_calls,
            failure_threshold: config.failure_rate_threshold,
            slow_threshold: config.slow_call_rate_threshold,
            slow_duration: config.slow_call_duration_threshold,
            wait_in_open: config.wait_duration_in_open_state,
            max_wait_in_half_open: config.max_wait_duration_in_half_open_state,
            half_open_calls,
            half_open: CountWindow::new(half_open_calls),
            half_open_left: half_open_calls,
            since: now,
        }
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    /// What admission needs to know without the lock: `generation + 1` while every call is
    /// let through (closed or disabled: time alone changes nothing), `0` otherwise.
    pub(super) fn admits_all(&self) -> u64 {
        match self.state {
            State::Closed | State::Disabled => self.generation + 1,
            _ => 0,
        }
    }

    pub(super) fn totals(&self, now: Instant) -> Totals {
        self.closed.totals(now)
    }

    /// Admits a call, returning the generation it belongs to, or refuses it with the state
    /// that refused. Applies the time-driven transitions first.
    pub(super) fn try_acquire(
        &mut self,
        now: Instant,
        transitions: &mut Vec<StateTransition>,
    ) -> Result<u64, State> {
        self.advance(now, transitions);
        match self.state {
            State::Closed | State::Disabled => Ok(self.generation),
            State::HalfOpen if self.half_open_left > 0 => {
                self.half_open_left -= 1;
                Ok(self.generation)
            }
            refusing => Err(refusing),
        }
    }

    /// Applies the transitions that the passing of time alone causes.
    pub(super) fn advance(&mut self, now: Instant, transitions: &mut Vec<StateTransition>) {
        match self.state {
            // The wait is over: let trial calls through.
            State::Open if now >= self.since + self.wait_in_open => {
                self.transition(State::HalfOpen, now, transitions);
            }
            // Trial calls took too long to decide: give the upstream more time.
            State::HalfOpen
                if !self.max_wait_in_half_open.is_zero()
                    && now >= self.since + self.max_wait_in_half_open =>
            {
                self.transition(State::Open, now, transitions);
            }
            _ => {}
        }
    }

    /// Records the outcome of a call admitted in `generation`.
    pub(super) fn record(
        &mut self,
        generation: u64,
        outcome: Outcome,
        duration: Duration,
        now: Instant,
        transitions: &mut Vec<StateTransition>,
    ) {
        if generation != self.generation {
            return;
        }
        let failed = outcome == Outcome::Failure;
        let slow = duration >= self.slow_duration;
        match (self.state, outcome) {
            (State::Closed, Outcome::Ignored) => {}
            (State::Closed, _) => {
                self.closed.record(now, failed, slow);
                let totals = self.closed.totals(now);
                if totals.calls >= self.minimum_calls && self.exceeds(totals) {
                    self.transition(State::Open, now, transitions);
                }
            }
            // An ignored trial call frees its slot for another one.
            (State::HalfOpen, Outcome::Ignored) => self.half_open_left += 1,
            (State::HalfOpen, _) => {
                self.half_open.record(failed, slow);
                let totals = self.half_open.totals();
                if totals.calls >= self.half_open_calls {
                    let next = if self.exceeds(totals) {
                        State::Open
                    } else {
                        State::Closed
                    };
                    self.transition(next, now, transitions);
                }
            }
            _ => {}
        }
    }

    /// A call admitted in `generation` was cancelled before it finished.
    pub(super) fn release(&mut self, generation: u64) {
        if generation == self.generation && self.state == State::HalfOpen {
            self.half_open_left += 1;
        }
    }

    /// Moves to `to`, resetting what the new state starts from.
    pub(super) fn transition(
        &mut self,
        to: State,
        now: Instant,
        transitions: &mut Vec<StateTransition>,
    ) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.generation += 1;
        self.since = now;
        match to {
            State::Closed => self.closed.clear(),
            State::HalfOpen => {
                self.half_open = CountWindow::new(self.half_open_calls);
                self.half_open_left = self.half_open_calls;
            }
            State::Open | State::Disabled | State::ForcedOpen => {}
        }
        transitions.push(StateTransition { from, to });
    }

    /// When the open state's wait ends, while open (for the automatic transition timer).
    pub(super) fn open_until(&self) -> Option<Instant> {
        (self.state == State::Open).then(|| self.since + self.wait_in_open)
    }

    fn exceeds(&self, totals: Totals) -> bool {
        totals.failure_rate() >= self.failure_threshold
            || totals.slow_call_rate() >= self.slow_threshold
    }
}
