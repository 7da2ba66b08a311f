//! Serves each request in its trace: the W3C `traceparent` it carries (or a new trace), made
//! current for the service ([`TraceContext::current`]) and for the calls it makes, and a
//! `request` span with the service, method, path and trace ID; its W3C `baggage` is current too
//! ([`Baggage::current`]). When the service exports
//! traces ([`observe::export`](crate::observe)) the request is a server span too, named and
//! attributed after OpenTelemetry's HTTP conventions (`GET /orders/{id}`,
//! `http.request.method`, `url.path`, `http.route`, `http.response.status_code`, …).
//!
//! ```
//! use mesh_core::axum::{Router, routing::get};
//! use mesh_core::{observe::TraceContext, server::layers::ServerTraceLayer};
//!
//! let router: Router = Router::new()
//!     .route("/", get(|| async { TraceContext::current().unwrap().trace_id() }))
//!     .layer(ServerTraceLayer::new("inventory-service"));
//! ```

mod future;
mod layer;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tower::Service;
use tracing::Instrument;

pub(crate) use self::future::{record_answer, record_status};
pub use self::{future::ResponseFuture, layer::ServerTraceLayer};
use crate::observe::{
    Baggage, TraceContext, method_label,
    span::{HopSpan, Kind, Parent},
};

/// Serves requests in their trace context and span; see the [module](self).
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
    service: Arc<str>,
}

impl<S> ServerTrace<S> {
    /// `inner`, serving as `service` (the span's `service` field).
    pub fn new(inner: S, service: impl Into<Arc<str>>) -> Self {
        Self {
            inner,
            service: service.into(),
        }
    }
}

impl<S, B, ResB> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let parent = TraceContext::from_request(&request);
        let mut context = request_context(parent);
        let method = method_label(request.method());
        let hop = server_span(&self.service, method, &request, &mut context, parent);
        let span = request_span(&self.service, method, request.uri().path(), &context);
        let baggage = Baggage::from_request(&request);
        // Called in the context too: what a service does before its future (a proxy's
        // request ID, say) belongs to the request's trace.
        let future = Baggage::sync_scope(baggage.clone(), || {
            context.sync_scope(|| self.inner.call(request))
        });
        let future = context.scope(Baggage::scope(baggage, future));
        ResponseFuture::new(future.instrument(span), hop, method)
    }
}

/// The exported span of a request served (recording only when the service exports); a new
/// trace's sampling decision goes into `context`.
pub(crate) fn server_span<B>(
    service: &str,
    method: &'static str,
    request: &http::Request<B>,
    context: &mut TraceContext,
    parent: Option<TraceContext>,
) -> HopSpan {
    let version = match request.version() {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    let host = || {
        request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    };
    hop_span(
        service,
        method,
        request.uri().path(),
        host,
        version,
        context,
        parent,
    )
}

/// The exported span of a request served, from what it says of itself: its method, path,
/// `Host` (read only when the span records) and HTTP version.
pub(crate) fn hop_span<'a>(
    service: &str,
    method: &'static str,
    path: &str,
    host: impl FnOnce() -> Option<&'a str>,
    version: &'static str,
    context: &mut TraceContext,
    parent: Option<TraceContext>,
) -> HopSpan {
    let parent = parent.map(|context| Parent {
        context,
        remote: true,
    });
    HopSpan::start(
        service,
        Kind::Server,
        || method.into(),
        context,
        parent,
        || {
            let mut attributes = vec![
                ("http.request.method", method.into()),
                ("url.path", path.to_owned().into()),
                ("url.scheme", "http".into()),
                ("network.protocol.version", version.into()),
            ];
            if let Some(host) = host() {
                attributes.push(("server.address", host.to_owned().into()));
            }
            attributes
        },
    )
}

/// The trace context a request is served in: a new span of the trace its `traceparent`
/// names, else a new trace.
pub(crate) fn request_context(parent: Option<TraceContext>) -> TraceContext {
    parent.map_or_else(TraceContext::root, |parent| parent.child())
}

/// The span a request is served in.
pub(crate) fn request_span(
    service: &str,
    method: &'static str,
    path: &str,
    context: &TraceContext,
) -> tracing::Span {
    tracing::info_span!(
        "request",
        service = %service,
        method,
        path = %path,
        trace_id = %context.trace_id(),
    )
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    async fn text(response: http::Response<Body>) -> String {
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn router() -> Router {
        Router::new()
            .route(
                "/",
                get(|| async {
                    let context = TraceContext::current().expect("a trace context");
                    format!("{} {}", context.trace_id(), context.span_id())
                }),
            )
            .layer(ServerTraceLayer::new("inventory-service"))
    }

    #[tokio::test]
    async fn a_request_is_served_in_the_trace_its_traceparent_names() {
        let parent = TraceContext::root();
        let request = http::Request::get("/")
            .header("traceparent", parent.to_header())
            .body(Body::empty())
            .unwrap();
        let answer = text(router().oneshot(request).await.unwrap()).await;
        let (trace, span) = answer.split_once(' ').unwrap();
        assert_eq!(trace, parent.trace_id());
        assert_ne!(span, parent.span_id(), "the server's span is a child");
    }

    #[tokio::test]
    async fn a_request_without_a_traceparent_starts_a_trace() {
        let request = || http::Request::get("/").body(Body::empty()).unwrap();
        let first = text(router().oneshot(request()).await.unwrap()).await;
        let second = text(router().oneshot(request()).await.unwrap()).await;
        assert_eq!(first.len(), 32 + 1 + 16);
        assert_ne!(first[..32], second[..32], "each request its own trace");
    }
}
