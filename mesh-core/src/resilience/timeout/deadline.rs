use std::{future::Future, time::Duration};

use http::Request;
use tokio::{task::futures::TaskLocalFuture, time::Instant};

tokio::task_local! {
    static CURRENT: Deadline;
}

/// The instant by which a request must complete.
///
/// A deadline travels in three ways: as the current deadline while the layers behind a
/// [`Timeout`](super::Timeout) or a server handler behind [`HonorDeadline`](super::HonorDeadline)
/// run ([`Deadline::current`]); as a request extension a caller may set to give one call a
/// deadline of its own; and between processes as a relative budget in the
/// [`TIMEOUT_HEADER`](super::TIMEOUT_HEADER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The instant of the deadline.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// The time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.0
    }

    /// The deadline of the request this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|deadline| *deadline).ok()
    }

    /// The deadline that applies to `request`: its own extension, else the task's current one.
    pub fn of<B>(request: &Request<B>) -> Option<Self> {
        request
            .extensions()
            .get::<Self>()
            .copied()
            .or_else(Self::current)
    }

    /// Runs `future` with this deadline as the task's current deadline.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Self, F> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this deadline as the current deadline.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}
