//! Counts and times every answer (RED: rate, errors, duration) as
//! `mesh_server_requests_total{service, method, route, status}` and
//! `mesh_server_request_duration_seconds{service, method, route}`.
//!
//! The `route` label is the pattern of the route that answered, never the raw path, so the
//! set of series stays bounded: an axum route's pattern when the router is wrapped with
//! [`label_routes`], the [`RouteLabel`](crate::observe::RouteLabel) extension of an answer that names its route, the
//! method's path (`/package.Service/Method`) for a gRPC call the service implements, and
//! `unmatched` for anything else. An error of the inner service counts as a `500`.
//!
//! ```
//! use mesh_core::axum::{Router, routing::get};
//! use mesh_core::server::layers::{RequestMetricsLayer, label_routes};
//!
//! let router = label_routes(Router::new().route("/items/{id}", get(|| async { "item" })))
//!     .layer(RequestMetricsLayer::new("inventory-service"));
//! ```

mod future;
mod label;
mod layer;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tokio::time::Instant;
use tower::Service;

pub use self::{future::ResponseFuture, label::label_routes, layer::RequestMetricsLayer};
use super::answer::is_grpc;
use crate::observe::{ServerSeries, method_label};

/// Counts and times the answers of the service inside it; see the [module](self).
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    series: Arc<ServerSeries>,
}

impl<S> RequestMetrics<S> {
    pub(crate) fn with_series(inner: S, series: Arc<ServerSeries>) -> Self {
        Self { inner, series }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for RequestMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        // A gRPC method's path is its route, unless the service does not implement it.
        let grpc_route = is_grpc(&request).then(|| Arc::from(request.uri().path()));
        ResponseFuture {
            inner: self.inner.call(request),
            series: self.series.clone(),
            method,
            grpc_route,
            started,
        }
    }
}

/// Counts and times an answer, under its route (`unmatched` when it names none).
pub(crate) fn record(
    series: &ServerSeries,
    method: &'static str,
    route: Option<&Arc<str>>,
    status: http::StatusCode,
    started: Instant,
) {
    let elapsed = started.elapsed();
    series.tally(status.as_u16(), elapsed);
    let route = series.route(method, route.unwrap_or(series.unmatched()));
    route.requests.increment(status.as_u16());
    route.duration.record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, body::Body, routing::get};
    use metrics_util::{
        MetricKind,
        debugging::{DebugValue, DebuggingRecorder},
    };
    use tower::{Layer, ServiceExt};

    use super::*;

    /// The request counts recorded while `run` runs, as `(method, route, status) → count`.
    fn counted(run: impl AsyncFnOnce()) -> Vec<(String, String, String, u64)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || tokio_test::block_on(run()));
        let mut counts: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let (MetricKind::Counter, DebugValue::Counter(count)) = (key.kind(), value) else {
                    return None;
                };
                let key = key.key();
                if key.name() != "mesh_server_requests_total" {
                    return None;
                }
                let label = |name| {
                    key.labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap()
                };
                Some((label("method"), label("route"), label("status"), count))
            })
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn an_axum_router_is_counted_by_route_pattern_and_status() {
        let counts = counted(async || {
            let router = label_routes(Router::new().route("/items/{id}", get(|| async { "item" })))
                .layer(RequestMetricsLayer::new("inventory"));
            for path in ["/items/1", "/items/2", "/nothing"] {
                let request = http::Request::get(path).body(Body::empty()).unwrap();
                router.clone().oneshot(request).await.unwrap();
            }
        });
        assert_eq!(
            counts,
            [
                ("GET".into(), "/items/{id}".into(), "200".into(), 2),
                ("GET".into(), "unmatched".into(), "404".into(), 1),
            ]
        );
    }

    #[test]
    fn a_grpc_method_is_its_route_unless_it_is_unimplemented() {
        let counts = counted(async || {
            let service = RequestMetricsLayer::new("inventory").layer(tower::service_fn(
                |request: http::Request<Body>| async move {
                    let status = if request.uri().path() == "/pkg.Stock/Count" {
                        "0"
                    } else {
                        "12"
                    };
                    let mut answer = http::Response::new(Body::empty());
                    answer
                        .headers_mut()
                        .insert("grpc-status", status.parse().unwrap());
                    Ok::<_, Infallible>(answer)
                },
            ));
            for path in ["/pkg.Stock/Count", "/pkg.Stock/Unknown"] {
                let request = http::Request::post(path)
                    .header("content-type", "application/grpc")
                    .body(Body::empty())
                    .unwrap();
                service.clone().oneshot(request).await.unwrap();
            }
        });
        assert_eq!(
            counts,
            [
                ("POST".into(), "/pkg.Stock/Count".into(), "200".into(), 1),
                ("POST".into(), "unmatched".into(), "200".into(), 1),
            ]
        );
    }
}
