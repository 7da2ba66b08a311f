//! Refuses every request that did not come through the gateway: one without a valid
//! `mesh-edge` proof (see [`auth::edge`](crate::auth::edge)) is answered `403` with mesh's
//! JSON error body (gRPC: `PERMISSION_DENIED`), whatever bearer token it carries. The runtime's
//! endpoints (`/health…`, `/metrics`) stay open to probes and scrapers, and so do the paths
//! made public (an auth service's JWKS, which verifiers read directly). While a proven request
//! is served, its proof is current ([`EdgeProof::current`]) and goes along on the calls the
//! service makes.
//!
//! A proof verified once is remembered until it expires, so a service checks one signature
//! per proof the gateway signs (one every half minute per gateway key), not one per request.
//!
//! ```
//! use mesh_core::axum::{Router, routing::get};
//! use mesh_core::auth::{JwtConfig, JwtVerifier, edge::EdgeKeyPair};
//! use mesh_core::server::layers::EdgeProofLayer;
//!
//! # fn run() -> Result<(), mesh_core::MeshError> {
//! let keys = EdgeKeyPair::generate()?;
//! let verifier = JwtVerifier::new(
//!     JwtConfig::with_public_key(keys.public_pem).issuer("mesh-gateway").audience("mesh-edge"),
//! )?;
//! let router: Router = Router::new()
//!     .route("/gigs", get(|| async { "only through the gateway" }))
//!     .layer(EdgeProofLayer::new(verifier));
//! # Ok(()) }
//! ```

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use futures_util::future::BoxFuture;
use http::HeaderValue;
use serde_json::Value;
use tower::{Layer, Service};

use super::answer::{AnswerBody, error_answer, is_grpc};
use crate::{
    auth::{
        AuthSettings, JwtVerifier,
        edge::{EDGE_HEADER, EdgeProof},
    },
    error::{ErrorKind, MeshError},
};

/// How many verified proofs are remembered (a few gateways' current and previous ones).
const REMEMBERED: usize = 8;

/// Applies [`EdgeProofCheck`].
#[derive(Debug, Clone)]
pub struct EdgeProofLayer {
    policy: Arc<Policy>,
}

#[derive(Debug)]
struct Policy {
    verifier: JwtVerifier,
    /// The paths open without a proof.
    public: AuthSettings,
    /// Proofs verified, each with when it expires (Unix seconds).
    verified: Mutex<Vec<(HeaderValue, u64)>>,
}

impl EdgeProofLayer {
    /// Requires proofs `verifier` accepts (it should require the gateway's issuer and
    /// audience).
    pub fn new(verifier: JwtVerifier) -> Self {
        Self::with_public(verifier, Vec::new())
    }

    /// Requires proofs as [`new`](Self::new) does, but on the `public` paths (patterns as
    /// in `server.auth.public`).
    pub fn with_public(verifier: JwtVerifier, public: Vec<String>) -> Self {
        Self {
            policy: Arc::new(Policy {
                verifier,
                public: AuthSettings {
                    public,
                    ..AuthSettings::default()
                },
                verified: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl<S> Layer<S> for EdgeProofLayer {
    type Service = EdgeProofCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeProofCheck {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Refuses requests without the gateway's proof; see the [module](self).
#[derive(Debug, Clone)]
pub struct EdgeProofCheck<S> {
    inner: S,
    policy: Arc<Policy>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Policy {
    fn remembered(&self, proof: &HeaderValue) -> bool {
        let now = unix_now();
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .iter()
            .any(|(known, expires)| *expires > now && known == proof)
    }

    fn remember(&self, proof: HeaderValue, expires: u64) {
        let now = unix_now();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|(_, until)| *until > now);
        // Requests that verified the same new proof at once remember it once.
        if verified.iter().any(|(known, _)| *known == proof) {
            return;
        }
        if verified.len() >= REMEMBERED {
            verified.remove(0);
        }
        verified.push((proof, expires));
    }

    /// Whether `proof` is valid, verifying it when it is not remembered.
    async fn admits(&self, proof: Option<HeaderValue>) -> Result<EdgeProof, MeshError> {
        let refused = |why: &str| {
            MeshError::new(
                ErrorKind::Forbidden,
                format!("this service answers only requests that came through the gateway: {why}"),
            )
        };
        let proof = proof.ok_or_else(|| refused("the gateway's proof is missing"))?;
        if self.remembered(&proof) {
            return Ok(EdgeProof(proof));
        }
        let token = proof
            .to_str()
            .map_err(|_| refused("the gateway's proof is malformed"))?;
        let identity = self
            .verifier
            .verify(token)
            .await
            .map_err(|error| refused(&error.to_string()))?;
        let expires = identity
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.remember(proof.clone(), expires);
        Ok(EdgeProof(proof))
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for EdgeProofCheck<S>
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

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The ready service serves this request; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            if policy
                .public
                .is_public(request.method(), request.uri().path())
            {
                return inner.call(request).await;
            }
            let proof = request.headers().get(EDGE_HEADER).cloned();
            match policy.admits(proof).await {
                Ok(proof) => {
                    let answer = proof.clone().sync_scope(|| inner.call(request));
                    proof.scope(answer).await
                }
                Err(error) => {
                    tracing::debug!(%error, "request refused");
                    Ok(error_answer::<ResBody>(&error, is_grpc(&request)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{
        JwtConfig,
        edge::{EdgeKeyPair, EdgeSigner, EdgeSigning},
    };

    fn router(keys: &EdgeKeyPair) -> Router {
        let verifier = JwtVerifier::new(
            JwtConfig::with_public_key(keys.public_pem.clone())
                .issuer("mesh-gateway")
                .audience("mesh-edge"),
        )
        .unwrap();
        Router::new()
            .route(
                "/gigs",
                get(|| async {
                    // The proof is current while the request is served.
                    match EdgeProof::current() {
                        Some(_) => "proven",
                        None => "unproven",
                    }
                }),
            )
            .route("/health", get(|| async { "up" }))
            .layer(EdgeProofLayer::new(verifier))
    }

    async fn call(router: &Router, path: &str, proof: Option<HeaderValue>) -> (u16, String) {
        let mut request = http::Request::get(path);
        if let Some(proof) = proof {
            request = request.header(EDGE_HEADER, proof);
        }
        let answer = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body = axum::body::to_bytes(answer.into_body(), 4096)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_request_with_the_gateways_proof_is_served_with_it_current() {
        let keys = EdgeKeyPair::generate().unwrap();
        let signer =
            EdgeSigner::new(EdgeSigning::with_private_key(keys.private_pem.clone())).unwrap();
        let router = router(&keys);
        let proof = signer.token().unwrap();
        assert_eq!(
            call(&router, "/gigs", Some(proof.clone())).await,
            (200, "proven".into())
        );
        // Remembered, it is served again without a second verification.
        assert_eq!(call(&router, "/gigs", Some(proof)).await.0, 200);
    }

    #[tokio::test]
    async fn a_request_without_a_proof_or_with_anothers_is_refused_403() {
        let keys = EdgeKeyPair::generate().unwrap();
        let forger = EdgeKeyPair::generate().unwrap();
        let forged = EdgeSigner::new(EdgeSigning::with_private_key(forger.private_pem))
            .unwrap()
            .token()
            .unwrap();
        let router = router(&keys);
        for proof in [None, Some(forged), Some(HeaderValue::from_static("x.y.z"))] {
            let (status, body) = call(&router, "/gigs", proof.clone()).await;
            assert_eq!(status, 403, "{proof:?}");
            assert!(body.contains("came through the gateway"), "{body}");
        }
    }

    #[tokio::test]
    async fn the_runtimes_endpoints_need_no_proof() {
        let keys = EdgeKeyPair::generate().unwrap();
        assert_eq!(
            call(&router(&keys), "/health", None).await,
            (200, "up".into())
        );
    }
}
