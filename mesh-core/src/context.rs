//! Request extensions through which the runtime tells layers who is calling.
//!
//! The server runtime makes every request's connection known (as axum's
//! `ConnectInfo<SocketAddr>`, which [`PeerAddr::of`] reads) and the JWT layer inserts
//! [`Subject`] once a token verified; layers such as the rate limiter key on them.

use std::{net::SocketAddr, sync::Arc};

use http::Extensions;

/// The remote address of the connection a request arrived on.
///
/// Read it with [`PeerAddr::of`]: a `PeerAddr` extension when one was inserted (outside a mesh
/// server, or to override the connection's address), else the address the server accepted the
/// connection from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The peer of a request with these extensions, if known.
    ///
    /// ```
    /// use mesh_core::context::PeerAddr;
    ///
    /// let mut request = http::Request::new(());
    /// assert_eq!(PeerAddr::of(request.extensions()), None);
    /// let peer = "10.0.0.7:5555".parse().unwrap();
    /// request.extensions_mut().insert(PeerAddr(peer));
    /// assert_eq!(PeerAddr::of(request.extensions()), Some(peer));
    /// ```
    pub fn of(extensions: &Extensions) -> Option<SocketAddr> {
        if let Some(PeerAddr(peer)) = extensions.get::<PeerAddr>() {
            return Some(*peer);
        }
        #[cfg(feature = "runtime")]
        if let Some(axum::extract::ConnectInfo(peer)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(*peer);
        }
        None
    }
}

/// Marks a request that came over TLS: the server inserts it on every request of a TLS
/// connection, so a proxy can tell its upstream the scheme the client used.
///
/// ```
/// use mesh_core::context::Tls;
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Tls);
/// assert!(request.extensions().get::<Tls>().is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tls;

/// The authenticated subject (a verified token's `sub` claim) of a request. Shared, so a
/// proxy that verified a token once hands it to each request without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub Arc<str>);
