//! How a message's body is delimited (RFC 9112 §6.3), one answer for both sides.

use http::StatusCode;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (`HEAD`, `1xx`, `204`, `304`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (an answer only).
    UntilClose,
    /// `101`: the connection now speaks another protocol (an answer only).
    Switched,
}

/// How the body of an answer with `status` goes out: none for a `HEAD` request and the
/// statuses without one, else its exact length when known, else chunked.
pub(crate) fn answer_framing(
    status: StatusCode,
    head_request: bool,
    body: &impl http_body::Body,
) -> Framing {
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if no_body {
        Framing::Empty
    } else if body.is_end_stream() {
        Framing::Length(0)
    } else {
        match body.size_hint().exact() {
            Some(length) => Framing::Length(length),
            None => Framing::Chunked,
        }
    }
}
