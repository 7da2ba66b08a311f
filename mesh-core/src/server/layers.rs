//! The server-side layers every service's router is wrapped in, outermost first:
//!
//! ```text
//! observe (trace-context extraction, tracing span, RED metrics)
//!   ─► panic → 500 JSON ─► token verification (when configured) ─► errors → JSON answers
//!   ─► deadline honouring ─► request body limit ─► router (each matched route labels its
//!   response)
//! ```
//!
//! They wrap the router once, not each of its routes: a request clones the stack once, and
//! each layer is a plain service (no per-request boxing of the rest of the stack).

use std::{
    any::Any,
    convert::Infallible,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    response::{IntoResponse, Response},
};
use futures_util::future::{BoxFuture, Either};
use http::{HeaderValue, header};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};
use tracing::{Instrument, instrument::Instrumented};

use super::{ServerSettings, body_limit::BodyLimit};
use crate::{
    auth::{AuthError, AuthSettings, JwtVerifier, bearer_token},
    context::Subject,
    error::{BoxError, ErrorKind, MeshError, panic_message},
    observe::{RouteLabel, ServerSeries, TraceContext},
    resilience::timeout::HonorDeadlineLayer,
};

/// The served application: the router inside the server layers.
pub(crate) type App = BoxCloneSyncService<Request, Response, Infallible>;

/// The body limit axum's extractors apply when nothing lifts it.
const AXUM_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Labels each route's response with the route's pattern, for the request metrics.
pub(crate) fn label_routes(router: Router) -> Router {
    if !router.has_routes() {
        // Only a fallback, if anything: its answers count as `unmatched`.
        return router;
    }
    router.route_layer(tower::layer::layer_fn(|inner| LabelRoute { inner }))
}

/// Wraps `app` in the server layers, with the runtime's `endpoints` beside it (unless they are
/// served apart); `auth` verifies tokens when set.
pub(crate) fn wrap<S>(
    app: S,
    endpoints: Option<Router>,
    series: Arc<ServerSeries>,
    settings: &ServerSettings,
    auth: Option<JwtVerifier>,
) -> App
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let routed = WithEndpoints {
        endpoints: endpoints.map(label_routes),
        app,
    };
    let auth = auth.map(|verifier| Arc::new((verifier, settings.auth.clone())));
    let stack = ServiceBuilder::new()
        .layer(tower::layer::layer_fn(move |inner| Observe {
            inner,
            series: series.clone(),
        }))
        .layer(tower::layer::layer_fn(|inner| CatchPanic { inner }))
        .option_layer(auth.map(|auth| {
            tower::layer::layer_fn(move |inner| Authenticate {
                inner,
                auth: auth.clone(),
            })
        }))
        .layer(tower::layer::layer_fn(|inner| AnswerErrors {
            inner,
            refused: None,
        }))
        .layer(HonorDeadlineLayer::new().max_budget(settings.max_deadline))
        .layer(tower::layer::layer_fn(|inner| BodyLimit {
            inner,
            limit: settings.body_limit,
        }))
        // axum's extractors cap bodies at their own default; a larger configured limit lifts
        // that cap (the layer above enforces it). A smaller one needs nothing more, and saves
        // an extension per request.
        .option_layer((settings.body_limit > AXUM_BODY_LIMIT).then(DefaultBodyLimit::disable))
        .service(routed);
    BoxCloneSyncService::new(stack)
}

/// Answers the error of a layer inside it with the error's response (its kind's status, the
/// JSON error body), so the served stack never fails.
struct AnswerErrors<S> {
    inner: S,
    /// Why the inner layers could not take a request, answered to the next one.
    refused: Option<BoxError>,
}

impl<S: Clone> Clone for AnswerErrors<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            refused: None,
        }
    }
}

impl<S> Service<Request> for AnswerErrors<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.refused.is_none()
            && let Err(error) = ready!(self.inner.poll_ready(cx))
        {
            self.refused = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.refused.take() {
            Some(error) => Answered::Refused { error: Some(error) },
            None => Answered::Called {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AnswerErrors`].
    #[project = AnsweredProj]
    enum Answered<F> {
        Called { #[pin] future: F },
        Refused { error: Option<BoxError> },
    }
}

impl<F, E> Future for Answered<F>
where
    F: Future<Output = Result<Response, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let error = match self.project() {
            AnsweredProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(error) => error.into(),
            },
            AnsweredProj::Refused { error } => error.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(MeshError::from_boxed(error).into_response()))
    }
}

/// The runtime's own paths, answered by its endpoints whatever the application routes.
pub(crate) const ENDPOINTS: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];

/// Sends the runtime's endpoints (`/health…`, `/metrics`) to their router and every other
/// request to the application, so an application need not be a router.
#[derive(Clone)]
struct WithEndpoints<S> {
    /// `None` when they are served on the management address.
    endpoints: Option<Router>,
    app: S,
}

impl<S, B> Service<http::Request<B>> for WithEndpoints<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let request = request.map(Body::new);
        match &mut self.endpoints {
            Some(endpoints) if ENDPOINTS.contains(&request.uri().path()) => {
                // A router is always ready. Boxed: the endpoints are called rarely, and the
                // router's future would otherwise enlarge every request's.
                Either::Left(Box::pin(endpoints.call(request)))
            }
            _ => Either::Right(self.app.call(request)),
        }
    }
}

/// Puts the matched route into the response, for [`Observe`] outside the router.
#[derive(Clone)]
struct LabelRoute<S> {
    inner: S,
}

impl<S> Service<Request> for LabelRoute<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Labelled<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
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

impl<F, E> Future for Labelled<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(route) = this.route.take() {
            response.extensions_mut().insert(route);
        }
        Poll::Ready(Ok(response))
    }
}

/// Extracts the trace context (or starts a trace), runs the request in its span and scope,
/// and records `mesh_server_requests_total{service, method, route, status}` and
/// `mesh_server_request_duration_seconds{service, method, route}`.
#[derive(Clone)]
struct Observe<S> {
    inner: S,
    series: Arc<ServerSeries>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let context = request_context(TraceContext::from_request(&request));
        let method = method_label(request.method());
        let span = request_span(&self.series, method, request.uri().path(), &context);
        // Called in the context too: what a service does before its future (a proxy's
        // request ID, say) belongs to the request's trace.
        let response = context.sync_scope(|| self.inner.call(request));
        Observed {
            future: context.scope(response).instrument(span),
            series: self.series.clone(),
            method,
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Observe`]: the inner one in the request's trace context and
    /// span, its answer counted and timed once ready.
    struct Observed<F> {
        #[pin]
        future: Instrumented<TaskLocalFuture<TraceContext, F>>,
        series: Arc<ServerSeries>,
        method: &'static str,
        started: Instant,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let route = response
            .extensions()
            .get::<RouteLabel>()
            .map(|RouteLabel(route)| route);
        record(
            this.series,
            this.method,
            route,
            response.status(),
            *this.started,
        );
        Poll::Ready(Ok(response))
    }
}

/// The trace context a request is served in: a new span of the trace its `traceparent`
/// names, else a new trace.
pub(crate) fn request_context(parent: Option<TraceContext>) -> TraceContext {
    parent.map_or_else(TraceContext::root, |parent| parent.child())
}

/// The span a request is served in.
pub(crate) fn request_span(
    series: &ServerSeries,
    method: &'static str,
    path: &str,
    context: &TraceContext,
) -> tracing::Span {
    tracing::info_span!(
        "request",
        service = %series.service(),
        method,
        path = %path,
        trace_id = %context.trace_id(),
    )
}

/// Counts and times an answer, under its route (`unmatched` when it names none).
pub(crate) fn record(
    series: &ServerSeries,
    method: &'static str,
    route: Option<&Arc<str>>,
    status: http::StatusCode,
    started: Instant,
) {
    let series = series.route(method, route.unwrap_or(series.unmatched()));
    series.requests.increment(status.as_u16());
    series.duration.record(started.elapsed().as_secs_f64());
}

/// Requires a valid bearer token on every non-public path, and hands the handler the caller's
/// [`Identity`](crate::auth::Identity) (and its [`Subject`], for rate limits keyed by caller).
#[derive(Clone)]
struct Authenticate<S> {
    inner: S,
    auth: Arc<(JwtVerifier, AuthSettings)>,
}

impl<S> Service<Request> for Authenticate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The ready service serves this request; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let (verifier, settings) = auth.as_ref();
            if settings.is_public(request.uri().path()) {
                return inner.call(request).await;
            }
            let outcome = match bearer_token(request.headers()) {
                Some(token) => verifier.verify(token).await,
                None => Err(AuthError::Missing),
            };
            match outcome {
                Ok(identity) => {
                    request
                        .extensions_mut()
                        .insert(Subject(identity.subject.as_str().into()));
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::debug!(%error, "request refused");
                    let mut response = MeshError::from(error).into_response();
                    if response.status() == http::StatusCode::UNAUTHORIZED {
                        response
                            .headers_mut()
                            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    }
                    Ok(response)
                }
            }
        })
    }
}

/// The `method` label of a request's metrics.
pub(crate) fn method_label(method: &http::Method) -> &'static str {
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

/// Answers a panic in the layers inside it (a handler's bug), while it is called or its
/// future polled, with a `500` and the JSON error body: the connection and the process go on.
/// A panic while the answer's body streams is not caught; that body ends there.
#[derive(Clone)]
struct CatchPanic<S> {
    inner: S,
}

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Caught<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => Caught::Running { future },
            Err(panic) => Caught::Panicked { panic: Some(panic) },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CatchPanic`].
    #[project = CaughtProj]
    enum Caught<F> {
        Running { #[pin] future: F },
        Panicked { panic: Option<Box<dyn Any + Send + 'static>> },
    }
}

impl<F> Future for Caught<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let panic = match self.project() {
            CaughtProj::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(polled) => return polled,
                    Err(panic) => panic,
                }
            }
            CaughtProj::Panicked { panic } => panic.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(panic_response(panic)))
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// Not ready once when `refuse` is set (then ready again); its calls fail with a timeout
    /// for `/fail` and answer `200` otherwise.
    #[derive(Clone)]
    struct Flaky {
        refuse: Arc<AtomicBool>,
    }

    impl Service<Request> for Flaky {
        type Response = Response;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.refuse.swap(false, Ordering::SeqCst) {
                return Poll::Ready(Err(MeshError::new(ErrorKind::BulkheadFull, "full").into()));
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request) -> Self::Future {
            std::future::ready(if request.uri().path() == "/fail" {
                Err(MeshError::new(ErrorKind::Timeout, "too slow").into())
            } else {
                Ok(Response::new(Body::from("ok")))
            })
        }
    }

    async fn kind_of(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body["error"]["kind"].as_str().unwrap().to_owned())
    }

    fn get(path: &str) -> Request {
        http::Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn errors_of_calls_and_of_readiness_are_answered_as_mesh_errors() {
        let refuse = Arc::new(AtomicBool::new(false));
        let mut service = AnswerErrors {
            inner: Flaky {
                refuse: refuse.clone(),
            },
            refused: None,
        };
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(get("/fail"))
            .await
            .unwrap();
        assert_eq!(
            kind_of(answer).await,
            (StatusCode::GATEWAY_TIMEOUT, "timeout".into())
        );

        // Readiness failed: the next call gets that error's answer, the one after goes through.
        refuse.store(true, Ordering::SeqCst);
        let answer = service.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(
            kind_of(answer).await,
            (StatusCode::SERVICE_UNAVAILABLE, "bulkhead_full".into())
        );
        let answer = service.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panic_when_called_or_polled_is_a_500_and_the_service_goes_on() {
        // `/call` panics in `call`, `/poll` in its future, anything else answers `200`.
        let mut service = CatchPanic {
            inner: tower::service_fn(|request: Request| {
                let path = request.uri().path().to_owned();
                assert_ne!(path, "/call", "a bug in call");
                async move {
                    assert_ne!(path, "/poll", "a bug in the future");
                    Ok::<_, Infallible>(Response::new(Body::from("ok")))
                }
            }),
        };
        for path in ["/call", "/poll"] {
            let answer = service
                .ready()
                .await
                .unwrap()
                .call(get(path))
                .await
                .unwrap();
            assert_eq!(
                kind_of(answer).await,
                (StatusCode::INTERNAL_SERVER_ERROR, "internal".into()),
                "{path}"
            );
        }
        let answer = service.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
}
