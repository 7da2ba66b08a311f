//! Routes: their predicates and filters, compiled once from the configuration, and which
//! serving path takes their requests.

pub(crate) mod filter;
pub(crate) mod predicate;
pub(crate) mod rewrite;
pub(crate) mod sticky;

use std::sync::Arc;

use http::uri::Authority;
use mesh_core::{
    Mesh, MeshClient,
    error::MeshError,
    observe::StatusCounters,
    resilience::{
        circuit_breaker::CircuitBreakerLayer,
        rate_limit::{RateLimitConfig, RateLimitLayer, RateLimitStore},
        retry::RetryLayer,
        timeout::{TimeoutConfig, TimeoutLayer},
    },
};

use self::{
    filter::Filter,
    predicate::{Captures, Predicate, RequestHead},
    rewrite::HeadRewrite,
};
use crate::{
    config::{Fallback, RouteAuth, RouteConfig, Sticky},
    error::invalid,
};

/// A route, compiled once.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) id: Arc<str>,
    pub(crate) predicates: Vec<Predicate>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) upstream: Upstream,
    pub(crate) auth: RouteAuth,
    pub(crate) limiter: Option<RateLimitLayer>,
    /// The limiter's `include_headers`: `X-RateLimit-*` on answers and refusals.
    pub(crate) limit_headers: bool,
    pub(crate) breaker: Option<CircuitBreakerLayer>,
    pub(crate) fallback: Option<Fallback>,
    pub(crate) timeout: Option<TimeoutLayer>,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) login: bool,
    pub(crate) logout: bool,
    /// What keeps a session on one instance (`lb://` routes only).
    pub(crate) sticky: Option<Sticky>,
    /// How the relay path rewrites the route's heads, when its requests can be relayed from
    /// their bytes (see [`relays`]).
    pub(crate) relay: Option<Arc<HeadRewrite>>,
    /// `mesh_gateway_requests_total` of this route, by status.
    pub(crate) requests: StatusCounters,
}

/// Where a route sends its requests.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// `lb://service`: through discovery, balancing and the client stack.
    Service(MeshClient),
    /// `http://host:port`: a fixed upstream, over the gateway's [`Http1Pool`].
    Fixed(Authority),
}

/// The index of the first of `routes` whose predicates all match `request`, the path variables
/// it bound in `captures`.
pub(crate) fn find(
    routes: &[Route],
    request: &impl RequestHead,
    captures: &mut Captures,
) -> Option<usize> {
    routes.iter().position(|route| {
        captures.clear();
        route
            .predicates
            .iter()
            .all(|p| p.test_head(request, captures))
    })
}

/// Whether the requests of `route` may be relayed from their bytes (their filters permitting,
/// [`HeadRewrite::of`]): nothing that needs the request as a request. A fixed upstream is
/// reached through the gateway's pool; an `lb://` service through its client's stack
/// ([`MeshClient::relay`]), which balances, retries and breaks as for a typed call.
/// Every option is named here, so a new one does not compile until it is decided which path
/// serves it.
fn relays(route: &RouteConfig, shared_store: bool) -> bool {
    let RouteConfig {
        // Decided per request, or compiled into the route either way.
        id: _,
        uri: _,
        predicates: _,
        filters: _,
        order: _,
        auth: _,
        timeout: _,
        // A local bucket is decided from the raw head; Redis's, and `X-RateLimit-*` answers,
        // on the typed path.
        rate_limit,
        // The policies' stack, and what they answer with.
        retry,
        circuit_breaker,
        fallback,
        // The answer's body is read, or a cookie set.
        login,
        logout,
        // Decided from the raw head's query and cookies.
        sticky: _,
    } = route;
    let limit_relays = rate_limit
        .as_ref()
        .is_none_or(|limit| !shared_store && !limit.includes_headers());
    limit_relays
        && retry.is_none()
        && circuit_breaker.is_none()
        && fallback.is_none()
        && !login
        && !logout
}

/// Compiles `route`: every problem is reported here, never per request. `store` is the
/// rate-limit store the routes share, when one is configured.
pub(crate) fn compile(
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
        Upstream::Service(mesh.edge_client(service))
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
    if let Some(sticky) = &route.sticky {
        if !matches!(upstream, Upstream::Service(_)) {
            return Err(invalid(
                "`sticky` keeps a session on one instance of an `lb://` service",
            ));
        }
        if sticky.query.is_none() && sticky.cookie.is_none() {
            return Err(invalid(
                "`sticky` needs a `query` parameter or a `cookie` (Socket.IO: `query: sid`)",
            ));
        }
    }
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
    let relay = relays(route, store.is_some())
        .then(|| HeadRewrite::of(&filters))
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
        sticky: route.sticky.clone(),
        logout: route.logout,
        requests: requests_total(&route.id),
    })
}

/// `mesh_gateway_requests_total{route, status}` of `route`.
pub(crate) fn requests_total(route: &str) -> StatusCounters {
    StatusCounters::new(
        "mesh_gateway_requests_total",
        vec![metrics::Label::new("route", route.to_owned())],
    )
}
