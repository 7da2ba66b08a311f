//! The service runtime: `Mesh::builder()` loads the configuration, registers the service,
//! serves its application behind the server layers with `/health` and `/metrics`, hands
//! out [`MeshClient`]s by service ID, and shuts down gracefully.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mesh_core::Mesh;
//!
//! # async fn run() -> Result<(), mesh_core::MeshError> {
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

mod backends;
mod endpoints;
mod refresh;
mod registration;
mod report;
mod serving;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

pub use self::{
    backends::{MEMORY_CACHE_ENTRIES, RedisSettings},
    serving::{Running, ServerBuilder},
};
use crate::{
    auth::{JwtVerifier, edge},
    client::{ClientContext, MeshClient, Profile},
    config::MeshConfig,
    discovery::ServiceId,
    error::MeshError,
    observe::{health::HealthChecks, prometheus},
    registry::{RegistryApi, RegistryClient},
    server::{Application, IntoApplication, RegistrySettings, ServerSettings},
};

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
    /// Verifies the gateway's proof (`server.edge`), when configured.
    edge: Option<JwtVerifier>,
    ready: AtomicBool,
    backends: backends::Backends,
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
    backends: backends::Backends,
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

    /// Publishes and subscribes on `bus` instead of the one `bus.url` names: services of one
    /// process sharing an in-memory bus, or a test.
    pub fn bus(mut self, bus: Arc<dyn crate::bus::Bus>) -> Self {
        self.backends = backends::Backends::with_bus(bus);
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
        let _: crate::bus::BusSettings = config.snapshot().section("bus")?;
        let _: RedisSettings = config.snapshot().section("redis")?;
        if let Some(tls) = &server.tls {
            tls.server_config()?;
        }
        let auth = server
            .auth
            .enabled()
            .then(|| JwtVerifier::new(server.auth.jwt.clone()))
            .transpose()?;
        let edge = server
            .edge
            .enabled()
            .then(|| {
                // The gateway's claims are required, so no other token of the same key (a
                // user's, from a shared JWKS) passes for a proof.
                let mut jwt = server.edge.jwt.clone();
                jwt.issuer
                    .get_or_insert_with(|| edge::DEFAULT_ISSUER.into());
                jwt.audience
                    .get_or_insert_with(|| edge::DEFAULT_AUDIENCE.into());
                JwtVerifier::new(jwt)
            })
            .transpose()?;
        prometheus::install();
        #[cfg(feature = "otlp")]
        {
            let otlp: crate::observe::export::OtlpSettings =
                config.snapshot().section("observe.otlp")?;
            crate::observe::export::install(&self.name, otlp.endpoint.as_deref())?;
        }
        Ok(Mesh {
            inner: Arc::new(Inner {
                name: ServiceId::new(&self.name),
                version: self.version,
                clients: Arc::new(ClientContext::new(config.clone(), registry)),
                config,
                checks: self.checks,
                auth,
                edge,
                ready: AtomicBool::new(false),
                backends: self.backends,
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
            backends: backends::Backends::default(),
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

    /// A gRPC channel to `service`: a [`MeshClient`] whose calls go over HTTP/2 (h2c) whatever
    /// `clients.<service>.http2` says, through the whole client stack, each call balanced
    /// over the service's instances (one multiplexed connection per instance). Hand it to a
    /// tonic-generated client, which calls by path:
    ///
    /// ```ignore
    /// let mut inventory = InventoryClient::new(mesh.grpc_channel("inventory-service"));
    /// let stock = inventory.count(CountRequest { sku: "sku-1".into() }).await?;
    /// ```
    ///
    /// A call is retried only when `clients.<service>.retry` allows its method (gRPC's is
    /// `POST`) or it could not connect; a gRPC error status is an answer, not a failure.
    pub fn grpc_channel(&self, service: impl Into<ServiceId>) -> MeshClient {
        MeshClient::with_profile(service.into(), self.inner.clients.clone(), Profile::Grpc)
    }

    /// A client of `service` for an edge gateway's route: as [`client`](Self::client), but
    /// without a bulkhead unless `clients.<service>.bulkhead` configures one, so the edge never
    /// refuses healthy load for want of a slot (Spring Cloud Gateway has no bulkhead by
    /// default either). What protects the gateway instead is its connection handling and the
    /// policies a route configures (rate limit, timeout, circuit breaker).
    pub fn edge_client(&self, service: impl Into<ServiceId>) -> MeshClient {
        MeshClient::with_profile(service.into(), self.inner.clients.clone(), Profile::Edge)
    }

    /// A server of `app` — an axum `Router` (whose route patterns then label the request
    /// metrics) or any other [`HttpService`](crate::server::HttpService) (labelled by the [`RouteLabel`] extension of its
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
}
