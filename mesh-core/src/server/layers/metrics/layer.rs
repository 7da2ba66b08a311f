use std::sync::Arc;

use tower::Layer;

use super::RequestMetrics;
use crate::observe::ServerSeries;

/// Wraps a service in [`RequestMetrics`].
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    series: Arc<ServerSeries>,
}

impl RequestMetricsLayer {
    /// The layer of the service `service` (its ID, the metrics' `service` label).
    pub fn new(service: impl Into<Arc<str>>) -> Self {
        Self::with_series(Arc::new(ServerSeries::new(service.into())))
    }

    pub(crate) fn with_series(series: Arc<ServerSeries>) -> Self {
        Self { series }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics::with_series(inner, self.series.clone())
    }
}
