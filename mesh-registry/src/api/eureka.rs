use std::{collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use mesh_core::discovery::{InstanceStatus, ServiceId};

use super::{ApiError, Writer, check_access, target};
use crate::{
    eureka::{
        Format, apps_hashcode, parse_registration, render_application, render_applications,
        render_instance,
    },
    model::{Action, Registration},
    registry::Registry,
    render::{Key, into_bytes},
    validate,
};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|e| ApiError::rejected(e.status(), e.body_text()))
}

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
        .route("/apps/{app}/{id}/metadata", put(update_metadata))
}

fn format(headers: &HeaderMap) -> Format {
    Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

fn respond(format: Format, body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body.into()).into_response()
}

async fn register(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
    validate::identifier("app name", &app)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (instance, lease, details) = parse_registration(&app, content_type, &body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    registry
        .register_as(instance, lease, Some(details), caller.as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A heartbeat; `?status=` carries the instance's own status, as Eureka clients send it.
async fn renew(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((app, id)): Path<(String, String)>,
    query: Params,
) -> Result<StatusCode, ApiError> {
    let service = target(&app, &id)?;
    let query = params(query)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if !registry.renew(&service, &id).await? {
        return Err(not_registered(&app, &id));
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
    Writer(caller): Writer,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let service = target(&app, &id)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry.cancel(&service, &id).await? {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&app, &id))
    }
}

async fn override_status(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((app, id)): Path<(String, String)>,
    query: Params,
) -> Result<StatusCode, ApiError> {
    let service = target(&app, &id)?;
    let query = params(query)?;
    let status = query
        .get("value")
        .ok_or_else(|| ApiError::bad_request("missing `value`"))?;
    let status =
        InstanceStatus::from_str(status).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry
        .override_status(&service, &id, Some(status))
        .await?
    {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&app, &id))
    }
}

async fn clear_override(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let service = target(&app, &id)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry.override_status(&service, &id, None).await? {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&app, &id))
    }
}

/// Eureka's metadata update: `PUT /apps/{APP}/{ID}/metadata?key=value&…` adds or replaces
/// entries, within the same limits as a registration.
async fn update_metadata(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((app, id)): Path<(String, String)>,
    query: Params,
) -> Result<StatusCode, ApiError> {
    let service = target(&app, &id)?;
    let entries = params(query)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry.update_metadata(&service, &id, entries).await? {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&app, &id))
    }
}

fn not_registered(app: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("instance {id:?} of {app:?} is not registered"))
}

async fn applications(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = format(&headers);
    let revision = registry.store().revision().await?;
    let body = registry
        .renderings()
        .get_or_render(revision, Key::EurekaApps(format), 0, || async {
            let snapshot = registry.store().shared_snapshot().await?;
            let entries: Vec<_> = snapshot
                .registrations
                .iter()
                .map(|r| (&**r, Action::Added))
                .collect();
            let hashcode = apps_hashcode(snapshot.registrations.iter().map(|r| &**r));
            let text = render_applications(&entries, snapshot.revision, &hashcode, format);
            Ok::<_, ApiError>((snapshot.revision, into_bytes(text.into_bytes())))
        })
        .await?;
    Ok(respond(format, body))
}

/// The changes of the last three minutes, the latest per instance, with the hash code of the
/// whole registry so clients can check that applying them reproduces it. Shared for a
/// second at most, as its window moves.
async fn delta(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = format(&headers);
    let revision = registry.store().revision().await?;
    let now = registry.now_ms();
    let body = registry
        .renderings()
        .get_or_render(revision, Key::EurekaDelta(format), now / 1000, || async {
            let snapshot = registry.store().shared_snapshot().await?;
            let since = now.saturating_sub(DELTA_WINDOW.as_millis() as u64);
            let events = registry.store().recent(since).await?;
            // The latest change per instance, in the order of those changes.
            let mut latest: HashMap<(&ServiceId, &str), usize> = HashMap::new();
            for (i, event) in events.iter().enumerate() {
                let registration = &event.registration;
                latest.insert((registration.service(), &registration.instance.id), i);
            }
            let mut kept: Vec<usize> = latest.into_values().collect();
            kept.sort_unstable();
            let entries: Vec<(&Registration, Action)> = kept
                .into_iter()
                .map(|i| (&events[i].registration, events[i].action))
                .collect();
            let hashcode = apps_hashcode(snapshot.registrations.iter().map(|r| &**r));
            let text = render_applications(&entries, snapshot.revision, &hashcode, format);
            Ok::<_, ApiError>((snapshot.revision, into_bytes(text.into_bytes())))
        })
        .await?;
    Ok(respond(format, body))
}

async fn application(
    State(registry): State<Arc<Registry>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    validate::identifier("app name", &app)?;
    let service = ServiceId::new(&app);
    let format = format(&headers);
    let revision = registry.store().revision().await?;
    let key = Key::EurekaApp(format, service.as_str().to_owned());
    let body = registry
        .renderings()
        .get_or_render(revision, key, 0, || async {
            let snapshot = registry.store().shared_snapshot().await?;
            let registrations: Vec<&Registration> = snapshot
                .registrations
                .iter()
                .filter(|r| r.service() == &service)
                .map(|r| &**r)
                .collect();
            if registrations.is_empty() {
                return Err(ApiError::not_found(format!(
                    "application {app:?} is not registered"
                )));
            }
            let text = render_application(&app, &registrations, format);
            Ok((snapshot.revision, into_bytes(text.into_bytes())))
        })
        .await?;
    Ok(respond(format, body))
}

async fn instance(
    State(registry): State<Arc<Registry>>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let service = target(&app, &id)?;
    let Some(registration) = registry.store().get(&service, &id).await? else {
        return Err(not_registered(&app, &id));
    };
    let format = format(&headers);
    Ok(respond(format, render_instance(&registration, format)))
}
