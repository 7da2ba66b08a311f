//! A route's policies at the edge — rate limit, circuit breaker (and its fallback), timeout,
//! retry — in that order around the call upstream.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use http::{Uri, header};
use mesh_core::{
    BoxBody,
    context::PeerAddr,
    error::{BoxError, ErrorKind, MeshError},
    observe::HopEvent,
    resilience::rate_limit::{Decision, RateLimitStore, RateLimited},
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::{
    config::{Fallback, GatewayConfig},
    error::invalid,
    route::Route,
};

/// What a route's policies made of a call.
pub(crate) enum Outcome {
    /// The upstream's answer, a refusal as an answer, or the error to answer with.
    Answered(Result<Response, MeshError>),
    /// The call failed and the route's `forward:` fallback routes this request instead.
    Fallback(Request),
}

/// Whether `route` has a policy around its calls at all.
pub(crate) fn any(route: &Route) -> bool {
    route.limiter.is_some()
        || route.breaker.is_some()
        || route.timeout.is_some()
        || route.retry.is_some()
}

/// Sends `request` through the route's policies to `forward`. A request that is itself a
/// fallback's (`forwarded`) does not follow a `forward:` fallback again.
pub(crate) async fn apply<F, Fut>(
    route: &Route,
    request: http::Request<BoxBody>,
    forwarded: bool,
    forward: F,
) -> Outcome
where
    F: Fn(http::Request<BoxBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, MeshError>> + Send + 'static,
{
    if let Some(limiter) = &route.limiter
        && route.breaker.is_none()
        && route.timeout.is_none()
        && route.retry.is_none()
        && route.fallback.is_none()
    {
        // Only a rate limit: decided here, with no policy stack assembled around the call.
        return Outcome::Answered(match limiter.admit(&request).await {
            Ok(decision) => forward(request).await.map(|mut response| {
                if let Some(decision) = decision {
                    decision.write_headers(response.headers_mut());
                }
                response
            }),
            Err(error) => refused(route, error),
        });
    }
    // A `forward:` fallback sends the request again, so its head is kept.
    let head = match route.fallback.as_ref().and_then(Fallback::forward_path) {
        Some(path) if !forwarded => match forward_head(&request, path) {
            Ok(head) => Some((path, head)),
            Err(error) => return Outcome::Answered(Err(error)),
        },
        _ => None,
    };
    let forward = service_fn(move |request: http::Request<BoxBody>| {
        let call = forward(request);
        async move { call.await.map_err(BoxError::from) }
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
            return Outcome::Answered(Ok(response));
        }
        Err(error) => match refused(route, error) {
            Ok(refusal) => return Outcome::Answered(Ok(refusal)),
            Err(error) if !falls_back(&error) => return Outcome::Answered(Err(error)),
            Err(error) => error,
        },
    };
    match (&route.fallback, head) {
        (_, Some((path, head))) => {
            tracing::debug!(route = %route.id, %error, path, "upstream failed: forwarding to the fallback");
            Outcome::Fallback(head)
        }
        (Some(fallback), None) if fallback.uri.is_none() => {
            tracing::debug!(route = %route.id, %error, "upstream failed: fallback answers");
            let mut answer = fallback.response();
            answer.extensions_mut().insert(HopEvent {
                name: "fallback",
                detail: error.to_string(),
            });
            Outcome::Answered(Ok(answer))
        }
        _ => Outcome::Answered(Err(error)),
    }
}

/// The store every route's rate limit shares: Redis when configured, so that every gateway
/// replica counts against one bucket; otherwise each route's own local store.
pub(crate) fn rate_limit_store(
    config: &GatewayConfig,
) -> Result<Option<Arc<dyn RateLimitStore>>, MeshError> {
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

/// The answer to a call a route's policy refused: a rate limit's refusal, when the route tells
/// the quota, is a `429` with the `X-RateLimit-*` headers, as Spring's is; any other error is
/// returned as the error it is.
pub(crate) fn refused(route: &Route, error: BoxError) -> Result<Response, MeshError> {
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
    error.kind().is_outage()
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
