//! Protocol switches (WebSocket, Socket.IO): once the upstream answers `101`, the client's and
//! the upstream's connections are joined.

use std::sync::Arc;

use axum::{body::Body, response::Response};
use http::{HeaderMap, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use mesh_core::{
    client::pool::OnSwitch,
    error::{ErrorKind, MeshError},
};

use crate::cors::Cors;

/// Whether the request asks to switch protocols (a WebSocket handshake, say).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether a protocol switch may go on from where it was opened: from no browser (no `Origin`),
/// from a page of the gateway's own origin (the `Origin`'s authority is the `Host`), or from an
/// origin `cors` allows. WebSockets are outside CORS, so without this any site a user visits
/// could open one with the user's cookie (cross-site WebSocket hijacking).
pub(crate) fn origin_admitted(headers: &HeaderMap, cors: Option<&Cors>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let same_origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .zip(headers.get(header::HOST))
        .is_some_and(|((_, authority), host)| authority.as_bytes() == host.as_bytes());
    same_origin || cors.is_some_and(|cors| cors.origin_allowed(origin))
}

/// Answers a `101` from upstream: once both sides have switched, bytes flow both ways
/// untouched until either side closes.
pub(crate) fn tunnel(
    route: &Arc<str>,
    client: Option<OnUpgrade>,
    mut upstream: Response,
) -> Result<Response, MeshError> {
    let Some(client) = client else {
        return Err(MeshError::new(
            ErrorKind::Upstream,
            "the upstream switched protocols for a request that did not ask to",
        ));
    };
    let Some(mut upstream_io) = OnSwitch::on(&mut upstream) else {
        return Err(MeshError::new(
            ErrorKind::Upstream,
            "the upstream switched protocols on a connection that cannot be taken over",
        ));
    };
    let route_id = route.clone();
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
