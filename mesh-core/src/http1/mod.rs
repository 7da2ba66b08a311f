//! The HTTP/1.1 codec both sides share: heads parsed with `httparse` into slices of the bytes
//! read, heads encoded into one reused buffer, bodies framed by `Content-Length` or chunked and
//! decoded back, the `Date` field, connections whose first bytes were read already, and
//! messages as bytes for a proxy. It knows nothing of clients or servers: `client` and `server`
//! use it, and neither uses the other.
//!
//! What a relay reads and writes ([`RawRequest`], [`RawAnswer`], [`AnswerBody`]) and the
//! hop-by-hop rule ([`is_hop_by_hop`]) are public, for proxies built on mesh's server.
//!
//! ```
//! use mesh_core::http1::is_hop_by_hop;
//! assert!(is_hop_by_hop(b"Transfer-Encoding"));
//! ```

pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod date;
pub(crate) mod encode;
pub(crate) mod fields;
pub(crate) mod framing;
mod limits;
pub(crate) mod raw;
pub(crate) mod request;
pub(crate) mod rewind;

#[cfg(test)]
mod properties;

pub use self::{
    body::AnswerBody,
    fields::is_hop_by_hop,
    limits::Limits,
    raw::{RawAnswer, RawRequest},
    rewind::Rewind,
};
