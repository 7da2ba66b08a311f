//! Requires a valid bearer token (a JWT, verified with a key, a secret or a JWKS endpoint) on
//! every path not made public, and hands the handler the caller's [`Identity`] (and its
//! [`Subject`], for rate limits keyed by caller), also as the current [`Caller`] while the
//! request is served.
//!
//! On a public path a request needs no token, but one it carries is verified and, when valid,
//! makes its caller known as on any other path. A request without a valid token elsewhere is
//! answered `401` with `WWW-Authenticate: Bearer` and the
//! JSON error body, or, for a gRPC call, with the status `UNAUTHENTICATED`. The runtime's
//! endpoints (`/health…`, `/metrics`) are always public.
//!
//! ```
//! use mesh_core::axum::{Extension, Router, routing::get};
//! use mesh_core::auth::{Identity, JwtConfig, JwtVerifier};
//! use mesh_core::server::layers::JwtAuthLayer;
//!
//! # fn run() -> Result<(), mesh_core::MeshError> {
//! let verifier = JwtVerifier::new(JwtConfig::with_secret("a shared secret of 32 bytes or more"))?;
//! let router: Router = Router::new()
//!     .route("/me", get(|Extension(who): Extension<Identity>| async move { who.subject }))
//!     .route("/catalog", get(|| async { "open to all" }))
//!     .layer(JwtAuthLayer::new(verifier).public("/catalog"));
//! # Ok(()) }
//! ```
//!
//! [`Subject`]: crate::context::Subject

mod layer;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use http::{HeaderValue, header};
use tower::Service;

pub use self::layer::JwtAuthLayer;
use super::answer::{AnswerBody, error_answer, is_grpc};
use crate::{
    auth::{AuthError, AuthSettings, Caller, Identity, JwtVerifier, bearer_token},
    context::Subject,
    error::MeshError,
};

/// What [`JwtAuth`] checks with: the verifier and the public paths.
#[derive(Debug)]
struct Policy {
    verifier: JwtVerifier,
    public: AuthSettings,
}

/// Verifies the bearer token of each request; see the [module](self).
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for JwtAuth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: AnswerBody + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The ready service serves this request; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let public = policy
                .public
                .is_public(request.method(), request.uri().path());
            let outcome = match bearer_token(request.headers()) {
                Some(token) => policy.verifier.verify(token).await,
                None => Err(AuthError::Missing),
            };
            // A public route serves anyone; a valid token still tells it who is calling.
            if public && outcome.is_err() {
                return inner.call(request).await;
            }
            match outcome {
                Ok(identity) => {
                    let identity = Arc::new(identity);
                    admit(&mut request, &identity);
                    let caller = Caller {
                        identity,
                        token: token_of(&request),
                    };
                    let answer = caller.clone().sync_scope(|| inner.call(request));
                    caller.scope(answer).await
                }
                Err(error) => {
                    tracing::debug!(%error, "request refused");
                    let grpc = is_grpc(&request);
                    let error = MeshError::from(error);
                    let mut response = error_answer::<ResBody>(&error, grpc);
                    if !grpc && response.status() == http::StatusCode::UNAUTHORIZED {
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

/// Hands the verified caller to the handler, as extensions (and as the current [`Caller`]).
fn admit<B>(request: &mut http::Request<B>, identity: &Identity) {
    request
        .extensions_mut()
        .insert(Subject(identity.subject.as_str().into()));
    request.extensions_mut().insert(identity.clone());
}

/// The verified bearer token of `request`.
fn token_of<B>(request: &http::Request<B>) -> Arc<str> {
    bearer_token(request.headers()).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use axum::{Extension, Router, body::Body, routing::get};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::JwtConfig;

    const SECRET: &str = "a shared secret of thirty-two bytes";

    fn token(subject: &str) -> String {
        let claims = serde_json::json!({"sub": subject, "exp": 4_000_000_000u64});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn router() -> Router {
        let verifier = JwtVerifier::new(JwtConfig::with_secret(SECRET)).unwrap();
        Router::new()
            .route(
                "/me",
                get(|Extension(who): Extension<Identity>| async move { who.subject }),
            )
            .route("/catalog/{id}", get(|| async { "open" }))
            .layer(JwtAuthLayer::new(verifier).public("/catalog/{id}"))
    }

    async fn call(path: &str, token: Option<&str>) -> http::Response<Body> {
        let mut request = http::Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_reaches_the_handler_with_the_callers_identity() {
        let answer = call("/me", Some(&token("ada"))).await;
        assert_eq!(answer.status(), 200);
        let body = axum::body::to_bytes(answer.into_body(), 64).await.unwrap();
        assert_eq!(&body[..], b"ada");
    }

    #[tokio::test]
    async fn no_token_or_a_forged_one_is_a_401_asking_for_a_bearer() {
        let forged = format!("{}x", token("ada"));
        for token in [None, Some(forged.as_str())] {
            let answer = call("/me", token).await;
            assert_eq!(answer.status(), 401, "{token:?}");
            assert_eq!(answer.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
    }

    #[tokio::test]
    async fn a_public_path_and_the_health_endpoint_need_no_token() {
        assert_eq!(call("/catalog/7", None).await.status(), 200);
        // Public, so it reaches the router, which has no such route.
        assert_eq!(call("/health", None).await.status(), 404);
    }

    #[tokio::test]
    async fn a_grpc_call_without_a_token_is_unauthenticated() {
        let request = http::Request::post("/pkg.Stock/Count")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .unwrap();
        let answer = router().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["grpc-status"], "16");
        assert!(!answer.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
