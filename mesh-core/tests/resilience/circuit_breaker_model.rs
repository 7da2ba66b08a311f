//! The circuit breaker against a small reference model of its state machine.

use std::{collections::VecDeque, time::Duration};

use mesh_core::resilience::circuit_breaker::{
    Breaker, CallPermit, CircuitBreakerConfig, Outcome, State, StateTransition,
};
use proptest::prelude::*;

const SLOW: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Op {
    /// Ask for a permit.
    Acquire,
    /// Finish a pending call with an outcome.
    Finish(usize, Outcome),
    /// Drop a pending call unrecorded.
    Cancel(usize),
    /// Let time pass.
    Advance(u64),
}

#[derive(Debug, Clone)]
struct Params {
    window: usize,
    minimum: usize,
    failure_threshold: f64,
    slow_threshold: f64,
    half_open_calls: usize,
}

/// The obvious, slow version: whole lists of outcomes, rates recomputed from scratch.
#[derive(Debug)]
struct Model {
    params: Params,
    state: State,
    generation: u64,
    closed: VecDeque<(bool, bool)>,
    trials: Vec<(bool, bool)>,
    trials_left: usize,
    since: Duration,
    now: Duration,
    transitions: Vec<StateTransition>,
}

impl Model {
    fn new(params: Params) -> Self {
        Self {
            trials_left: params.half_open_calls,
            params,
            state: State::Closed,
            generation: 0,
            closed: VecDeque::new(),
            trials: Vec::new(),
            since: Duration::ZERO,
            now: Duration::ZERO,
            transitions: Vec::new(),
        }
    }

    fn acquire(&mut self) -> Option<u64> {
        if self.state == State::Open && self.now >= self.since + WAIT {
            self.to(State::HalfOpen);
        }
        match self.state {
            State::Closed => Some(self.generation),
            State::HalfOpen if self.trials_left > 0 => {
                self.trials_left -= 1;
                Some(self.generation)
            }
            _ => None,
        }
    }

    fn finish(&mut self, generation: u64, started: Duration, outcome: Outcome) {
        if generation != self.generation {
            return;
        }
        let call = (outcome == Outcome::Failure, self.now - started >= SLOW);
        match (self.state, outcome) {
            (State::Closed, Outcome::Ignored) => {}
            (State::Closed, _) => {
                self.closed.push_back(call);
                if self.closed.len() > self.params.window {
                    self.closed.pop_front();
                }
                let minimum = self.params.minimum.min(self.params.window);
                if self.closed.len() >= minimum && self.exceeds(self.closed.iter()) {
                    self.to(State::Open);
                }
            }
            (State::HalfOpen, Outcome::Ignored) => self.trials_left += 1,
            (State::HalfOpen, _) => {
                self.trials.push(call);
                if self.trials.len() == self.params.half_open_calls {
                    let next = if self.exceeds(self.trials.iter()) {
                        State::Open
                    } else {
                        State::Closed
                    };
                    self.to(next);
                }
            }
            _ => {}
        }
    }

    fn cancel(&mut self, generation: u64) {
        if generation == self.generation && self.state == State::HalfOpen {
            self.trials_left += 1;
        }
    }

    fn exceeds<'a>(&self, calls: impl Iterator<Item = &'a (bool, bool)> + Clone) -> bool {
        let total = calls.clone().count() as f64;
        let failed = calls.clone().filter(|c| c.0).count() as f64;
        let slow = calls.filter(|c| c.1).count() as f64;
        failed * 100.0 / total >= self.params.failure_threshold
            || slow * 100.0 / total >= self.params.slow_threshold
    }

    fn to(&mut self, state: State) {
        self.transitions.push(StateTransition {
            from: self.state,
            to: state,
        });
        self.state = state;
        self.generation += 1;
        self.since = self.now;
        self.closed.clear();
        self.trials.clear();
        self.trials_left = self.params.half_open_calls;
    }
}

fn params() -> impl Strategy<Value = Params> {
    (
        1usize..6,
        1usize..8,
        prop::sample::select(vec![20.0, 34.0, 50.0, 100.0]),
        prop::sample::select(vec![50.0, 100.0]),
        1usize..4,
    )
        .prop_map(
            |(window, minimum, failure_threshold, slow_threshold, half_open_calls)| Params {
                window,
                minimum,
                failure_threshold,
                slow_threshold,
                half_open_calls,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop::sample::select(vec![Outcome::Success, Outcome::Failure, Outcome::Ignored]);
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => prop::sample::select(vec![0u64, 400, 1000, 2500, 5000]).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_breaker_follows_the_model(params in params(), ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = CircuitBreakerConfig::default()
                .sliding_window_size(params.window as u32)
                .minimum_number_of_calls(params.minimum as u32)
                .failure_rate_threshold(params.failure_threshold)
                .slow_call_rate_threshold(params.slow_threshold)
                .slow_call_duration_threshold(SLOW)
                .wait_duration_in_open_state(WAIT)
                .permitted_number_of_calls_in_half_open_state(params.half_open_calls as u32);
            let breaker = Breaker::new("model", config).unwrap();
            let mut events = breaker.subscribe();
            let mut model = Model::new(params);
            let mut pending: Vec<(CallPermit, u64, Duration)> = Vec::new();

            for op in ops {
                match op {
                    Op::Acquire => {
                        let real = breaker.try_acquire();
                        let expected = model.acquire();
                        prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                        if let (Ok(permit), Some(generation)) = (real, expected) {
                            pending.push((permit, generation, model.now));
                        }
                    }
                    Op::Finish(i, outcome) if !pending.is_empty() => {
                        let (permit, generation, started) = pending.remove(i % pending.len());
                        permit.record(outcome);
                        model.finish(generation, started, outcome);
                    }
                    Op::Cancel(i) if !pending.is_empty() => {
                        let (permit, generation, _) = pending.remove(i % pending.len());
                        drop(permit);
                        model.cancel(generation);
                    }
                    Op::Advance(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now += Duration::from_millis(ms);
                    }
                    Op::Finish(..) | Op::Cancel(_) => {}
                }
                prop_assert_eq!(breaker.state(), model.state);
            }
            let mut published = Vec::new();
            while let Ok(transition) = events.try_recv() {
                published.push(transition);
            }
            prop_assert_eq!(published, model.transitions);
            Ok(())
        })?;
    }
}
