use std::sync::Arc;

use tower::Layer;

use super::{Backoff, Retry, RetryConfig, RetryOnStatus, budget::RetryBudget, service::Shared};
use crate::error::ConfigError;

/// Applies [`Retry`] to a service. Every service the layer builds shares one retry budget.
#[derive(Debug)]
pub struct RetryLayer<C = RetryOnStatus> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl RetryLayer {
    /// A retry layer named `name` (used in metrics and logs), retrying the statuses the
    /// configuration lists and transient errors.
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(name: impl Into<Arc<str>>, config: RetryConfig) -> Self {
        Self::try_new(name, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A retry layer, or the first configuration error.
    pub fn try_new(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        let classifier = RetryOnStatus::new(config.retry_on_status.iter().copied());
        Self::with_classifier(name, config, classifier)
    }
}

impl<C> RetryLayer<C> {
    /// A retry layer with a custom retry policy.
    pub fn with_classifier(
        name: impl Into<Arc<str>>,
        config: RetryConfig,
        classifier: C,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let backoff = Backoff::new(
            config.initial_backoff,
            config.multiplier,
            config.max_backoff,
            config.jitter,
        );
        let budget = RetryBudget::new(
            config.budget.ttl,
            config.budget.min_retries_per_second,
            config.budget.percent_can_retry,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                backoff,
                budget,
                classifier,
            }),
        })
    }
}

impl<S: Clone, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.shared.clone())
    }
}
