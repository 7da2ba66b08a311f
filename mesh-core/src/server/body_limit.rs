//! The request body limit (`server.body_limit`): a body over it gets `413`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
};

use axum::{
    body::{Body, HttpBody},
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use http::header;
use tower::Service;

use crate::{error::MeshError, http1::fields::content_length};

/// Refuses a request body over `limit` bytes with `413`: before the handler runs when its size
/// is known (`Content-Length`, or a body already read whole), and as it grows past the limit
/// otherwise (axum's extractors answer `413` then).
///
/// A body whose exact size is known and within the limit goes on as it is; only a body of
/// unknown size is wrapped to count what it yields.
#[derive(Debug, Clone)]
pub(super) struct BodyLimit<S> {
    pub(super) inner: S,
    pub(super) limit: usize,
}

impl<S> Service<Request> for BodyLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let limit = self.limit as u64;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| content_length(value.as_bytes()));
        let exact = request.body().size_hint().exact();
        if declared.or(exact).is_some_and(|length| length > limit) {
            return Either::Left(ready(Ok(too_large(self.limit))));
        }
        let request = if exact.is_some() {
            request
        } else {
            request.map(|body| Body::new(http_body_util::Limited::new(body, self.limit)))
        };
        Either::Right(self.inner.call(request))
    }
}

fn too_large(limit: usize) -> Response {
    MeshError::payload_too_large(limit).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use futures_util::stream;
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// Answers with the length of the body it read, or the status of the read's failure.
    fn limited(
        limit: usize,
    ) -> BodyLimit<impl Service<Request, Response = Response, Error = Infallible> + Clone> {
        let echo = tower::service_fn(|request: Request| async move {
            Ok::<_, Infallible>(match to_bytes(request.into_body(), usize::MAX).await {
                Ok(bytes) => bytes.len().to_string().into_response(),
                Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            })
        });
        BodyLimit { inner: echo, limit }
    }

    async fn answer(limit: usize, request: Request) -> (StatusCode, String) {
        let response = limited(limit).oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn streamed(chunks: usize) -> Body {
        let chunk = |_| Ok::<_, Infallible>(bytes::Bytes::from_static(b"0123456789"));
        Body::from_stream(stream::iter((0..chunks).map(chunk)))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler_whole() {
        let known = Request::new(Body::from("0123456789"));
        assert_eq!(answer(10, known).await, (StatusCode::OK, "10".into()));
        assert_eq!(
            answer(20, Request::new(streamed(2))).await,
            (StatusCode::OK, "20".into())
        );
    }

    #[tokio::test]
    async fn a_body_known_to_be_over_the_limit_is_refused_before_the_handler() {
        let (status, body) = answer(9, Request::new(Body::from("0123456789"))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("payload_too_large"), "{body}");
        let declared = Request::builder()
            .header(header::CONTENT_LENGTH, "4096")
            .body(streamed(1))
            .unwrap();
        let (status, body) = answer(1024, declared).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("payload_too_large"), "{body}");
    }

    #[tokio::test]
    async fn a_streamed_body_stops_where_it_passes_the_limit() {
        let (status, _) = answer(25, Request::new(streamed(3))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
