//! Requests read off the front of a connection's buffer: the head scanned with `httparse`
//! (header values are slices of the bytes read), what its fields say of its framing, and the
//! request taken off the buffer, its body read whole. What this path does not read — HTTP/2,
//! HTTP/1.0, upgrades, `CONNECT`, `Expect`, chunked or large bodies, many fields, a head over
//! the limit, or without exactly one `Host` — it leaves for a server to hand to hyper.

use std::{mem::MaybeUninit, net::SocketAddr};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::{
    RawRequest,
    fields::{Span, content_length, field_spans, field_tokens},
};

/// The most header fields a request read here may have; a server hands one with more to
/// another HTTP implementation (hyper).
pub(crate) const MAX_HEADERS: usize = 64;
/// The largest request body read whole before the request is handed on; a server hands a
/// larger one to hyper, which streams it.
pub(crate) const MAX_BUFFERED_BODY: usize = 64 * 1024;
/// Fields a request's map has room for beyond its own, for those the server layers and a
/// proxy add (forwarding, request ID, trace context, deadline), so adding them does not grow
/// the map field by field.
const ADDED_FIELDS: usize = 8;
/// A request read off the front of a connection's buffer, and whether its connection may
/// carry another.
pub(crate) struct Buffered {
    /// The request, its body read whole.
    pub(crate) request: Request<Body>,
    /// Whether its connection may carry another.
    pub(crate) keep_alive: bool,
}

/// A request whose head and body are at the front of the read buffer, read here.
pub(crate) struct Scanned {
    /// The head's length.
    head: usize,
    pub(crate) method: Method,
    /// Where the request target lies in the head.
    target: (usize, usize),
    body: usize,
    pub(crate) keep_alive: bool,
}

impl Scanned {
    /// The bytes the request takes, head and body.
    pub(crate) fn length(&self) -> usize {
        self.head + self.body
    }

    /// The request as a relay reads it, from `read`, whose front it is, with its fields'
    /// `spans`; `None` when its target is not text (it is not offered).
    pub(crate) fn raw<'a>(
        &'a self,
        read: &'a [u8],
        spans: &'a [Span],
        peer: SocketAddr,
    ) -> Option<RawRequest<'a>> {
        let (at, len) = self.target;
        let target = std::str::from_utf8(&read[at..at + len]).ok()?;
        Some(RawRequest {
            head: &read[..self.head],
            method: &self.method,
            path_end: target.find('?').unwrap_or(target.len()),
            target,
            fields: spans,
            body: &read[self.head..self.length()],
            peer,
        })
    }
}

pub(crate) enum Parsed {
    Request(Scanned),
    /// More bytes of the head are needed.
    Incomplete,
    /// The head is here; more bytes of its body (at most [`MAX_BUFFERED_BODY`]) are needed.
    AwaitingBody,
    /// A request hyper serves (see the module's documentation).
    Elsewhere,
    /// A head with a line ended by a bare LF: two servers could split it two ways (RFC 9112
    /// §2.2 lets a recipient accept it; an edge does not), so it is refused.
    Refused,
}

/// Reads the request at the front of `read`, noting in `spans` where its fields lie; the
/// buffer is left as it is.
pub(crate) fn scan_request(read: &[u8], spans: &mut Vec<Span>, max_head_bytes: usize) -> Parsed {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let length = match config.parse_request_with_uninit_headers(&mut parsed, read, &mut fields) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        // hyper answers what does not parse, once the head has been looked at for bare LFs.
        Err(_) => {
            let end = read
                .windows(4)
                .position(|end| end == b"\r\n\r\n")
                .map_or(read.len(), |at| at + 4);
            return if has_bare_lf(&read[..end]) {
                Parsed::Refused
            } else {
                Parsed::Elsewhere
            };
        }
    };
    if has_bare_lf(&read[..length]) {
        return Parsed::Refused;
    }
    if parsed.version != Some(1) || length > max_head_bytes {
        return Parsed::Elsewhere;
    }
    let Ok(method) = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()) else {
        return Parsed::Elsewhere;
    };
    if method == Method::CONNECT {
        return Parsed::Elsewhere;
    }
    let path = parsed.path.unwrap_or_default();
    let target = (path.as_ptr() as usize - read.as_ptr() as usize, path.len());
    let mut request = RequestFields::default();
    for field in parsed.headers.iter() {
        if !request.see(field.name.as_bytes(), field.value) {
            return Parsed::Elsewhere;
        }
    }
    if request.hosts != 1 {
        // Refused on hyper's side (`HostRequired`).
        return Parsed::Elsewhere;
    }
    // Larger bodies (and lengths beyond `usize`) go to hyper, which streams them.
    let Some(body) = usize::try_from(request.length.unwrap_or(0))
        .ok()
        .filter(|&length| length <= MAX_BUFFERED_BODY)
    else {
        return Parsed::Elsewhere;
    };
    if read.len() < length + body {
        return Parsed::AwaitingBody;
    }
    field_spans(read, parsed.headers, spans);
    Parsed::Request(Scanned {
        head: length,
        method,
        target,
        body,
        keep_alive: !request.close,
    })
}

/// Whether a line of `head` ends in a LF without its CR.
fn has_bare_lf(head: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = head[from..].iter().position(|&byte| byte == b'\n') {
        let at = from + at;
        if at == 0 || head[at - 1] != b'\r' {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Takes the request `scanned` found off the front of `read`; `None`, with the buffer left as
/// it was, when its target or a field is one the `http` crate refuses (hyper then decides what
/// to answer).
pub(crate) fn build_request(
    read: &mut BytesMut,
    spans: &[Span],
    scanned: Scanned,
) -> Option<Buffered> {
    let head = read.split_to(scanned.head).freeze();
    let Some(request) = typed_head(&head, spans, &scanned) else {
        // Put back in front of the rest, for hyper: a rare request, copied once.
        let mut whole = BytesMut::with_capacity(head.len() + read.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(read);
        *read = whole;
        return None;
    };
    let body = if scanned.body == 0 {
        Body::empty()
    } else {
        Body::from(read.split_to(scanned.body).freeze())
    };
    Some(Buffered {
        request: request.map(|()| body),
        keep_alive: scanned.keep_alive,
    })
}

/// The request of `head` as the `http` crate has it, its values slices of `head`.
fn typed_head(head: &Bytes, spans: &[Span], scanned: &Scanned) -> Option<Request<()>> {
    let (at, len) = scanned.target;
    let uri = Uri::from_maybe_shared(head.slice(at..at + len)).ok()?;
    let mut headers = HeaderMap::with_capacity(spans.len() + ADDED_FIELDS);
    for &(name_at, name_len, value_at, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len));
        headers.append(name, value.ok()?);
    }
    let mut request = Request::new(());
    *request.method_mut() = scanned.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// What a request's fields say of how it is served.
#[derive(Default)]
struct RequestFields {
    /// `Content-Length`, once read.
    length: Option<u64>,
    /// Whether `Connection` lists `close`.
    close: bool,
    /// How many `Host` fields it has (one is right; hyper's side refuses the rest).
    hosts: usize,
}

impl RequestFields {
    /// Notes one field; `false` when the request is one hyper serves.
    fn see(&mut self, name: &[u8], value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(value) {
                Some(length) if self.length.is_none_or(|earlier| earlier == length) => {
                    self.length = Some(length);
                    true
                }
                _ => false,
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
            true
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in field_tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return false;
                }
            }
            true
        } else {
            !(name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"upgrade")
                || name.eq_ignore_ascii_case(b"expect"))
        }
    }
}

/// Reads `data` as a server's connection loop reads requests off a connection, for the fuzz
/// targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(data: &[u8]) {
    let mut read = BytesMut::from(data);
    let mut spans = Vec::new();
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    while let Parsed::Request(scanned) =
        scan_request(&read, &mut spans, super::Limits::REQUEST.head_bytes)
    {
        assert!(
            scanned.length() <= read.len(),
            "a request longer than its bytes"
        );
        if let Some(raw) = scanned.raw(&read, &spans, peer) {
            let _ = (
                raw.path(),
                raw.query(),
                raw.fields().count(),
                raw.body().len(),
            );
        }
        if build_request(&mut read, &spans, scanned).is_none() {
            // Handed to hyper with the bytes as they were.
            return;
        }
    }
}
