use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use tokio::time::Instant;

use super::record;
use crate::observe::{RouteLabel, ServerSeries};

pin_project_lite::pin_project! {
    /// The response future of [`RequestMetrics`](super::RequestMetrics): the inner one, its
    /// answer counted and timed once ready.
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) inner: F,
        pub(super) series: Arc<ServerSeries>,
        pub(super) method: &'static str,
        pub(super) grpc_route: Option<Arc<str>>,
        pub(super) started: Instant,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        let (status, route) = match &answer {
            Ok(response) => {
                let labelled = response
                    .extensions()
                    .get::<RouteLabel>()
                    .map(|RouteLabel(route)| route);
                // gRPC's UNIMPLEMENTED (12): no method of the service, no route of its own.
                let implemented = response
                    .headers()
                    .get("grpc-status")
                    .is_none_or(|status| status != "12");
                let grpc = this.grpc_route.as_ref().filter(|_| implemented);
                (response.status(), grpc.or(labelled))
            }
            Err(_) => (http::StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        record(this.series, this.method, route, status, *this.started);
        Poll::Ready(answer)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}
