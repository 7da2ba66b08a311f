use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;

use crate::observe::{Baggage, HopEvent, RouteLabel, TraceContext, span::HopSpan};

pin_project_lite::pin_project! {
    /// The response future of [`ServerTrace`](super::ServerTrace): the inner one in the
    /// request's trace context and span, ending the exported span with the answer.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<TraceContext, TaskLocalFuture<Option<Baggage>, F>>>,
        span: HopSpan,
        method: &'static str,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: Instrumented<TaskLocalFuture<TraceContext, TaskLocalFuture<Option<Baggage>, F>>>,
        span: HopSpan,
        method: &'static str,
    ) -> Self {
        Self {
            inner,
            span,
            method,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if this.span.is_recording() {
            match &output {
                Ok(response) => record_answer(this.span, this.method, response),
                Err(_) => this.span.fail("_OTHER", || "the service failed".to_owned()),
            }
        }
        Poll::Ready(output)
    }
}

/// Names `span` after the route `response` answered and notes its status and events.
pub(crate) fn record_answer<B>(
    span: &mut HopSpan,
    method: &'static str,
    response: &http::Response<B>,
) {
    let route = response.extensions().get::<RouteLabel>().map(|r| &r.0);
    record_status(span, method, route, response.status());
    if let Some(event) = response.extensions().get::<HopEvent>() {
        span.event(event.name, vec![("detail", event.detail.clone().into())]);
    }
}

/// Names `span` after `route` and notes `status`; a 5xx fails it.
pub(crate) fn record_status(
    span: &mut HopSpan,
    method: &'static str,
    route: Option<&std::sync::Arc<str>>,
    status: http::StatusCode,
) {
    if let Some(route) = route {
        span.rename(|| format!("{method} {route}"));
        span.set("http.route", route.to_string());
    }
    span.set("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.fail(status.as_u16().to_string(), || status.to_string());
    }
}
