use std::{collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use mesh_core::discovery::{InstanceStatus, ServiceId};

use super::ApiError;
use crate::{
    eureka::{
        Format, apps_hashcode, parse_registration, render_application, render_applications,
        render_instance,
    },
    model::{Action, Registration},
    registry::Registry,
};

/// How far back `/apps/delta` reaches, as Eureka's recently-changed queue (3 minutes).
const DELTA_WINDOW: Duration = Duration::from_secs(180);

pub(super) fn routes() -> Router<Arc<Registry>> {
    Router::new()
        .route("/apps", get(applications))
        .route("/apps/", get(applications))
        .route("/apps/delta", get(delta))
        .route("/apps/{app}", get(application).post(register))
        .route("/apps/{app}/{id}", get(instance).put(renew).delete(cancel))
        .route(
            "/apps/{app}/{id}/status",
            put(override_status).delete(clear_override),
        )
}

fn format(headers: &HeaderMap) -> Format {
    Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

fn respond(format: Format, body: String) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn register(
    State(registry): State<Arc<Registry>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (instance, lease, details) = parse_registration(&app, content_type, &body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    registry.register(instance, lease, Some(details)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A heartbeat; `?status=` carries the instance's own status, as Eureka clients send it.
async fn renew(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let service = ServiceId::new(&app);
    if !registry.renew(&service, &id).await? {
        return Err(ApiError::not_found(format!(
            "instance `{id}` of `{app}` is not registered"
        )));
    }
    if let Some(status) = query
        .get("status")
        .and_then(|s| InstanceStatus::from_str(s).ok())
    {
        registry.report_status(&service, &id, status).await?;
    }
    Ok(StatusCode::OK)
}

async fn cancel(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if registry.cancel(&ServiceId::new(&app), &id).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{app}` is not registered"
        )))
    }
}

async fn override_status(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let status = query
        .get("value")
        .ok_or_else(|| ApiError::bad_request("missing `value`"))?;
    let status =
        InstanceStatus::from_str(status).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if registry
        .override_status(&ServiceId::new(&app), &id, Some(status))
        .await?
    {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{app}` is not registered"
        )))
    }
}

async fn clear_override(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if registry
        .override_status(&ServiceId::new(&app), &id, None)
        .await?
    {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!(
            "instance `{id}` of `{app}` is not registered"
        )))
    }
}

async fn applications(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snapshot = registry.snapshot().await?;
    let entries: Vec<_> = snapshot
        .registrations
        .iter()
        .map(|r| (r, Action::Added))
        .collect();
    let hashcode = apps_hashcode(&snapshot.registrations);
    let format = format(&headers);
    Ok(respond(
        format,
        render_applications(&entries, snapshot.revision, &hashcode, format),
    ))
}

/// The changes of the last three minutes, the latest per instance, with the hash code of the
/// whole registry so clients can check that applying them reproduces it.
async fn delta(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snapshot = registry.snapshot().await?;
    let since = registry
        .now_ms()
        .saturating_sub(DELTA_WINDOW.as_millis() as u64);
    let events = registry.store().recent(since).await?;
    let mut latest: Vec<(Registration, Action)> = Vec::new();
    for event in events {
        let id = &event.registration.instance.id;
        let service = event.registration.service();
        latest.retain(|(r, _)| !(r.instance.id == *id && r.service() == service));
        latest.push((event.registration, event.action));
    }
    let entries: Vec<_> = latest.iter().map(|(r, a)| (r, *a)).collect();
    let hashcode = apps_hashcode(&snapshot.registrations);
    let format = format(&headers);
    Ok(respond(
        format,
        render_applications(&entries, snapshot.revision, &hashcode, format),
    ))
}

async fn application(
    State(registry): State<Arc<Registry>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let service = ServiceId::new(&app);
    let snapshot = registry.snapshot().await?;
    let registrations: Vec<_> = snapshot
        .registrations
        .iter()
        .filter(|r| r.service() == &service)
        .collect();
    if registrations.is_empty() {
        return Err(ApiError::not_found(format!(
            "application `{app}` is not registered"
        )));
    }
    let format = format(&headers);
    Ok(respond(
        format,
        render_application(&app, &registrations, format),
    ))
}

async fn instance(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(registration) = registry.store().get(&ServiceId::new(&app), &id).await? else {
        return Err(ApiError::not_found(format!(
            "instance `{id}` of `{app}` is not registered"
        )));
    };
    let format = format(&headers);
    Ok(respond(format, render_instance(&registration, format)))
}
