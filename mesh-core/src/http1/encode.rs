//! Writing messages: request and answer heads, and bodies with the framing they have.

use std::io;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::{date::now_http_date, framing::Framing};
use crate::error::BoxError;

/// Body bytes gathered behind the head before they are written.
const WRITE_COALESCE: usize = 16 * 1024;

/// Encodes a request's head: its own fields but framing, then `Content-Length` (`length`) or
/// chunked framing (`chunked`), then the empty line.
pub(crate) fn encode_request_head(
    buf: &mut Vec<u8>,
    parts: &http::request::Parts,
    length: Option<u64>,
    chunked: bool,
) {
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    buf.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    if let Some(length) = length {
        buf.extend_from_slice(b"content-length: ");
        buf.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        buf.extend_from_slice(b"\r\n");
    } else if chunked {
        buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// Encodes the status line and the fields: the service's own but for framing, which follows
/// `framing` (a `HEAD` or `304` answer keeps the `Content-Length` it was given, or gets the
/// body's size), then `Date` unless given, then `Connection: close` when `close`.
pub(crate) fn encode_answer_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: Framing,
    close: bool,
    size: Option<u64>,
) {
    let status = parts.status;
    status_line(out, status);
    let keeps_length =
        framing == Framing::Empty && status != StatusCode::NO_CONTENT && !status.is_informational();
    let mut has_length = false;
    for (name, value) in &parts.headers {
        if *name == header::TRANSFER_ENCODING
            || (*name == header::CONTENT_LENGTH && !keeps_length)
            || (*name == header::CONNECTION && close)
        {
            continue;
        }
        has_length |= *name == header::CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    framing_field(out, framing);
    // An empty body says nothing of the length a `GET` would get.
    if let (Framing::Empty, true, false, Some(length @ 1..)) =
        (framing, keeps_length, has_length, size)
        && status != StatusCode::NOT_MODIFIED
    {
        content_length_field(out, length);
    }
    end_head(out, parts.headers.contains_key(header::DATE), close);
}

/// `HTTP/1.1 200 OK\r\n`.
pub(crate) fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The field that frames a body: `Content-Length` or chunked; none for no body, nor for one
/// that ends with its connection or a protocol switch.
pub(crate) fn framing_field(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(length) => content_length_field(out, length),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose | Framing::Switched => {}
    }
}

fn content_length_field(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Date` unless `dated`, `Connection: close` when `close`, and the empty line.
pub(crate) fn end_head(out: &mut Vec<u8>, dated: bool, close: bool) {
    if !dated {
        out.extend_from_slice(b"date: ");
        now_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Why writing a message body stopped.
pub(crate) enum BodyFailure {
    /// The socket failed.
    Io(io::Error),
    /// The body failed, or did not match its `Content-Length`.
    Invalid(BoxError),
}

/// Writes `body` after the head already in `write`, then everything left in `write`: framed by
/// its `Content-Length` when `length` is given, else chunked (trailers are not sent). Body bytes
/// are copied behind what is buffered up to [`WRITE_COALESCE`] and a larger frame is written on
/// its own; when the body is not ready, what is buffered goes out meanwhile.
pub(crate) async fn write_body<B>(
    io: &mut TcpStream,
    write: &mut Vec<u8>,
    body: &mut B,
    length: Option<u64>,
) -> Result<(), BodyFailure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let chunked = length.is_none();
    let mut sent: u64 = 0;
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                flush(io, write).await.map_err(BodyFailure::Io)?;
                body.frame().await
            }
        };
        let Some(frame) = next else {
            break;
        };
        let frame = frame.map_err(|error| BodyFailure::Invalid(error.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|length| sent > length) {
            return Err(BodyFailure::Invalid(
                "the body is longer than its Content-Length".into(),
            ));
        }
        if chunked {
            use std::io::Write;
            let _ = write!(write, "{:x}\r\n", data.len());
        }
        if write.len() + data.len() <= WRITE_COALESCE {
            write.extend_from_slice(&data);
        } else {
            flush(io, write).await.map_err(BodyFailure::Io)?;
            io.write_all(&data).await.map_err(BodyFailure::Io)?;
        }
        if chunked {
            write.extend_from_slice(b"\r\n");
        }
    }
    if length.is_some_and(|length| sent < length) {
        return Err(BodyFailure::Invalid(
            "the body is shorter than its Content-Length".into(),
        ));
    }
    if chunked {
        write.extend_from_slice(b"0\r\n\r\n");
    }
    flush(io, write).await.map_err(BodyFailure::Io)
}

/// Writes what `write` holds, and empties it.
pub(crate) async fn flush(io: &mut TcpStream, write: &mut Vec<u8>) -> io::Result<()> {
    if !write.is_empty() {
        io.write_all(write).await?;
        write.clear();
    }
    Ok(())
}

/// Writes `body` after the head in `write`, as `framing` says.
pub(crate) async fn write_framed_body<B>(
    io: &mut TcpStream,
    write: &mut Vec<u8>,
    body: &mut B,
    framing: Framing,
) -> io::Result<()>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<crate::error::BoxError>,
{
    if framing == Framing::Empty {
        return flush(io, write).await;
    }
    let length = match framing {
        Framing::Length(length) => Some(length),
        _ => None,
    };
    write_body(io, write, body, length)
        .await
        .map_err(|failure| match failure {
            BodyFailure::Io(error) => error,
            BodyFailure::Invalid(error) => io::Error::other(error),
        })
}
