//! The typed path: a request as an `http::Request`, its route's filters applied, sent to the
//! route's upstream (through the mesh client for `lb://`, the gateway's pool for a fixed one).

use std::sync::Arc;

use axum::{body::Body, response::Response};
use http::{
    HeaderValue, Uri, header,
    uri::{PathAndQuery, Scheme},
};
use hyper::upgrade::OnUpgrade;
use mesh_core::{
    BoxBody,
    auth::edge::{EDGE_HEADER, EdgeSigner},
    client::pool::Http1Pool,
    context::{PeerAddr, Tls},
    error::MeshError,
    observe::TRACEPARENT,
};

use crate::{
    auth::EdgeAuth,
    headers::{TrustedProxies, is_hop_by_hop, prepare_upstream_headers, strip, upstream_context},
    route::{Route, Upstream, predicate::Captures, sticky},
    upgrade::{is_upgrade, tunnel},
};

/// What sending a request upstream takes: the gateway's pool, the proxies it trusts, its auth
/// for the login and logout cookies, and its proof signer.
#[derive(Debug)]
pub(crate) struct Forward<'a> {
    pub(crate) pool: &'a Arc<Http1Pool>,
    pub(crate) proxies: &'a TrustedProxies,
    pub(crate) auth: &'a EdgeAuth,
    /// Signs the proof that the request came through the gateway, when configured.
    pub(crate) edge: Option<&'a EdgeSigner>,
}

impl Forward<'_> {
    /// Filters the request, sends it upstream, filters the response.
    pub(crate) async fn send(
        &self,
        route: &Route,
        mut request: http::Request<BoxBody>,
        captures: &Captures,
    ) -> Result<Response, MeshError> {
        for filter in &route.filters {
            filter.request(&mut request, captures);
        }
        let affinity = match (&route.upstream, &route.sticky) {
            (Upstream::Service(_), Some(sticky)) => sticky::affinity(
                sticky,
                request.uri().query(),
                request
                    .headers()
                    .get_all(header::COOKIE)
                    .iter()
                    .map(HeaderValue::as_bytes),
            ),
            _ => None,
        };
        let peer = PeerAddr::of(request.extensions());
        let upgrade = is_upgrade(request.headers());
        let secure = request.extensions().get::<Tls>().is_some()
            || request.uri().scheme() == Some(&Scheme::HTTPS);
        let trusted = self.proxies.trust(peer);
        // HTTP/2 names the host in `:authority`, which arrives as the target's authority.
        if !request.headers().contains_key(header::HOST)
            && let Some(authority) = request.uri().authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(header::HOST, host);
        }
        prepare_upstream_headers(request.headers_mut(), peer, upgrade, trusted, secure);
        // Only to the mesh's own services: a fixed upstream may be anyone's.
        if let (Some(edge), Upstream::Service(_)) = (self.edge, &route.upstream) {
            request.headers_mut().insert(EDGE_HEADER, edge.token()?);
        }
        let client_upgrade = if upgrade {
            request.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        let (mut parts, body) = request.into_parts();
        // Origin form, reusing the parsed path and query.
        let path_and_query = std::mem::take(&mut parts.uri).into_parts().path_and_query;
        parts.uri = Uri::from(path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/")));
        if let Some(affinity) = affinity {
            parts.extensions.insert(affinity);
        }
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
            return tunnel(&route.id, client_upgrade, response);
        }
        strip(response.headers_mut(), |name| {
            is_hop_by_hop(name) || name == EDGE_HEADER
        });
        for filter in &route.filters {
            filter.response(&mut response);
        }
        if route.login && response.status().is_success() {
            response = Box::pin(self.auth.remember_login(response)).await?;
        }
        if route.logout {
            let clear = self.auth.logout_cookie();
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        Ok(response)
    }
}
