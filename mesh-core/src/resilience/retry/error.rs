use crate::error::BoxError;

/// A call that failed before a byte of its request was written (the connection was refused,
/// or could not be opened in time): another attempt, on another instance, is safe whatever the
/// method, as Envoy's `connect-failure` retries and Finagle's requeues are. Transports put it
/// among an error's causes.
#[derive(Debug, thiserror::Error)]
#[error("the request was not sent: {source}")]
pub struct NotSent {
    #[source]
    source: BoxError,
}

impl NotSent {
    /// Wraps why the request could not be sent.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }

    /// Whether `error`, or one of its causes, is a [`NotSent`].
    pub fn is_among(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(err) = cause {
            if err.is::<NotSent>() {
                return true;
            }
            cause = err.source();
        }
        false
    }
}
