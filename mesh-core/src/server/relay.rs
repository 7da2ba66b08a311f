//! Relaying: serving a plain HTTP/1.1 request from its bytes, before it becomes an
//! `http::Request` and goes through the server's layers (see [`Relay`]).

use std::{pin::Pin, sync::Arc};

use axum::response::Response;
use tokio::time::Instant;
use tracing::Instrument;

use super::layers::{
    metrics::record,
    stack::ENDPOINTS,
    trace::{hop_span, record_answer, record_status, request_context, request_span},
};
use crate::{
    http1::{RawAnswer, RawRequest},
    observe::{RouteLabel, ServerSeries, TraceContext, method_label, span::decide_new_trace},
};

/// The answer a relay gives to a request it took.
#[derive(Debug)]
pub enum Relayed {
    /// An upstream's answer, passed on as read.
    Raw(RawAnswer),
    /// An answer built as a response (an error's, say), written as the service's are; its
    /// [`RouteLabel`](crate::observe::RouteLabel) extension names its route for the metrics.
    Typed(Response),
}

/// The future of a relayed request's answer.
pub type RelayFuture = Pin<Box<dyn Future<Output = Relayed> + Send>>;

/// Serves the requests it can from their bytes, before they become `http::Request`s.
///
/// A proxy that only passes requests on (the gateway's plain routes) spends most of its time
/// building header maps it then writes out again. A relay, given to
/// `ServerBuilder::relay` beside the service, is offered each
/// request the server reads itself (plain HTTP/1.1 with no body or a small one) as a
/// [`RawRequest`]: the head's bytes and where each field lies. It either takes the request,
/// returning the future of its answer, or leaves it, and the service serves the request as any
/// other. The relay must answer a request it takes as the service would have: the server's
/// layers do not see it.
///
/// The server keeps its own part of every relayed request: the trace context
/// ([`TraceContext::current`] is the request's while the relay runs), the request span, the
/// request metrics (under the route the answer names), the idle timer, keep-alive and draining.
/// `mesh_server_relayed_requests_total{service}` counts the requests relayed. Never offered:
/// requests to the runtime's endpoints (`/health…`, `/metrics`), bodies over the server's body
/// limit, requests carrying a deadline header, and everything hyper serves (HTTP/2, TLS,
/// upgrades, streamed bodies).
///
/// ```
/// use mesh_core::axum::{body::Body, response::Response};
/// use mesh_core::{http1::RawRequest, server::{Relay, RelayFuture, Relayed}};
///
/// /// Answers `GET /ping` itself and leaves every other request to the service.
/// struct Ping;
///
/// impl Relay for Ping {
///     fn relay(&self, request: &RawRequest<'_>) -> Option<RelayFuture> {
///         if request.method() != http::Method::GET || request.path() != "/ping" {
///             return None;
///         }
///         let pong = Response::new(Body::from("pong"));
///         Some(Box::pin(std::future::ready(Relayed::Typed(pong))))
///     }
/// }
/// // Served with `mesh.server(router).relay(Ping).start()`.
/// ```
///
/// [`TraceContext::current`]: crate::observe::TraceContext::current
pub trait Relay: Send + Sync + 'static {
    /// Takes `request` (returning its answer's future) or leaves it (`None`) to the service.
    /// Called in the request's trace context. What the future needs of the request is copied
    /// before this returns.
    fn relay(&self, request: &RawRequest<'_>) -> Option<RelayFuture>;
}

/// The server's side of relaying: what it checks before offering a request, and what it keeps
/// of the requests relayed (see [`Relay`]).
pub(crate) struct Relaying {
    pub(crate) relay: Arc<dyn Relay>,
    /// The request metrics, shared with the server's layers.
    pub(crate) series: Arc<ServerSeries>,
    /// The server's body limit: a larger body is the layers' to refuse.
    pub(crate) body_limit: usize,
    /// `mesh_server_relayed_requests_total{service}`: the requests the relay took.
    pub(crate) relayed: metrics::Counter,
}

impl Relaying {
    /// Offers `request` to the relay; the future of its answer, in the request's trace context
    /// and span and counted once answered, when taken.
    pub(crate) fn offer(
        &self,
        request: &RawRequest<'_>,
    ) -> Option<impl Future<Output = Relayed> + Send + use<>> {
        if request.body.len() > self.body_limit || ENDPOINTS.contains(&request.path()) {
            return None;
        }
        let mut parent = None;
        for (name, value) in request.fields() {
            match name.len() {
                11 if name.eq_ignore_ascii_case(b"traceparent") => {
                    parent = std::str::from_utf8(value)
                        .ok()
                        .and_then(TraceContext::parse);
                }
                // A deadline is the layers' to honour.
                12 if name.eq_ignore_ascii_case(b"mesh-timeout")
                    || name.eq_ignore_ascii_case(b"grpc-timeout") =>
                {
                    return None;
                }
                _ => {}
            }
        }
        let started = Instant::now();
        let mut context = request_context(parent);
        if parent.is_none() {
            // The relay sends the IDs on before the span starts: decide now whether the
            // new trace is kept.
            context = decide_new_trace(self.series.service(), context);
        }
        let answer = context.sync_scope(|| self.relay.relay(request))?;
        self.relayed.increment(1);
        let method = method_label(request.method);
        // Started once the relay took the request (a request it leaves is the layers' to
        // trace).
        let host = || {
            request
                .value("host")
                .and_then(|h| std::str::from_utf8(h).ok())
        };
        let service = self.series.service();
        let path = request.path();
        let mut hop = hop_span(service, method, path, host, "1.1", &mut context, parent);
        let span = request_span(self.series.service(), method, request.path(), &context);
        let series = self.series.clone();
        Some(async move {
            let answer = context.scope(answer).instrument(span).await;
            if hop.is_recording() {
                match &answer {
                    Relayed::Raw(raw) => {
                        record_status(&mut hop, method, raw.route.as_ref(), raw.status)
                    }
                    Relayed::Typed(response) => record_answer(&mut hop, method, response),
                }
            }
            drop(hop);
            let (status, route) = match &answer {
                Relayed::Raw(raw) => (raw.status, raw.route.as_ref()),
                Relayed::Typed(response) => (
                    response.status(),
                    response
                        .extensions()
                        .get::<RouteLabel>()
                        .map(|RouteLabel(route)| route),
                ),
            };
            record(&series, method, route, status, started);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn request<'a>(head: &'a [u8], target: &'a str) -> RawRequest<'a> {
        RawRequest {
            head,
            method: &Method::GET,
            target,
            path_end: target.find('?').unwrap_or(target.len()),
            fields: &[],
            body: &[],
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn a_target_is_read_as_path_and_query() {
        let with_query = request(b"", "/items?page=2&q=a?b");
        assert_eq!(with_query.path(), "/items");
        assert_eq!(with_query.query(), Some("page=2&q=a?b"));
        let without = request(b"", "/items");
        assert_eq!((without.path(), without.query()), ("/items", None));
        let empty_query = request(b"", "/items?");
        assert_eq!(
            (empty_query.path(), empty_query.query()),
            ("/items", Some(""))
        );
    }

    #[test]
    fn fields_are_found_by_name_in_any_case_and_in_order() {
        let head = b"Host: a\r\nX-Tag: one\r\nx-tag: two\r\n";
        let spans = [(0, 4, 6, 1), (9, 5, 16, 3), (21, 5, 28, 3)];
        let mut request = request(head, "/");
        request.fields = &spans;
        assert_eq!(request.value("host"), Some(&b"a"[..]));
        let tags: Vec<&[u8]> = request.values("X-TAG").collect();
        assert_eq!(tags, [&b"one"[..], &b"two"[..]]);
        assert_eq!(request.value("missing"), None);
    }
}
