//! Answers a handler's panic with a `500` (or gRPC `INTERNAL`) instead of dropping the
//! connection: the connection and the process go on.
//!
//! A panic while the service is called or its future polled is caught; one while the answer's
//! body streams is not (that body ends there). The panic's message is logged at `error`.
//!
//! ```
//! use mesh_core::axum::{Router, routing::get};
//! use mesh_core::server::layers::CatchPanicLayer;
//!
//! let router: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(CatchPanicLayer::new());
//! ```

mod future;
mod layer;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    task::{Context, Poll},
};

use tower::Service;

pub use self::{future::ResponseFuture, layer::CatchPanicLayer};
use super::answer::{AnswerBody, is_grpc};

/// Catches the panics of the service inside it; see the [module](self).
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    /// `inner`, its panics answered.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CatchPanic<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: AnswerBody,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc(&request);
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture::running(future, grpc),
            Err(panic) => ResponseFuture::panicked(panic, grpc),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, body::Body, routing::get};
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    fn get_request(path: &str) -> http::Request<Body> {
        http::Request::get(path).body(Body::empty()).unwrap()
    }

    async fn kind_of(response: http::Response<Body>) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body["error"]["kind"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_panic_when_called_or_polled_is_a_500_and_the_service_goes_on() {
        // `/call` panics in `call`, `/poll` in its future, anything else answers `200`.
        let mut service = CatchPanic::new(tower::service_fn(|request: http::Request<Body>| {
            let path = request.uri().path().to_owned();
            assert_ne!(path, "/call", "a bug in call");
            async move {
                assert_ne!(path, "/poll", "a bug in the future");
                Ok::<_, Infallible>(http::Response::new(Body::from("ok")))
            }
        }));
        for path in ["/call", "/poll"] {
            let answer = service
                .ready()
                .await
                .unwrap()
                .call(get_request(path))
                .await
                .unwrap();
            assert_eq!(
                kind_of(answer).await,
                (StatusCode::INTERNAL_SERVER_ERROR, "internal".into()),
                "{path}"
            );
        }
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(get_request("/"))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panicking_handler_of_a_plain_axum_router_is_a_500() {
        let router: Router = Router::new()
            .route("/boom", get(|| async { panic!("a bug") as &'static str }))
            .route("/", get(|| async { "ok" }))
            .layer(CatchPanicLayer::new());
        let answer = router.clone().oneshot(get_request("/boom")).await.unwrap();
        assert_eq!(
            kind_of(answer).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal".into())
        );
        let answer = router.oneshot(get_request("/")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_grpc_call_that_panics_is_answered_internal() {
        let service = CatchPanic::new(tower::service_fn(|_: http::Request<Body>| async {
            panic!("a bug");
            #[allow(unreachable_code)]
            Ok::<http::Response<Body>, Infallible>(http::Response::new(Body::empty()))
        }));
        let request = http::Request::post("/pkg.Service/Method")
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .unwrap();
        let answer = service.oneshot(request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["grpc-status"], "13");
    }
}
