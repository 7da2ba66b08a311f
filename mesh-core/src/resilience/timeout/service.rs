use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Request;
use tokio::{task::futures::TaskLocalFuture, time::sleep_until};
use tower::Service;

use super::{
    Deadline, ResponseFuture, TIMEOUT_HEADER, TimeoutConfig, encode_timeout, header::read_budget,
};
use crate::error::BoxError;

/// Bounds each call by a timeout and by the deadline the request already carries, and
/// propagates the remaining budget downstream.
///
/// # Clone
///
/// Cloning clones the inner service; the configuration is shared.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    name: Arc<str>,
    timeout: Duration,
    propagate: bool,
}

/// Server side of deadline propagation: reads the caller's budget, enforces it, and makes it the
/// current deadline of the handler's task.
#[derive(Debug, Clone)]
pub struct HonorDeadline<S> {
    inner: S,
    max_budget: Duration,
}

// === impl Timeout ===

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, name: Arc<str>, config: &TimeoutConfig) -> Self {
        Self {
            inner,
            name,
            timeout: config.get_timeout(),
            propagate: config.get_propagate(),
        }
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

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let deadline = Deadline::after(self.timeout).earliest(Deadline::of(&request));
        let budget = deadline.remaining();
        if self.propagate {
            request
                .headers_mut()
                .insert(TIMEOUT_HEADER, encode_timeout(budget));
        }
        request.extensions_mut().insert(deadline);
        tracing::trace!(name = %self.name, ?budget, "call with deadline");
        let inner = self.inner.call(request);
        ResponseFuture::new(inner, Some(sleep_until(deadline.instant())), budget)
    }
}

// === impl HonorDeadline ===

impl<S> HonorDeadline<S> {
    pub(crate) fn new(inner: S, max_budget: Duration) -> Self {
        Self { inner, max_budget }
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

impl<S, B> Service<Request<B>> for HonorDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<TaskLocalFuture<Deadline, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let budget = match read_budget(request.headers()) {
            Ok(budget) => budget.map(|budget| budget.min(self.max_budget)),
            Err(invalid) => return ResponseFuture::invalid(invalid),
        };
        // Without a header the handler is not held to a deadline, but the calls it makes never
        // get more than the cap.
        let deadline = budget.map(Deadline::after);
        let scoped = deadline.unwrap_or(Deadline::after(self.max_budget));
        request.extensions_mut().insert(scoped);
        let inner = scoped.sync_scope(|| self.inner.call(request));
        ResponseFuture::new(
            scoped.scope(inner),
            deadline.map(|d| sleep_until(d.instant())),
            budget.unwrap_or(self.max_budget),
        )
    }
}
