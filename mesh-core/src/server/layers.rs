//! The server-side layers every service's router is wrapped in, outermost first:
//!
//! ```text
//! observe (trace-context extraction, tracing span, RED metrics)
//!   ─► panic → 500 JSON ─► token verification (when configured) ─► deadline honouring
//!   ─► request body limit ─► handler
//! ```

use std::{any::Any, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_http::{catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer};
use tracing::Instrument;

use super::ServerSettings;
use crate::{
    auth::{AuthError, AuthSettings, JwtVerifier, bearer_token},
    context::{PeerAddr, Subject},
    error::{BoxError, ErrorKind, MeshError, panic_message},
    observe::{TraceContext, status_label},
    resilience::timeout::HonorDeadlineLayer,
};

/// Wraps `router` in the server layers; `auth` verifies tokens when set.
pub(crate) fn wrap(
    router: Router,
    service: Arc<str>,
    settings: &ServerSettings,
    auth: Option<JwtVerifier>,
) -> Router {
    let mut router = router
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|error: BoxError| async move {
                    MeshError::from_boxed(error).into_response()
                }))
                .layer(HonorDeadlineLayer::new().max_budget(settings.max_deadline)),
        );
    if let Some(verifier) = auth {
        let state = Arc::new((verifier, settings.auth.clone()));
        router = router.layer(middleware::from_fn_with_state(state, authenticate));
    }
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(service, observe))
}

/// Requires a valid bearer token on every non-public path, and hands the handler the caller's
/// [`Identity`](crate::auth::Identity) (and its [`Subject`], for rate limits keyed by caller).
async fn authenticate(
    State(auth): State<Arc<(JwtVerifier, AuthSettings)>>,
    mut request: Request,
    next: Next,
) -> Response {
    let (verifier, settings) = auth.as_ref();
    if settings.is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let outcome = match bearer_token(request.headers()) {
        Some(token) => verifier.verify(token).await,
        None => Err(AuthError::Missing),
    };
    match outcome {
        Ok(identity) => {
            request
                .extensions_mut()
                .insert(Subject(identity.subject.clone()));
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(error) => {
            tracing::debug!(%error, "request refused");
            let mut response = MeshError::from(error).into_response();
            if response.status() == http::StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// Extracts the trace context (or starts a trace), runs the request in its span and scope,
/// and records `mesh_server_requests_total{service, method, route, status}` and
/// `mesh_server_request_duration_seconds{service, method, route}`.
async fn observe(State(service): State<Arc<str>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let context = TraceContext::from_request(&request)
        .map_or_else(TraceContext::root, |parent| parent.child());
    request.extensions_mut().insert(context);
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let peer = PeerAddr(*peer);
        request.extensions_mut().insert(peer);
    }
    let method = request.method().clone();
    let route: Arc<str> = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".into(), |path| path.as_str().into());
    let span = tracing::info_span!(
        "request",
        service = %service,
        method = %method,
        route = %route,
        trace_id = %context.trace_id(),
    );
    let response = context.scope(next.run(request)).instrument(span).await;
    let method = method_label(&method);
    metrics::counter!(
        "mesh_server_requests_total",
        "service" => service.clone(),
        "method" => method,
        "route" => route.clone(),
        "status" => status_label(response.status().as_u16()),
    )
    .increment(1);
    metrics::histogram!(
        "mesh_server_request_duration_seconds",
        "service" => service,
        "method" => method,
        "route" => route,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// A handler panic becomes a 500 with the JSON error body; the process goes on.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!(panic = %panic_message(panic.as_ref()), "handler panicked");
    MeshError::new(ErrorKind::Internal, "the handler failed").into_response()
}

/// The error body of the wire contract, with the kind's status, the current trace ID and
/// `Retry-After` when known.
impl IntoResponse for MeshError {
    fn into_response(self) -> Response {
        let trace_id = TraceContext::current().map(|c| c.trace_id());
        let mut response =
            (self.status(), axum::Json(self.to_json(trace_id.as_deref()))).into_response();
        if let Some(after) = self.retry_after() {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
