use std::{
    pin::Pin,
    task::{Context, Poll},
};

use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;

use crate::observe::TraceContext;

pin_project_lite::pin_project! {
    /// The response future of [`ServerTrace`](super::ServerTrace): the inner one in the
    /// request's trace context and span.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<TraceContext, F>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: Instrumented<TaskLocalFuture<TraceContext, F>>) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
