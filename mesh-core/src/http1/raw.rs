//! Messages as bytes, for a proxy that passes them on without building them: a request as
//! read off its connection, and an answer as read off the upstream's.

use std::{fmt, net::SocketAddr, sync::Arc};

use http::{Method, StatusCode};

use super::{body::AnswerBody, fields::Span};

/// A request as read off its connection: the head's bytes, where its parts lie, the body. A
/// request offered to a relay is plain HTTP/1.1 with exactly one `Host`, a `Content-Length`
/// body (or none) within `server.body_limit`, and a head within `server.max_head_bytes`.
pub struct RawRequest<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) method: &'a Method,
    pub(crate) target: &'a str,
    /// Where the path ends in `target`: at its `?`, or at its end.
    pub(crate) path_end: usize,
    pub(crate) fields: &'a [Span],
    pub(crate) body: &'a [u8],
    pub(crate) peer: SocketAddr,
}

impl<'a> RawRequest<'a> {
    /// The method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request target as sent: the path and query (`/api/items?page=2`).
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &'a str {
        &self.target[..self.path_end]
    }

    /// The query, without its `?`, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.get(self.path_end + 1..)
    }

    /// Every header field, name and value, in the order sent.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let head = self.head;
        self.fields
            .iter()
            .map(move |&(name_at, name_len, value_at, value_len)| {
                (
                    &head[name_at..name_at + name_len],
                    &head[value_at..value_at + value_len],
                )
            })
    }

    /// The values of the fields named `name` (compared without regard to case), in order.
    pub fn values(&self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.fields()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The first value of the field named `name`, if any.
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// The body (all of it: the server reads it before offering the request).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The address of the client's end of the connection.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl fmt::Debug for RawRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRequest")
            .field("method", self.method)
            .field("target", &self.target)
            .field("fields", &self.fields.len())
            .field("body", &self.body.len())
            .field("peer", &self.peer)
            .finish()
    }
}

/// An answer relayed as read: its status, its header fields as lines, its body.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status.
    pub status: StatusCode,
    /// The header fields, each `name: value\r\n`, with no hop-by-hop field (`Connection` and the
    /// like) and no `Transfer-Encoding`; `Content-Length` only on an answer that has no body
    /// (to `HEAD`, a `304`). The server adds the framing its body has, then `Date` unless
    /// [`dated`](Self::dated), then `Connection: close` when it closes.
    pub fields: Vec<u8>,
    /// Whether `fields` has a `Date`.
    pub dated: bool,
    /// The body.
    pub body: AnswerBody,
    /// The route the request took, for the request metrics (`unmatched` when `None`).
    pub route: Option<Arc<str>>,
}
