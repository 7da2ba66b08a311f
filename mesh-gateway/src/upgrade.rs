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
/// from a page of the gateway's own origin (the `Origin`'s authority is the `Host`, in any case
/// and with or without the scheme's default port), or from an origin `cors` lists by name (not
/// by `*`). WebSockets are outside CORS, so without this any site a user visits could open one
/// with the user's cookie (cross-site WebSocket hijacking). Behind a proxy that rewrites
/// `Host`, list the public origin in `cors.allowed_origins`.
pub(crate) fn origin_admitted(headers: &HeaderMap, cors: Option<&Cors>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let same_origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .zip(host)
        .is_some_and(|((scheme, authority), host)| {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "http" | "ws" => ":80",
                "https" | "wss" => ":443",
                _ => "",
            };
            let bare = |authority: &str| {
                let authority = authority.to_ascii_lowercase();
                match authority.strip_suffix(port) {
                    Some(bare) if !port.is_empty() => bare.to_owned(),
                    _ => authority,
                }
            };
            bare(authority) == bare(host)
        });
    same_origin || cors.is_some_and(|cors| cors.origin_listed(origin))
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::config::CorsConfig;

    fn admitted(origin: Option<&str>, host: &str, cors: Option<&Cors>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        origin_admitted(&headers, cors)
    }

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(CorsConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: false,
            ..CorsConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_switch_from_the_gateways_own_pages_or_no_browser_is_admitted() {
        assert!(admitted(None, "gw.example:8080", None));
        assert!(admitted(
            Some("http://gw.example:8080"),
            "gw.example:8080",
            None
        ));
        assert!(admitted(Some("http://GW.example"), "gw.example:80", None));
        assert!(admitted(Some("https://gw.example:443"), "gw.example", None));
        assert!(admitted(Some("http://[::1]:8080"), "[::1]:8080", None));
    }

    #[test]
    fn a_switch_from_another_sites_page_needs_its_origin_listed_by_name() {
        assert!(!admitted(Some("https://evil.example"), "gw.example", None));
        assert!(!admitted(
            Some("http://gw.example:8081"),
            "gw.example:8080",
            None
        ));
        assert!(!admitted(Some("null"), "gw.example", None));
        let listed = cors(&["https://app.example"]);
        assert!(admitted(
            Some("https://app.example"),
            "gw.example",
            Some(&listed)
        ));
        assert!(!admitted(
            Some("https://evil.example"),
            "gw.example",
            Some(&listed)
        ));
        // `*` lets any page read answers, not open sockets with the user's cookie.
        let any = cors(&["*"]);
        assert!(!admitted(
            Some("https://evil.example"),
            "gw.example",
            Some(&any)
        ));
    }
}
