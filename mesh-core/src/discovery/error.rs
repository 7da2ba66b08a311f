use super::ServiceId;

/// Discovery knows no instance of the service that may take traffic: the call reached no
/// instance, so it says nothing of any instance's health.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no available instance of `{service}`")]
pub struct NoInstances {
    service: ServiceId,
}

impl NoInstances {
    pub(crate) fn new(service: ServiceId) -> Self {
        Self { service }
    }

    /// The service without instances.
    pub fn service(&self) -> &ServiceId {
        &self.service
    }
}
