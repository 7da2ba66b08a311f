use std::time::Duration;

/// The call did not complete before its timeout or deadline.
#[derive(Debug, Clone, thiserror::Error)]
#[error("request timed out after {budget:?}")]
pub struct Elapsed {
    budget: Duration,
}

impl Elapsed {
    pub(crate) fn new(budget: Duration) -> Self {
        Self { budget }
    }

    /// The time budget the call had when it started.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// A request carried a timeout header that is not in gRPC's `<1-8 digits><H|M|S|m|u|n>` format.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid timeout header: {reason}")]
pub struct InvalidDeadline {
    reason: &'static str,
}

impl InvalidDeadline {
    pub(crate) fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}
