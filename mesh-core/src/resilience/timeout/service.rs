use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Request};
use metrics::Counter;
use tokio::{task::futures::TaskLocalFuture, time::Instant};
use tower::Service;

use super::{Deadline, ResponseFuture, TIMEOUT_HEADER, encode_timeout, header::read_budget};
use crate::error::BoxError;

/// Bounds each call by a timeout and by the deadline the request already carries, and
/// propagates the remaining budget downstream.
///
/// # Clone
///
/// Cloning clones the inner service; the configuration is shared.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(super) inner: S,
    pub(super) timeout: Duration,
    pub(super) propagate: bool,
    pub(super) full_budget: HeaderValue,
    pub(super) expired: Counter,
}

/// Server side of deadline propagation: reads the caller's budget, enforces it, and makes it the
/// current deadline of the handler's task.
#[derive(Debug, Clone)]
pub struct HonorDeadline<S> {
    inner: S,
    max_budget: Duration,
    expired: Counter,
}

// === impl Timeout ===

impl<S> Timeout<S> {
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
    type Future = ResponseFuture<TaskLocalFuture<Deadline, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        crate::clock::call_started(|now| self.call_at(now, request))
    }
}

impl<S> Timeout<S> {
    fn call_at<B>(
        &mut self,
        now: Instant,
        mut request: Request<B>,
    ) -> ResponseFuture<TaskLocalFuture<Deadline, S::Future>>
    where
        S: Service<Request<B>>,
    {
        let own = Deadline::at(now + self.timeout);
        let earlier = Deadline::of(&request).filter(|deadline| *deadline < own);
        let (deadline, budget) = match earlier {
            Some(earlier) => (earlier, earlier.instant().saturating_duration_since(now)),
            None => (own, self.timeout),
        };
        if self.propagate {
            // The common case, no earlier deadline, sends a header encoded once.
            let header = match earlier {
                Some(_) => encode_timeout(budget),
                None => self.full_budget.clone(),
            };
            request.headers_mut().insert(TIMEOUT_HEADER, header);
        }
        // The layers behind this one see the deadline as the current one while they are called
        // and while they run (`Deadline::current`), which costs no allocation, unlike a request
        // extension.
        let inner = deadline.scope(deadline.sync_scope(|| self.inner.call(request)));
        ResponseFuture::new(
            inner,
            Some(deadline.instant()),
            budget,
            self.expired.clone(),
        )
    }
}

// === impl HonorDeadline ===

impl<S> HonorDeadline<S> {
    pub(crate) fn new(inner: S, max_budget: Duration) -> Self {
        Self {
            inner,
            max_budget,
            expired: metrics::counter!("mesh_deadlines_exceeded_total"),
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let budget = match read_budget(request.headers()) {
            Ok(budget) => budget.map(|budget| budget.min(self.max_budget)),
            Err(invalid) => return ResponseFuture::invalid(invalid),
        };
        // Without a header the handler is not held to a deadline, but the calls it makes never
        // get more than the cap.
        let deadline = budget.map(Deadline::after);
        let scoped = deadline.unwrap_or(Deadline::after(self.max_budget));
        let inner = scoped.sync_scope(|| self.inner.call(request));
        ResponseFuture::new(
            scoped.scope(inner),
            deadline.map(Deadline::instant),
            budget.unwrap_or(self.max_budget),
            self.expired.clone(),
        )
    }
}
