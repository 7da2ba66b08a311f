//! The registry's HTTP API: native `/v1`, Eureka's `/eureka` (and `/eureka/v2`), health,
//! metrics and the live `/dashboard`.

mod config;
mod dashboard;
mod eureka;
mod metrics;
mod native;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRequestParts, Request, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use mesh_core::{
    discovery::ServiceId,
    error::{ErrorKind, MeshError},
};

use crate::{
    auth::{Caller, challenge},
    config_server::ConfigServer,
    grpc::WatchService,
    registry::{Access, RegisterError, Registry},
    store::StoreError,
    validate,
};

/// Largest request body accepted: a registration with the most metadata allowed, XML-escaped,
/// fits with room to spare.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The registry's complete API: HTTP and, on the same port, the gRPC watch stream.
///
/// Writes need credentials once [`RegistryConfig::auth`](crate::RegistryConfig::auth) names
/// some; reads too when it says so. Every error is mesh's JSON error, except on the gRPC
/// stream, which answers in gRPC's terms.
pub fn router(registry: Arc<Registry>) -> Router {
    router_with(registry, None)
}

/// [`router`], with the config server's API under `/config` when `config` is given. Its
/// endpoints take the credentials the registry's writes take.
pub fn router_with(registry: Arc<Registry>, config: Option<Arc<ConfigServer>>) -> Router {
    let grpc = tonic::service::Routes::new(WatchService::new(registry.clone()).into_server())
        .into_axum_router()
        .layer(middleware::from_fn(only_grpc));
    let api = Router::new()
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics::render))
        .merge(dashboard::routes())
        .nest("/v1", native::routes())
        .nest("/eureka", eureka::routes())
        .nest("/eureka/v2", eureka::routes());
    let api = match config {
        Some(config) => api
            .nest("/config", config::routes(config.clone(), registry.clone()))
            .merge(config::actuator_routes(config, registry.clone())),
        None => api,
    };
    api.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(registry.clone())
        .merge(grpc)
        .fallback(unknown_path)
        .layer(middleware::map_response(as_json_error))
        .layer(middleware::from_fn_with_state(registry, guard_reads))
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

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The gRPC service's paths answer gRPC clients only; anyone else gets the JSON 404.
async fn only_grpc(request: Request, next: Next) -> Response {
    if is_grpc(request.headers()) {
        next.run(request).await
    } else {
        unknown_path(request).await
    }
}

/// Unknown paths: gRPC's "unimplemented" for gRPC clients, a JSON 404 for everyone else.
async fn unknown_path(request: Request) -> Response {
    if is_grpc(request.headers()) {
        return tonic::Status::unimplemented("no such gRPC method").into_http();
    }
    ApiError::not_found(format!(
        "no route for {} {:?}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    ApiError(MeshError::custom(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {:?}",
            request.method(),
            request.uri().path()
        ),
    ))
    .into_response()
}

/// When reads are protected, every request but `/health*` needs valid credentials (writes are
/// checked again, for ownership, by their handlers).
async fn guard_reads(
    State(registry): State<Arc<Registry>>,
    request: Request,
    next: Next,
) -> Response {
    let authenticator = registry.authenticator();
    if authenticator.protects_reads()
        && !request.uri().path().starts_with("/health")
        && let Err(error) = authenticator.reader(request.headers()).await
    {
        if is_grpc(request.headers()) {
            return tonic::Status::unauthenticated(error.message().to_string()).into_http();
        }
        return ApiError(error).into_response();
    }
    next.run(request).await
}

/// Turns the plain-text errors of axum's extractors and limits (400, 405, 413, 415, …) into
/// mesh's JSON errors, keeping their status.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(status.is_client_error() || status.is_server_error())
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/grpc")
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let error = ApiError::rejected(status, text);
    let mut response = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// The caller of a write: `None` when the registry takes anonymous writes. Refuses the
/// request with 401 when credentials are configured and missing or wrong.
#[derive(Debug)]
pub(crate) struct Writer(pub(crate) Option<Caller>);

impl FromRequestParts<Arc<Registry>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        registry: &Arc<Registry>,
    ) -> Result<Self, Self::Rejection> {
        registry
            .authenticator()
            .writer(&parts.headers)
            .await
            .map(Writer)
            .map_err(ApiError)
    }
}

/// The service and instance a write names, checked as input.
pub(crate) fn target(service: &str, id: &str) -> Result<ServiceId, ApiError> {
    validate::identifier("service name", service)?;
    validate::identifier("instance id", id)?;
    Ok(ServiceId::new(service))
}

/// Succeeds when `caller` may renew, change or cancel the instance; a 404 when it is unknown,
/// a 403 when another identity owns it.
pub(crate) async fn check_access(
    registry: &Registry,
    service: &ServiceId,
    id: &str,
    caller: Option<&Caller>,
) -> Result<(), ApiError> {
    match registry.access(service, id, caller).await? {
        Access::Allowed => Ok(()),
        Access::Unknown => Err(ApiError::not_found(format!(
            "instance {id:?} of {:?} is not registered",
            service.as_str()
        ))),
        Access::Denied => Err(ApiError::forbidden(id)),
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

    /// An extractor's rejection (`status` and text) as mesh's error.
    pub(crate) fn rejected(status: StatusCode, text: impl Into<String>) -> Self {
        let text = text.into();
        Self(match status {
            StatusCode::PAYLOAD_TOO_LARGE => MeshError::custom(
                status,
                "payload_too_large",
                format!(
                    "the request body is larger than the registry accepts ({MAX_BODY_BYTES} bytes)"
                ),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                MeshError::custom(status, "unsupported_media_type", text)
            }
            StatusCode::NOT_FOUND => MeshError::new(ErrorKind::NotFound, text),
            StatusCode::METHOD_NOT_ALLOWED => MeshError::custom(status, "method_not_allowed", text),
            // A body that parses but does not fit (422) is bad input too, as the rest of mesh
            // says.
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                MeshError::new(ErrorKind::BadRequest, text)
            }
            _ => MeshError::custom(
                status,
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase()
                    .replace(' ', "_"),
                text,
            ),
        })
    }

    pub(crate) fn forbidden(id: &str) -> Self {
        Self(MeshError::new(
            ErrorKind::Forbidden,
            format!("instance {id:?} is registered by another identity"),
        ))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self(
            MeshError::new(ErrorKind::Unavailable, "registry store unavailable").with_source(error),
        )
    }
}

impl From<validate::InvalidInput> for ApiError {
    fn from(error: validate::InvalidInput) -> Self {
        Self::bad_request(error.0)
    }
}

impl From<RegisterError> for ApiError {
    fn from(error: RegisterError) -> Self {
        match error {
            RegisterError::Store(error) => error.into(),
            RegisterError::Invalid(error) => error.into(),
            RegisterError::Forbidden { id } => Self::forbidden(&id),
            not_yours @ RegisterError::NotYourService { .. } => {
                Self(MeshError::new(ErrorKind::Forbidden, not_yours.to_string()))
            }
            full @ RegisterError::Full(_) => {
                Self(MeshError::new(ErrorKind::Unavailable, full.to_string()))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0.status(), Json(self.0.to_json(None))).into_response();
        if self.0.kind() == ErrorKind::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge());
        }
        response
    }
}
