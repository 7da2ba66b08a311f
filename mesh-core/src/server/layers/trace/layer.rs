use std::sync::Arc;

use tower::Layer;

use super::ServerTrace;

/// Wraps a service in [`ServerTrace`].
#[derive(Debug, Clone)]
pub struct ServerTraceLayer {
    service: Arc<str>,
}

impl ServerTraceLayer {
    /// The layer of the service `service` (its ID, the spans' `service` field).
    pub fn new(service: impl Into<Arc<str>>) -> Self {
        Self {
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace::new(inner, self.service.clone())
    }
}
