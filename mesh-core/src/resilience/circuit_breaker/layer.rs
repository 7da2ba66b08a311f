use std::sync::Arc;

use tower::Layer;

use super::{Breaker, CircuitBreaker, CircuitBreakerConfig, ErrorsAreFailures};
use crate::error::ConfigError;

/// Applies [`CircuitBreaker`] to a service. Every service the layer builds shares its breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAreFailures> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A breaker named `name`, counting every error as a failure.
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(name: impl Into<Arc<str>>, config: CircuitBreakerConfig) -> Self {
        Self::try_new(name, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A breaker layer, or the first configuration error.
    pub fn try_new(
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self::from_breaker(Breaker::new(name, config)?))
    }

    /// A layer around an existing breaker (to share one breaker between stacks).
    pub fn from_breaker(breaker: Breaker) -> Self {
        Self {
            breaker,
            classifier: ErrorsAreFailures,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Replaces the failure classifier, e.g. with
    /// [`ServerErrorsAreFailures`](super::ServerErrorsAreFailures) or a closure returning an
    /// [`Outcome`](super::Outcome).
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The shared breaker, to read its state or subscribe to its transitions.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
