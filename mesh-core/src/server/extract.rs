//! axum's `Json`, `Path` and `Query` extractors with mesh's error answers: a request whose
//! body, path or query does not read is refused with the status axum gives it (`400`, `415`,
//! `422`, …) and mesh's JSON error body, not axum's plain text, so a client reads every
//! refusal the same way. `#[mesh::service]` routers extract with these.
//!
//! ```
//! use mesh_core::axum::{Router, routing::post};
//! use mesh_core::server::extract::Json;
//!
//! #[derive(serde::Deserialize)]
//! struct Order { sku: String }
//!
//! let router: Router = Router::new().route(
//!     "/orders",
//!     post(|Json(order): Json<Order>| async move { order.sku }),
//! );
//! ```

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use crate::error::MeshError;

/// The refusal of a request that does not read: its status, and a kind naming what did not.
fn refused(status: http::StatusCode, code: &'static str, text: String) -> MeshError {
    MeshError::custom(status, code, text)
}

/// A JSON body, as `axum::Json`, refused with mesh's error body (`invalid_body`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = MeshError;

    async fn from_request(request: Request, state: &S) -> Result<Self, MeshError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(refused(
                rejection.status(),
                "invalid_body",
                rejection.body_text(),
            )),
        }
    }
}

/// Path parameters, as `axum::extract::Path`, refused with mesh's error body
/// (`invalid_path`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = MeshError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MeshError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(refused(
                rejection.status(),
                "invalid_path",
                rejection.body_text(),
            )),
        }
    }
}

/// A query string, as `axum::extract::Query`, refused with mesh's error body
/// (`invalid_query`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = MeshError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MeshError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(refused(
                rejection.status(),
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::post};
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        quantity: u32,
    }

    async fn answer(content_type: Option<&str>, body: &'static str) -> (u16, serde_json::Value) {
        let router: Router = Router::new().route(
            "/orders/{id}",
            post(|Path(_): Path<u32>, Json(_): Json<Order>| async { "ok" }),
        );
        let mut request = http::Request::post("/orders/7");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = router
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let bytes = axum::body::to_bytes(answer.into_body(), 4096)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_body_that_does_not_read_is_refused_with_a_json_error() {
        for (content_type, body, status) in [
            (Some("application/json"), "{", 400),
            (Some("application/json"), r#"{"quantity": "five"}"#, 422),
            (None, r#"{"quantity": 5}"#, 415),
        ] {
            let (got, error) = answer(content_type, body).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(error["error"]["kind"], "invalid_body", "{error}");
            assert!(
                error["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert_eq!(
            answer(Some("application/json"), r#"{"quantity": 5}"#)
                .await
                .0,
            200
        );
    }
}
