//! Serving HTTP: the connection handling (mesh's HTTP/1.1 path, hyper for HTTP/2, TLS and
//! upgrades), what a server serves ([`Application`], [`HttpService`]), the [`layers`] around
//! it, and [`Relay`]s that answer requests from their bytes.
//!
//! The runtime (`Mesh::server`) serves an application with the layers, the endpoints and the
//! registration; [`serve_connections`] serves a service with the connection handling alone.

mod body_limit;
mod connections;
pub mod extract;
pub mod layers;
mod relay;
mod settings;
mod tls;
mod workers;

use std::{convert::Infallible, fmt, future::Future, time::Duration};

use axum::{Router, extract::Request, response::Response};
use tokio::net::TcpListener;
use tower::Service;

pub(crate) use self::{
    connections::{Served, serve},
    layers::stack::{App, wrap},
    relay::Relaying,
    workers::spawn as spawn_workers,
};
pub use self::{
    relay::{Relay, RelayFuture, Relayed},
    settings::{ManagementSettings, RegistrySettings, ServerSettings},
    tls::TlsSettings,
};

/// What `#[mesh::service]` knows of a service's API. A server of it (served with
/// `Mesh::server`, or any router served as [`Application::described`]) publishes its routes
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

    /// The routes that need no token, for `server.auth.public`: each as its method, a space
    /// and its path (`GET /inventory/{sku}`), public for that method only.
    pub fn public_paths(&self) -> impl Iterator<Item = String> {
        self.routes
            .iter()
            .filter(|r| r.public)
            .map(|r| format!("{} {}", r.method, r.path))
    }
}

/// What a server serves: an application, and the API it publishes, if it says.
pub struct Application {
    pub(crate) app: App,
    pub(crate) metadata: Option<ServiceMetadata>,
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

    /// tonic's gRPC services (`Routes::new(svc).add_service(other)`), over HTTP/2 with and
    /// without TLS, with the server layers around them: a gRPC call is answered with a gRPC
    /// status by the layers, and counted under its method's path.
    #[cfg(feature = "grpc")]
    pub fn grpc(routes: tonic::service::Routes) -> Self {
        Self::new(routes.prepare().into_axum_router())
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// What `Mesh::server` takes: any [`HttpService`] (a `Router` among them), a
/// `#[mesh::service]` server, which brings the API it serves along, or an [`Application`]
/// (tonic's services among them: `Application::grpc`, with the `grpc` feature).
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

/// An HTTP service the runtime can serve (`Mesh::server`):
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
/// HTTP/1.1 path and hyper for HTTP/2 and upgrades (see `ServerBuilder::serve`), a connection that
/// sends no whole request for `idle_timeout` closed, and once `shutdown` completes a graceful
/// drain; none of the server layers, endpoints or registration `ServerBuilder::serve` adds. For a
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
        limits: crate::http1::Limits::REQUEST,
    };
    connections::serve(listener, served, idle_timeout, None, shutdown).await
}

/// Completes on SIGTERM or Ctrl-C: the signal `ServerBuilder::serve` shuts down on, for servers that
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
