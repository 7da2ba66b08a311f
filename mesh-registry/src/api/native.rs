use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use mesh_core::{
    MeshError,
    discovery::{Instance, InstanceStatus, ServiceId},
    registry::summary::{InstanceSummary, MAX_SUMMARY_BYTES},
};
use serde::Deserialize;

use super::{ApiError, Writer, check_access, target};
use crate::{
    model::{Cursor, Registration, WatchAnswer},
    registry::{LeaseRequest, Registry},
    render::{Key, into_bytes},
    validate,
};

/// Longest a watch may wait before answering "no change".
const MAX_WATCH: Duration = Duration::from_secs(60);
/// A watcher this many revisions behind gets the shared snapshot rather than its own copy of
/// every change since.
const SNAPSHOT_AFTER: u64 = 512;

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
    since: Option<u64>,
    #[serde(default)]
    epoch: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

async fn register(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path(service): Path<String>,
    body: Result<Json<RegisterBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
    validate::identifier("service name", &service)?;
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
    let mut event = registry
        .register_as(instance, lease, None, caller.as_ref())
        .await?;
    event.registration.owner = None;
    Ok((StatusCode::OK, Json(event)).into_response())
}

/// A renewal; its body, when there is one, is the instance's [`InstanceSummary`].
async fn heartbeat(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((service, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let service = target(&service, &id)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    // A summary the registry refuses never costs the lease: the renewal happens, and the
    // refusal is the answer.
    let (renewed, refused) = match read_summary(&body) {
        Ok(Some(summary)) => (
            registry.renew_reporting(&service, &id, summary).await?,
            None,
        ),
        Ok(None) => (registry.renew(&service, &id).await?, None),
        Err(refused) => (registry.renew(&service, &id).await?, Some(refused)),
    };
    if let Some(refused) = refused.filter(|_| renewed) {
        return Err(refused);
    }
    if renewed {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&service, &id))
    }
}

/// The summary a renewal carries: none for an empty body, a 413 past
/// [`MAX_SUMMARY_BYTES`], a 400 for one that is not a valid summary (the lease is renewed
/// either way).
fn read_summary(body: &[u8]) -> Result<Option<InstanceSummary>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if body.len() > MAX_SUMMARY_BYTES {
        return Err(ApiError(MeshError::custom(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("renewed, but a summary is at most {MAX_SUMMARY_BYTES} bytes"),
        )));
    }
    let summary: InstanceSummary = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("renewed, but the summary is invalid: {error}"))
    })?;
    summary.validate().map_err(|reason| {
        ApiError::bad_request(format!("renewed, but the summary is invalid: {reason}"))
    })?;
    Ok(Some(summary))
}

async fn deregister(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((service, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let service = target(&service, &id)?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry.cancel(&service, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_registered(&service, &id))
    }
}

async fn override_status(
    State(registry): State<Arc<Registry>>,
    Writer(caller): Writer,
    Path((service, id)): Path<(String, String)>,
    body: Result<Json<StatusBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let service = target(&service, &id)?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
    check_access(&registry, &service, &id, caller.as_ref()).await?;
    if registry.override_status(&service, &id, body.status).await? {
        Ok(StatusCode::OK)
    } else {
        Err(not_registered(&service, &id))
    }
}

fn not_registered(service: &ServiceId, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "instance {id:?} of {:?} is not registered",
        service.as_str()
    ))
}

fn json_answer(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing to a Vec fails only on a map with non-string keys, which none of these has.
    let _ = serde_json::to_writer(out, value);
}

/// `{"revision": …, "services": {"name": [instance, …], …}}`, written instance by instance
/// (registrations come ordered by service).
async fn list(State(registry): State<Arc<Registry>>) -> Result<Response, ApiError> {
    let revision = registry.store().revision().await?;
    let body = registry
        .renderings()
        .get_or_render(revision, Key::NativeServices, 0, || async {
            let snapshot = registry.store().shared_snapshot().await?;
            let mut out =
                format!("{{\"revision\":{},\"services\":{{", snapshot.revision).into_bytes();
            let mut current: Option<&ServiceId> = None;
            for registration in &snapshot.registrations {
                let service = registration.service();
                if current == Some(service) {
                    out.push(b',');
                } else {
                    if current.is_some() {
                        out.extend_from_slice(b"],");
                    }
                    write_json(&mut out, service.as_str());
                    out.extend_from_slice(b":[");
                    current = Some(service);
                }
                write_json(&mut out, &registration.visible_instance());
            }
            if current.is_some() {
                out.push(b']');
            }
            out.extend_from_slice(b"}}");
            Ok::<_, ApiError>((snapshot.revision, into_bytes(out)))
        })
        .await?;
    Ok(json_answer(body))
}

async fn list_service(
    State(registry): State<Arc<Registry>>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    validate::identifier("service name", &service)?;
    let service = ServiceId::new(&service);
    let revision = registry.store().revision().await?;
    let key = Key::NativeService(service.as_str().to_owned());
    let body = registry
        .renderings()
        .get_or_render(revision, key, 0, || async {
            let snapshot = registry.store().shared_snapshot().await?;
            let mut out =
                format!("{{\"revision\":{},\"instances\":[", snapshot.revision).into_bytes();
            let instances = snapshot
                .registrations
                .iter()
                .filter(|r| r.service() == &service);
            for (i, registration) in instances.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(&mut out, &registration.visible_instance());
            }
            out.extend_from_slice(b"]}");
            Ok::<_, ApiError>((snapshot.revision, into_bytes(out)))
        })
        .await?;
    Ok(json_answer(body))
}

/// The whole registry as a watch answer, rendered once per revision for every watcher that
/// needs it.
async fn shared_snapshot(registry: &Registry, revision: u64) -> Result<Response, ApiError> {
    let body = registry
        .renderings()
        .get_or_render(revision, Key::WatchSnapshot, 0, || async {
            // `WatchAnswer::Snapshot`'s shape, written registration by registration.
            let snapshot = registry.store().shared_snapshot().await?;
            let mut out = format!(
                "{{\"kind\":\"snapshot\",\"epoch\":{},\"revision\":{},\"registrations\":[",
                snapshot.epoch, snapshot.revision
            )
            .into_bytes();
            for (i, registration) in snapshot.registrations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if registration.owner.is_some() {
                    let mut shown = Registration::clone(registration);
                    shown.owner = None;
                    write_json(&mut out, &shown);
                } else {
                    write_json(&mut out, &**registration);
                }
            }
            out.extend_from_slice(b"]}");
            Ok::<_, ApiError>((snapshot.revision, into_bytes(out)))
        })
        .await?;
    Ok(json_answer(body))
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
    let current = registry.store().revision().await?;
    let cursor = match (query.since, query.epoch) {
        (None, _) => None,
        // A watcher from before epochs starting out.
        (Some(0), None) if current > 0 => None,
        (Some(revision), epoch) => Some(Cursor {
            epoch: epoch.unwrap_or(0),
            revision,
        }),
    };
    // A new watcher, one far behind, or one from before a restart once the registry is warm,
    // needs the whole registry: every such watcher shares one rendering instead of copying
    // the change log or the catalogue for itself.
    let whole = match cursor {
        None => true,
        Some(cursor) if cursor.epoch == 0 || cursor.epoch == registry.epoch() => {
            cursor.revision <= current && current - cursor.revision > SNAPSHOT_AFTER
        }
        Some(_) => registry.warming().is_none(),
    };
    if whole {
        return shared_snapshot(&registry, current).await;
    }
    let mut answer = registry.watch(cursor, timeout).await?;
    match &mut answer {
        WatchAnswer::Snapshot(snapshot) => strip_owners(&mut snapshot.registrations),
        WatchAnswer::Changes { events, .. } => {
            for event in events {
                event.registration.owner = None;
            }
        }
        WatchAnswer::Warming { .. } => {}
    }
    Ok(Json(answer).into_response())
}

/// Owners are the registry's business: readers see the instances, not who registered them.
fn strip_owners(registrations: &mut [Registration]) {
    for registration in registrations {
        registration.owner = None;
    }
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
