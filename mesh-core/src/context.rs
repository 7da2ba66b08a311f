//! Request extensions through which the runtime tells layers who is calling.
//!
//! The server runtime inserts [`PeerAddr`] for every accepted connection and the JWT layer
//! inserts [`Subject`] once a token verified; layers such as the rate limiter key on them.

use std::net::SocketAddr;

/// The remote address of the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The authenticated subject (a verified token's `sub` claim) of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub String);
