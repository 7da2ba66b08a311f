//! The runtime's assembly of the server layers around a service's application, outermost
//! first:
//!
//! ```text
//! request metrics ─► trace context and span ─► panic → 500 ─► the gateway's proof and token
//!   verification (when configured) ─► errors → JSON answers ─► deadline honouring ─► request body limit
//!   ─► the runtime's endpoints, or the application (a router's routes label their answers)
//! ```
//!
//! They wrap the application once, not each of its routes: a request clones the stack once,
//! and each layer is a plain service (no per-request boxing of the rest of the stack).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    response::Response,
};
use futures_util::future::{BoxFuture, Either};
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};

use super::{
    CatchPanicLayer, EdgeProofLayer, JwtAuthLayer, RequestMetricsLayer, ServerTraceLayer,
    answer::{error_answer, is_grpc},
    label_routes,
};
use crate::{
    auth::JwtVerifier,
    error::{BoxError, MeshError},
    observe::ServerSeries,
    resilience::timeout::HonorDeadlineLayer,
    server::{ServerSettings, body_limit::BodyLimit},
};

/// The served application: the router inside the server layers.
pub(crate) type App = BoxCloneSyncService<Request, Response, Infallible>;

/// The body limit axum's extractors apply when nothing lifts it.
const AXUM_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Wraps `app` in the server layers, with the runtime's `endpoints` beside it (unless they are
/// served apart); `edge` requires the gateway's proof and `auth` verifies tokens, when set.
pub(crate) fn wrap<S>(
    app: S,
    endpoints: Option<Router>,
    series: Arc<ServerSeries>,
    settings: &ServerSettings,
    auth: Option<JwtVerifier>,
    edge: Option<JwtVerifier>,
) -> App
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let routed = WithEndpoints {
        endpoints: endpoints.map(label_routes),
        app,
    };
    let service: Arc<str> = series.service().into();
    let stack = ServiceBuilder::new()
        .layer(RequestMetricsLayer::with_series(series))
        .layer(ServerTraceLayer::new(service))
        .layer(CatchPanicLayer::new())
        .option_layer(
            edge.map(|verifier| {
                EdgeProofLayer::with_public(verifier, settings.edge.public.clone())
            }),
        )
        .option_layer(
            auth.map(|verifier| JwtAuthLayer::with_public(verifier, settings.auth.public.clone())),
        )
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
        let grpc = is_grpc(&request);
        match self.refused.take() {
            Some(error) => Answered::Refused {
                error: Some(error),
                grpc,
            },
            None => Answered::Called {
                future: self.inner.call(request),
                grpc,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AnswerErrors`].
    #[project = AnsweredProj]
    enum Answered<F> {
        Called { #[pin] future: F, grpc: bool },
        Refused { error: Option<BoxError>, grpc: bool },
    }
}

impl<F, E> Future for Answered<F>
where
    F: Future<Output = Result<Response, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (error, grpc) = match self.project() {
            AnsweredProj::Called { future, grpc } => match ready!(future.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(error) => (error.into(), *grpc),
            },
            AnsweredProj::Refused { error, grpc } => {
                (error.take().expect("polled after completion"), *grpc)
            }
        };
        Poll::Ready(Ok(error_answer(&MeshError::from_boxed(error), grpc)))
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::error::ErrorKind;

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
}
