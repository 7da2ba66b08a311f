use std::{sync::Arc, time::Duration};

use http::HeaderValue;
use metrics::Counter;
use tower::Layer;

use tokio::task::futures::TaskLocalFuture;

use super::{
    Deadline, HonorDeadline, ResponseFuture, Timeout, TimeoutConfig, header::encode_timeout_shared,
};
use crate::error::ConfigError;

/// Applies [`Timeout`] to a service.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    config: TimeoutConfig,
    /// The budget header of a call with no earlier deadline, encoded once.
    full_budget: HeaderValue,
    expired: Counter,
}

impl TimeoutLayer {
    /// A timeout layer named `name` (used in metrics and logs).
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(name: impl Into<Arc<str>>, config: TimeoutConfig) -> Self {
        Self::try_new(name, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A timeout layer, or the first configuration error.
    pub fn try_new(name: impl Into<Arc<str>>, config: TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Arc<str> = name.into();
        Ok(Self {
            full_budget: encode_timeout_shared(config.timeout),
            expired: metrics::counter!("mesh_timeouts_total", "name" => name),
            config,
        })
    }
}

impl TimeoutLayer {
    /// The budget header (`mesh-timeout`) a call bounded by [`bound`](Self::bound) sends
    /// downstream, when the configuration propagates it.
    pub fn budget_header(&self) -> Option<&HeaderValue> {
        self.config.propagate.then_some(&self.full_budget)
    }

    /// Bounds `call`, for a caller that is not a tower service (a relay's exchange, say), as
    /// the services this layer builds bound a request that carries no deadline: `call` runs
    /// under its own [`Deadline`](super::Deadline) and fails with [`Elapsed`](super::Elapsed)
    /// past the timeout, counted in `mesh_timeouts_total`.
    pub fn bound<F, T, E>(&self, call: F) -> ResponseFuture<TaskLocalFuture<Deadline, F>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let deadline = crate::clock::call_started(|now| Deadline::at(now + self.config.timeout));
        ResponseFuture::new(
            deadline.scope(call),
            Some(deadline.instant()),
            self.config.timeout,
            self.expired.clone(),
        )
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.config.timeout,
            propagate: self.config.propagate,
            full_budget: self.full_budget.clone(),
            expired: self.expired.clone(),
        }
    }
}

/// Applies [`HonorDeadline`] to a server-side service.
#[derive(Debug, Clone, Copy)]
pub struct HonorDeadlineLayer {
    max_budget: Duration,
}

impl Default for HonorDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HonorDeadlineLayer {
    /// Honours incoming budgets up to five minutes.
    pub const fn new() -> Self {
        Self {
            max_budget: Duration::from_secs(300),
        }
    }

    /// Caps the budget a caller may grant, so a peer cannot pin work for hours.
    pub const fn max_budget(mut self, max_budget: Duration) -> Self {
        self.max_budget = max_budget;
        self
    }
}

impl<S> Layer<S> for HonorDeadlineLayer {
    type Service = HonorDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HonorDeadline::new(inner, self.max_budget)
    }
}
