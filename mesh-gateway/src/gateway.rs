//! The gateway: its lifecycle (compiled routes, reloads), and the pipeline every request of
//! the typed path takes — screening, routing, edge auth, policies, forwarding — with the
//! gateway's part of each answer (request ID, CORS, metrics, access log).

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::{
    Router,
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::{
    FutureExt,
    future::{BoxFuture, Either},
};
use http::{HeaderValue, Uri, header, uri::PathAndQuery};
use http_body_util::BodyExt;
use mesh_core::{
    BoxBody, Mesh,
    auth::edge::EdgeSigner,
    client::pool::Http1Pool,
    config::MeshConfig,
    error::{BoxError, ErrorKind, MeshError},
    observe::{HopEvent, RouteLabel, StatusCounters},
    resilience::timeout::TIMEOUT_HEADER,
};
use tokio::time::Instant;

use crate::{
    access_log::{AccessLog, Record},
    auth::EdgeAuth,
    config::{GatewayConfig, RouteAuth},
    cors::Cors,
    error::invalid,
    forward::Forward,
    headers::{REQUEST_ID_HEADER, TrustedProxies, request_id},
    path::PathRules,
    policy::{self, Outcome},
    route::{
        self, Route,
        predicate::{Captures, RequestHead, network},
    },
    upgrade::{is_upgrade, origin_admitted},
};

/// A compiled gateway. Clones share it, and [`reload`](Self::reload) swaps its routes for
/// all of them at once.
#[derive(Clone, Debug)]
pub struct Gateway {
    current: Arc<ArcSwap<Inner>>,
    mesh: Mesh,
}

/// The gateway as compiled from one configuration; a reload replaces it whole.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) routes: Vec<Route>,
    pub(crate) auth: EdgeAuth,
    pub(crate) cors: Option<Cors>,
    /// How strict request paths are held to be.
    pub(crate) paths: PathRules,
    /// The proxies whose forwarding fields are believed.
    pub(crate) proxies: TrustedProxies,
    /// Connections to fixed upstreams, kept across reloads.
    pub(crate) pool: Arc<Http1Pool>,
    /// Signs the proof sent upstream that a request came through the gateway (`edge`).
    pub(crate) edge: Option<EdgeSigner>,
    /// `mesh_gateway_requests_total` of requests no route matched (`route="none"`).
    unrouted: (Arc<str>, StatusCounters),
}

/// What the access log tells of a request, kept from its start when the log is on.
pub(crate) struct Logged {
    method: http::Method,
    path: String,
    started: Instant,
}

impl Logged {
    /// The start of a request to `path`, when the access log is on.
    pub(crate) fn start(method: &http::Method, path: &str) -> Option<Self> {
        tracing::enabled!(target: "mesh_gateway::access", tracing::Level::INFO).then(|| Self {
            method: method.clone(),
            path: path.to_owned(),
            started: Instant::now(),
        })
    }
}

impl Gateway {
    /// Compiles `config`; `mesh` resolves `lb://` services. Every problem is reported at once
    /// here, never per request.
    pub fn new(config: GatewayConfig, mesh: &Mesh) -> Result<Self, MeshError> {
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(Inner::new(
                config,
                mesh,
                Http1Pool::new(),
            )?)),
            mesh: mesh.clone(),
        })
    }

    /// Replaces the routes and auth with `config`'s. Requests in flight finish on the routes
    /// they started with; an invalid `config` changes nothing.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), MeshError> {
        let pool = self.current.load().pool.clone();
        let inner = Inner::new(config, &self.mesh, pool)?;
        let routes = inner.routes.len();
        self.current.store(Arc::new(inner));
        tracing::info!(routes, "gateway routes reloaded");
        Ok(())
    }

    /// Reloads whenever the mesh configuration publishes a change (a file watched with
    /// `MeshConfig::watch_files`, a config-server refresh), until the gateway is dropped.
    pub fn follow(&self, config: &MeshConfig) -> tokio::task::JoinHandle<()> {
        let mut changes = config.subscribe();
        let weak = Arc::downgrade(&self.current);
        let mesh = self.mesh.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(current) = weak.upgrade() else {
                    return;
                };
                let gateway = Gateway {
                    current,
                    mesh: mesh.clone(),
                };
                let section = changes.borrow_and_update().section::<GatewayConfig>("");
                match section.and_then(|config| gateway.reload(config)) {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, "gateway configuration refused; keeping the routes")
                    }
                }
            }
        })
    }
}

impl Inner {
    fn new(config: GatewayConfig, mesh: &Mesh, pool: Arc<Http1Pool>) -> Result<Self, MeshError> {
        let auth = EdgeAuth::new(&config)?;
        let mut routes: Vec<(i32, Route)> = Vec::with_capacity(config.routes.len());
        let store = policy::rate_limit_store(&config)?;
        for route in &config.routes {
            let compiled = route::compile(route, mesh, store.clone())
                .map_err(|e| invalid(format!("route `{}`: {}", route.id, e.message())))?;
            if !auth.verifies() && compiled.auth != RouteAuth::Public {
                return Err(invalid(format!(
                    "route `{}` needs a token, but `auth.jwt` names no key: set one, or make \
                     the route `auth: public`",
                    route.id
                )));
            }
            routes.push((route.order, compiled));
        }
        routes.sort_by_key(|(order, _)| *order);
        let proxies = config
            .trusted_proxies
            .iter()
            .map(|proxy| network(proxy))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("trusted_proxies: {}", e.message())))?;
        Ok(Self {
            routes: routes.into_iter().map(|(_, r)| r).collect(),
            paths: config.paths,
            proxies: TrustedProxies::new(proxies),
            auth,
            cors: config.cors.map(Cors::new).transpose()?,
            edge: config.edge.map(EdgeSigner::new).transpose()?,
            pool,
            unrouted: ("none".into(), route::requests_total("none")),
        })
    }
}

impl Gateway {
    /// The gateway as compiled now.
    pub(crate) fn current(&self) -> Arc<Inner> {
        self.current.load_full()
    }

    /// The gateway as a router: every path goes through [`handle`](Self::handle).
    pub fn into_router(self) -> Router {
        Router::new().fallback_service(self)
    }

    /// Routes one request, on the routes current when it arrives.
    pub async fn handle(&self, request: Request) -> Response {
        self.current.load_full().handle(request).await
    }
}

impl Inner {
    /// Routes one request. What comes before routing is done here and what comes after once
    /// the answer is ready, both outside the routing future: the returned future holds the
    /// routing's state and the few values the answer needs, not a second request.
    fn handle(
        self: Arc<Self>,
        mut request: Request,
    ) -> impl Future<Output = Response> + Send + 'static {
        let origin = request.headers().get(header::ORIGIN).cloned();
        if let Err(error) = self.screen(&mut request) {
            let request_id = request_id(request.headers_mut());
            let logged = Logged::start(request.method(), request.uri().path());
            let refusal = self.answer(None, error.into_response(), origin, request_id, logged);
            return Either::Left(std::future::ready(refusal));
        }
        if let Some(preflight) = self.cors.as_ref().and_then(|cors| cors.preflight(&request)) {
            return Either::Left(std::future::ready(preflight));
        }
        let request_id = request_id(request.headers_mut());
        let logged = Logged::start(request.method(), request.uri().path());
        let routed = self.clone().dispatch(request, false);
        Either::Right(
            routed.map(move |(route, response)| {
                self.answer(route, response, origin, request_id, logged)
            }),
        )
    }

    /// Holds a request to the edge's rules before anything reads it: at most one
    /// `Authorization`, and a path normalised (see [`PathRules`]), which goes on normalised. A
    /// `400` for what breaks them. (One `Host` per HTTP/1.1 request the server checks itself.)
    /// A client's deadline (`mesh-timeout`, `grpc-timeout`) bounds its own call at the server
    /// and goes no further: the budget upstream is the route's. A protocol switch from another
    /// site's page is a `403` (see [`origin_admitted`]).
    fn screen(&self, request: &mut Request) -> Result<(), MeshError> {
        for deadline in [TIMEOUT_HEADER.as_str(), "grpc-timeout"] {
            request.headers_mut().remove(deadline);
        }
        let headers = request.headers();
        if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a request may carry one Authorization field",
            ));
        }
        if is_upgrade(headers) && !origin_admitted(headers, self.cors.as_ref()) {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                "a protocol switch from another site's page is refused (cors.allowed_origins \
                 lists the sites that may)",
            ));
        }
        let uri = request.uri();
        let normalised = self
            .paths
            .normalise(uri.path())
            .map_err(|refused| MeshError::new(ErrorKind::BadRequest, refused.to_string()))?;
        if let std::borrow::Cow::Owned(path) = normalised {
            let target = match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            let mut parts = std::mem::take(request.uri_mut()).into_parts();
            parts.path_and_query = Some(
                PathAndQuery::try_from(target)
                    .map_err(|e| MeshError::new(ErrorKind::BadRequest, e.to_string()))?,
            );
            *request.uri_mut() = Uri::from_parts(parts)
                .map_err(|e| MeshError::new(ErrorKind::BadRequest, e.to_string()))?;
        }
        Ok(())
    }

    /// The gateway's part of every answer: the request ID, CORS, `WWW-Authenticate` on a
    /// `401`, the route's metrics and the access log.
    pub(crate) fn answer(
        &self,
        route: Option<usize>,
        mut response: Response,
        origin: Option<HeaderValue>,
        request_id: HeaderValue,
        logged: Option<Logged>,
    ) -> Response {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, request_id.clone());
        if let (Some(origin), Some(cors)) = (&origin, &self.cors) {
            cors.allow(origin, response.headers_mut());
        }
        if response.status() == http::StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let route_id = self.account(route, response.status(), &request_id, logged);
        response.extensions_mut().insert(RouteLabel(route_id));
        response
    }

    /// Counts an answer with `status` under its route, logs it when the access log is on, and
    /// returns the route's ID (`none` without one).
    pub(crate) fn account(
        &self,
        route: Option<usize>,
        status: http::StatusCode,
        request_id: &HeaderValue,
        logged: Option<Logged>,
    ) -> Arc<str> {
        let status = status.as_u16();
        let (route_id, requests) = match route {
            Some(index) => (&self.routes[index].id, &self.routes[index].requests),
            None => (&self.unrouted.0, &self.unrouted.1),
        };
        requests.increment(status);
        if let Some(Logged {
            method,
            path,
            started,
        }) = logged
        {
            AccessLog::stdout().record(&Record {
                route: route_id,
                method: method.as_str(),
                path: &path,
                status,
                duration: started.elapsed(),
                request_id: request_id.to_str().unwrap_or_default(),
            });
        }
        route_id.clone()
    }

    /// The index of the first route whose predicates all match `request`, the path variables
    /// it bound in `captures`.
    pub(crate) fn route_of(
        &self,
        request: &impl RequestHead,
        captures: &mut Captures,
    ) -> Option<usize> {
        route::find(&self.routes, request, captures)
    }

    /// What sending a request upstream takes from this gateway.
    pub(crate) fn forwarding(&self) -> Forward<'_> {
        Forward {
            pool: &self.pool,
            proxies: &self.proxies,
            auth: &self.auth,
            edge: self.edge.as_ref(),
        }
    }

    /// Matches the request to a route, admits it and sends it through the route's policies;
    /// returns the route's index (`None` without one) and the answer. A `forwarded` request is
    /// a fallback's: its own route's fallback is not followed again.
    async fn dispatch(
        self: Arc<Self>,
        mut request: Request,
        forwarded: bool,
    ) -> (Option<usize>, Response) {
        let mut captures = Captures::new();
        let Some(index) = self.route_of(&request, &mut captures) else {
            let path = request.uri().path();
            let error = MeshError::new(ErrorKind::NotFound, format!("no route for {path}"));
            return (None, error.into_response());
        };
        let route = &self.routes[index];
        if let Err(error) = self.auth.admit(route, &mut request).await {
            return (Some(index), error.into_response());
        }
        let request = request.map(|body| {
            if axum::body::HttpBody::is_end_stream(&body) {
                // Most requests: nothing to box.
                BoxBody::default()
            } else {
                body.map_err(BoxError::from).boxed_unsync()
            }
        });
        let answered = if !policy::any(route) {
            // No policy (and so no fallback): straight upstream.
            self.forwarding().send(route, request, &captures).await
        } else {
            let forward = self.forward_to(index, captures);
            match policy::apply(route, request, forwarded, forward).await {
                Outcome::Answered(answered) => answered,
                Outcome::Fallback(head) => {
                    // Boxed: a request that `dispatch` routed is dispatched again.
                    let mut answer = Box::pin(self.clone().dispatch(head, true)).await.1;
                    answer.extensions_mut().insert(HopEvent {
                        name: "fallback",
                        detail: format!("route {} forwarded to its fallback", route.id),
                    });
                    return (Some(index), answer);
                }
            }
        };
        (
            Some(index),
            answered.unwrap_or_else(IntoResponse::into_response),
        )
    }

    /// The call a route's policies wrap: forwarding on route `index`, owning what it needs.
    fn forward_to(
        self: &Arc<Self>,
        index: usize,
        captures: Captures,
    ) -> impl Fn(http::Request<BoxBody>) -> BoxFuture<'static, Result<Response, MeshError>>
    + Clone
    + Send
    + Sync
    + 'static {
        let (gateway, captures) = (self.clone(), Arc::new(captures));
        move |request| {
            let (gateway, captures) = (gateway.clone(), captures.clone());
            // Boxed: the forward future is large, and each policy around it would move it
            // whole as it wraps it.
            Box::pin(async move {
                let route = &gateway.routes[index];
                gateway.forwarding().send(route, request, &captures).await
            })
        }
    }
}

/// The gateway as a service: every request is routed by [`Gateway::handle`].
impl tower::Service<Request> for Gateway {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Mapped rather than awaited in an `async` block, which would hold the large routing
        // future a second time.
        Box::pin(self.current.load_full().handle(request).map(Ok))
    }
}
