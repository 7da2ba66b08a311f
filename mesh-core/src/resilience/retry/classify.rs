use std::{error::Error as StdError, io};

use http::Response;

use crate::error::{BoxError, ErrorKind, MeshError};
use crate::resilience::timeout::Elapsed;

/// Decides whether the outcome of an attempt is worth another attempt.
pub trait Classify<Res>: Send + Sync + 'static {
    /// `true` when `result` should be retried (budget, attempts and deadline permitting).
    fn is_retryable(&self, result: &Result<Res, BoxError>) -> bool;
}

/// The default policy: retry the configured statuses (502, 503, 504 unless told otherwise) and
/// transient errors — connection failures, I/O errors and timeouts. Refusals by a circuit
/// breaker, bulkhead or rate limiter are not retried: they exist to shed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOnStatus {
    statuses: Vec<u16>,
}

impl RetryOnStatus {
    /// Retries these statuses and transient errors.
    pub fn new(statuses: impl IntoIterator<Item = u16>) -> Self {
        Self {
            statuses: statuses.into_iter().collect(),
        }
    }
}

impl<B> Classify<Response<B>> for RetryOnStatus {
    fn is_retryable(&self, result: &Result<Response<B>, BoxError>) -> bool {
        match result {
            Ok(response) => self.statuses.contains(&response.status().as_u16()),
            Err(error) => is_transient(error.as_ref()),
        }
    }
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> bool + Send + Sync + 'static,
{
    fn is_retryable(&self, result: &Result<Res, BoxError>) -> bool {
        self(result)
    }
}

/// Whether an error, or any of its causes, is a transport failure or a timeout.
pub(crate) fn is_transient(error: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(err) = cause {
        if err.is::<Elapsed>() || err.is::<io::Error>() {
            return true;
        }
        if let Some(mesh) = err.downcast_ref::<MeshError>() {
            return matches!(mesh.kind(), ErrorKind::Transport | ErrorKind::Timeout);
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resilience::{
        bulkhead::BulkheadFull,
        circuit_breaker::{CircuitOpen, State},
    };

    fn status(code: u16) -> Result<Response<()>, BoxError> {
        let mut response = Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
        Ok(response)
    }

    #[test]
    fn gateway_errors_are_retried_and_others_not() {
        let policy = RetryOnStatus::new([502, 503, 504]);
        for code in [502, 503, 504] {
            assert!(policy.is_retryable(&status(code)), "{code}");
        }
        for code in [200, 400, 404, 409, 500] {
            assert!(!policy.is_retryable(&status(code)), "{code}");
        }
    }

    #[test]
    fn transport_errors_and_timeouts_are_retried_but_shedding_is_not() {
        let policy = RetryOnStatus::new([503]);
        let retry = |e: BoxError| policy.is_retryable(&Err::<Response<()>, _>(e));
        assert!(retry(
            io::Error::from(io::ErrorKind::ConnectionRefused).into()
        ));
        assert!(retry(Elapsed::new(Duration::from_secs(1)).into()));
        assert!(retry(MeshError::new(ErrorKind::Transport, "reset").into()));
        assert!(!retry(BulkheadFull::new().into()));
        assert!(!retry(
            CircuitOpen::new("payment".into(), State::Open).into()
        ));
        assert!(!retry("bug".into()));
    }
}
