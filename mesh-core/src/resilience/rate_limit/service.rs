use std::{
    borrow::Cow,
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::{
    Decision, FailurePolicy, KeyParts, KeySource, MissingKey, RateLimited, StoreUnavailable,
    layer::Shared,
    store::{StoreError, StoreFuture},
};
use crate::error::BoxError;

/// Admits calls while their key's bucket holds tokens; refuses the rest with
/// [`RateLimited`]. With [`include_headers`](super::RateLimitConfig::include_headers) an
/// admitted response carries its [`Decision`] as an extension.
///
/// # Clone
///
/// The inner service must be `Clone`: when the store answers asynchronously (Redis), the call
/// takes the service that was polled ready into its future and leaves a clone behind. A store
/// that answers at once (the local one) decides inside `call`, without cloning or allocating.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`].
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Admitted { #[pin] inner: F, decision: Option<Decision> },
        Refused { error: Option<BoxError> },
        Waiting { future: BoxFuture<T> },
    }
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
    type Future = ResponseFuture<S::Future, Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let key = match self.shared.key(&request) {
            Ok(key) => key,
            Err(missing) => return ResponseFuture::refused(missing.into()),
        };
        let check = self.shared.check(&key);
        let check = match check.into_ready() {
            Ok(answer) => {
                return match self.shared.settle(answer) {
                    Ok(decision) => ResponseFuture::admitted(
                        self.inner.call(request),
                        self.shared.config.include_headers.then_some(decision),
                    ),
                    Err(error) => ResponseFuture::refused(error),
                };
            }
            Err(pending) => pending,
        };
        // The store needs I/O: the unpolled check is dropped (it borrows this call's key) and
        // asked again inside a future that owns what it needs, then the ready service is called.
        drop(check);
        let key = key.into_owned();
        let fresh = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, fresh);
        let shared = self.shared.clone();
        ResponseFuture::waiting(Box::pin(async move {
            let answer =
                match tokio::time::timeout(shared.config.store_timeout, shared.check(&key)).await {
                    Ok(answer) => answer,
                    Err(elapsed) => Err(StoreError::new(elapsed)),
                };
            let decision = shared.settle(answer)?;
            let mut response = inner.call(request).await.map_err(Into::into)?;
            if shared.config.include_headers {
                response.extensions_mut().insert(decision);
            }
            Ok(response)
        }))
    }
}

impl Shared {
    /// Decides for `request` as [`RateLimit`] does, for a caller that is not a service. The
    /// request is read at once (its key), not held by the future.
    pub(super) fn admit<'a, B>(
        &'a self,
        request: &Request<B>,
    ) -> impl Future<Output = Result<Option<Decision>, BoxError>> + Send + use<'a, B> {
        let key = self.key(request);
        async move {
            let key = key?;
            let answer = match self.check(&key).into_ready() {
                Ok(answer) => answer,
                Err(pending) => {
                    match tokio::time::timeout(self.config.store_timeout, pending).await {
                        Ok(answer) => answer,
                        Err(elapsed) => Err(StoreError::new(elapsed)),
                    }
                }
            };
            let decision = self.settle(answer)?;
            Ok(self.config.include_headers.then_some(decision))
        }
    }

    /// Decides at once for a request read as `parts`: `None` when the store would have to
    /// wait (on Redis, say).
    pub(super) fn admit_now(
        &self,
        parts: KeyParts<'_>,
    ) -> Option<Result<Option<Decision>, BoxError>> {
        let key = match self.key_with(|key| self.config.key.write_key_of(parts, key)) {
            Ok(key) => key,
            Err(missing) => return Some(Err(missing.into())),
        };
        let answer = self.check(&key).into_ready().ok()?;
        Some(
            self.settle(answer)
                .map(|decision| self.config.include_headers.then_some(decision)),
        )
    }

    /// The store key of a request: the limiter's name and the request's bucket.
    fn key<B>(&self, request: &Request<B>) -> Result<Cow<'_, str>, MissingKey> {
        self.key_with(|key| self.config.key.write_key(request, key))
    }

    /// The store key whose bucket part `write` appends.
    fn key_with(
        &self,
        write: impl FnOnce(&mut String) -> Result<(), MissingKey>,
    ) -> Result<Cow<'_, str>, MissingKey> {
        if self.config.key == KeySource::Global {
            return Ok(Cow::Borrowed(&self.global_key));
        }
        let mut key = String::with_capacity(self.name.len() + 1 + 32);
        key.push_str(&self.name);
        key.push(':');
        write(&mut key)?;
        Ok(Cow::Owned(key))
    }

    fn check<'a>(&'a self, key: &'a str) -> StoreFuture<'a> {
        if self.health.skip() {
            // The store keeps failing: decide by the failure policy now, not after a timeout.
            return StoreFuture::ready(Err(StoreError::new(Skipped)));
        }
        let requested = self.config.requested_tokens;
        let now = crate::clock::call_started(|now| self.clock.micros_at(now));
        self.store.check(key, self.quota, requested, now)
    }

    /// Turns the store's answer into an admission or a refusal, applying the failure policy.
    fn settle(&self, answer: Result<Decision, StoreError>) -> Result<Decision, BoxError> {
        let error = match answer {
            Ok(decision) => {
                self.health.succeeded();
                if decision.allowed() {
                    return Ok(decision);
                }
                self.rejected.increment(1);
                tracing::debug!(limiter = %self.name, retry_after = ?decision.retry_after(), "rate limited");
                return Err(RateLimited::new(decision).into());
            }
            Err(error) => error,
        };
        self.store_failures.increment(1);
        let asked = !std::error::Error::source(&error).is_some_and(|source| source.is::<Skipped>());
        let policy = self.config.failure_policy;
        if let Some(decided) = self.health.failed(asked) {
            // Once per interval, however many calls were decided without the store.
            let decision = match policy {
                FailurePolicy::FailOpen => "admitting",
                FailurePolicy::FailClosed => "refusing",
            };
            tracing::warn!(limiter = %self.name, %error, decided, "rate limit store failing; {decision} calls by the failure policy");
        }
        match policy {
            FailurePolicy::FailOpen => Ok(Decision::unchecked(
                self.quota,
                self.config.requested_tokens,
            )),
            FailurePolicy::FailClosed => Err(StoreUnavailable::new(error).into()),
        }
    }
}

// === impl ResponseFuture ===

impl<F, T> ResponseFuture<F, T> {
    fn admitted(inner: F, decision: Option<Decision>) -> Self {
        Self {
            state: State::Admitted { inner, decision },
        }
    }

    fn refused(error: BoxError) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }

    fn waiting(future: BoxFuture<T>) -> Self {
        Self {
            state: State::Waiting { future },
        }
    }
}

impl<F, E, ResB> Future for ResponseFuture<F, Response<ResB>>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { inner, decision } => {
                let mut response = std::task::ready!(inner.poll(cx)).map_err(Into::into)?;
                if let Some(decision) = decision.take() {
                    response.extensions_mut().insert(decision);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            StateProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, T> std::fmt::Debug for ResponseFuture<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Why a call was decided without asking the store: it kept failing.
#[derive(Debug, thiserror::Error)]
#[error("the store failed repeatedly and is not asked for a while")]
struct Skipped;
