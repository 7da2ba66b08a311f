//! Serving a [`Mesh`]'s application: the server builder and the running server.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::{Mesh, registration::Registration};
use crate::{
    discovery::Instance,
    error::{ErrorKind, MeshError},
    observe::ServerSeries,
    server::{
        self, App, HttpService, ManagementSettings, RegistrySettings, Relay, Relaying, Served,
        ServerSettings, ServiceMetadata, TlsSettings, shutdown_signal,
    },
};

/// How long deregistration may take before shutdown goes on without it.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The subscription to configuration refreshes, when a config server is configured.
    _refresh: Option<crate::bus::Subscription>,
}

/// A server being set up by [`Mesh::server`]: its application, and optionally a relay and a
/// shutdown signal.
pub struct ServerBuilder {
    pub(super) mesh: Mesh,
    pub(super) app: App,
    pub(super) metadata: Option<ServiceMetadata>,
    pub(super) relay: Option<Arc<dyn Relay>>,
    pub(super) shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl ServerBuilder {
    /// Offers each plain HTTP/1.1 request to `relay` first ([`Relay`]): what it takes is
    /// answered from the request's bytes, without the server's layers, and counted in the same
    /// request metrics; the rest goes to the application. With token verification configured
    /// for the server (`auth`, `edge`), every request goes through it and the relay is not
    /// used.
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
        let drained = tokio::time::timeout(self.drain_timeout, &mut self.server).await;
        // The spans of the requests just drained go out before the process ends.
        #[cfg(feature = "otlp")]
        crate::observe::export::shutdown_service(self.mesh.name().as_str()).await;
        match drained {
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

impl Mesh {
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
            server.auth.public.extend(described.public_paths());
        }
        let series = Arc::new(ServerSeries::new(self.inner.name.as_str().into()));
        let verifies = self.inner.auth.is_some() || self.inner.edge.is_some();
        let relay = relay.filter(|_| !verifies).map(|relay| {
            Arc::new(Relaying {
                relay,
                series: series.clone(),
                body_limit: server.limits().body_bytes,
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
        let report = super::report::reporter(series.clone(), self.inner.clients.breakers.clone());
        let app = server::wrap(
            app,
            endpoints,
            series,
            &server,
            self.inner.auth.clone(),
            self.inner.edge.clone(),
        );
        let served = Served {
            app,
            relay,
            limits: server.limits(),
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
            server::spawn_workers(&server, served, tls, stopped)?
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
            let serve = server::serve(listener, served, server.idle_timeout, tls, stopped);
            let task = tokio::spawn(serve);
            (local_addr, task)
        };
        let instance = self.instance(&server, local_addr, described.as_ref());
        let refresh = self.follow_refresh(&instance.id).await;
        let registration = match (&self.inner.clients.registry, registry_settings.register) {
            (Some(registry), true) => Some(
                Registration::start(
                    registry.clone(),
                    instance,
                    registry_settings.renewal_interval,
                    registry_settings.lease_duration,
                    report,
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
            _refresh: refresh,
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
        let served = Served {
            app: tower::util::BoxCloneSyncService::new(self.endpoints()),
            relay: None,
            limits: server.limits(),
        };
        let idle = server.idle_timeout;
        let task = tokio::spawn(async move {
            server::serve(listener, served, idle, None, std::future::pending()).await
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
}
