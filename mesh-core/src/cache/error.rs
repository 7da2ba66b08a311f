use std::sync::Arc;

/// Why a cache could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The loader failed; every caller that waited on that load gets the same error.
    #[error("loading `{key}` failed: {message}")]
    Load {
        /// The key being loaded.
        key: String,
        /// The loader's error, as text (shared by every waiting caller).
        message: Arc<str>,
    },
    /// The store failed (a cache that cannot reach its store still loads: this is for
    /// [`invalidate`](super::Cache::invalidate) and the store's own calls).
    #[error("the cache store failed: {0}")]
    Store(Arc<str>),
}

impl CacheError {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn store(error: impl std::fmt::Display) -> Self {
        Self::Store(error.to_string().into())
    }
}
