//! The registry's HTTP API: native `/v1`, Eureka's `/eureka` (and `/eureka/v2`), health and
//! metrics.

mod eureka;
mod metrics;
mod native;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use mesh_core::error::{ErrorKind, MeshError};

use crate::{
    grpc::WatchService,
    registry::{RegisterError, Registry},
    store::StoreError,
};

/// Largest request body accepted (a registration is a few KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The registry's complete API: HTTP and, on the same port, the gRPC watch stream.
pub fn router(registry: Arc<Registry>) -> Router {
    let grpc = tonic::service::Routes::new(WatchService::new(registry.clone()).into_server())
        .into_axum_router();
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics::render))
        .nest("/v1", native::routes())
        .nest("/eureka", eureka::routes())
        .nest("/eureka/v2", eureka::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry)
        .merge(grpc)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "UP"}))
}

async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    match registry.snapshot().await {
        Ok(_) => {
            Json(serde_json::json!({"status": "UP", "checks": {"store": "UP"}})).into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "DOWN", "checks": {"store": error.to_string()}})),
        )
            .into_response(),
    }
}

/// An error answered in the mesh wire format.
#[derive(Debug)]
pub(crate) struct ApiError(MeshError);

impl ApiError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self(MeshError::new(ErrorKind::NotFound, what))
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self(MeshError::new(ErrorKind::BadRequest, message))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self(
            MeshError::new(ErrorKind::Unavailable, "registry store unavailable").with_source(error),
        )
    }
}

impl From<RegisterError> for ApiError {
    fn from(error: RegisterError) -> Self {
        match error {
            RegisterError::Store(error) => error.into(),
            full @ RegisterError::Full(_) => {
                Self(MeshError::new(ErrorKind::Unavailable, full.to_string()))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0.status(), Json(self.0.to_json(None))).into_response()
    }
}
