use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::TryFutureExt;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, sleep};
use tower::{Service, retry::budget::Budget, retry::budget::TpsBudget};

use super::{
    Backoff, Classify, Idempotent, RetryConfig,
    body::{Replay, buffer},
};
use crate::{BoxBody, error::BoxError, resilience::timeout::Deadline};

/// Retries failed calls within a budget, with backoff, never past the request's deadline.
///
/// # Clone
///
/// The inner service must be `Clone`: each call takes the service that was polled ready and
/// leaves a fresh clone behind, and retries call that service again once it is ready.
pub struct Retry<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

pub(super) struct Shared<C> {
    pub(super) name: Arc<str>,
    pub(super) config: RetryConfig,
    pub(super) backoff: Backoff,
    pub(super) budget: TpsBudget,
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
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, C> Retry<S, C> {
    pub(super) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
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
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let fresh = self.inner.clone();
        let ready = mem::replace(&mut self.inner, fresh);
        Box::pin(self.shared.clone().run(ready, request))
    }
}

impl<C> Shared<C> {
    async fn run<S, B, ResB>(
        self: Arc<Self>,
        mut inner: S,
        request: Request<B>,
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
        self.budget.deposit();
        let (parts, body) = request.into_parts();
        let replayable_method = self.config.retry_non_idempotent
            || parts.extensions.get::<Idempotent>().is_some()
            || is_idempotent(&parts.method);
        if !replayable_method || self.config.max_attempts == 1 {
            let body = body.map_err(Into::into).boxed_unsync();
            return send(&mut inner, Request::from_parts(parts, body)).await;
        }
        let buffered = if body.is_end_stream() {
            // Nothing to read (a GET, say): replay an empty body without buffering.
            Replay::Buffered(Bytes::new())
        } else {
            buffer(body, self.config.max_replay_body_bytes).await?
        };
        let body = match buffered {
            Replay::Buffered(bytes) => bytes,
            Replay::Streaming(body) => {
                self.record("not_replayable");
                let request = Request::from_parts(parts, body.boxed_unsync());
                return send(&mut inner, request).await;
            }
        };
        let deadline = parts
            .extensions
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current);

        let mut attempt = 1;
        loop {
            let request = Request::from_parts(parts.clone(), replay(body.clone()));
            let result = send(&mut inner, request).await;
            if !self.classifier.is_retryable(&result) {
                return result;
            }
            if attempt >= self.config.max_attempts {
                self.record("exhausted");
                return result;
            }
            let delay = self.backoff.delay(attempt);
            if deadline.is_some_and(|d| Instant::now() + delay >= d.instant()) {
                self.record("deadline");
                return result;
            }
            if !self.budget.withdraw() {
                tracing::warn!(name = %self.name, attempt, "retry budget exhausted");
                self.record("budget_exhausted");
                return result;
            }
            tracing::debug!(name = %self.name, attempt, ?delay, "retrying");
            self.record("retried");
            drop(result);
            sleep(delay).await;
            attempt += 1;
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
        }
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
