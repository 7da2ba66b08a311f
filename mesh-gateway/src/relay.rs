//! The relay path: a request whose route needs nothing but its head rewritten is passed on
//! from its bytes, with no `http::Request` and no header map: to a fixed upstream through the
//! gateway's pool, to an `lb://` service through that service's client stack
//! (`MeshClient::relay`, whose layers decide on the request's method and target alone).
//!
//! A request is relayed when its route is relayable (`Route::relay`) and, on a route that
//! needs a token, its token (bearer, or the gateway's cookie) is in the token cache here and
//! has the route's role. It gets what the typed path gives it: the same route, its path and
//! header filters, the identity headers, a cookie's token as a bearer token, the request ID,
//! `X-Forwarded-For` and `X-Forwarded-Host`, the trace context, the rate limit, the timeout,
//! CORS, the route's metrics and the access log. Every other request (no route, a token to verify or to
//! refuse, a CORS preflight) goes the typed path, which answers it as before; so do the
//! requests the server never offers (HTTP/2, TLS, upgrades, large bodies).

use std::{borrow::Cow, sync::Arc};

use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::{BoxFuture, Either};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use mesh_core::{
    auth::edge::EDGE_HEADER,
    client::RawCall,
    error::MeshError,
    http1::{RawAnswer, RawRequest, is_hop_by_hop},
    resilience::{
        rate_limit::KeyParts,
        timeout::{TIMEOUT_HEADER, TimeoutLayer},
    },
    server::{Relay, RelayFuture, Relayed},
};

use crate::{
    auth::token_cache::Verified,
    config::RouteAuth,
    cors::Put,
    gateway::{Gateway, Inner, Logged},
    headers::{
        REQUEST_ID_HEADER, ROLES_HEADER, USER_HEADER, X_FORWARDED_FOR, X_FORWARDED_HOST,
        X_FORWARDED_PROTO, is_dropped, is_identity_name, is_named, is_usable_request_id,
        new_request_id, upstream_context, write_ip,
    },
    policy::refused,
    route::{
        Upstream as Origin,
        predicate::Captures,
        rewrite::{HeadRewrite, is_plain_target},
        sticky,
    },
};

impl Relay for Gateway {
    fn relay(&self, request: &RawRequest<'_>) -> Option<RelayFuture> {
        self.current().relay(request)
    }
}

impl Inner {
    /// Relays `request` when its route allows (see the [module](self) documentation).
    fn relay(self: Arc<Self>, request: &RawRequest<'_>) -> Option<RelayFuture> {
        if !is_plain_target(request.target()) || !self.holds(request) {
            return None;
        }
        let origin = match self.cors.as_ref().and(request.value("origin")) {
            Some(origin) => {
                // A preflight is answered at the edge, on the typed path.
                if request.method() == Method::OPTIONS
                    && request.value("access-control-request-method").is_some()
                {
                    return None;
                }
                Some(HeaderValue::from_bytes(origin).ok()?)
            }
            None => None,
        };
        let mut captures = Captures::new();
        let index = self.route_of(request, &mut captures)?;
        let route = &self.routes[index];
        let rewrite = route.relay.as_ref()?;
        if let Origin::Service(client) = &route.upstream
            && !client.relays()
        {
            return None;
        }
        let target = rewrite.target(request, &route.filters, &captures)?;
        // A bearer token is read in place; a cookie's is relayed upstream.
        let (verified, relayed_token) = match &route.auth {
            RouteAuth::Public => (None, None),
            auth => {
                let (verified, relayed_token) = self.auth.cached(auth, request)?;
                (Some(verified), relayed_token)
            }
        };
        let request_id = match request.value(REQUEST_ID_HEADER.as_str()) {
            Some(given) if is_usable_request_id(given) => {
                HeaderValue::from_bytes(given).unwrap_or_else(|_| new_request_id())
            }
            _ => new_request_id(),
        };
        let logged = Logged::start(request.method(), request.path());
        if let Some(limiter) = &route.limiter {
            let header = |name: &str| request.value(name);
            let parts = KeyParts {
                header: &header,
                peer: Some(request.peer()),
                subject: verified.as_ref().map(|verified| &verified.subject),
            };
            if let Err(error) = limiter.admit_now(parts)? {
                let refusal = refused(route, error).unwrap_or_else(IntoResponse::into_response);
                let answer = self.answer(Some(index), refusal, origin, request_id, logged);
                return Some(Box::pin(std::future::ready(Relayed::Typed(answer))));
            }
        }
        let upstream = Upstream {
            target: &target,
            trusted: self.proxies.trust(Some(request.peer())),
            rewrite,
            request_id: &request_id,
            verified: verified.as_deref(),
            relayed_token: relayed_token.as_deref(),
            budget: route.timeout.as_ref().and_then(TimeoutLayer::budget_header),
            // Only to the mesh's own services: a fixed upstream may be anyone's.
            edge: match (&self.edge, &route.upstream) {
                (Some(signer), Origin::Service(_)) => match signer.token() {
                    Ok(token) => Some(token),
                    Err(_) => return None,
                },
                _ => None,
            },
        };
        // The route's removals, shared with the answer's reading only when there are some.
        let removed = (!rewrite.response_removed.is_empty()).then(|| rewrite.clone());
        let mut cors = Vec::new();
        if let (Some(origin), Some(policy)) = (&origin, &self.cors) {
            policy.fields(origin, |name, value, put| cors.push((name, value, put)));
        }
        let cors_replaced: Vec<HeaderName> = cors
            .iter()
            .filter(|(_, _, put)| *put == Put::Replace)
            .map(|(name, _, _)| name.clone())
            .collect();
        let drop = move |status: StatusCode, name: &[u8]| {
            is_replaced_in_answer(status, name)
                || cors_replaced
                    .iter()
                    .any(|replaced| is_named(name, replaced))
                || removed.as_ref().is_some_and(|rewrite| {
                    rewrite
                        .response_removed
                        .iter()
                        .any(|removed| is_named(name, removed))
                })
        };
        let exchange = match &route.upstream {
            Origin::Fixed(authority) => {
                let exchange = self.pool.relay(
                    authority,
                    request.method(),
                    request.body(),
                    &mut |out, host| upstream.write_head(out, request, host),
                    drop,
                );
                match exchange {
                    Ok(exchange) => Either::Left(exchange),
                    Err(error) => {
                        let answer = self.failed(index, error, origin, request_id, logged);
                        return Some(Box::pin(std::future::ready(answer)));
                    }
                }
            }
            Origin::Service(client) => {
                // Balanced, retried and broken by the service's client stack, which also sets
                // the trace context and the deadline upstream.
                let mut fields = Vec::with_capacity(512);
                upstream.write_fields(&mut fields, request, false);
                let body = Bytes::copy_from_slice(request.body());
                let mut call = RawCall::new(fields, body, Arc::new(drop));
                if let Some(sticky) = &self.routes[index].sticky {
                    let query = request.target().split_once('?').map(|(_, query)| query);
                    let cookies = request
                        .fields()
                        .filter(|(name, _)| name.eq_ignore_ascii_case(b"cookie"))
                        .map(|(_, value)| value);
                    if let Some(affinity) = sticky::affinity(sticky, query, cookies) {
                        call = call.with_affinity(affinity);
                    }
                }
                let (client, method) = (client.clone(), request.method().clone());
                let target = target.into_owned();
                let relayed: BoxFuture<'static, Result<RawAnswer, MeshError>> =
                    Box::pin(async move { client.relay(method, &target, call).await });
                Either::Right(relayed)
            }
        };
        Some(Box::pin(async move {
            let answered = match &self.routes[index].timeout {
                Some(timeout) => (timeout.bound(exchange).await).map_err(MeshError::from_boxed),
                None => exchange.await,
            };
            match answered {
                Ok(mut answer) => {
                    if let Some(rewrite) = &self.routes[index].relay {
                        for (name, value) in &rewrite.response_added {
                            add_field(&mut answer.fields, name.as_str(), value);
                        }
                    }
                    add_field(&mut answer.fields, REQUEST_ID_HEADER.as_str(), &request_id);
                    for (name, value, _) in &cors {
                        add_field(&mut answer.fields, name.as_str(), value);
                    }
                    if answer.status == StatusCode::UNAUTHORIZED {
                        let bearer = HeaderValue::from_static("Bearer");
                        add_field(&mut answer.fields, "www-authenticate", &bearer);
                    }
                    let route = self.account(Some(index), answer.status, &request_id, logged);
                    answer.route = Some(route);
                    Relayed::Raw(answer)
                }
                Err(error) => self.failed(index, error, origin, request_id, logged),
            }
        }))
    }

    /// Whether `request` holds to the edge's rules as it stands: at most one `Authorization`,
    /// a path already normal (the server offers only requests with one `Host`). The typed
    /// path answers the others (`400`, or with the path normalised).
    fn holds(&self, request: &RawRequest<'_>) -> bool {
        request.values("authorization").nth(1).is_none()
            && matches!(self.paths.normalise(request.path()), Ok(Cow::Borrowed(_)))
    }

    /// The answer to a relayed request that got none from upstream: the error's, as the typed
    /// path gives it.
    fn failed(
        &self,
        index: usize,
        error: MeshError,
        origin: Option<HeaderValue>,
        request_id: HeaderValue,
        logged: Option<Logged>,
    ) -> Relayed {
        let response = error.into_response();
        Relayed::Typed(self.answer(Some(index), response, origin, request_id, logged))
    }
}

/// Whether an upstream answer's field is one the gateway sets itself (the request ID, and
/// `WWW-Authenticate` on a `401`) or one no client may see (the gateway's proof, echoed).
fn is_replaced_in_answer(status: StatusCode, name: &[u8]) -> bool {
    is_named(name, &REQUEST_ID_HEADER)
        || is_named(name, &EDGE_HEADER)
        || (status == StatusCode::UNAUTHORIZED && name.eq_ignore_ascii_case(b"www-authenticate"))
}

/// What a relayed request's head upstream is made of, besides the request's own fields.
struct Upstream<'a> {
    /// The request target, as the route's path filters made it.
    target: &'a str,
    /// Whether the peer is a proxy whose forwarding fields are believed.
    trusted: bool,
    rewrite: &'a HeadRewrite,
    request_id: &'a HeaderValue,
    verified: Option<&'a Verified>,
    /// A cookie's token, relayed as a bearer token in place of the client's `Authorization`.
    relayed_token: Option<&'a str>,
    /// The route's timeout, when it propagates it.
    budget: Option<&'a HeaderValue>,
    /// The gateway's proof, when it signs one.
    edge: Option<HeaderValue>,
}

impl Upstream<'_> {
    /// Writes the request line and fields of `request` as the typed path sends it upstream:
    /// the client's fields but the hop-by-hop ones, those the edge drops (identity, spoofed
    /// names, forwarding fields of an untrusted peer) and those the route removes, then those
    /// it adds; `Host` the upstream's, the client's in `X-Forwarded-Host`, `X-Forwarded-Proto`
    /// and the peer's address in `X-Forwarded-For` (after a trusted proxy's); the request ID,
    /// the trace context and the verified identity.
    fn write_head(&self, out: &mut Vec<u8>, request: &RawRequest<'_>, host: &[u8]) {
        out.extend_from_slice(request.method().as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
        self.write_fields(out, request, true);
    }

    /// Writes the fields of [`write_head`](Self::write_head) after `Host`; the trace context
    /// and the timeout budget only when `own_context` (a mesh client sets its own).
    fn write_fields(&self, out: &mut Vec<u8>, request: &RawRequest<'_>, own_context: bool) {
        let mut client_host = None;
        let mut forwarded_for = None;
        let (mut forwarded_host, mut forwarded_proto) = (false, false);
        for (name, value) in request.fields() {
            if name.eq_ignore_ascii_case(b"host") {
                client_host = Some(value);
                continue;
            }
            if is_dropped(name, self.trusted) {
                continue;
            }
            if is_named(name, &X_FORWARDED_FOR) {
                // A trusted proxy's first one, as the typed path reads it, with the peer added.
                forwarded_for.get_or_insert(value);
                continue;
            }
            forwarded_host |= is_named(name, &X_FORWARDED_HOST);
            forwarded_proto |= is_named(name, &X_FORWARDED_PROTO);
            let replaced = is_hop_by_hop(name)
                || is_identity_name(name)
                || name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"traceparent")
                || is_named(name, &REQUEST_ID_HEADER)
                || (self.relayed_token.is_some() && name.eq_ignore_ascii_case(b"authorization"))
                || self
                    .rewrite
                    .request_removed
                    .iter()
                    .any(|removed| is_named(name, removed));
            if !replaced {
                add_raw_field(out, name, value);
            }
        }
        for (name, value) in &self.rewrite.request_added {
            add_field(out, name.as_str(), value);
        }
        if let Some(client_host) = client_host
            && !forwarded_host
        {
            add_raw_field(out, X_FORWARDED_HOST.as_str().as_bytes(), client_host);
        }
        if !forwarded_proto {
            // Never TLS: the server relays plain connections only.
            add_raw_field(out, X_FORWARDED_PROTO.as_str().as_bytes(), b"http");
        }
        out.extend_from_slice(X_FORWARDED_FOR.as_str().as_bytes());
        out.extend_from_slice(b": ");
        if let Some(earlier) = forwarded_for {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        write_ip(out, request.peer().ip());
        out.extend_from_slice(b"\r\n");
        add_field(out, REQUEST_ID_HEADER.as_str(), self.request_id);
        if own_context {
            add_raw_field(out, b"traceparent", &upstream_context().to_header_bytes());
            if let Some(budget) = self.budget {
                add_field(out, TIMEOUT_HEADER.as_str(), budget);
            }
        }
        if let Some(token) = self.relayed_token {
            // Relayed, so services behind the gateway can call each other on the user's behalf.
            out.extend_from_slice(b"authorization: Bearer ");
            out.extend_from_slice(token.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(edge) = &self.edge {
            add_field(out, EDGE_HEADER.as_str(), edge);
        }
        if let Some(verified) = self.verified {
            if let Some(user) = &verified.user {
                add_field(out, USER_HEADER.as_str(), user);
            }
            if let Some(roles) = &verified.roles {
                add_field(out, ROLES_HEADER.as_str(), roles);
            }
        }
    }
}

fn add_field(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    add_raw_field(out, name.as_bytes(), value.as_bytes());
}

fn add_raw_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
