use std::sync::Arc;

use metrics::Counter;
use tower::Layer;

use super::{Bulkhead, BulkheadConfig, slots::Slots};
use crate::error::ConfigError;

/// Applies [`Bulkhead`] to a service. Every service the layer builds shares its slots.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) config: BulkheadConfig,
    pub(super) slots: Arc<Slots>,
    pub(super) rejected: Counter,
}

impl BulkheadLayer {
    /// A bulkhead named `name` (the label of its metrics and logs).
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Self {
        Self::try_new(name, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A bulkhead layer, or the first configuration error.
    pub fn try_new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Arc<str> = name.into();
        let rejected = metrics::counter!("mesh_bulkhead_rejected_total", "name" => name.clone());
        metrics::gauge!("mesh_bulkhead_max_concurrent_calls", "name" => name.clone())
            .set(config.max_concurrent_calls as f64);
        Ok(Self {
            shared: Arc::new(Shared {
                slots: Arc::new(Slots::new(config.max_concurrent_calls)),
                name,
                config,
                rejected,
            }),
        })
    }

    /// Slots free right now.
    pub fn available_slots(&self) -> usize {
        self.shared.slots.available()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.shared.clone())
    }
}
