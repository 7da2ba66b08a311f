use std::sync::Arc;

use super::State;

/// The circuit breaker refused the call without trying it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker `{name}` is {state} and does not permit further calls")]
pub struct CircuitOpen {
    name: Arc<str>,
    state: State,
}

impl CircuitOpen {
    pub(crate) fn new(name: Arc<str>, state: State) -> Self {
        Self { name, state }
    }

    /// The name of the breaker.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state that refused the call (open, forced open, or half-open with no trial left).
    pub fn state(&self) -> State {
        self.state
    }
}
