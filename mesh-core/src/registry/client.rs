use std::{collections::BTreeMap, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{sync::oneshot, task::JoinHandle};

use super::{
    model::{Action, Cursor, WatchAnswer},
    summary::InstanceSummary,
};
use crate::{
    discovery::{Discovery, Instance, Publisher, ServiceId},
    error::{ErrorKind, MeshError},
    userinfo,
};

/// Largest registry answer read (a snapshot of a large registry is a few MiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// How long one watch request waits for a change before the registry answers "none".
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// The delay before retrying a registry that did not answer, growing to `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A client of `mesh-registry`'s native HTTP API.
///
/// Credentials in the URL's userinfo (`http://orders:s3cret@registry:8761`) are sent as
/// HTTP Basic with every request; the password never appears in logs, errors or `Debug`.
#[derive(Clone)]
pub struct RegistryClient {
    base: Arc<str>,
    authorization: Option<HeaderValue>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("credentials", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

/// An instance kept registered in the background. Dropping it stops renewing (the lease then
/// expires); [`deregister`](Self::deregister) removes the instance at once.
#[derive(Debug)]
pub struct Registered {
    registry: Arc<dyn RegistryApi>,
    instance: Instance,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    id: &'a str,
    host: &'a str,
    port: u16,
    secure: bool,
    zone: &'a Option<String>,
    weight: u32,
    metadata: &'a BTreeMap<String, String>,
    status: crate::discovery::InstanceStatus,
    #[serde(with = "humantime_serde")]
    renewal_interval: Duration,
    #[serde(with = "humantime_serde")]
    lease_duration: Duration,
}

impl RegistryClient {
    /// A client of the registry at `url` (such as `http://127.0.0.1:8761`, or
    /// `http://user:password@127.0.0.1:8761` for a registry that checks credentials; user and
    /// password may be percent-encoded).
    ///
    /// ```
    /// use mesh_core::registry::RegistryClient;
    /// let client = RegistryClient::new("http://orders:s3cret@127.0.0.1:8761").unwrap();
    /// assert!(!format!("{client:?}").contains("s3cret"));
    /// ```
    pub fn new(url: &str) -> Result<Self, MeshError> {
        let (base, credentials) = userinfo::split(url);
        let shown = userinfo::redact(url);
        let uri: Uri = base.parse().map_err(|e| {
            MeshError::new(ErrorKind::Config, format!("registry url `{shown}`: {e}"))
        })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(MeshError::new(
                ErrorKind::Config,
                format!("registry url `{shown}` must be http://host:port"),
            ));
        }
        let authorization = credentials
            .map(|(user, password)| {
                userinfo::basic(&user, &password).ok_or_else(|| {
                    MeshError::new(
                        ErrorKind::Config,
                        format!("registry url `{shown}`: credentials are not a header value"),
                    )
                })
            })
            .transpose()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        Ok(Self {
            base: base.trim_end_matches('/').into(),
            authorization,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Registers `instance` with a lease of `lease_duration`, renewed every `renewal_interval`.
    pub async fn register(
        &self,
        instance: &Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> Result<(), MeshError> {
        let body = RegisterBody {
            id: &instance.id,
            host: &instance.host,
            port: instance.port,
            secure: instance.secure,
            zone: &instance.zone,
            weight: instance.weight,
            metadata: &instance.metadata,
            status: instance.status,
            renewal_interval,
            lease_duration,
        };
        let path = format!("/v1/services/{}/instances", instance.service);
        self.send(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Renews a lease; `Ok(false)` when the registry does not know the instance.
    pub async fn renew(&self, service: &ServiceId, id: &str) -> Result<bool, MeshError> {
        let path = format!("/v1/services/{service}/instances/{}/heartbeat", encode(id));
        match self.send::<()>(Method::PUT, &path, None).await {
            Ok(_) => Ok(true),
            Err(error) if error.status() == StatusCode::NOT_FOUND => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Renews a lease and reports `summary` for the registry's dashboard; `Ok(false)` when the
    /// registry does not know the instance.
    pub async fn renew_with_summary(
        &self,
        service: &ServiceId,
        id: &str,
        summary: &InstanceSummary,
    ) -> Result<bool, MeshError> {
        let path = format!("/v1/services/{service}/instances/{}/heartbeat", encode(id));
        match self.send(Method::PUT, &path, Some(summary)).await {
            Ok(_) => Ok(true),
            Err(error) if error.status() == StatusCode::NOT_FOUND => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Removes an instance from the registry.
    pub async fn deregister(&self, service: &ServiceId, id: &str) -> Result<(), MeshError> {
        let path = format!("/v1/services/{service}/instances/{}", encode(id));
        match self.send::<()>(Method::DELETE, &path, None).await {
            Err(error) if error.status() != StatusCode::NOT_FOUND => Err(error),
            _ => Ok(()),
        }
    }

    /// The changes after `cursor` (a snapshot without one), waiting up to `wait` for one.
    pub async fn watch(
        &self,
        cursor: Option<Cursor>,
        wait: Duration,
    ) -> Result<WatchAnswer, MeshError> {
        let wait = wait.as_millis();
        let path = match cursor {
            Some(Cursor { epoch, revision }) => {
                format!("/v1/watch?since={revision}&epoch={epoch}&timeout={wait}ms")
            }
            None => format!("/v1/watch?timeout={wait}ms"),
        };
        self.get(&path).await
    }

    /// Keeps `instance` registered; see [`keep_registered`].
    pub async fn keep_registered(
        &self,
        instance: Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> Result<Registered, MeshError> {
        keep_registered(
            Arc::new(self.clone()),
            instance,
            renewal_interval,
            lease_duration,
        )
        .await
    }

    /// Follows `service` into a [`Discovery`] of its instances; see [`follow`].
    pub async fn discover(&self, service: impl Into<ServiceId>) -> Discovery {
        follow(Arc::new(self.clone()), service).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, MeshError> {
        let bytes = self.send::<()>(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            MeshError::new(
                ErrorKind::Upstream,
                format!("unreadable registry answer: {e}"),
            )
        })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Bytes, MeshError> {
        let body = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).map_err(|e| {
                MeshError::new(
                    ErrorKind::Internal,
                    format!("encoding a registry request: {e}"),
                )
            })?),
            None => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| MeshError::new(ErrorKind::BadRequest, e.to_string()))?;
        let response = self.http.request(request).await.map_err(|e| {
            MeshError::new(ErrorKind::Transport, format!("registry unreachable: {e}"))
                .with_source(e)
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                MeshError::new(
                    ErrorKind::Transport,
                    format!("reading the registry's answer: {e}"),
                )
            })?
            .to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(MeshError::upstream(
                status,
                format!(
                    "registry answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            ))
        }
    }
}

impl RegistryApi for RegistryClient {
    fn register<'a>(
        &'a self,
        instance: &'a Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> RegistryFuture<'a, ()> {
        Box::pin(RegistryClient::register(
            self,
            instance,
            renewal_interval,
            lease_duration,
        ))
    }

    fn renew<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, bool> {
        Box::pin(RegistryClient::renew(self, service, id))
    }

    fn renew_with_summary<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        summary: &'a InstanceSummary,
    ) -> RegistryFuture<'a, bool> {
        Box::pin(RegistryClient::renew_with_summary(
            self, service, id, summary,
        ))
    }

    fn deregister<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, ()> {
        Box::pin(RegistryClient::deregister(self, service, id))
    }

    fn watch(&self, cursor: Option<Cursor>, wait: Duration) -> RegistryFuture<'_, WatchAnswer> {
        Box::pin(RegistryClient::watch(self, cursor, wait))
    }
}

/// The future a [`RegistryApi`] answers with.
pub type RegistryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MeshError>> + Send + 'a>>;

/// What a service needs of a registry: a registry over HTTP ([`RegistryClient`]), or one
/// running in this process (`mesh_registry::Registry`, for single-process meshes and tests).
pub trait RegistryApi: Send + Sync + 'static {
    /// Registers `instance` with a lease of `lease_duration`, renewed every `renewal_interval`.
    fn register<'a>(
        &'a self,
        instance: &'a Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> RegistryFuture<'a, ()>;

    /// Renews a lease; `Ok(false)` when the registry does not know the instance.
    fn renew<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, bool>;

    /// Renews a lease and reports the instance's [`InstanceSummary`]; a registry without a
    /// dashboard only renews.
    fn renew_with_summary<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        summary: &'a InstanceSummary,
    ) -> RegistryFuture<'a, bool> {
        let _ = summary;
        self.renew(service, id)
    }

    /// Removes an instance; removing an unknown instance succeeds.
    fn deregister<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, ()>;

    /// The changes after `cursor`, waiting up to `wait` for one; a snapshot when `cursor` is
    /// `None`, belongs to another epoch, or is older than the change log reaches.
    fn watch(&self, cursor: Option<Cursor>, wait: Duration) -> RegistryFuture<'_, WatchAnswer>;
}

impl fmt::Debug for dyn RegistryApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegistryApi")
    }
}

/// Keeps `instance` registered: registers now, renews every `renewal_interval` in the
/// background, and registers again whenever a renewal finds the registry forgot it.
pub async fn keep_registered(
    registry: Arc<dyn RegistryApi>,
    instance: Instance,
    renewal_interval: Duration,
    lease_duration: Duration,
) -> Result<Registered, MeshError> {
    keep_registered_reporting(registry, instance, renewal_interval, lease_duration, None).await
}

/// What an instance reports with each renewal: called once per renewal.
pub type Report = Arc<dyn Fn() -> InstanceSummary + Send + Sync>;

/// [`keep_registered`], sending what `report` answers with each renewal when there is one.
pub async fn keep_registered_reporting(
    registry: Arc<dyn RegistryApi>,
    instance: Instance,
    renewal_interval: Duration,
    lease_duration: Duration,
    report: Option<Report>,
) -> Result<Registered, MeshError> {
    registry
        .register(&instance, renewal_interval, lease_duration)
        .await?;
    let (stop, mut stopped) = oneshot::channel();
    let renewer = registry.clone();
    let renewed = instance.clone();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(renewal_interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = ticks.tick() => {}
            }
            let renewal = match &report {
                Some(report) => {
                    let summary = report();
                    renewer
                        .renew_with_summary(&renewed.service, &renewed.id, &summary)
                        .await
                }
                None => renewer.renew(&renewed.service, &renewed.id).await,
            };
            match renewal {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(instance = ?renewed.id, "registry forgot the instance, registering again");
                    if let Err(error) = renewer
                        .register(&renewed, renewal_interval, lease_duration)
                        .await
                    {
                        tracing::warn!(%error, "registering again failed");
                    }
                }
                Err(error) => tracing::warn!(%error, "lease renewal failed"),
            }
        }
    });
    Ok(Registered {
        registry,
        instance,
        stop: Some(stop),
        task,
    })
}

/// Follows `service` into a [`Discovery`] of its instances (with their effective status),
/// applying changes as `source` publishes them. The first set is loaded before this returns
/// when the source answers; when it does not, the discovery starts empty and fills once it
/// does. The watch stops when every clone of the discovery is dropped.
pub async fn follow(source: Arc<dyn RegistryApi>, service: impl Into<ServiceId>) -> Discovery {
    let service = service.into();
    let (publisher, discovery) = Discovery::new(service.clone());
    let mut follower = Follower {
        source,
        service,
        publisher,
        instances: BTreeMap::new(),
        cursor: None,
    };
    let _ = follower.step(Duration::ZERO).await;
    tokio::spawn(async move { follower.run().await });
    discovery
}

impl Registered {
    /// The registered instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Stops renewing and removes the instance from the registry.
    pub async fn deregister(mut self) -> Result<(), MeshError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.registry
            .deregister(&self.instance.service, &self.instance.id)
            .await
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one service's instances in step with the registry.
struct Follower {
    source: Arc<dyn RegistryApi>,
    service: ServiceId,
    publisher: Publisher,
    instances: BTreeMap<String, Instance>,
    cursor: Option<Cursor>,
}

impl Follower {
    async fn run(&mut self) {
        let mut delay = FIRST_RETRY_DELAY;
        while self.publisher.is_followed() {
            match self.step(WATCH_WAIT).await {
                Ok(()) => delay = FIRST_RETRY_DELAY,
                Err(error) => {
                    // Keep serving the last known instances; try again with backoff.
                    tracing::warn!(service = %self.service, %error, ?delay, "registry watch failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// One watch round trip, applied.
    async fn step(&mut self, wait: Duration) -> Result<(), MeshError> {
        let answer = self.source.watch(self.cursor, wait).await?;
        self.cursor = answer.cursor(self.cursor);
        let before = self.instances.clone();
        match answer {
            WatchAnswer::Snapshot(snapshot) => {
                self.instances = snapshot
                    .registrations
                    .iter()
                    .filter(|r| r.service() == &self.service)
                    .map(|r| (r.instance.id.clone(), r.visible_instance()))
                    .collect();
            }
            WatchAnswer::Warming { remaining_ms, .. } => {
                // The restarted registry is still collecting registrations: what this
                // follower holds is the better picture until it has them.
                tracing::debug!(service = %self.service, remaining_ms, "registry warming up");
                return Ok(());
            }
            WatchAnswer::Changes { events, .. } => {
                for event in events
                    .iter()
                    .filter(|e| e.registration.service() == &self.service)
                {
                    let id = event.registration.instance.id.clone();
                    match event.action {
                        Action::Deleted => {
                            self.instances.remove(&id);
                        }
                        Action::Added | Action::Modified => {
                            self.instances
                                .insert(id, event.registration.visible_instance());
                        }
                    }
                }
            }
        }
        if before != self.instances || wait.is_zero() {
            self.publisher
                .publish(self.instances.values().cloned().collect());
        }
        Ok(())
    }
}

/// Percent-encodes an instance id for a path segment (ids hold `:` and may hold `/`).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_url_s_credentials_are_sent_and_never_shown() {
        let client = RegistryClient::new("http://orders:hunter2@127.0.0.1:8761").unwrap();
        assert_eq!(&*client.base, "http://127.0.0.1:8761");
        assert_eq!(
            client.authorization.as_ref().unwrap(),
            "Basic b3JkZXJzOmh1bnRlcjI="
        );
        assert!(!format!("{client:?}").contains("hunter2"));
        let error = RegistryClient::new("ftp://orders:hunter2@127.0.0.1:8761").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            RegistryClient::new("http://127.0.0.1:8761")
                .unwrap()
                .authorization
                .is_none()
        );
    }
}
