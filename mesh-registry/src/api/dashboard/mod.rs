//! `/dashboard`: one page that shows the mesh live, with no build step.
//!
//! The page lists every service and instance: status, address, version, last renewal, and the
//! summary each mesh instance sends with its renewals (request rate, error rate, mean latency,
//! circuit breakers), with the registry's self-preservation state on top. It follows
//! `/dashboard/events`, a server-sent event stream: one `view` event at once, then one
//! whenever the registry changes or a summary arrives, at most one a second, and one every few
//! seconds when nothing changes. `/dashboard/view` answers the same view once, as JSON.
//! Viewers share one rendering per change and second, and at most [`MAX_STREAMS`] streams are
//! open at once.
//!
//! It is read-only, and behind the registry's read credentials when reads are protected (the
//! guard every read passes). Instance data is the registrants' own: the page writes it as
//! text, never as markup, and its content security policy allows no script but its own.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::State,
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::{Stream, stream};
use mesh_core::{MeshError, discovery::InstanceStatus, registry::summary::InstanceSummary};
use serde::Serialize;
use tokio::{
    sync::{Mutex, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};

use super::ApiError;
use crate::{registry::Registry, store::StoreError};

/// The most event streams open at once; more are refused with a 503.
const MAX_STREAMS: usize = 64;

/// The least time between two events of one stream.
const MIN_GAP: Duration = Duration::from_secs(1);
/// The most time between two events of one stream: renewal ages and self-preservation move
/// without a revision.
const REFRESH: Duration = Duration::from_secs(5);
/// How often an idle stream writes a comment: a viewer that left is noticed (and its place
/// given back) at the second write after it left.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How long a browser waits before reconnecting a dropped stream.
const RECONNECT: Duration = Duration::from_secs(2);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");
/// Only the page's own script and style, and connections back to the registry.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

pub(super) fn routes() -> Router<Arc<Registry>> {
    let dashboard = Arc::new(Dashboard {
        last: Mutex::new(None),
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
    });
    Router::new()
        .route(
            "/dashboard",
            get(|| asset(PAGE, "text/html; charset=utf-8")),
        )
        .route(
            "/dashboard/page.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/dashboard/page.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route("/dashboard/view", get(view))
        .route("/dashboard/events", get(events))
        .layer(Extension(dashboard))
}

/// What every viewer shares: the last view rendered, and the permits of the open streams.
struct Dashboard {
    last: Mutex<Option<(Key, Arc<str>)>>,
    streams: Arc<Semaphore>,
}

/// What a view depends on: a view rendered for the same key is served again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    revision: u64,
    arrivals: u64,
    self_preservation: bool,
    /// The second it was rendered in: renewal times move without a revision.
    second: u64,
}

impl Dashboard {
    /// The view now: the last one rendered while nothing it shows changed, else a new one.
    /// Viewers render one at a time, so many viewers cost one rendering a second.
    async fn view(&self, registry: &Registry) -> Result<Arc<str>, StoreError> {
        let key = Key {
            revision: *registry.store().revisions().borrow(),
            arrivals: registry.summaries().arrival_count(),
            self_preservation: registry.is_self_preserving(),
            second: registry.now_ms() / 1000,
        };
        let mut last = self.last.lock().await;
        if let Some((rendered, json)) = &*last
            && *rendered == key
        {
            return Ok(json.clone());
        }
        let json: Arc<str> = render(registry).await?.into();
        *last = Some((key, json.clone()));
        Ok(json)
    }
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn view(
    State(registry): State<Arc<Registry>>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
) -> Result<Response, ApiError> {
    let json = dashboard.view(&registry).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response())
}

async fn events(
    State(registry): State<Arc<Registry>>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Ok(permit) = dashboard.streams.clone().try_acquire_owned() else {
        return Err(ApiError(MeshError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("the dashboard serves at most {MAX_STREAMS} event streams at once"),
        )));
    };
    Ok(Sse::new(updates(registry, dashboard, permit))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// What a stream waits on between events.
struct Follow {
    registry: Arc<Registry>,
    dashboard: Arc<Dashboard>,
    /// Held while the stream lives.
    _permit: OwnedSemaphorePermit,
    revisions: watch::Receiver<u64>,
    arrivals: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    last_sent: Option<Instant>,
}

/// The view now, then after each change (at most one a second) or every [`REFRESH`], until the
/// registry closes its streams.
fn updates(
    registry: Arc<Registry>,
    dashboard: Arc<Dashboard>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let follow = Follow {
        dashboard,
        _permit: permit,
        revisions: registry.store().revisions(),
        arrivals: registry.summaries().arrivals(),
        closing: registry.closing(),
        registry,
        last_sent: None,
    };
    stream::unfold(follow, |mut follow| async move {
        if let Some(last_sent) = follow.last_sent {
            let changed = async {
                tokio::select! {
                    _ = changed(&mut follow.revisions) => {}
                    _ = changed(&mut follow.arrivals) => {}
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                tokio::time::sleep_until(last_sent + MIN_GAP).await;
            };
            tokio::select! {
                _ = follow.closing.wait_for(|closing| *closing) => return None,
                () = changed => {}
            }
        } else if *follow.closing.borrow() {
            return None;
        }
        follow.revisions.mark_unchanged();
        follow.arrivals.mark_unchanged();
        follow.last_sent = Some(Instant::now());
        let event = match follow.dashboard.view(&follow.registry).await {
            Ok(json) => Event::default().event("view").data(&*json),
            Err(error) => Event::default()
                .event("unavailable")
                .data(error.to_string()),
        };
        Some((Ok(event.retry(RECONNECT)), follow))
    })
}

/// Completes when `receiver` sees a change; never, once its sender is gone.
async fn changed<T>(receiver: &mut watch::Receiver<T>) {
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The dashboard's view of the registry.
#[derive(Debug, Serialize)]
struct View<'a> {
    now_ms: u64,
    revision: u64,
    self_preservation: bool,
    instances: usize,
    services: Vec<ServiceView<'a>>,
}

#[derive(Debug, Serialize)]
struct ServiceView<'a> {
    name: &'a str,
    instances: Vec<InstanceView<'a>>,
}

#[derive(Debug, Serialize)]
struct InstanceView<'a> {
    id: &'a str,
    host: &'a str,
    port: u16,
    status: InstanceStatus,
    /// Whether an operator's override set the status.
    overridden: bool,
    version: Option<&'a str>,
    registered_ms: u64,
    last_renewal_ms: u64,
    lease_expires_ms: u64,
    /// The latest summary, when the instance sends them (mesh services do).
    summary: Option<&'a InstanceSummary>,
    summary_ms: Option<u64>,
}

/// The view as JSON, from one snapshot of the store.
async fn render(registry: &Registry) -> Result<String, StoreError> {
    let snapshot = registry.store().shared_snapshot().await?;
    let summaries = registry.summaries();
    let reported: Vec<_> = snapshot
        .registrations
        .iter()
        .map(|registration| summaries.get(registration.service(), &registration.instance.id))
        .collect();
    let mut services: Vec<ServiceView<'_>> = Vec::new();
    for (registration, reported) in snapshot.registrations.iter().zip(&reported) {
        let instance = &registration.instance;
        let lease = &registration.lease;
        let view = InstanceView {
            id: &instance.id,
            host: &instance.host,
            port: instance.port,
            status: registration.status(),
            overridden: registration.overridden_status.is_some(),
            version: instance.metadata.get("version").map(String::as_str),
            registered_ms: lease.registered_ms,
            last_renewal_ms: lease.last_renewal_ms,
            lease_expires_ms: lease.last_renewal_ms + lease.duration.as_millis() as u64,
            summary_ms: reported.as_ref().map(|reported| reported.at_ms),
            summary: reported.as_ref().map(|reported| &*reported.summary),
        };
        match services.last_mut() {
            Some(service) if service.name == instance.service.as_str() => {
                service.instances.push(view)
            }
            _ => services.push(ServiceView {
                name: instance.service.as_str(),
                instances: vec![view],
            }),
        }
    }
    let view = View {
        now_ms: registry.now_ms(),
        revision: snapshot.revision,
        self_preservation: registry.is_self_preserving(),
        instances: snapshot.registrations.len(),
        services,
    };
    Ok(serde_json::to_string(&view).expect("the view serializes"))
}
