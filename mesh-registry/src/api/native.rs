use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use mesh_core::discovery::{Instance, InstanceStatus, ServiceId};
use serde::Deserialize;

use super::ApiError;
use crate::registry::{LeaseRequest, Registry};

/// Longest a watch may wait before answering "no change".
const MAX_WATCH: Duration = Duration::from_secs(60);

pub(super) fn routes() -> Router<Arc<Registry>> {
    Router::new()
        .route("/services", get(list))
        .route("/services/{service}", get(list_service))
        .route("/services/{service}/instances", post(register))
        .route("/services/{service}/instances/{id}", delete(deregister))
        .route(
            "/services/{service}/instances/{id}/heartbeat",
            put(heartbeat),
        )
        .route(
            "/services/{service}/instances/{id}/status",
            put(override_status),
        )
        .route("/watch", get(watch))
        .route("/status", get(status))
}

/// A native registration: the instance (its service comes from the path) and its lease.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    #[serde(default)]
    id: Option<String>,
    host: String,
    port: u16,
    #[serde(default)]
    secure: bool,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    status: InstanceStatus,
    #[serde(default, with = "humantime_serde")]
    renewal_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    lease_duration: Option<Duration>,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: Option<InstanceStatus>,
}

#[derive(Debug, Deserialize)]
struct WatchQuery {
    #[serde(default)]
    since: u64,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

async fn register(
    State(registry): State<Arc<Registry>>,
    Path(service): Path<String>,
    body: Result<Json<RegisterBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.host.is_empty() || body.port == 0 {
        return Err(ApiError::bad_request(
            "host and a non-zero port are required",
        ));
    }
    let mut instance = Instance::new(ServiceId::new(&service), body.host, body.port);
    if let Some(id) = body.id.filter(|id| !id.is_empty()) {
        instance.id = id;
    }
    instance.secure = body.secure;
    instance.zone = body.zone;
    instance.weight = body.weight.unwrap_or(instance.weight);
    instance.metadata = body.metadata;
    instance.status = body.status;
    let lease = LeaseRequest {
        renewal_interval: body.renewal_interval,
        duration: body.lease_duration,
    };
    let event = registry.register(instance, lease, None).await?;
    Ok((StatusCode::OK, Json(event)).into_response())
}

async fn heartbeat(
    State(registry): State<Arc<Registry>>,
    Path((service, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if registry.renew(&ServiceId::new(&service), &id).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{service}` is not registered"
        )))
    }
}

async fn deregister(
    State(registry): State<Arc<Registry>>,
    Path((service, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if registry.cancel(&ServiceId::new(&service), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{service}` is not registered"
        )))
    }
}

async fn override_status(
    State(registry): State<Arc<Registry>>,
    Path((service, id)): Path<(String, String)>,
    body: Result<Json<StatusBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if registry
        .override_status(&ServiceId::new(&service), &id, body.status)
        .await?
    {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{service}` is not registered"
        )))
    }
}

async fn list(State(registry): State<Arc<Registry>>) -> Result<Json<serde_json::Value>, ApiError> {
    let snapshot = registry.snapshot().await?;
    let mut services: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
    for registration in &snapshot.registrations {
        services
            .entry(registration.service().to_string())
            .or_default()
            .push(registration.visible_instance());
    }
    Ok(Json(
        serde_json::json!({"revision": snapshot.revision, "services": services}),
    ))
}

async fn list_service(
    State(registry): State<Arc<Registry>>,
    Path(service): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = ServiceId::new(&service);
    let snapshot = registry.snapshot().await?;
    let instances: Vec<Instance> = snapshot
        .registrations
        .iter()
        .filter(|r| r.service() == &service)
        .map(|r| r.visible_instance())
        .collect();
    Ok(Json(
        serde_json::json!({"revision": snapshot.revision, "instances": instances}),
    ))
}

async fn watch(
    State(registry): State<Arc<Registry>>,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let timeout = query
        .timeout
        .unwrap_or(Duration::from_secs(30))
        .min(MAX_WATCH);
    let answer = registry.watch(query.since, timeout).await?;
    Ok(Json(answer).into_response())
}

async fn status(
    State(registry): State<Arc<Registry>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let snapshot = registry.snapshot().await?;
    Ok(Json(serde_json::json!({
        "revision": snapshot.revision,
        "instances": snapshot.registrations.len(),
        "self_preservation": registry.is_self_preserving(),
    })))
}
