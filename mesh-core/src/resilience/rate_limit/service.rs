use std::{
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use super::{
    Decision, FailurePolicy, KeySource, MissingKey, RateLimited, StoreUnavailable, layer::Shared,
    store::StoreError,
};
use crate::error::BoxError;

/// Admits calls while their key's bucket holds tokens; refuses the rest with
/// [`RateLimited`]. An admitted response carries its [`Decision`] as an extension.
///
/// # Clone
///
/// The inner service must be `Clone`: the decision is asynchronous (it may ask Redis), so each
/// call takes the service that was polled ready into its future and leaves a clone behind.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> RateLimit<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let key = match self.shared.key(&request) {
            Ok(key) => key,
            Err(missing) => return Box::pin(std::future::ready(Err(missing.into()))),
        };
        let fresh = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, fresh);
        let shared = self.shared.clone();
        Box::pin(async move {
            let decision = shared.decide(&key).await?;
            if !decision.allowed() {
                shared.rejected.increment(1);
                tracing::debug!(limiter = %shared.name, %key, retry_after = ?decision.retry_after(), "rate limited");
                return Err(RateLimited::new(decision).into());
            }
            let mut response = inner.call(request).await.map_err(Into::into)?;
            response.extensions_mut().insert(decision);
            Ok(response)
        })
    }
}

impl Shared {
    /// The store key of a request: the limiter's name and the request's bucket.
    fn key<B>(&self, request: &Request<B>) -> Result<Arc<str>, MissingKey> {
        if self.config.key == KeySource::Global {
            return Ok(self.global_key.clone());
        }
        let bucket = self.config.key.key(request)?;
        Ok(format!("{}:{bucket}", self.name).into())
    }

    async fn decide(&self, key: &str) -> Result<Decision, BoxError> {
        let requested = self.config.requested_tokens;
        let mut check = self
            .store
            .check(key, self.quota, requested, self.clock.now_micros());
        // A store that answers at once (the local one) needs no timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut check).poll(cx))).await;
        let answer = match first {
            Poll::Ready(answer) => answer,
            Poll::Pending => tokio::time::timeout(self.config.store_timeout, check)
                .await
                .unwrap_or_else(|elapsed| Err(StoreError::new(elapsed))),
        };
        let error = match answer {
            Ok(decision) => return Ok(decision),
            Err(error) => error,
        };
        self.store_failures.increment(1);
        match self.config.failure_policy {
            FailurePolicy::FailOpen => {
                tracing::warn!(limiter = %self.name, %error, "rate limit store failed, admitting the call");
                Ok(Decision::unchecked(self.quota, requested))
            }
            FailurePolicy::FailClosed => {
                tracing::warn!(limiter = %self.name, %error, "rate limit store failed, refusing the call");
                Err(StoreUnavailable::new(error).into())
            }
        }
    }
}
