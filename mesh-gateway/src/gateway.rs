//! The gateway: route matching, edge auth, per-route policies and forwarding.

mod relay;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::{
    Router,
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::{
    FutureExt,
    future::{BoxFuture, Either},
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Uri,
    header::{self, Entry},
    uri::{Authority, PathAndQuery},
};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use mesh_core::{
    BoxBody, Mesh, MeshClient,
    auth::{AuthError, JwtVerifier, bearer_token},
    client::pool::{Http1Pool, OnUpgrade as UpstreamUpgrade},
    config::MeshConfig,
    context::{PeerAddr, Tls},
    error::BoxError,
    error::{ErrorKind, MeshError},
    observe::{RouteLabel, StatusCounters, TRACEPARENT, TraceContext},
    resilience::{
        circuit_breaker::CircuitBreakerLayer,
        rate_limit::{Decision, RateLimitConfig, RateLimitLayer, RateLimitStore, RateLimited},
        retry::RetryLayer,
        timeout::{TimeoutConfig, TimeoutLayer},
    },
};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::{
    config::{CorsConfig, Fallback, GatewayConfig, RouteAuth, RouteConfig},
    error::invalid,
    filter::Filter,
    headers::{
        REQUEST_ID_HEADER, ROLES_HEADER, TrustedProxies, USER_HEADER, cookie, is_hop_by_hop,
        is_identity_name, prepare_upstream_headers, strip,
    },
    path::PathRules,
    predicate::{Captures, Predicate, RequestHead, network},
    token_cache::{TokenCache, Verified},
};

/// A compiled gateway. Clones share it, and [`reload`](Self::reload) swaps its routes for
/// all of them at once.
#[derive(Clone, Debug)]
pub struct Gateway {
    current: Arc<ArcSwap<Inner>>,
    mesh: Mesh,
}

#[derive(Debug)]
struct Inner {
    routes: Vec<Route>,
    verifier: Option<JwtVerifier>,
    tokens: TokenCache,
    cookie: String,
    secure_cookie: bool,
    cors: Option<CorsConfig>,
    /// How strict request paths are held to be.
    paths: PathRules,
    /// The proxies whose forwarding fields are believed.
    proxies: TrustedProxies,
    /// Connections to fixed upstreams, kept across reloads.
    pool: Arc<Http1Pool>,
    /// `mesh_gateway_requests_total` of requests no route matched (`route="none"`).
    unrouted: (Arc<str>, StatusCounters),
}

/// How a field goes on an answer: in place of any the answer has, or beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    Replace,
    Append,
}

/// Largest login answer read to find the token in it.
const MAX_LOGIN_ANSWER_BYTES: usize = 1024 * 1024;

/// What the access log tells of a request, kept from its start when the log is on.
struct Logged {
    method: http::Method,
    path: String,
    started: Instant,
}

impl Logged {
    /// The start of a request to `path`, when the access log is on.
    fn start(method: &http::Method, path: &str) -> Option<Self> {
        tracing::enabled!(target: "mesh_gateway::access", tracing::Level::INFO).then(|| Self {
            method: method.clone(),
            path: path.to_owned(),
            started: Instant::now(),
        })
    }
}

#[derive(Debug)]
struct Route {
    id: Arc<str>,
    predicates: Vec<Predicate>,
    filters: Vec<Filter>,
    upstream: Upstream,
    auth: RouteAuth,
    limiter: Option<RateLimitLayer>,
    /// The limiter's `include_headers`: `X-RateLimit-*` on answers and refusals.
    limit_headers: bool,
    breaker: Option<CircuitBreakerLayer>,
    fallback: Option<Fallback>,
    timeout: Option<TimeoutLayer>,
    retry: Option<RetryLayer>,
    login: bool,
    logout: bool,
    /// How the relay path rewrites the route's heads, when its requests can be relayed from
    /// their bytes: a fixed upstream, and nothing that needs the request as a request
    /// (policies but a local rate limit and a timeout, login or logout, rate-limit headers,
    /// filters on the headers the gateway manages).
    relay: Option<Arc<relay::HeadRewrite>>,
    /// `mesh_gateway_requests_total` of this route, by status.
    requests: StatusCounters,
}

#[derive(Debug)]
enum Upstream {
    /// `lb://service`: through discovery, balancing and the client stack.
    Service(MeshClient),
    /// `http://host:port`: a fixed upstream, over the gateway's [`Http1Pool`].
    Fixed(Authority),
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
        let verifier = if config.auth.jwt.secret.is_some()
            || config.auth.jwt.public_key.is_some()
            || config.auth.jwt.jwks_url.is_some()
        {
            Some(JwtVerifier::new(config.auth.jwt.clone())?)
        } else {
            None
        };
        let mut routes: Vec<(i32, Route)> = Vec::with_capacity(config.routes.len());
        let store = rate_limit_store(&config)?;
        for route in &config.routes {
            let compiled = compile(route, mesh, store.clone())
                .map_err(|e| invalid(format!("route `{}`: {}", route.id, e.message())))?;
            if verifier.is_none() && compiled.auth != RouteAuth::Public {
                return Err(invalid(format!(
                    "route `{}` needs a token, but `auth.jwt` names no key: set one, or make \
                     the route `auth: public`",
                    route.id
                )));
            }
            routes.push((route.order, compiled));
        }
        routes.sort_by_key(|(order, _)| *order);
        let tokens = TokenCache::new(config.auth.token_cache_size);
        #[cfg(feature = "redis")]
        let tokens = match &config.redis {
            Some(redis) => tokens
                .with_redis(&redis.url)
                .map_err(|e| invalid(format!("redis.url: {e}")))?,
            None => tokens,
        };
        if let Some(cors) = &config.cors
            && cors.allow_credentials
            && cors.allowed_origins.iter().any(|o| o == "*")
        {
            return Err(invalid(
                "cors: credentials cannot be allowed for every origin (`*`); list the origins",
            ));
        }
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
            verifier,
            tokens,
            secure_cookie: config.auth.secure_cookie,
            cors: config.cors,
            pool,
            cookie: config.auth.cookie,
            unrouted: ("none".into(), requests_total("none")),
        })
    }
}

impl Gateway {
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
        if let Some(preflight) = self.preflight(&request) {
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

    /// Holds a request to the edge's rules before anything reads it: an HTTP/1.1 request has
    /// one `Host` (RFC 9112 §3.2) and any request at most one `Authorization`; its path is
    /// normalised (see [`PathRules`]), and goes on normalised. A `400` for what breaks them.
    fn screen(&self, request: &mut Request) -> Result<(), MeshError> {
        let headers = request.headers();
        if request.version() == http::Version::HTTP_11
            && headers.get_all(header::HOST).iter().count() != 1
        {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "an HTTP/1.1 request needs exactly one Host field",
            ));
        }
        if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a request may carry one Authorization field",
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
    fn answer(
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
        if let Some(origin) = &origin {
            self.allow_origin(origin, response.headers_mut());
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
    fn account(
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
            tracing::info!(
                target: "mesh_gateway::access",
                route = %route_id,
                method = %method,
                path = %path,
                status,
                duration_ms = started.elapsed().as_millis() as u64,
                request_id = %request_id.to_str().unwrap_or_default(),
                "request"
            );
        }
        route_id.clone()
    }

    /// The index of the first route whose predicates all match `request`, the path variables
    /// it bound in `captures`.
    fn route_of(&self, request: &impl RequestHead, captures: &mut Captures) -> Option<usize> {
        self.routes.iter().position(|route| {
            captures.clear();
            route
                .predicates
                .iter()
                .all(|p| p.test_head(request, captures))
        })
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
        let response = match self.admit(route, &mut request).await {
            Err(error) => error.into_response(),
            Ok(()) => self
                .limited(index, request, captures, forwarded)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        };
        (Some(index), response)
    }

    /// Edge auth: the route's token and role requirements; sets the identity headers.
    async fn admit(&self, route: &Route, request: &mut Request) -> Result<(), MeshError> {
        strip(request.headers_mut(), |name| {
            is_identity_name(name.as_str().as_bytes())
        });
        if route.auth == RouteAuth::Public {
            return Ok(());
        }
        let Some(verifier) = &self.verifier else {
            return Err(AuthError::Missing.into());
        };
        // A bearer token is read in place; a cookie's is relayed upstream, so it is kept.
        let (verified, from_cookie) = match bearer_token(request.headers()) {
            Some(token) => (self.verified(verifier, token).await?, None),
            None => match cookie(request.values("cookie"), &self.cookie) {
                Some(token) => (self.verified(verifier, &token).await?, Some(token)),
                None => return Err(AuthError::Missing.into()),
            },
        };
        let identity = &verified.identity;
        if let RouteAuth::Roles(roles) = &route.auth
            && !roles.iter().any(|role| identity.has_role(role))
        {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                format!("route `{}` needs one of the roles {roles:?}", route.id),
            ));
        }
        let headers = request.headers_mut();
        if let Some(user) = &verified.user {
            headers.insert(USER_HEADER, user.clone());
        }
        if let Some(roles) = &verified.roles {
            headers.insert(ROLES_HEADER, roles.clone());
        }
        if let Some(token) = from_cookie
            && let Ok(value) = HeaderValue::try_from(format!("Bearer {token}"))
        {
            // Relayed, so services behind the gateway can call each other on the user's behalf.
            headers.insert(header::AUTHORIZATION, value);
        }
        // The limiter's key when it counts per user.
        request.extensions_mut().insert(verified.subject.clone());
        Ok(())
    }

    /// The identity of `token`: from the token cache, or verified now (and then cached).
    async fn verified(
        &self,
        verifier: &JwtVerifier,
        token: &str,
    ) -> Result<Arc<Verified>, MeshError> {
        if let Some(verified) = self.tokens.get(token).await {
            return Ok(verified);
        }
        // Boxed: verifying (a JWKS fetch, at worst) and caching run once per token, and their
        // futures would otherwise make every request's larger.
        let identity = Box::pin(verifier.verify(token))
            .await
            .map_err(MeshError::from)?;
        let verified = Verified::new(identity);
        Box::pin(self.tokens.put(token, &verified)).await;
        Ok(verified)
    }

    /// The route's rate limit (when set) around its timeout around forwarding.
    async fn limited(
        self: &Arc<Self>,
        index: usize,
        request: Request,
        captures: Captures,
        forwarded: bool,
    ) -> Result<Response, MeshError> {
        let route = &self.routes[index];
        let request = request.map(|body| {
            if axum::body::HttpBody::is_end_stream(&body) {
                // Most requests: nothing to box.
                BoxBody::default()
            } else {
                body.map_err(BoxError::from).boxed_unsync()
            }
        });
        if route.limiter.is_none()
            && route.breaker.is_none()
            && route.timeout.is_none()
            && route.retry.is_none()
        {
            // No policy (and so no fallback): straight upstream.
            return self.forward(route, request, &captures).await;
        }
        if let Some(limiter) = &route.limiter
            && route.breaker.is_none()
            && route.timeout.is_none()
            && route.retry.is_none()
            && route.fallback.is_none()
        {
            // Only a rate limit: decided here, with no policy stack assembled around the call.
            return match limiter.admit(&request).await {
                Ok(decision) => {
                    let mut response = self.forward(route, request, &captures).await?;
                    if let Some(decision) = decision {
                        decision.write_headers(response.headers_mut());
                    }
                    Ok(response)
                }
                Err(error) => refused(route, error),
            };
        }
        // A `forward:` fallback sends the request again, so its head is kept.
        let head = match route.fallback.as_ref().and_then(Fallback::forward_path) {
            Some(path) if !forwarded => Some((path, forward_head(&request, path)?)),
            _ => None,
        };
        let gateway = self.clone();
        let captures = Arc::new(captures);
        let forward = service_fn(move |request: http::Request<BoxBody>| {
            let (gateway, captures) = (gateway.clone(), captures.clone());
            async move {
                let route = &gateway.routes[index];
                // Boxed: the forward future is large, and each policy around it would move it
                // whole as it wraps it.
                Box::pin(gateway.forward(route, request, &captures))
                    .await
                    .map_err(BoxError::from)
            }
        });
        // The edge's order: rate limit, circuit breaker (and its fallback), timeout, retry.
        let stack = ServiceBuilder::new()
            .option_layer(route.limiter.clone())
            .option_layer(route.breaker.clone())
            .option_layer(route.timeout.clone())
            .option_layer(route.retry.clone())
            .service(forward);
        // Erased, so the handler's future is `Send` under any lifetime (rustc cannot prove it
        // through the stack's nested types).
        let call: BoxFuture<'static, Result<Response, BoxError>> = Box::pin(stack.oneshot(request));
        let error = match call.await {
            Ok(mut response) => {
                // `include_headers`: the limiter's decision, as Spring's `X-RateLimit-*`.
                if let Some(decision) = response.extensions_mut().remove::<Decision>() {
                    decision.write_headers(response.headers_mut());
                }
                return Ok(response);
            }
            Err(error) => match refused(route, error) {
                Ok(refusal) => return Ok(refusal),
                Err(error) if !falls_back(&error) => return Err(error),
                Err(error) => error,
            },
        };
        match (&route.fallback, head) {
            (_, Some((path, head))) => {
                tracing::debug!(route = %route.id, %error, path, "upstream failed: forwarding to the fallback");
                // Boxed: a request that `dispatch` routed is dispatched again.
                Ok(Box::pin(self.clone().dispatch(head, true)).await.1)
            }
            (Some(fallback), None) if fallback.uri.is_none() => {
                tracing::debug!(route = %route.id, %error, "upstream failed: fallback answers");
                Ok(fallback.response())
            }
            _ => Err(error),
        }
    }

    /// Filters the request, sends it upstream, filters the response.
    async fn forward(
        &self,
        route: &Route,
        mut request: http::Request<BoxBody>,
        captures: &Captures,
    ) -> Result<Response, MeshError> {
        for filter in &route.filters {
            filter.request(&mut request, captures);
        }
        let peer = PeerAddr::of(request.extensions());
        let upgrade = is_upgrade(request.headers());
        let secure = request.extensions().get::<Tls>().is_some()
            || request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        let trusted = self.proxies.trust(peer);
        prepare_upstream_headers(request.headers_mut(), peer, upgrade, trusted, secure);
        let client_upgrade = if upgrade {
            request.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        let (mut parts, body) = request.into_parts();
        // Origin form, reusing the parsed path and query.
        let path_and_query = std::mem::take(&mut parts.uri).into_parts().path_and_query;
        parts.uri = Uri::from(path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/")));
        let mut response = match &route.upstream {
            Upstream::Service(client) => client
                .send(http::Request::from_parts(parts, body))
                .await?
                .map(Body::new),
            Upstream::Fixed(authority) => {
                // `lb://` calls get theirs from the mesh client; a fixed upstream joins the
                // trace here.
                parts
                    .headers
                    .insert(TRACEPARENT, upstream_context().to_header());
                self.pool
                    .send_to(authority, http::Request::from_parts(parts, body))
                    .await?
                    .map(Body::new)
            }
        };
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return tunnel(route, client_upgrade, response);
        }
        strip(response.headers_mut(), is_hop_by_hop);
        for filter in &route.filters {
            filter.response(&mut response);
        }
        if route.login && response.status().is_success() {
            response = Box::pin(self.remember_login(response)).await?;
        }
        if route.logout {
            let clear = self.cookie_header("", 0);
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        Ok(response)
    }

    /// Turns a login answer's token into the gateway's cookie.
    async fn remember_login(&self, response: Response) -> Result<Response, MeshError> {
        let (mut parts, body) = response.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_LOGIN_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                MeshError::new(
                    ErrorKind::Upstream,
                    format!("reading the login answer: {e}"),
                )
            })?
            .to_bytes();
        let answer: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let token = answer
            .as_ref()
            .and_then(|a| a.get("token").or_else(|| a.get("access_token")))
            .and_then(|t| t.as_str());
        if let Some(token) = token {
            let lifetime = answer
                .as_ref()
                .and_then(|a| a.get("expires_in"))
                .and_then(|e| e.as_u64())
                .unwrap_or(3600);
            let cookie = self.cookie_header(token, lifetime);
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }

    /// `Set-Cookie` for the token (an empty token and no lifetime clear it).
    fn cookie_header(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Answers a CORS preflight at the edge: allowed → 204 with the policy, refused → 403.
    fn preflight(&self, request: &Request) -> Option<Response> {
        let cors = self.cors.as_ref()?;
        let headers = request.headers();
        if request.method() != http::Method::OPTIONS
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let method_allowed = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                cors.allowed_methods
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(m))
            });
        if !self.origin_allowed(origin) || !method_allowed {
            return Some(
                MeshError::new(ErrorKind::Forbidden, "CORS: origin or method not allowed")
                    .into_response(),
            );
        }
        let mut response = http::StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        self.allow_origin(origin, out);
        let join = |items: &[String]| HeaderValue::try_from(items.join(", ")).ok();
        if let Some(methods) = join(&cors.allowed_methods) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(allowed) = join(&cors.allowed_headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(cors.max_age.as_secs()),
        );
        Some(response)
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        self.cors.as_ref().is_some_and(|cors| {
            cors.allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.as_bytes() == origin.as_bytes())
        })
    }

    /// Adds `Access-Control-Allow-Origin` (and credentials) for an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        self.cors_fields(origin, |name, value, put| match put {
            Put::Replace => {
                headers.insert(name, value);
            }
            Put::Append => {
                headers.append(name, value);
            }
        });
    }

    /// Gives `put` the fields an answer gets for `origin` when it is allowed:
    /// `Access-Control-Allow-Origin` and, with credentials, `-Allow-Credentials` (each in place
    /// of the upstream's), and `Vary: Origin` (beside the upstream's).
    fn cors_fields(&self, origin: &HeaderValue, mut put: impl FnMut(HeaderName, HeaderValue, Put)) {
        let Some(cors) = &self.cors else { return };
        if !self.origin_allowed(origin) {
            return;
        }
        put(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            origin.clone(),
            Put::Replace,
        );
        put(
            header::VARY,
            HeaderValue::from_static("Origin"),
            Put::Append,
        );
        if cors.allow_credentials {
            let credentials = HeaderValue::from_static("true");
            put(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                credentials,
                Put::Replace,
            );
        }
    }
}

/// The store every route's rate limit shares: Redis when configured, so that every gateway
/// replica counts against one bucket; otherwise each route's own local store.
fn rate_limit_store(config: &GatewayConfig) -> Result<Option<Arc<dyn RateLimitStore>>, MeshError> {
    #[cfg(feature = "redis")]
    if let Some(redis) = &config.redis {
        let store = mesh_core::resilience::rate_limit::RedisStore::new(&redis.url)
            .map_err(|e| invalid(format!("redis.url: {e}")))?
            .with_prefix("mesh:gw:rl:");
        return Ok(Some(Arc::new(store)));
    }
    #[cfg(not(feature = "redis"))]
    if config.redis.is_some() {
        return Err(invalid("`redis` needs mesh-gateway's `redis` feature"));
    }
    Ok(None)
}

fn compile(
    route: &RouteConfig,
    mesh: &Mesh,
    store: Option<Arc<dyn RateLimitStore>>,
) -> Result<Route, MeshError> {
    let predicates = route
        .predicates
        .iter()
        .map(|p| Predicate::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if predicates.is_empty() {
        return Err(invalid(
            "a route needs at least one predicate, such as `Path=/**`",
        ));
    }
    let filters = route
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let upstream = if let Some(service) = route.uri.strip_prefix("lb://") {
        if service.is_empty() {
            return Err(invalid("`lb://` needs a service ID"));
        }
        Upstream::Service(mesh.client(service))
    } else if let Some(authority) = route.uri.strip_prefix("http://") {
        Upstream::Fixed(
            authority
                .trim_end_matches('/')
                .parse()
                .map_err(|_| invalid(format!("`{}` is not http://host:port", route.uri)))?,
        )
    } else {
        return Err(invalid(format!(
            "uri `{}`: expected lb://service-id or http://host:port",
            route.uri
        )));
    };
    if let Some(fallback) = &route.fallback {
        if route.circuit_breaker.is_none() && route.timeout.is_none() {
            return Err(invalid("a fallback needs a circuit_breaker or a timeout"));
        }
        match fallback.uri.as_deref() {
            Some(uri) if !fallback.forward_path().is_some_and(|p| p.starts_with('/')) => {
                return Err(invalid(format!(
                    "fallback uri `{uri}`: expected forward:/path"
                )));
            }
            _ => {}
        }
    }
    let name: Arc<str> = format!("gateway:{}", route.id).into();
    let limiter = route
        .rate_limit
        .clone()
        .map(|config| match &store {
            Some(store) => RateLimitLayer::with_store(name.clone(), config, store.clone()),
            None => RateLimitLayer::try_new(name.clone(), config),
        })
        .transpose()
        .map_err(MeshError::from)?;
    let limit_headers = route
        .rate_limit
        .as_ref()
        .is_some_and(RateLimitConfig::includes_headers);
    let relayable = matches!(upstream, Upstream::Fixed(_))
        && route.circuit_breaker.is_none()
        && route.retry.is_none()
        && route.fallback.is_none()
        && !route.login
        && !route.logout
        && !limit_headers
        && (route.rate_limit.is_none() || store.is_none());
    let relay = relayable
        .then(|| relay::HeadRewrite::of(&filters))
        .flatten()
        .map(Arc::new);
    Ok(Route {
        limit_headers,
        relay,
        id: route.id.as_str().into(),
        predicates,
        filters,
        upstream,
        auth: route.auth.clone(),
        limiter,
        breaker: route
            .circuit_breaker
            .clone()
            .map(|config| CircuitBreakerLayer::try_new(name.clone(), config))
            .transpose()
            .map_err(MeshError::from)?,
        fallback: route.fallback.clone(),
        timeout: route
            .timeout
            .map(|timeout| {
                TimeoutLayer::try_new(name.clone(), TimeoutConfig::default().timeout(timeout))
            })
            .transpose()
            .map_err(MeshError::from)?,
        retry: route
            .retry
            .clone()
            .map(|config| RetryLayer::try_new(name.clone(), config))
            .transpose()
            .map_err(MeshError::from)?,
        login: route.login,
        logout: route.logout,
        requests: requests_total(&route.id),
    })
}

/// `mesh_gateway_requests_total{route, status}` of `route`.
fn requests_total(route: &str) -> StatusCounters {
    StatusCounters::new(
        "mesh_gateway_requests_total",
        vec![metrics::Label::new("route", route.to_owned())],
    )
}

/// The answer to a call a route's policy refused: a rate limit's refusal, when the route tells
/// the quota, is a `429` with the `X-RateLimit-*` headers, as Spring's is; any other error is
/// returned as the error it is.
fn refused(route: &Route, error: BoxError) -> Result<Response, MeshError> {
    let refusal = route
        .limit_headers
        .then(|| error.downcast_ref::<RateLimited>().map(|r| *r.decision()))
        .flatten();
    let error = MeshError::from_boxed(error);
    match refusal {
        Some(decision) => {
            let mut response = error.into_response();
            decision.write_headers(response.headers_mut());
            Ok(response)
        }
        None => Err(error),
    }
}

/// Whether a failed upstream call is answered by the route's fallback: the failures of the
/// upstream (circuit open, timeout, no connection, no instance), not the caller's (a rate
/// limit, a bad request).
fn falls_back(error: &MeshError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::CircuitOpen
            | ErrorKind::Timeout
            | ErrorKind::Transport
            | ErrorKind::NoInstances
            | ErrorKind::BulkheadFull
            | ErrorKind::Unavailable
    )
}

/// The request a `forward:` fallback routes: the same method, headers and query with `path`,
/// and no body.
fn forward_head<B>(request: &http::Request<B>, path: &str) -> Result<Request, MeshError> {
    let uri = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut head = Request::new(Body::empty());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() =
        Uri::try_from(uri).map_err(|e| MeshError::new(ErrorKind::BadRequest, e.to_string()))?;
    *head.headers_mut() = request.headers().clone();
    head.headers_mut().remove(header::CONTENT_LENGTH);
    if let Some(peer) = PeerAddr::of(request.extensions()) {
        head.extensions_mut().insert(PeerAddr(peer));
    }
    Ok(head)
}

/// The request's ID: the client's `x-request-id` when usable, else a new one, which the
/// request then carries in place of the client's.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One lookup for reading and setting it.
    match headers.entry(REQUEST_ID_HEADER) {
        Entry::Occupied(given) if is_usable_request_id(given.get().as_bytes()) => {
            given.get().clone()
        }
        Entry::Occupied(mut unusable) => {
            let id = new_request_id();
            unusable.insert(id.clone());
            id
        }
        Entry::Vacant(missing) => missing.insert(new_request_id()).clone(),
    }
}

/// Whether a client's request ID is kept: not empty, and not long.
fn is_usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128
}

/// A new request ID: the trace's ID.
fn new_request_id() -> HeaderValue {
    let id =
        TraceContext::current().map_or_else(|| TraceContext::root().trace_id(), |c| c.trace_id());
    HeaderValue::try_from(id).expect("hex digits are a valid header")
}

/// The trace context of the call to a fixed upstream: a span of the request's trace.
fn upstream_context() -> TraceContext {
    TraceContext::current().map_or_else(TraceContext::root, |current| current.child())
}

/// Whether the request asks to switch protocols (a WebSocket handshake, say).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Answers a `101` from upstream: once both sides have switched, bytes flow both ways
/// untouched until either side closes.
fn tunnel(
    route: &Route,
    client: Option<OnUpgrade>,
    mut upstream: Response,
) -> Result<Response, MeshError> {
    let Some(client) = client else {
        return Err(MeshError::new(
            ErrorKind::Upstream,
            "the upstream switched protocols for a request that did not ask to",
        ));
    };
    let Some(mut upstream_io) = UpstreamUpgrade::on(&mut upstream) else {
        return Err(MeshError::new(
            ErrorKind::Upstream,
            "the upstream switched protocols on a connection that cannot be taken over",
        ));
    };
    let route_id = route.id.clone();
    tokio::spawn(async move {
        match client.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream_io).await {
                    Ok((up, down)) => {
                        tracing::debug!(route = %route_id, up, down, "upgraded connection closed")
                    }
                    Err(error) => {
                        tracing::debug!(route = %route_id, %error, "upgraded connection ended")
                    }
                }
            }
            Err(error) => tracing::warn!(route = %route_id, %error, "protocol switch failed"),
        }
    });
    Ok(upstream.map(|_| Body::empty()))
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
