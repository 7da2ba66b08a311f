use http::Response;

use crate::error::BoxError;
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
/// the breaker (bulkhead, rate limit, another breaker), which say nothing about the upstream's
/// health and are ignored.
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
    let local_refusal = error.is::<BulkheadFull>()
        || error.is::<RateLimited>()
        || error.is::<MissingKey>()
        || error.is::<StoreUnavailable>()
        || error.is::<CircuitOpen>();
    if local_refusal {
        Outcome::Ignored
    } else {
        Outcome::Failure
    }
}
