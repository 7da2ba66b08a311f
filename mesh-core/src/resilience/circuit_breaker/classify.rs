use http::Response;

use crate::discovery::NoInstances;
use crate::error::{BoxError, ErrorKind, MeshError};
use crate::resilience::{
    bulkhead::BulkheadFull,
    circuit_breaker::CircuitOpen,
    rate_limit::{MissingKey, RateLimited, StoreUnavailable},
};

/// How the breaker counts a finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
    /// The call does not count either way (a client's own mistake, say).
    Ignored,
}

/// Decides whether a finished call was a success, a failure, or does not count.
pub trait Classify<Res>: Clone + Send + Sync + 'static {
    /// Classifies one result.
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome;
}

/// Every error is a failure, every response a success — except refusals by the layers behind
/// the breaker (bulkhead, rate limit, another breaker) and calls that found no instance, which
/// say nothing about the upstream's health and are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAreFailures;

/// As [`ErrorsAreFailures`], and 5xx responses are failures too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrorsAreFailures;

impl<Res> Classify<Res> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }
}

impl<B> Classify<Response<B>> for ServerErrorsAreFailures {
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> Outcome + Clone + Send + Sync + 'static,
{
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        self(result)
    }
}

/// Local refusals are ignored; every other error is a failure.
fn classify_error(error: &BoxError) -> Outcome {
    // A call that reached no instance (a local refusal, or none to call) says nothing of the
    // upstream's health: a registry restarting empty must not open the circuit.
    let local_refusal = error.is::<BulkheadFull>()
        || error.is::<RateLimited>()
        || error.is::<MissingKey>()
        || error.is::<StoreUnavailable>()
        || error.is::<CircuitOpen>()
        || error.is::<NoInstances>()
        || error
            .downcast_ref::<MeshError>()
            .is_some_and(|error| error.kind() == ErrorKind::NoInstances);
    if local_refusal {
        Outcome::Ignored
    } else {
        Outcome::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ServiceId;

    fn no_instance() -> Result<Response<()>, BoxError> {
        Err(Box::new(NoInstances::new(ServiceId::new("inventory"))))
    }

    #[test]
    fn a_call_that_found_no_instance_counts_neither_way() {
        assert_eq!(ErrorsAreFailures.classify(&no_instance()), Outcome::Ignored);
        assert_eq!(
            ServerErrorsAreFailures.classify(&no_instance()),
            Outcome::Ignored
        );
        // Also once it is a mesh error, as a gateway route's breaker sees it.
        let Err(error) = no_instance() else {
            unreachable!()
        };
        let wrapped: Result<Response<()>, BoxError> = Err(MeshError::from_boxed(error).into());
        assert_eq!(ErrorsAreFailures.classify(&wrapped), Outcome::Ignored);
        // A refused connection reached for an instance: a failure.
        let refused: Result<Response<()>, BoxError> = Err("connection refused".into());
        assert_eq!(ErrorsAreFailures.classify(&refused), Outcome::Failure);
    }
}
