use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use super::{Decision, Quota};
use crate::error::BoxError;

/// The answer of a [`RateLimitStore`]: ready at once (an in-process store, no allocation) or
/// pending on I/O.
pub struct StoreFuture<'a> {
    state: StoreState<'a>,
}

enum StoreState<'a> {
    Ready(Option<Result<Decision, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'a>>),
}

impl<'a> StoreFuture<'a> {
    /// An answer known now.
    pub fn ready(result: Result<Decision, StoreError>) -> Self {
        Self {
            state: StoreState::Ready(Some(result)),
        }
    }

    /// The answer, if the store gave it without waiting.
    pub(crate) fn into_ready(self) -> Result<Result<Decision, StoreError>, Self> {
        match self.state {
            StoreState::Ready(Some(result)) => Ok(result),
            state => Err(Self { state }),
        }
    }

    /// An answer that needs I/O.
    pub fn pending(future: impl Future<Output = Result<Decision, StoreError>> + Send + 'a) -> Self {
        Self {
            state: StoreState::Pending(Box::pin(future)),
        }
    }
}

impl Future for StoreFuture<'_> {
    type Output = Result<Decision, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            StoreState::Ready(result) => {
                Poll::Ready(result.take().expect("StoreFuture polled after completion"))
            }
            StoreState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for StoreFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            StoreState::Ready(_) => "ready",
            StoreState::Pending(_) => "pending",
        };
        f.debug_struct("StoreFuture")
            .field("state", &state)
            .finish()
    }
}

/// Where GCRA state lives. Implementations must decide atomically per key: two concurrent
/// checks of one key never both spend the last token.
pub trait RateLimitStore: fmt::Debug + Send + Sync + 'static {
    /// Spends `requested` tokens of `key` under `quota` at `now_micros` (wall-clock
    /// microseconds), if the bucket holds them.
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        requested: u32,
        now_micros: u64,
    ) -> StoreFuture<'a>;
}

/// The store could not decide.
#[derive(Debug, thiserror::Error)]
#[error("rate limit store failed: {source}")]
pub struct StoreError {
    #[source]
    source: BoxError,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }
}
