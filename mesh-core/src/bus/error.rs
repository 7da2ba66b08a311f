use crate::error::{BoxError, ErrorKind, MeshError};

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// No subscription's binding matches the event's type: it would be lost.
    #[error("no queue is bound to events of type `{0}`")]
    Unroutable(String),
    /// The broker refused the event (a negative publisher confirm).
    #[error("the broker refused the event")]
    Refused,
    /// The broker cannot be reached.
    #[error("the broker is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The event could not be encoded or decoded.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The consumer group already has a subscription in this process.
    #[error("queue `{0}` already has a subscription")]
    AlreadySubscribed(String),
    /// The bus's configuration names no usable backend.
    #[error("{0}")]
    Config(String),
}

impl From<BusError> for MeshError {
    fn from(error: BusError) -> Self {
        let kind = match &error {
            BusError::Unroutable(_) | BusError::Invalid(_) | BusError::AlreadySubscribed(_) => {
                ErrorKind::BadRequest
            }
            BusError::Refused | BusError::Unavailable(_) => ErrorKind::Unavailable,
            BusError::Config(_) => ErrorKind::Config,
        };
        MeshError::new(kind, error.to_string()).with_source(error)
    }
}
