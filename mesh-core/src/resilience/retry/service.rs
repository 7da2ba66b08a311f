use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::TryFutureExt;
use http::{Method, Request, Response, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, sleep};
use tower::Service;

use super::{
    Backoff, Classify, Idempotent, NotSent, RetryConfig,
    body::{Replay, buffer},
    budget::RetryBudget,
    head::ReplayHead,
};
use crate::{BoxBody, error::BoxError, resilience::timeout::Deadline};

/// Retries failed calls within a budget, with backoff, never past the request's deadline.
///
/// # Clone
///
/// The inner service must be `Clone`: a call goes to the service that was polled ready, and
/// its retries to a clone of the service the layer was applied to, once that clone is ready.
pub struct Retry<S, C> {
    inner: S,
    retries: Arc<Retries<S, C>>,
}

/// What every call of one [`Retry`] service (and its clones) needs to retry: the service to
/// clone for retries, and the layer's policy and budget. One `Arc`, cloned once per
/// retryable call. The service sits behind a lock, taken only to clone it for a retry, so a
/// service that is `Send` but not `Sync` (a `BoxCloneService`, say) still makes `Send` futures.
struct Retries<S, C> {
    service: Mutex<S>,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Retries<S, C> {
    /// A fresh clone of the service the layer was applied to.
    fn service(&self) -> S {
        self.service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(super) struct Shared<C> {
    pub(super) name: Arc<str>,
    pub(super) config: RetryConfig,
    pub(super) backoff: Backoff,
    pub(super) budget: RetryBudget,
    pub(super) classifier: C,
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.retries.shared)
            .finish()
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            retries: self.retries.clone(),
        }
    }
}

impl<S: Clone, C> Retry<S, C> {
    pub(super) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
        Self {
            retries: Arc::new(Retries {
                service: Mutex::new(inner.clone()),
                shared,
            }),
            inner,
        }
    }
}

impl<S, C> Retry<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, B, ResB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<BoxBody>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    C: Classify<Response<ResB>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, C, Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.retries.shared;
        crate::clock::call_started(|now| shared.budget.deposit(now));
        let (parts, body) = request.into_parts();
        let only_not_sent = match shared.attempts(&parts) {
            Attempts::Never => {
                let body = body.map_err(Into::into).boxed_unsync();
                return ResponseFuture::once(self.inner.call(Request::from_parts(parts, body)));
            }
            Attempts::Any => false,
            Attempts::NotSentOnly => true,
        };
        if body.is_end_stream() {
            // Nothing to buffer (a GET, say): the first attempt goes out now, unboxed; only a
            // retryable failure pays for the retry machinery.
            let head = ReplayHead::capture(&parts);
            let first = self
                .inner
                .call(Request::from_parts(parts, BoxBody::default()));
            return ResponseFuture::first(
                first,
                Retrying {
                    retries: self.retries.clone(),
                    head,
                    body: Bytes::new(),
                    only_not_sent,
                },
            );
        }
        // The first attempt waits for the body: the ready service goes with it.
        let fresh = self.inner.clone();
        let inner = mem::replace(&mut self.inner, fresh);
        let shared = shared.clone();
        ResponseFuture::boxed(Box::pin(shared.buffer_then_send(
            inner,
            parts,
            body,
            only_not_sent,
        )))
    }
}

/// What a retry needs once the first attempt failed.
struct Retrying<S, C> {
    retries: Arc<Retries<S, C>>,
    head: ReplayHead,
    body: Bytes,
    /// Retried only when the request was never sent (a non-idempotent request).
    only_not_sent: bool,
}

/// Which failed attempts of a request may be tried again.
enum Attempts {
    /// None: one attempt.
    Never,
    /// Any retryable failure: the method (or the route) allows it.
    Any,
    /// Only an attempt that never left (`NotSent`): the method is not idempotent.
    NotSentOnly,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`Retry`].
    pub struct ResponseFuture<F, S, C, T> {
        #[pin]
        state: State<F, S, C, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, C, T> {
        // A request that is never retried.
        Once { #[pin] future: F },
        // The first attempt of a retryable request.
        First { #[pin] future: F, retrying: Option<Retrying<S, C>> },
        // Buffering a body, or retrying.
        Boxed { future: BoxFuture<T> },
    }
}

impl<F, S, C, T> fmt::Debug for ResponseFuture<F, S, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, S, C, T> ResponseFuture<F, S, C, T> {
    fn once(future: F) -> Self {
        Self {
            state: State::Once { future },
        }
    }

    fn first(future: F, retrying: Retrying<S, C>) -> Self {
        Self {
            state: State::First {
                future,
                retrying: Some(retrying),
            },
        }
    }

    fn boxed(future: BoxFuture<T>) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<F, S, C, E, ResB> Future for ResponseFuture<F, S, C, Response<ResB>>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    S: Service<Request<BoxBody>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    C: Classify<Response<ResB>>,
    ResB: Send + 'static,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Once { future } => return future.poll(cx).map_err(Into::into),
                StateProj::First { future, retrying } => {
                    let result = std::task::ready!(future.poll(cx)).map_err(Into::into);
                    let retrying = retrying.take().expect("polled after completion");
                    let shared = &retrying.retries.shared;
                    if !shared.retryable(&result, retrying.only_not_sent) {
                        return Poll::Ready(result);
                    }
                    let inner = retrying.retries.service();
                    let future = Box::pin(shared.clone().retry(
                        inner,
                        retrying.head,
                        retrying.body,
                        result,
                        retrying.only_not_sent,
                    ));
                    this.state.set(State::Boxed { future });
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

impl<C> Shared<C> {
    /// Which failed attempts of the request may go again: any retryable failure when its
    /// method (or its route) allows more than one attempt, else only one never sent.
    fn attempts(&self, parts: &Parts) -> Attempts {
        if self.config.max_attempts <= 1 {
            return Attempts::Never;
        }
        let replayable_method = self.config.retry_non_idempotent
            || parts.extensions.get::<Idempotent>().is_some()
            || is_idempotent(&parts.method);
        if replayable_method {
            Attempts::Any
        } else {
            Attempts::NotSentOnly
        }
    }

    /// Whether `result` is worth another attempt of a request retried `only_not_sent`.
    fn retryable<Res>(&self, result: &Result<Res, BoxError>, only_not_sent: bool) -> bool
    where
        C: Classify<Res>,
    {
        let sent_or_not = match result {
            Err(error) if only_not_sent => NotSent::is_among(error.as_ref()),
            _ => !only_not_sent,
        };
        sent_or_not && self.classifier.is_retryable(result)
    }

    /// Buffers the body for replay (a body over the cap is sent once, never retried), then
    /// makes the first attempt and retries as needed.
    async fn buffer_then_send<S, B, ResB>(
        self: Arc<Self>,
        mut inner: S,
        parts: Parts,
        body: B,
        only_not_sent: bool,
    ) -> Result<Response<ResB>, BoxError>
    where
        S: Service<Request<BoxBody>, Response = Response<ResB>>,
        S::Error: Into<BoxError> + 'static,
        S::Future: Send + 'static,
        C: Classify<Response<ResB>>,
        ResB: 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = match buffer(body, self.config.max_replay_body_bytes).await? {
            Replay::Buffered(bytes) => bytes,
            Replay::Streaming(body) => {
                self.record("not_replayable");
                let request = Request::from_parts(parts, body.boxed_unsync());
                return send(&mut inner, request).await;
            }
        };
        let head = ReplayHead::capture(&parts);
        let request = Request::from_parts(parts, replay(body.clone()));
        let result = send(&mut inner, request).await;
        self.retry(inner, head, body, result, only_not_sent).await
    }

    /// Retries after `result`, the outcome of the first attempt, while the policy, the
    /// attempts, the deadline and the budget allow.
    async fn retry<S, ResB>(
        self: Arc<Self>,
        mut inner: S,
        head: ReplayHead,
        body: Bytes,
        mut result: Result<Response<ResB>, BoxError>,
        only_not_sent: bool,
    ) -> Result<Response<ResB>, BoxError>
    where
        S: Service<Request<BoxBody>, Response = Response<ResB>>,
        S::Error: Into<BoxError> + 'static,
        S::Future: Send + 'static,
        C: Classify<Response<ResB>>,
        ResB: 'static,
    {
        // Read here, while the caller's deadline is current.
        let deadline = head
            .extensions()
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current);
        let mut attempt = 1;
        while self.retryable(&result, only_not_sent) {
            if attempt >= self.config.max_attempts {
                self.record("exhausted");
                break;
            }
            let delay = self.backoff.delay(attempt);
            if deadline.is_some_and(|d| Instant::now() + delay >= d.instant()) {
                self.record("deadline");
                break;
            }
            let Some(parts) = head.restore() else {
                self.record("not_replayable");
                break;
            };
            if !self.budget.withdraw(Instant::now()) {
                tracing::warn!(name = %self.name, attempt, "retry budget exhausted");
                self.record("budget_exhausted");
                break;
            }
            tracing::debug!(name = %self.name, attempt, ?delay, "retrying");
            self.record("retried");
            if let Some(attempts) = head.extensions().get::<crate::observe::span::Attempts>() {
                attempts.retry();
            }
            drop(result);
            sleep(delay).await;
            attempt += 1;
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let request = Request::from_parts(parts, replay(body.clone()));
            result = send(&mut inner, request).await;
        }
        result
    }

    fn record(&self, outcome: &'static str) {
        metrics::counter!("mesh_retries_total", "name" => self.name.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

type SendFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Calls the ready service. The future is boxed as `Send` here, where its type is concrete:
/// an async block holding `S::Future` trips rustc's higher-ranked `Send` check.
fn send<S, Res>(inner: &mut S, request: Request<BoxBody>) -> SendFuture<Res>
where
    S: Service<Request<BoxBody>, Response = Res>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    Res: 'static,
{
    Box::pin(inner.call(request).map_err(Into::into))
}

fn replay(bytes: Bytes) -> BoxBody {
    if bytes.is_empty() {
        return BoxBody::default();
    }
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Methods RFC 9110 defines as idempotent.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
