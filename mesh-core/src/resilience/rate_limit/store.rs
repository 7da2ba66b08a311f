use std::{fmt, future::Future, pin::Pin};

use super::{Decision, Quota};
use crate::error::BoxError;

/// The future a [`RateLimitStore`] answers with.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'a>>;

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
