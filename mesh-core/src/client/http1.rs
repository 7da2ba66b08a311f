//! One HTTP/1.1 connection, driven by the task that sends on it.
//!
//! The request's own task writes the head and body to the socket and reads the answer's head
//! and body from it: no connection task, no channel between the two, no wake-up of another
//! task per request. Heads are parsed with `httparse`; header values are slices of the bytes
//! read, not copies. Everything read from the upstream is bounded: the head (64 KiB, 128
//! headers), a chunk's size line and each trailer line.

use std::{
    fmt, io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use crate::{BoxBody, error::BoxError};

/// The most bytes a response head may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields a response head may have.
const MAX_HEADERS: usize = 128;
/// The most bytes a chunk's size line or one trailer line may take.
const MAX_LINE_BYTES: usize = 4 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Body bytes gathered behind the head before they are written.
const WRITE_COALESCE: usize = 16 * 1024;

/// An open connection and what was read from it but not yet used.
pub(crate) struct Conn {
    io: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed or ended before a byte of an answer came: on a connection that
    /// was idle, the upstream most likely closed it as the request went out.
    Unanswered(io::Error),
    /// Anything else: a broken or malformed answer, a failed request body.
    Failed(BoxError),
}

/// An answer's head, with what its body is.
pub(crate) struct Head {
    pub(crate) response: Response<()>,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body has been read.
    pub(crate) keep_alive: bool,
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (`HEAD`, `1xx`, `204`, `304`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
    /// `101`: the connection now speaks another protocol.
    Switched,
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
        }
    }

    /// Whether an idle connection can carry another request: still open, with nothing unread.
    pub(crate) fn is_reusable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0; 1];
        // Nothing to read yet is the one good answer: 0 is the upstream's close, bytes are an
        // answer to nothing.
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the request: its head as given (but framing headers, which follow `body`), then
    /// the body, `Content-Length`-delimited when its size is known, else chunked.
    pub(crate) async fn write_request(
        &mut self,
        parts: &http::request::Parts,
        mut body: BoxBody,
    ) -> Result<(), Failure> {
        let length = body.size_hint().exact();
        let framing = match length {
            _ if body.is_end_stream() => {
                if sends_empty_length(&parts.method) {
                    Some(0)
                } else {
                    None
                }
            }
            Some(length) => Some(length),
            None => None,
        };
        let chunked = framing.is_none() && !body.is_end_stream();
        self.write.clear();
        encode_head(&mut self.write, parts, framing, chunked);
        if !body.is_end_stream() {
            let mut sent: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(Failure::Failed)?;
                let Ok(data) = frame.into_data() else {
                    // Trailers are not forwarded.
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                sent += data.len() as u64;
                if framing.is_some_and(|length| sent > length) {
                    return Err(Failure::Failed(
                        "the request body is longer than its size".into(),
                    ));
                }
                if chunked {
                    use std::io::Write;
                    let _ = write!(self.write, "{:x}\r\n", data.len());
                }
                if self.write.len() + data.len() <= WRITE_COALESCE {
                    self.write.extend_from_slice(&data);
                } else {
                    self.flush().await?;
                    self.io.write_all(&data).await.map_err(written)?;
                }
                if chunked {
                    self.write.extend_from_slice(b"\r\n");
                }
            }
            if framing.is_some_and(|length| sent < length) {
                return Err(Failure::Failed(
                    "the request body is shorter than its size".into(),
                ));
            }
            if chunked {
                self.write.extend_from_slice(b"0\r\n\r\n");
            }
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        if !self.write.is_empty() {
            self.io.write_all(&self.write).await.map_err(written)?;
            self.write.clear();
        }
        Ok(())
    }

    /// Reads the answer's head (skipping interim `1xx` answers but `101`).
    pub(crate) async fn read_head(&mut self, method: &Method) -> Result<Head, Failure> {
        let mut received = false;
        loop {
            if !self.read.is_empty() {
                received = true;
                match parse_head(&mut self.read, method)? {
                    Parsed::Head(head) => return Ok(head),
                    Parsed::Interim => continue,
                    Parsed::Partial if self.read.len() >= MAX_HEAD_BYTES => {
                        return Err(Failure::Failed(
                            format!("the answer's head is over {MAX_HEAD_BYTES} bytes").into(),
                        ));
                    }
                    Parsed::Partial => {}
                }
            }
            let read = std::future::poll_fn(|cx| self.poll_fill(cx)).await;
            match read {
                Ok(0) if !received => {
                    return Err(Failure::Unanswered(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(0) => {
                    return Err(Failure::Failed(
                        "the connection closed within the answer's head".into(),
                    ));
                }
                Ok(_) => {}
                Err(error) if !received => return Err(Failure::Unanswered(error)),
                Err(error) => return Err(Failure::Failed(error.into())),
            }
        }
    }

    /// Reads what the socket has into the buffer; `0` is the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// The connection as another protocol speaks it, with the bytes already read after `101`.
    pub(crate) fn into_upgraded(self) -> Upgraded {
        Upgraded {
            io: self.io,
            read_ahead: self.read.freeze(),
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.io.peer_addr().ok())
            .field("buffered", &self.read.len())
            .finish()
    }
}

/// A write that failed: no answer came (the upstream may still have received the request).
fn written(error: io::Error) -> Failure {
    Failure::Unanswered(error)
}

/// Methods whose empty body is announced with `Content-Length: 0`, as the upstream may expect
/// a body for them.
fn sends_empty_length(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE | Method::CONNECT
    )
}

fn encode_head(buf: &mut Vec<u8>, parts: &http::request::Parts, length: Option<u64>, chunked: bool) {
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    buf.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
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

/// What the front of the read buffer holds.
enum Parsed {
    /// A final answer's head, taken off the buffer.
    Head(Head),
    /// An interim `1xx` answer, taken off the buffer.
    Interim,
    /// Not yet a whole head.
    Partial,
}

/// Parses a complete head off the front of `read`.
fn parse_head(read: &mut BytesMut, method: &Method) -> Result<Parsed, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let length = match parsed.parse(read) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(error) => return Err(invalid(format!("an unreadable answer: {error}"))),
    };
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| invalid(format!("an answer with status {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        read.advance(length);
        return Ok(Parsed::Interim);
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each field lies in the head, so the values can be slices of it.
    let base = read.as_ptr() as usize;
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = parsed.headers.len();
    for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
        *span = (
            field.name.as_ptr() as usize - base,
            field.name.len(),
            field.value.as_ptr() as usize - base,
            field.value.len(),
        );
    }
    let head = read.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(name_at, name_len, value_at, value_len) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| invalid("an answer with an invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| invalid("an answer with an invalid header value"))?;
        headers.append(name, value);
    }
    let framing = framing(method, status, &headers)?;
    let keep_alive = version == Version::HTTP_11
        && !has_token(&headers, header::CONNECTION, "close")
        && !matches!(framing, Framing::UntilClose | Framing::Switched);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Parsed::Head(Head {
        response,
        framing,
        keep_alive,
    }))
}

fn invalid(message: impl Into<BoxError>) -> Failure {
    Failure::Failed(message.into())
}

/// What delimits the body of an answer to `method` (RFC 9112, section 6.3).
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, Failure> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Framing::Switched);
    }
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|coding| !coding.is_empty())
            .last();
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let parsed = value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| invalid("an answer with an invalid Content-Length"))?;
        if length.is_some_and(|length| length != parsed) {
            return Err(invalid("an answer with conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    })
}

/// Whether a comma-separated header lists `token`.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Reading an answer's body off its connection.
pub(crate) struct BodyReader {
    conn: Conn,
    state: BodyState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

impl BodyReader {
    pub(crate) fn new(conn: Conn, framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::ChunkSize,
            Framing::UntilClose => BodyState::UntilClose,
            Framing::Empty | Framing::Switched => BodyState::Done,
        };
        Self { conn, state }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// The connection, once the body has been read to its end.
    pub(crate) fn into_conn(self) -> Conn {
        self.conn
    }

    /// The body's next piece of data; `None` at its end.
    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let read = &mut self.conn.read;
            match self.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(remaining) | BodyState::ChunkData(remaining)
                    if !read.is_empty() =>
                {
                    let take = remaining.min(read.len() as u64);
                    let data = read.split_to(take as usize).freeze();
                    let left = remaining - take;
                    self.state = match self.state {
                        BodyState::Length(_) if left == 0 => BodyState::Done,
                        BodyState::Length(_) => BodyState::Length(left),
                        _ if left == 0 => BodyState::ChunkEnd,
                        _ => BodyState::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                BodyState::UntilClose if !read.is_empty() => {
                    return Poll::Ready(Some(Ok(read.split().freeze())));
                }
                BodyState::ChunkSize if !read.is_empty() => match httparse::parse_chunk_size(read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        read.advance(used);
                        self.state = if size == 0 {
                            BodyState::Trailers
                        } else {
                            BodyState::ChunkData(size)
                        };
                        continue;
                    }
                    Ok(httparse::Status::Partial) if read.len() < MAX_LINE_BYTES => {}
                    _ => return Poll::Ready(Some(Err(malformed("a chunk size")))),
                },
                BodyState::ChunkEnd if read.len() >= 2 => {
                    if &read[..2] != b"\r\n" {
                        return Poll::Ready(Some(Err(malformed("a chunk's end"))));
                    }
                    read.advance(2);
                    self.state = BodyState::ChunkSize;
                    continue;
                }
                BodyState::Trailers if !read.is_empty() => {
                    // Trailer fields are read past, one line at a time, up to the empty line.
                    match read.windows(2).position(|pair| pair == b"\r\n") {
                        Some(0) => {
                            read.advance(2);
                            self.state = BodyState::Done;
                            continue;
                        }
                        Some(end) => {
                            read.advance(end + 2);
                            continue;
                        }
                        None if read.len() < MAX_LINE_BYTES => {}
                        None => return Poll::Ready(Some(Err(malformed("a trailer")))),
                    }
                }
                _ => {}
            }
            let read = ready!(self.conn.poll_fill(cx))?;
            if read == 0 {
                if self.state == BodyState::UntilClose {
                    self.state = BodyState::Done;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed before the end of the answer's body",
                ))));
            }
        }
    }

    /// The bytes left to read, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.state {
            BodyState::Length(remaining) => Some(remaining),
            BodyState::Done => Some(0),
            _ => None,
        }
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the answer's body has a malformed {what}"),
    )
}

/// A connection after `101 Switching Protocols`: the bytes the upstream sent after its answer
/// first, then the socket's.
pub struct Upgraded {
    io: TcpStream,
    read_ahead: Bytes,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let take = self.read_ahead.len().min(buf.remaining());
            let ahead = self.read_ahead.split_to(take);
            buf.put_slice(&ahead);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("peer", &self.io.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Where a `101` answer's connection waits to be taken, in the answer's extensions.
#[derive(Clone, Default)]
pub struct OnUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl OnUpgrade {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        Self(Arc::new(Mutex::new(Some(upgraded))))
    }

    /// The switched connection of a `101` answer; `None` for any other answer, or once taken.
    pub fn on<B>(response: &mut Response<B>) -> Option<Upgraded> {
        response.extensions_mut().remove::<Self>()?.take()
    }

    fn take(&self) -> Option<Upgraded> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnUpgrade").finish_non_exhaustive()
    }
}

/// Frames for [`Body`] from a [`BodyReader`].
pub(crate) fn poll_frame(
    reader: &mut BodyReader,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match ready!(reader.poll_data(cx)) {
        Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
        Some(Err(error)) => Poll::Ready(Some(Err(error.into()))),
        None => Poll::Ready(None),
    }
}
