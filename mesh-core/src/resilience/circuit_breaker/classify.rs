use http::Response;

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
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// Classifies one result.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

/// Every error is a failure, every response a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAreFailures;

/// Errors and 5xx responses are failures; other responses succeed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrorsAreFailures;

impl<Res, E> Classify<Res, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<B, E> Classify<Response<B>, E> for ServerErrorsAreFailures {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<Res, E, F> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome + Clone + Send + Sync + 'static,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}
