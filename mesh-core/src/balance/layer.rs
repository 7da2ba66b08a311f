use std::sync::Arc;

use tower::Layer;

use super::{Balance, BalanceConfig, service::Shared};
use crate::{
    discovery::Discovery, error::ConfigError, resilience::circuit_breaker::ServerErrorsAreFailures,
};

/// Applies [`Balance`] over a [`Discovery`]. Every service the layer builds shares the
/// latency estimates and ejections.
#[derive(Debug, Clone)]
pub struct BalanceLayer<C = ServerErrorsAreFailures> {
    shared: Arc<Shared>,
    classifier: C,
}

impl BalanceLayer {
    /// A balancer over `discovery`, counting errors and 5xx responses as failures.
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(discovery: Discovery, config: BalanceConfig) -> Self {
        Self::try_new(discovery, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A balancer, or the first configuration error.
    pub fn try_new(discovery: Discovery, config: BalanceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(discovery, config)),
            classifier: ServerErrorsAreFailures,
        })
    }
}

impl<C> BalanceLayer<C> {
    /// Replaces what counts as a failure for outlier ejection.
    pub fn with_classifier<C2>(self, classifier: C2) -> BalanceLayer<C2> {
        BalanceLayer {
            shared: self.shared,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for BalanceLayer<C> {
    type Service = Balance<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Balance::new(inner, self.shared.clone(), self.classifier.clone())
    }
}
