//! `MeshClient`: an HTTP client that calls a service by its ID through the whole client stack.
//!
//! `Mesh::client` hands one out per service. Each call
//! resolves the service through discovery (the registry, or `clients.<service>.instances`
//! from the configuration) and goes through the layers in the order [`stack`] documents, over
//! HTTP/1.1 connections kept idle per thread ([`pool`]), or HTTP/2 with
//! `clients.<service>.http2`. The layers'
//! parameters come from `clients.<service>` and follow the configuration live: the first call
//! after a reload that changed the section rebuilds the changed layers only, keeping the
//! others' state.
//!
//! ```no_run
//! # use mesh_core::Mesh;
//! # #[derive(serde::Deserialize)] struct Stock { sku: String, count: u32 }
//! # async fn run(mesh: Mesh) -> Result<(), mesh_core::error::MeshError> {
//! let inventory = mesh.client("inventory-service");
//! let stock: Stock = inventory.get_json("/inventory/sku-1").await?;
//! # Ok(()) }
//! ```

mod layers;
pub mod pool;
mod raw;
mod settings;
pub mod stack;

use std::{fmt, sync::Arc};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;
use tower::ServiceExt;

use self::{
    pool::Http1Pool,
    stack::{Layers, Stack, Transport},
};
pub use self::{
    pool::ResponseBody,
    raw::{DropField, RawCall},
    settings::{ClientSettings, Switchable, TokenRelay},
};
use crate::{
    BoxBody,
    config::MeshConfig,
    discovery::{Discovery, Instance, ServiceId},
    error::{BoxError, ErrorKind, MeshError},
    registry::{RegistryApi, follow},
    resilience::{circuit_breaker::BreakerSet, retry::Idempotent, timeout::Deadline},
};

/// Options of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The call may be retried whatever its method (a POST the server deduplicates, say).
    pub idempotent: bool,
    /// A deadline for this call, tighter than the client's timeout.
    pub timeout: Option<std::time::Duration>,
}

/// What a client's calls need beyond its service's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// A service calling another: `clients.<service>` as it is.
    Service,
    /// A gRPC channel: HTTP/2 whatever `clients.<service>.http2` says.
    Grpc,
    /// An edge gateway's route: no bulkhead unless `clients.<service>.bulkhead` configures
    /// one, so healthy load is never refused at the edge (Spring Cloud Gateway has none by
    /// default either); the gateway's connection limits and a route's own policies protect it.
    Edge,
}

/// A client of one service, by its ID. Clones share the stack and its state.
#[derive(Clone)]
pub struct MeshClient {
    inner: Arc<Inner>,
}

struct Inner {
    service: ServiceId,
    context: Arc<ClientContext>,
    /// What this client's calls need beyond `clients.<service>`.
    profile: Profile,
    current: ArcSwapOption<Current>,
    init: OnceCell<()>,
    rebuilding: tokio::sync::Mutex<()>,
}

/// One generation of the stack, built from one version of the settings.
#[derive(Clone)]
struct Current {
    layers: Layers,
    stack: Stack,
    /// The configuration revision the settings were read at.
    revision: u64,
}

/// What every client of a mesh shares: configuration, discovery and connection pools.
pub(crate) struct ClientContext {
    pub(crate) config: MeshConfig,
    pub(crate) registry: Option<Arc<dyn RegistryApi>>,
    discoveries: DashMap<ServiceId, Arc<OnceCell<Discovery>>>,
    http1: Arc<Http1Pool>,
    http2: Transport,
    /// The circuit breakers of this mesh's clients, for the summary its renewals carry.
    pub(crate) breakers: Arc<BreakerSet>,
}

impl ClientContext {
    pub(crate) fn new(config: MeshConfig, registry: Option<Arc<dyn RegistryApi>>) -> Self {
        use hyper_util::{
            client::legacy::{Client, connect::HttpConnector},
            rt::{TokioExecutor, TokioTimer},
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        let http2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        Self {
            config,
            registry,
            discoveries: DashMap::new(),
            http1: Http1Pool::new(),
            http2: Transport::Http2(Arc::new(http2)),
            breakers: Arc::default(),
        }
    }

    /// The registry's view of `service`, followed once and shared by every client.
    async fn discovery(&self, service: &ServiceId) -> Result<Discovery, MeshError> {
        let Some(registry) = &self.registry else {
            return Err(MeshError::new(
                ErrorKind::Config,
                format!(
                    "no registry is configured and `clients.{service}.instances` is empty: \
                     nowhere to find `{service}`"
                ),
            ));
        };
        let cell = self.discoveries.entry(service.clone()).or_default().clone();
        let discovery = cell
            .get_or_init(|| follow(registry.clone(), service.clone()))
            .await;
        Ok(discovery.clone())
    }

    /// The settings of `clients.<service>` (also read under the ID with `_` for `-`, where
    /// environment variables put it), as `profile` adjusts them.
    fn settings(&self, service: &ServiceId, profile: Profile) -> Result<ClientSettings, MeshError> {
        let exact = format!("clients.{service}");
        let underscored = format!("clients.{}", service.as_str().replace('-', "_"));
        let snapshot = self.config.snapshot();
        let mut settings: ClientSettings =
            snapshot.merged_section(&[exact.as_str(), underscored.as_str()])?;
        let bulkhead_configured = [&exact, &underscored]
            .iter()
            .any(|section| snapshot.value(&format!("{section}.bulkhead")).is_some());
        if profile == Profile::Edge
            && !bulkhead_configured
            && !settings.disable.contains(&Switchable::Bulkhead)
        {
            settings.disable.push(Switchable::Bulkhead);
        }
        Ok(settings)
    }

    fn fixed_discovery(
        service: &ServiceId,
        settings: &ClientSettings,
    ) -> Result<Discovery, MeshError> {
        let instances = settings
            .instances
            .iter()
            .map(|address| parse_instance(service, address))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Discovery::fixed(service.clone(), instances))
    }
}

/// `host:port` → an UP instance.
fn parse_instance(service: &ServiceId, address: &str) -> Result<Instance, MeshError> {
    let invalid = || {
        MeshError::new(
            ErrorKind::Config,
            format!("`clients.{service}.instances`: `{address}` is not host:port"),
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut instance = Instance::new(service.clone(), host, port);
    instance.id = format!("{service}:{address}");
    Ok(instance)
}

impl MeshClient {
    pub(crate) fn new(service: ServiceId, context: Arc<ClientContext>) -> Self {
        Self::with_profile(service, context, Profile::Service)
    }

    /// A client of the given profile.
    pub(crate) fn with_profile(
        service: ServiceId,
        context: Arc<ClientContext>,
        profile: Profile,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                service,
                context,
                profile,
                current: ArcSwapOption::empty(),
                init: OnceCell::new(),
                rebuilding: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The service this client calls.
    pub fn service(&self) -> &ServiceId {
        &self.inner.service
    }

    /// The settings the stack runs with now (after the first call).
    pub fn settings(&self) -> Option<ClientSettings> {
        self.inner
            .current
            .load()
            .as_ref()
            .map(|c| c.layers.settings().clone())
    }

    /// Sends `request` (its URI a path and query, such as `/inventory/sku-1?fresh=true`)
    /// through the stack to one instance of the service. Any HTTP status is a response; only
    /// a call that got no response (or was refused by a layer) is an error.
    /// The response's body gives its connection back for the next call when read to its end.
    pub async fn send(
        &self,
        request: Request<BoxBody>,
    ) -> Result<Response<ResponseBody>, MeshError> {
        let current = self.current().await?;
        // Erased, so that callers' futures stay `Send` under any lifetime (rustc cannot prove
        // it through the stack's nested types).
        let call: BoxFuture<'static, Result<Response<ResponseBody>, BoxError>> =
            Box::pin(current.stack.clone().oneshot(request));
        call.await.map_err(MeshError::from_boxed)
    }

    /// Sends a request given as bytes — `method`, `target` (path and query) and `raw`, the
    /// fields and body a proxy passes on — through the stack to one instance, and answers with
    /// the upstream's head as bytes: what a relaying proxy sends by service ID without
    /// building a typed request. Every layer decides as for [`send`](Self::send); the answer's
    /// status is what they see. Calls go over HTTP/1.1: see [`relays`](Self::relays).
    pub async fn relay(
        &self,
        method: Method,
        target: &str,
        raw: RawCall,
    ) -> Result<crate::http1::RawAnswer, MeshError> {
        let uri: Uri = target.parse().map_err(|e| {
            MeshError::new(
                ErrorKind::BadRequest,
                format!("`{target}` is not a request target: {e}"),
            )
        })?;
        let mut request = Request::new(BoxBody::default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        if let Some(affinity) = raw.affinity() {
            request.extensions_mut().insert(affinity);
        }
        request.extensions_mut().insert(raw);
        raw::answer(self.send(request).await?)
    }

    /// Whether [`relay`](Self::relay) can send this client's calls now: its stack is built (a
    /// first call was sent) and its calls go over HTTP/1.1 (not `clients.<service>.http2`,
    /// not a gRPC channel).
    pub fn relays(&self) -> bool {
        self.inner.profile != Profile::Grpc
            && self
                .inner
                .current
                .load()
                .as_ref()
                .is_some_and(|current| !current.layers.settings().http2)
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, MeshError> {
        self.json(Method::GET, path, None::<&()>).await
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post_json<B, T>(&self, path: &str, body: &B) -> Result<T, MeshError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.json(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body, decoding a JSON answer.
    pub async fn put_json<B, T>(&self, path: &str, body: &B) -> Result<T, MeshError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.json(Method::PUT, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body, decoding a JSON answer.
    pub async fn patch_json<B, T>(&self, path: &str, body: &B) -> Result<T, MeshError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.json(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`, decoding a JSON answer (use `()` for none).
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, MeshError> {
        self.json(Method::DELETE, path, None::<&()>).await
    }

    /// Any method with an optional JSON body, decoding a JSON answer. A status other than 2xx
    /// is an [`ErrorKind::Upstream`] error that keeps the status and the body; an empty body
    /// decodes as JSON `null` (so `()` and `Option` accept it).
    pub async fn json<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, MeshError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.call(method, path, body, CallOptions::default()).await
    }

    /// [`json`](Self::json) with per-call options: what typed clients generated by
    /// `#[mesh::service]` send.
    pub async fn call<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        options: CallOptions,
    ) -> Result<T, MeshError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let uri: Uri = path.parse().map_err(|e| {
            MeshError::new(
                ErrorKind::BadRequest,
                format!("`{path}` is not a request path: {e}"),
            )
        })?;
        let mut request = Request::builder().method(method).uri(uri);
        request = request.header(header::ACCEPT, "application/json");
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                let bytes = serde_json::to_vec(body).map_err(|e| {
                    MeshError::new(
                        ErrorKind::BadRequest,
                        format!("encoding the request body: {e}"),
                    )
                })?;
                Full::new(Bytes::from(bytes))
                    .map_err(Into::into)
                    .boxed_unsync()
            }
            None => BoxBody::default(),
        };
        let mut request = request
            .body(body)
            .map_err(|e| MeshError::new(ErrorKind::BadRequest, e.to_string()))?;
        if options.idempotent {
            request.extensions_mut().insert(Idempotent);
        }
        if let Some(timeout) = options.timeout {
            request.extensions_mut().insert(Deadline::after(timeout));
        }
        let response = self.send(request).await?;
        let limit = self
            .settings()
            .map_or(settings::DEFAULT_MAX_RESPONSE_BYTES, |s| s.response_limit());
        let status = response.status();
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                MeshError::new(
                    ErrorKind::Transport,
                    format!("reading the answer of `{}`: {e}", self.service()),
                )
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(upstream_error(self.service(), status, bytes));
        }
        let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(json).map_err(|e| {
            MeshError::new(
                ErrorKind::Upstream,
                format!("`{}` answered JSON that does not fit: {e}", self.service()),
            )
        })
    }

    async fn current(&self) -> Result<Arc<Current>, MeshError> {
        if let Some(current) = self.inner.current.load_full() {
            if current.revision == self.inner.context.config.revision() {
                return Ok(current);
            }
            return Ok(Box::pin(self.apply_config(current)).await);
        }
        // Boxed: the cold path stays out of every call's future.
        self.inner
            .init
            .get_or_try_init(|| Box::pin(self.build_first()))
            .await?;
        self.inner
            .current
            .load_full()
            .ok_or_else(|| MeshError::new(ErrorKind::Internal, "client stack missing"))
    }

    /// Builds the first stack, then follows the configuration.
    async fn build_first(&self) -> Result<(), MeshError> {
        let inner = &self.inner;
        let settings = inner.context.settings(&inner.service, inner.profile)?;
        let discovery = if settings.instances.is_empty() {
            inner.context.discovery(&inner.service).await?
        } else {
            ClientContext::fixed_discovery(&inner.service, &settings)?
        };
        let revision = inner.context.config.revision();
        let caller = inner.context.config.name().into();
        let layers = Layers::new(inner.service.as_str().into(), caller, settings, discovery)
            .map_err(MeshError::from)?;
        inner
            .current
            .store(Some(Arc::new(self.generation(layers, revision))));
        Ok(())
    }

    fn generation(&self, layers: Layers, revision: u64) -> Current {
        self.inner.context.breakers.track(layers.breaker());
        let transport = if self.inner.profile == Profile::Grpc || layers.settings().http2 {
            self.inner.context.http2.clone()
        } else {
            Transport::Http1(self.inner.context.http1.clone())
        };
        Current {
            stack: layers.stack(&transport),
            layers,
            revision,
        }
    }
}

impl MeshClient {
    /// Follows a configuration change: rebuilds the layers whose section changed. When the
    /// new settings are invalid the last good stack stays (and the error is logged once per
    /// revision).
    async fn apply_config(&self, current: Arc<Current>) -> Arc<Current> {
        let _one_at_a_time = self.inner.rebuilding.lock().await;
        let revision = self.inner.context.config.revision();
        let latest = self.inner.current.load_full().unwrap_or(current);
        if latest.revision == revision {
            return latest;
        }
        let next = match self.rebuild(&latest).await {
            Ok(Some(layers)) => {
                tracing::info!(service = %self.service(), "client settings reloaded");
                self.generation(layers, revision)
            }
            Ok(None) => Current {
                revision,
                ..Current::clone(&latest)
            },
            Err(error) => {
                tracing::warn!(service = %self.service(), %error, "client settings not applied; keeping the last ones");
                Current {
                    revision,
                    ..Current::clone(&latest)
                }
            }
        };
        let next = Arc::new(next);
        self.inner.current.store(Some(next.clone()));
        next
    }

    /// The layers for the current settings, or `None` when they did not change.
    async fn rebuild(&self, current: &Current) -> Result<Option<Layers>, MeshError> {
        let inner = &self.inner;
        let settings = inner.context.settings(&inner.service, inner.profile)?;
        if &settings == current.layers.settings() {
            return Ok(None);
        }
        let discovery = if settings.instances.is_empty() {
            inner.context.discovery(&inner.service).await?
        } else {
            ClientContext::fixed_discovery(&inner.service, &settings)?
        };
        current
            .layers
            .update(settings, || discovery)
            .map(Some)
            .map_err(MeshError::from)
    }
}

/// An upstream's error answer, keeping its status and body; the message is the mesh error
/// body's own message when the upstream sent one.
fn upstream_error(service: &ServiceId, status: http::StatusCode, body: Bytes) -> MeshError {
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    MeshError::upstream(status, format!("`{service}` answered {status}: {message}"))
        .with_upstream_body(body)
}

/// A `MeshClient` is a tower service of requests of any body, so it can be layered like any
/// other: `ServiceBuilder::new().layer(…).service(mesh.client("inventory"))`. It is always
/// ready (the stack inside decides per call); its errors are [`MeshError`]s.
///
/// ```no_run
/// # async fn run(mesh: mesh_core::Mesh) -> Result<(), mesh_core::MeshError> {
/// use tower::ServiceExt;
/// let request = http::Request::get("/inventory/sku-1").body(String::new()).unwrap();
/// let answer = mesh.client("inventory-service").oneshot(request).await?;
/// assert!(answer.status().is_success());
/// # Ok(()) }
/// ```
impl<B> tower::Service<Request<B>> for MeshClient
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = MeshError;
    type Future = BoxFuture<'static, Result<Response<ResponseBody>, MeshError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = self.clone();
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        Box::pin(async move { client.send(request).await })
    }
}

impl fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshClient")
            .field("service", &self.inner.service)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
