//! The service runtime: `Mesh::builder()` loads the configuration, registers the service,
//! serves its axum `Router` behind the server layers with `/health` and `/metrics`, hands
//! out [`MeshClient`]s by service ID, and shuts down gracefully.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mesh_core::server::Mesh;
//!
//! # async fn run() -> Result<(), mesh_core::error::MeshError> {
//! let mesh = Mesh::builder("inventory-service")
//!     .version("1.4.0")
//!     .address("127.0.0.1:9001".parse().unwrap())
//!     .registry_url("http://127.0.0.1:8761")
//!     .build()
//!     .await?;
//! let router = Router::new().route("/inventory/{sku}", get(|| async { "7" }));
//! mesh.server(router).serve().await // until SIGTERM or Ctrl-C
//! # }
//! ```
//!
//! Every service answers `GET /health` (every readiness check), `/health/live` (the process
//! serves), `/health/ready` (registered, not shutting down, every check up) and `GET /metrics`
//! (Prometheus text). On shutdown the service first leaves the registry and turns unready,
//! then stops accepting connections and lets in-flight requests finish within
//! `server.drain_timeout`.

mod body_limit;
mod connections;
mod layers;
mod registration;
mod relay;
mod settings;
mod tls;
mod workers;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{StatusCode, header};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tower::Service;

pub use self::{
    connections::DEFAULT_MAX_HEAD_BYTES,
    relay::{Relay, RelayFuture, Relayed},
    settings::{ManagementSettings, RegistrySettings, ServerSettings},
    tls::TlsSettings,
};
use self::{layers::App, registration::Registration};
use crate::{
    auth::JwtVerifier,
    client::{ClientContext, MeshClient},
    config::MeshConfig,
    discovery::{Instance, ServiceId},
    error::{ErrorKind, MeshError},
    observe::{
        ServerSeries,
        health::{HealthChecks, HealthReport, Status},
        prometheus,
    },
    registry::{RegistryApi, RegistryClient},
};

/// How long deregistration may take before shutdown goes on without it.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// A service of the mesh: its configuration, its registration and its clients. Clones share
/// it.
#[derive(Clone, Debug)]
pub struct Mesh {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: ServiceId,
    version: String,
    config: MeshConfig,
    clients: Arc<ClientContext>,
    checks: HealthChecks,
    auth: Option<JwtVerifier>,
    ready: AtomicBool,
}

/// Builds a [`Mesh`].
#[derive(Debug)]
pub struct MeshBuilder {
    name: String,
    version: String,
    address: Option<SocketAddr>,
    profile: Option<String>,
    config_file: Option<std::path::PathBuf>,
    config: Option<MeshConfig>,
    registry: Option<Arc<dyn RegistryApi>>,
    registry_url: Option<String>,
    checks: HealthChecks,
}

/// What `#[mesh::service]` knows of a service's API. A server of it (served with
/// [`Mesh::server`], or any router served as [`Application::described`]) publishes its routes
/// in its registration's metadata (`routes`, a JSON list), from which a gateway can generate
/// routes, and makes its public routes public when `server.auth` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceMetadata {
    /// The service ID.
    pub name: &'static str,
    /// Every route.
    pub routes: &'static [RouteMetadata],
}

/// One route of a [`ServiceMetadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMetadata {
    /// The HTTP method, in capitals.
    pub method: &'static str,
    /// The path pattern, such as `/inventory/{sku}`.
    pub path: &'static str,
    /// Whether the route needs no token.
    pub public: bool,
    /// Whether calls may be retried whatever the method.
    pub idempotent: bool,
}

impl ServiceMetadata {
    /// The routes as the JSON list the registration carries:
    /// `[{"method":"GET","path":"/inventory/{sku}","public":false,"idempotent":true}]`.
    pub fn routes_json(&self) -> String {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "method": r.method,
                    "path": r.path,
                    "public": r.public,
                    "idempotent": r.idempotent,
                })
            })
            .collect();
        serde_json::Value::Array(routes).to_string()
    }

    /// The paths that need no token, for `server.auth.public`.
    pub fn public_paths(&self) -> impl Iterator<Item = &'static str> {
        self.routes.iter().filter(|r| r.public).map(|r| r.path)
    }
}

/// A service being served; [`shutdown`](Self::shutdown) stops it gracefully.
#[derive(Debug)]
pub struct Running {
    mesh: Mesh,
    local_addr: SocketAddr,
    registration: Option<Registration>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    /// The management address and its server, when the endpoints are served apart.
    management: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
    drain_timeout: Duration,
}

/// A server being set up by [`Mesh::server`]: its application, and optionally a relay and a
/// shutdown signal.
pub struct ServerBuilder {
    mesh: Mesh,
    app: App,
    metadata: Option<ServiceMetadata>,
    relay: Option<Arc<dyn Relay>>,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl ServerBuilder {
    /// Offers each plain HTTP/1.1 request to `relay` first ([`Relay`]): what it takes is
    /// answered from the request's bytes, without the server's layers, and counted in the same
    /// request metrics; the rest goes to the application. With token verification configured
    /// for the server (`auth`), every request goes through it and the relay is not used.
    pub fn relay(mut self, relay: impl Relay) -> Self {
        self.relay = Some(Arc::new(relay));
        self
    }

    /// What [`serve`](Self::serve) waits for before shutting down gracefully (SIGTERM or
    /// Ctrl-C, [`shutdown_signal`], by default).
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Binds, starts serving and registers; returns once the service is reachable and
    /// registered — or, when the registry cannot be reached, reachable, with registration
    /// retried in the background. [`Running::shutdown`] stops it.
    pub async fn start(self) -> Result<Running, MeshError> {
        self.mesh
            .start_serving(self.app, self.relay, self.metadata)
            .await
    }

    /// Serves until the shutdown signal, then shuts down gracefully (see
    /// [`Running::shutdown`]).
    pub async fn serve(mut self) -> Result<(), MeshError> {
        let signal = self.shutdown.take();
        let running = self.start().await?;
        match signal {
            Some(signal) => signal.await,
            None => shutdown_signal().await,
        }
        running.shutdown().await
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("service", self.mesh.name())
            .field("relay", &self.relay.is_some())
            .field("shutdown", &self.shutdown.is_some())
            .finish()
    }
}

/// What a server serves: an application, and the API it publishes, if it says.
pub struct Application {
    app: App,
    metadata: Option<ServiceMetadata>,
}

impl Application {
    /// `app` as it is: an axum `Router` (whose route patterns then label the request metrics)
    /// or any other [`HttpService`].
    pub fn new(app: impl HttpService) -> Self {
        Self {
            app: boxed_app(app),
            metadata: None,
        }
    }

    /// `router`, serving the API `metadata` describes: its routes are published in the
    /// registration, and its public routes are public when `server.auth` is on.
    pub fn described(router: Router, metadata: ServiceMetadata) -> Self {
        Self {
            app: boxed_app(router),
            metadata: Some(metadata),
        }
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// What [`Mesh::server`] takes: any [`HttpService`] (a `Router` among them), or a
/// `#[mesh::service]` server, which brings the API it serves along.
pub trait IntoApplication {
    /// The application and the API it publishes.
    fn into_application(self) -> Application;
}

impl<S: HttpService> IntoApplication for S {
    fn into_application(self) -> Application {
        Application::new(self)
    }
}

impl IntoApplication for Application {
    fn into_application(self) -> Application {
        self
    }
}

/// `app` boxed for the server; a `Router` with its routes labelled for the metrics.
fn boxed_app<A: HttpService>(app: A) -> App {
    let mut app = Some(app);
    if let Some(router) = (&mut app as &mut dyn std::any::Any).downcast_mut::<Option<Router>>()
        && let Some(router) = router.take()
    {
        return tower::util::BoxCloneSyncService::new(layers::label_routes(router));
    }
    match app {
        Some(app) => tower::util::BoxCloneSyncService::new(app),
        None => unreachable!("only a router is taken out"),
    }
}

/// An HTTP service the runtime can serve ([`Mesh::server`]):
/// any service of axum requests that answers every request (its errors are responses), is
/// cloned per connection and moves between threads. Implemented for every such service.
pub trait HttpService:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `service` on `listener` with the runtime's connection handling alone: mesh's
/// HTTP/1.1 path and hyper for HTTP/2 and upgrades (see [`ServerBuilder::serve`]), a connection that
/// sends no whole request for `idle_timeout` closed, and once `shutdown` completes a graceful
/// drain; none of the server layers, endpoints or registration [`ServerBuilder::serve`] adds. For a
/// server that is its own application, as the registry is. Returns once `shutdown` has
/// completed and every connection has closed.
///
/// ```no_run
/// use axum::{Router, routing::get};
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8761").await?;
/// let router = Router::new().route("/ping", get(|| async { "pong" }));
/// let idle_timeout = std::time::Duration::from_secs(60);
/// mesh_core::server::serve_connections(listener, router, idle_timeout, mesh_core::server::shutdown_signal()).await
/// # }
/// ```
pub async fn serve_connections(
    listener: TcpListener,
    service: impl HttpService,
    idle_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let served = connections::Served {
        app: tower::util::BoxCloneSyncService::new(service),
        relay: None,
        max_head_bytes: connections::DEFAULT_MAX_HEAD_BYTES,
    };
    connections::serve(listener, served, idle_timeout, None, shutdown).await
}

// === impl MeshBuilder ===

impl MeshBuilder {
    /// The version the service registers with (instance metadata `version`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The listening address, unless the configuration's `server.address` says otherwise.
    pub fn address(mut self, address: SocketAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// The configuration profile (`mesh-{profile}.yaml`), unless `MESH_PROFILE` is set.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The configuration file instead of `mesh.yaml`.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// A configuration loaded already, instead of loading one.
    pub fn config(mut self, config: MeshConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Registers with, and discovers through, a registry in this process (such as
    /// `mesh_registry::Registry`): a single-process mesh or a test.
    pub fn registry(mut self, registry: Arc<dyn RegistryApi>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Registers with, and discovers through, the registry at `url`, unless the
    /// configuration's `registry.url` says otherwise.
    pub fn registry_url(mut self, url: impl Into<String>) -> Self {
        self.registry_url = Some(url.into());
        self
    }

    /// Adds a readiness check (a Redis ping, the bus connection): `/health/ready` is down
    /// while it fails or takes longer than `timeout`.
    pub fn health_check<F, Fut>(mut self, name: &str, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks = self.checks.with(name, timeout, check);
        self
    }

    /// Loads the configuration and connects to the registry; serving starts with
    /// [`ServerBuilder::start`] or [`ServerBuilder::serve`].
    pub async fn build(self) -> Result<Mesh, MeshError> {
        let config = match self.config {
            Some(config) => config,
            None => {
                let mut defaults = serde_json::json!({});
                if let Some(address) = self.address {
                    defaults["server"] = serde_json::json!({"address": address.to_string()});
                }
                if let Some(url) = &self.registry_url {
                    defaults["registry"] = serde_json::json!({"url": url});
                }
                let mut builder = MeshConfig::builder(self.name.clone()).defaults(defaults);
                if let Some(profile) = self.profile {
                    builder = builder.profile(profile);
                }
                if let Some(file) = self.config_file {
                    builder = builder.file(file);
                }
                builder.load().await?
            }
        };
        let registry_settings: RegistrySettings = config.snapshot().section("registry")?;
        let registry = match (self.registry, &registry_settings.url) {
            (Some(registry), _) => Some(registry),
            (None, Some(url)) => Some(Arc::new(RegistryClient::new(url)?) as Arc<dyn RegistryApi>),
            (None, None) => None,
        };
        // Fail at start, not at the first request, on a bad server section or key.
        let server: ServerSettings = config.snapshot().section("server")?;
        if let Some(tls) = &server.tls {
            tls.server_config()?;
        }
        let auth = server
            .auth
            .enabled()
            .then(|| JwtVerifier::new(server.auth.jwt.clone()))
            .transpose()?;
        prometheus::install();
        Ok(Mesh {
            inner: Arc::new(Inner {
                name: ServiceId::new(&self.name),
                version: self.version,
                clients: Arc::new(ClientContext::new(config.clone(), registry)),
                config,
                checks: self.checks,
                auth,
                ready: AtomicBool::new(false),
            }),
        })
    }
}

// === impl Mesh ===

impl Mesh {
    /// Starts building the service `name` (its service ID in the registry).
    pub fn builder(name: impl Into<String>) -> MeshBuilder {
        MeshBuilder {
            name: name.into(),
            version: "0.0.0".into(),
            address: None,
            profile: None,
            config_file: None,
            config: None,
            registry: None,
            registry_url: None,
            checks: HealthChecks::new(),
        }
    }

    /// The service ID.
    pub fn name(&self) -> &ServiceId {
        &self.inner.name
    }

    /// The live configuration.
    pub fn config(&self) -> &MeshConfig {
        &self.inner.config
    }

    /// A client of `service`, through the whole client stack, configured by
    /// `clients.<service>`.
    pub fn client(&self, service: impl Into<ServiceId>) -> MeshClient {
        MeshClient::new(service.into(), self.inner.clients.clone())
    }

    /// A server of `app` — an axum `Router` (whose route patterns then label the request
    /// metrics) or any other [`HttpService`] (labelled by the [`RouteLabel`] extension of its
    /// answers, else `unmatched`) — with the server layers, `/health` and `/metrics` around
    /// it. Add a [`relay`](ServerBuilder::relay) or a [`shutdown`](ServerBuilder::shutdown)
    /// signal, then [`start`](ServerBuilder::start) or [`serve`](ServerBuilder::serve).
    ///
    /// ```no_run
    /// # async fn run(mesh: mesh_core::Mesh) -> Result<(), mesh_core::MeshError> {
    /// use axum::{Router, routing::get};
    /// let router = Router::new().route("/hello", get(|| async { "hello" }));
    /// mesh.server(router).serve().await // until SIGTERM or Ctrl-C
    /// # }
    /// ```
    ///
    /// [`RouteLabel`]: crate::observe::RouteLabel
    pub fn server(&self, app: impl IntoApplication) -> ServerBuilder {
        let Application { app, metadata } = app.into_application();
        ServerBuilder {
            mesh: self.clone(),
            app,
            metadata,
            relay: None,
            shutdown: None,
        }
    }

    async fn start_serving(
        &self,
        app: impl HttpService,
        relay: Option<Arc<dyn Relay>>,
        described: Option<ServiceMetadata>,
    ) -> Result<Running, MeshError> {
        let snapshot = self.inner.config.snapshot();
        let mut server: ServerSettings = snapshot.section("server")?;
        let registry_settings: RegistrySettings = snapshot.section("registry")?;
        let management: ManagementSettings = snapshot.section("management")?;
        if let Some(described) = &described {
            server
                .auth
                .public
                .extend(described.public_paths().map(str::to_owned));
        }
        let series = Arc::new(ServerSeries::new(self.inner.name.as_str().into()));
        let relay = relay.filter(|_| self.inner.auth.is_none()).map(|relay| {
            Arc::new(relay::Relaying {
                relay,
                series: series.clone(),
                body_limit: server.body_limit,
                relayed: metrics::counter!(
                    "mesh_server_relayed_requests_total",
                    "service" => self.inner.name.to_string()
                ),
            })
        });
        // The endpoints beside the application, or on their own address.
        let (endpoints, management) = match management.address {
            None => (Some(self.endpoints()), None),
            Some(address) => (None, Some(self.serve_management(address, &server).await?)),
        };
        let app = layers::wrap(app, endpoints, series, &server, self.inner.auth.clone());
        let served = connections::Served {
            app,
            relay,
            max_head_bytes: server.max_head_bytes,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let tls = server
            .tls
            .as_ref()
            .map(TlsSettings::server_config)
            .transpose()?;
        let (local_addr, server_task) = if server.threads > 0 {
            workers::spawn(&server, served, tls, stopped)?
        } else {
            let listener = TcpListener::bind(server.address).await.map_err(|e| {
                MeshError::new(
                    ErrorKind::Config,
                    format!("binding {}: {e}", server.address),
                )
                .with_source(e)
            })?;
            let local_addr = listener
                .local_addr()
                .map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))?;
            let serve = connections::serve(listener, served, server.idle_timeout, tls, stopped);
            let task = tokio::spawn(serve);
            (local_addr, task)
        };
        let registration = match (&self.inner.clients.registry, registry_settings.register) {
            (Some(registry), true) => Some(
                Registration::start(
                    registry.clone(),
                    self.instance(&server, local_addr, described.as_ref()),
                    registry_settings.renewal_interval,
                    registry_settings.lease_duration,
                )
                .await,
            ),
            _ => None,
        };
        self.inner.ready.store(true, Ordering::SeqCst);
        tracing::info!(service = %self.inner.name, address = %local_addr, "serving");
        Ok(Running {
            mesh: self.clone(),
            local_addr,
            registration,
            stop: Some(stop),
            server: server_task,
            management,
            drain_timeout: server.drain_timeout,
        })
    }

    /// Serves the endpoints alone on `address` until the returned task is aborted.
    async fn serve_management(
        &self,
        address: SocketAddr,
        server: &ServerSettings,
    ) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>), MeshError> {
        let listener = TcpListener::bind(address).await.map_err(|e| {
            MeshError::new(
                ErrorKind::Config,
                format!("binding management.address {address}: {e}"),
            )
            .with_source(e)
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))?;
        let served = connections::Served {
            app: tower::util::BoxCloneSyncService::new(self.endpoints()),
            relay: None,
            max_head_bytes: server.max_head_bytes,
        };
        let idle = server.idle_timeout;
        let task = tokio::spawn(async move {
            connections::serve(listener, served, idle, None, std::future::pending()).await
        });
        tracing::info!(service = %self.inner.name, address = %local_addr, "management endpoints");
        Ok((local_addr, task))
    }

    /// The instance this service registers as.
    fn instance(
        &self,
        server: &ServerSettings,
        local_addr: SocketAddr,
        described: Option<&ServiceMetadata>,
    ) -> Instance {
        let host = server.advertise_host.clone().unwrap_or_else(|| {
            if local_addr.ip().is_unspecified() {
                "127.0.0.1".into()
            } else {
                local_addr.ip().to_string()
            }
        });
        let mut instance = Instance::new(self.inner.name.clone(), host, local_addr.port());
        instance.secure = server.tls.is_some();
        instance.id = format!(
            "{}:{}:{}",
            instance.host,
            self.inner.name,
            local_addr.port()
        );
        instance
            .metadata
            .insert("version".into(), self.inner.version.clone());
        if let Some(profile) = self.inner.config.profile() {
            instance.metadata.insert("profile".into(), profile.into());
        }
        if let Some(described) = described {
            instance
                .metadata
                .insert("routes".into(), described.routes_json());
        }
        instance
    }

    /// `/health`, `/health/live`, `/health/ready` and `/metrics`.
    fn endpoints(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics_text))
            .with_state(self.inner.clone())
    }
}

async fn health(State(inner): State<Arc<Inner>>) -> Response {
    report(inner.checks.run().await)
}

async fn live() -> Response {
    report(HealthReport {
        status: Status::Up,
        components: Default::default(),
    })
}

async fn ready(State(inner): State<Arc<Inner>>) -> Response {
    if !inner.ready.load(Ordering::SeqCst) {
        return report(HealthReport {
            status: Status::OutOfService,
            components: Default::default(),
        });
    }
    report(inner.checks.run().await)
}

fn report(report: HealthReport) -> Response {
    let status = match report.status {
        Status::Up => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(report)).into_response()
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::render(),
    )
        .into_response()
}

/// SIGTERM or Ctrl-C.
/// Completes on SIGTERM or Ctrl-C: the signal [`ServerBuilder::serve`] shuts down on, for servers that
/// use [`serve_connections`] directly.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

// === impl Running ===

impl Running {
    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/health…` and `/metrics` are served when `management.address` moves them off
    /// the service's own address.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().map(|(address, _)| *address)
    }

    /// The instance this service registers as, when it registers.
    pub fn instance(&self) -> Option<&Instance> {
        self.registration.as_ref().map(Registration::instance)
    }

    /// Whether the registry has accepted this service (registration is retried in the
    /// background while the registry cannot be reached).
    pub async fn is_registered(&self) -> bool {
        match &self.registration {
            Some(registration) => registration.is_registered().await,
            None => false,
        }
    }

    /// The service.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Shuts down gracefully: turns unready and deregisters first (so callers stop picking
    /// this instance), then stops accepting connections and waits up to
    /// `server.drain_timeout` for in-flight requests before closing the rest.
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        self.mesh.inner.ready.store(false, Ordering::SeqCst);
        if let Some(registration) = self.registration.take() {
            match tokio::time::timeout(DEREGISTER_TIMEOUT, registration.deregister()).await {
                Ok(Ok(())) => tracing::info!(service = %self.mesh.name(), "deregistered"),
                Ok(Err(error)) => tracing::warn!(%error, "deregistration failed"),
                Err(_) => tracing::warn!("deregistration timed out"),
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((_, management)) = self.management.take() {
            management.abort();
        }
        match tokio::time::timeout(self.drain_timeout, &mut self.server).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(service = %self.mesh.name(), "drained and stopped");
                Ok(())
            }
            Ok(Ok(Err(error))) => Err(MeshError::new(ErrorKind::Transport, error.to_string())),
            Ok(Err(error)) => Err(MeshError::new(ErrorKind::Internal, error.to_string())),
            Err(_) => {
                self.server.abort();
                tracing::warn!(
                    drain_timeout = ?self.drain_timeout,
                    "in-flight requests outlived the drain timeout; closed"
                );
                Ok(())
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.server.abort();
        }
        if let Some((_, management)) = &self.management {
            management.abort();
        }
    }
}
