use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{Router, extract::MatchedPath};
use tower::Service;

use crate::observe::RouteLabel;

/// Labels each route's answer of `router` with the route's pattern ([`RouteLabel`]), for
/// [`RequestMetrics`](super::RequestMetrics) outside the router.
pub fn label_routes(router: Router) -> Router {
    if !router.has_routes() {
        // Only a fallback, if anything: its answers count as `unmatched`.
        return router;
    }
    router.route_layer(tower::layer::layer_fn(|inner| LabelRoute { inner }))
}

/// Puts the matched route into the response.
#[derive(Clone)]
struct LabelRoute<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for LabelRoute<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Labelled<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| RouteLabel(path.as_str().into()));
        Labelled {
            future: self.inner.call(request),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's response, labelled with the route once it is ready.
    struct Labelled<F> {
        #[pin]
        future: F,
        route: Option<RouteLabel>,
    }
}

impl<F, B, E> Future for Labelled<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(route) = this.route.take() {
            response.extensions_mut().insert(route);
        }
        Poll::Ready(Ok(response))
    }
}
