//! One HTTP/1.1 connection, driven by the task that sends on it.
//!
//! The request's own task writes the head and body to the socket and reads the answer's head
//! and body from it: no connection task, no channel between the two, no wake-up of another
//! task per request. Heads are parsed with `httparse`; header values are slices of the bytes
//! read, not copies. Everything read from the upstream is bounded: the head (64 KiB, 128
//! headers), a chunk's size line and each trailer line.

use std::{
    fmt, io,
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version, header};
use http_body::Body;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::{
    encode::{BodyFailure, encode_request_head, flush, write_body},
    fields::{Span, content_length, field_spans, field_tokens, is_hop_by_hop, sends_empty_length},
    framing::Framing,
    limits::Limits,
    rewind::Rewind,
};
use crate::{BoxBody, error::BoxError};

/// The most bytes a response head may take.
const MAX_HEAD_BYTES: usize = Limits::ANSWER.head_bytes;
/// The most header fields a response head may have.
const MAX_HEADERS: usize = Limits::ANSWER.fields;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// An open connection and what was read from it but not yet used.
pub(crate) struct Conn {
    io: TcpStream,
    pub(super) read: BytesMut,
    /// The request being written; a relay encodes its request here.
    pub(crate) write: Vec<u8>,
    spans: Vec<Span>,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed or ended before a byte of an answer came: on a connection that
    /// was idle, the upstream most likely closed it as the request went out.
    Unanswered(io::Error),
    /// The request's own body failed (it is over a limit, or its framing is broken): the
    /// caller's fault, not the upstream's.
    Body(BoxError),
    /// Anything else: a broken or malformed answer.
    Failed(BoxError),
}

/// An answer's head, with what its body is.
pub(crate) struct Head {
    pub(crate) response: Response<()>,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body has been read.
    pub(crate) keep_alive: bool,
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            spans: Vec::new(),
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
        encode_request_head(&mut self.write, parts, framing, chunked);
        if body.is_end_stream() {
            return flush(&mut self.io, &mut self.write).await.map_err(written);
        }
        // The head goes out alone if the body is not ready: the upstream may answer or wait on
        // it first.
        write_body(&mut self.io, &mut self.write, &mut body, framing)
            .await
            .map_err(|failure| match failure {
                BodyFailure::Io(error) => written(error),
                BodyFailure::Invalid(error) => Failure::Body(error),
            })
    }

    /// Reads the answer's head (skipping interim `1xx` answers but `101`).
    pub(crate) async fn read_head(&mut self, method: &Method) -> Result<Head, Failure> {
        let read = self.read_final_head(method).await?;
        typed_head(read, &self.spans)
    }

    /// Reads the answer's head as [`read_head`](Self::read_head) does, its fields encoded into
    /// `fields` as `name: value\r\n` lines for a relay to pass on (see [`raw_fields`]).
    pub(crate) async fn read_raw_head(
        &mut self,
        method: &Method,
        fields: &mut Vec<u8>,
        drop: impl Fn(StatusCode, &[u8]) -> bool,
    ) -> Result<RawHead, Failure> {
        let read = self.read_final_head(method).await?;
        let dated = raw_fields(&read, &self.spans, method, fields, drop);
        Ok(RawHead {
            status: read.status,
            framing: read.framing,
            keep_alive: read.keep_alive,
            dated,
        })
    }

    /// Reads up to the end of the final answer's head, which is taken off the buffer; where
    /// its fields lie is left in `spans`.
    async fn read_final_head(&mut self, method: &Method) -> Result<ReadHead, Failure> {
        let mut received = false;
        loop {
            if !self.read.is_empty() {
                received = true;
                match parse_head(&mut self.read, &mut self.spans, method)? {
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

    /// After writing the request failed: the answer the upstream sent before it stopped
    /// reading (a `413` while the body was still going out, say), if a whole head of one is
    /// here. The connection is not used again after it, as the request did not go out whole.
    pub(crate) async fn read_early_answer(&mut self, method: &Method) -> Option<Head> {
        let mut head = self.read_head(method).await.ok()?;
        head.keep_alive = false;
        Some(head)
    }

    /// Writes what `write` holds (a whole request, head and body) and leaves `write` as it
    /// was, so that the same bytes can go again on another connection.
    pub(crate) async fn write_all(&mut self, write: &[u8]) -> Result<(), Failure> {
        self.io.write_all(write).await.map_err(written)
    }

    /// Reads what the socket has into the buffer; `0` is the end of the connection.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// The connection as another protocol speaks it, with the bytes already read after `101`.
    pub(crate) fn into_rewind(self) -> Rewind {
        Rewind::new(self.io, self.read.freeze())
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

/// What the front of the read buffer holds.
pub(super) enum Parsed {
    /// A final answer's head, taken off the buffer.
    Head(ReadHead),
    /// An interim `1xx` answer, taken off the buffer.
    Interim,
    /// Not yet a whole head.
    Partial,
}

/// A final answer's head as read: its bytes, and what its fields say of its body and its
/// connection.
pub(super) struct ReadHead {
    status: StatusCode,
    version: Version,
    head: Bytes,
    framing: Framing,
    keep_alive: bool,
}

/// A relayed answer's head: its fields are encoded elsewhere.
pub(crate) struct RawHead {
    pub(crate) status: StatusCode,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body has been read.
    pub(crate) keep_alive: bool,
    /// Whether the answer has a `Date`.
    pub(crate) dated: bool,
}

/// Parses a complete head off the front of `read`.
/// `spans` is room for where each field lies, kept between heads.
pub(super) fn parse_head(
    read: &mut BytesMut,
    spans: &mut Vec<Span>,
    method: &Method,
) -> Result<Parsed, Failure> {
    // Left uninitialised: zeroing room for every field a head may have would cost more than
    // parsing a usual head.
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let length = match config.parse_response_with_uninit_headers(&mut parsed, read, &mut fields) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(error) => return Err(invalid(format!("an unreadable answer: {error}"))),
    };
    let code = parsed.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| invalid(format!("an answer with status {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        read.advance(length);
        return Ok(Parsed::Interim);
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    field_spans(read, parsed.headers, spans);
    let mut fields = FramingFields::default();
    for field in parsed.headers.iter() {
        fields.see(field.name.as_bytes(), field.value);
    }
    let framing = fields.framing(method, status)?;
    // An answer framed both ways is read as chunked, and its connection not trusted again.
    let ambiguous = fields.transfer_encoding && fields.length.is_some();
    let keep_alive = version == Version::HTTP_11
        && !ambiguous
        && !fields.close
        && !matches!(framing, Framing::UntilClose | Framing::Switched);
    let head = read.split_to(length).freeze();
    Ok(Parsed::Head(ReadHead {
        status,
        version,
        head,
        framing,
        keep_alive,
    }))
}

/// The answer of `read` with its fields as a map (but the connection's, unless it switched
/// protocols: the pool's concern, noted while the head was read).
pub(super) fn typed_head(read: ReadHead, spans: &[Span]) -> Result<Head, Failure> {
    let ReadHead {
        status,
        version,
        head,
        framing,
        keep_alive,
    } = read;
    // With room for a few fields more: a proxy adds some (request ID, CORS) to the answer.
    let mut headers = HeaderMap::with_capacity(spans.len() + 4);
    for &(name_at, name_len, value_at, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| invalid("an answer with an invalid header name"))?;
        if status != StatusCode::SWITCHING_PROTOCOLS && is_connection_field(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| invalid("an answer with an invalid header value"))?;
        headers.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Head {
        response,
        framing,
        keep_alive,
    })
}

/// Reads `data` as the client reads an answer, to `GET` and to `HEAD`, for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_answer(data: &[u8]) {
    for method in [Method::GET, Method::HEAD] {
        let mut read = BytesMut::from(data);
        let mut spans = Vec::new();
        let head = loop {
            match parse_head(&mut read, &mut spans, &method) {
                Ok(Parsed::Interim) => continue,
                Ok(Parsed::Head(head)) => break head,
                Ok(Parsed::Partial) | Err(_) => return,
            }
        };
        let mut lines = Vec::new();
        raw_fields(&head, &spans, &method, &mut lines, |_, _| false);
        let Ok(head) = typed_head(head, &spans) else {
            return;
        };
        fuzz_body(read.freeze(), head.framing);
    }
}

/// Decodes `rest` as a body framed as `framing`, arriving on a connection that then closes.
#[cfg(feature = "fuzzing")]
fn fuzz_body(rest: Bytes, framing: Framing) {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
    }
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let near = TcpStream::connect(listener.local_addr().expect("an address"));
            let (near, far) = tokio::join!(near, listener.accept());
            let (Ok(mut near), Ok((far, _))) = (near, far) else {
                return;
            };
            let writing = tokio::spawn(async move {
                let _ = near.write_all(&rest).await;
            });
            let mut reader = super::body::BodyReader::new(Conn::new(far), framing);
            while let Some(Ok(_)) = std::future::poll_fn(|cx| reader.poll_data(cx)).await {}
            // Closed first, so a writer with bytes left over is not left waiting on it.
            drop(reader);
            let _ = writing.await;
        });
    });
}

/// Encodes the fields of `read` into `out` as `name: value\r\n` lines, for a relay: all but
/// the hop-by-hop ones, `Transfer-Encoding`, `Content-Length` unless the answer has no body for
/// it to frame (to `HEAD`, a `304`: it tells the size a `GET` would get), and those `drop`
/// picks. Returns whether the answer has a `Date`.
fn raw_fields(
    read: &ReadHead,
    spans: &[Span],
    method: &Method,
    out: &mut Vec<u8>,
    drop: impl Fn(StatusCode, &[u8]) -> bool,
) -> bool {
    let keeps_length = *method == Method::HEAD || read.status == StatusCode::NOT_MODIFIED;
    let mut dated = false;
    for &(name_at, name_len, value_at, value_len) in spans {
        let name = &read.head[name_at..name_at + name_len];
        if is_hop_by_hop(name)
            || (!keeps_length && name.eq_ignore_ascii_case(b"content-length"))
            || drop(read.status, name)
        {
            continue;
        }
        dated |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&read.head[value_at..value_at + value_len]);
        out.extend_from_slice(b"\r\n");
    }
    dated
}

/// Whether `name` speaks of the connection the answer came on (`Connection`, `Keep-Alive`):
/// the pool's concern, noted while the head is read and left out of the answer's map, but for
/// a protocol switch's, whose caller takes the connection over.
fn is_connection_field(name: &HeaderName) -> bool {
    name.as_str().len() == 10 && (*name == header::CONNECTION || name.as_str() == "keep-alive")
}

fn invalid(message: impl Into<BoxError>) -> Failure {
    Failure::Failed(message.into())
}

/// What an answer's fields say of its framing and its connection, noted as they are read so
/// that nothing is looked up again.
#[derive(Debug, Default)]
pub(super) struct FramingFields {
    /// `Content-Length`, once read.
    length: Option<u64>,
    /// A `Content-Length` that is not a number, or that disagrees with an earlier one.
    invalid_length: bool,
    /// Whether `Transfer-Encoding` is present.
    transfer_encoding: bool,
    /// Whether its last coding is `chunked`.
    chunked: bool,
    /// Whether `Connection` lists `close`.
    close: bool,
}

impl FramingFields {
    pub(super) fn see(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(value) {
                Some(length) if self.length.is_none_or(|earlier| earlier == length) => {
                    self.length = Some(length);
                }
                _ => self.invalid_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            let last = field_tokens(value).rfind(|coding| !coding.is_empty());
            if let Some(coding) = last {
                self.chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= field_tokens(value).any(|token| token.eq_ignore_ascii_case(b"close"));
        }
    }

    /// What delimits the body of an answer to `method` (RFC 9112, section 6.3).
    pub(super) fn framing(&self, method: &Method, status: StatusCode) -> Result<Framing, Failure> {
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
        if self.transfer_encoding {
            return Ok(if self.chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        if self.invalid_length {
            return Err(invalid(
                "an answer with an invalid or conflicting Content-Length",
            ));
        }
        Ok(match self.length {
            Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::http1::body::BodyReader;

    /// A connection and the origin's end of it.
    async fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Conn::new(client.unwrap()), accepted.unwrap().0)
    }

    /// What the origin received, once it ends with `end`.
    async fn received(origin: &mut TcpStream, end: &[u8]) -> String {
        let mut seen = Vec::new();
        let mut buf = [0; 4096];
        while !seen.ends_with(end) {
            let n = origin.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed after {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(seen).unwrap()
    }

    fn parts(method: Method, target: &str) -> http::request::Parts {
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap()
            .into_parts();
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("origin"));
        parts
    }

    fn full(text: &'static str) -> BoxBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// Answers with `answer` and returns the head read for a `method` request.
    async fn answered(method: Method, answer: &'static [u8]) -> (Conn, Result<Head, Failure>) {
        let (mut conn, mut origin) = pair().await;
        origin.write_all(answer).await.unwrap();
        let head = conn.read_head(&method).await;
        (conn, head)
    }

    async fn read_body(conn: Conn, framing: Framing) -> (BodyReader, io::Result<Vec<u8>>) {
        let mut reader = BodyReader::new(conn, framing);
        let mut body = Vec::new();
        loop {
            match std::future::poll_fn(|cx| reader.poll_data(cx)).await {
                Some(Ok(data)) => body.extend_from_slice(&data),
                Some(Err(error)) => return (reader, Err(error)),
                None => return (reader, Ok(body)),
            }
        }
    }

    fn head(result: Result<Head, Failure>) -> Head {
        match result {
            Ok(head) => head,
            Err(failure) => panic!("no head: {failure:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_without_a_body_is_its_head_alone() {
        let (mut conn, mut origin) = pair().await;
        let mut get = parts(Method::GET, "/items?page=2");
        // A stale framing header of the caller's is not sent: the body decides.
        get.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        get.headers.append("x-tag", HeaderValue::from_static("a"));
        get.headers.append("x-tag", HeaderValue::from_static("b"));
        conn.write_request(&get, BoxBody::default()).await.unwrap();
        assert_eq!(
            received(&mut origin, b"\r\n\r\n").await,
            "GET /items?page=2 HTTP/1.1\r\nhost: origin\r\nx-tag: a\r\nx-tag: b\r\n\r\n"
        );

        conn.write_request(&parts(Method::POST, "/"), BoxBody::default())
            .await
            .unwrap();
        assert_eq!(
            received(&mut origin, b"\r\n\r\n").await,
            "POST / HTTP/1.1\r\nhost: origin\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_body_of_known_size_goes_with_its_length_and_any_other_chunked() {
        let (mut conn, mut origin) = pair().await;
        conn.write_request(&parts(Method::PUT, "/a"), full("hello"))
            .await
            .unwrap();
        assert_eq!(
            received(&mut origin, b"hello").await,
            "PUT /a HTTP/1.1\r\nhost: origin\r\ncontent-length: 5\r\n\r\nhello"
        );

        let pieces = futures_util::stream::iter([
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::data(Bytes::from_static(b" chunked world"))),
        ]);
        let streamed = StreamBody::new(pieces).boxed_unsync();
        conn.write_request(&parts(Method::POST, "/b"), streamed)
            .await
            .unwrap();
        assert_eq!(
            received(&mut origin, b"0\r\n\r\n").await,
            "POST /b HTTP/1.1\r\nhost: origin\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\ne\r\n chunked world\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn the_head_goes_out_while_the_body_is_not_ready() {
        let (mut conn, mut origin) = pair().await;
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let late = futures_util::stream::once(async move {
            let _ = gate.await;
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"late")))
        });
        let body = StreamBody::new(late).boxed_unsync();
        let writing = tokio::spawn(async move {
            conn.write_request(&parts(Method::POST, "/upload"), body)
                .await
                .is_ok()
        });
        // A guard, not a measurement: without the head, the body would never be released.
        let head = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            received(&mut origin, b"\r\n\r\n"),
        )
        .await
        .expect("the head arrives before the body");
        assert!(head.starts_with("POST /upload HTTP/1.1\r\n"));
        go.send(()).unwrap();
        assert_eq!(
            received(&mut origin, b"0\r\n\r\n").await,
            "4\r\nlate\r\n0\r\n\r\n"
        );
        assert!(writing.await.unwrap());
    }

    #[tokio::test]
    async fn a_length_delimited_answer_is_read_and_its_connection_left_clean() {
        let (conn, answer) = answered(
            Method::GET,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Id: 7\r\nx-id: 8\r\n\r\nhello",
        )
        .await;
        let answer = head(answer);
        assert_eq!(answer.response.status(), StatusCode::OK);
        assert_eq!(answer.framing, Framing::Length(5));
        assert!(answer.keep_alive);
        let ids: Vec<_> = answer.response.headers().get_all("x-id").iter().collect();
        assert_eq!(ids, ["7", "8"]);
        let (reader, body) = read_body(conn, answer.framing).await;
        assert_eq!(body.unwrap(), b"hello");
        assert!(reader.is_done());
        assert!(reader.into_conn().is_reusable());
    }

    #[tokio::test]
    async fn a_chunked_answer_is_decoded_past_extensions_and_trailers() {
        let (conn, answer) = answered(
            Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n",
        )
        .await;
        let answer = head(answer);
        assert_eq!(answer.framing, Framing::Chunked);
        let (reader, body) = read_body(conn, answer.framing).await;
        assert_eq!(body.unwrap(), b"hello world");
        assert!(reader.into_conn().is_reusable());
    }

    #[tokio::test]
    async fn interim_answers_are_skipped() {
        let (_conn, answer) = answered(
            Method::POST,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let answer = head(answer);
        assert_eq!(answer.response.status(), StatusCode::CREATED);
        assert_eq!(answer.framing, Framing::Empty);
    }

    #[tokio::test]
    async fn answers_that_have_no_body_say_so_whatever_their_length() {
        let (_, answer) = answered(
            Method::HEAD,
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
        )
        .await;
        assert_eq!(head(answer).framing, Framing::Empty);
        for status in [&b"204 No Content"[..], b"304 Not Modified"] {
            let mut answer = b"HTTP/1.1 ".to_vec();
            answer.extend_from_slice(status);
            answer.extend_from_slice(b"\r\ncontent-length: 3\r\n\r\n");
            let answer: &'static [u8] = answer.leak();
            let (_, answer) = answered(Method::GET, answer).await;
            assert_eq!(head(answer).framing, Framing::Empty);
        }
    }

    #[tokio::test]
    async fn an_answer_without_a_length_ends_with_its_connection() {
        let (mut conn, mut origin) = pair().await;
        origin
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            .await
            .unwrap();
        drop(origin);
        let answer = head(conn.read_head(&Method::GET).await);
        assert_eq!(answer.framing, Framing::UntilClose);
        assert!(!answer.keep_alive);
        let (_, body) = read_body(conn, answer.framing).await;
        assert_eq!(body.unwrap(), b"until the end");
    }

    #[tokio::test]
    async fn connection_fields_are_the_pools_but_a_switchs() {
        let answer = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nServer: origin\r\ncontent-length: 0\r\n\r\n";
        let kept = head(answered(Method::GET, answer).await.1);
        assert!(kept.keep_alive);
        let names: Vec<_> = kept.response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["server", "content-length"]);

        let answer = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let switched = head(answered(Method::GET, answer).await.1);
        assert_eq!(switched.response.headers()[header::CONNECTION], "upgrade");
        assert_eq!(switched.response.headers()[header::UPGRADE], "websocket");
    }

    #[tokio::test]
    async fn connection_close_http_1_0_and_ambiguous_framing_are_not_kept_alive() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            let (_, answer) = answered(Method::GET, answer).await;
            assert!(!head(answer).keep_alive);
        }
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for raw in [
            &b"HTTQ/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 99 Odd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        ] {
            let (_, answer) = answered(Method::GET, raw).await;
            assert!(
                matches!(answer, Err(Failure::Failed(_))),
                "{:?} was accepted",
                String::from_utf8_lossy(raw)
            );
        }
        let (conn, answer) = answered(
            Method::GET,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        )
        .await;
        let (_, body) = read_body(conn, head(answer).framing).await;
        assert_eq!(body.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_head_past_the_bound_is_refused_without_reading_on() {
        let (mut conn, mut origin) = pair().await;
        let writer = tokio::spawn(async move {
            let _ = origin.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let filler = format!("x-filler: {}\r\n", "a".repeat(1000));
            // Never ends its head: the reader must stop at the bound, not wait or grow.
            for _ in 0..200 {
                if origin.write_all(filler.as_bytes()).await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        });
        let answer = conn.read_head(&Method::GET).await;
        assert!(matches!(answer, Err(Failure::Failed(_))));
        assert!(conn.read.len() < MAX_HEAD_BYTES + READ_CHUNK);
        writer.abort();
    }

    #[tokio::test]
    async fn a_connection_closed_before_any_answer_is_unanswered() {
        let (mut conn, origin) = pair().await;
        drop(origin);
        assert!(matches!(
            conn.read_head(&Method::GET).await,
            Err(Failure::Unanswered(_))
        ));
    }

    #[tokio::test]
    async fn a_switched_connection_starts_with_the_bytes_after_the_answer() {
        let (mut conn, mut origin) = pair().await;
        origin
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\n\r\nearly")
            .await
            .unwrap();
        let answer = head(conn.read_head(&Method::GET).await);
        assert_eq!(answer.framing, Framing::Switched);
        assert!(!answer.keep_alive);
        let mut upgraded = conn.into_rewind();
        let mut early = [0; 5];
        upgraded.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        upgraded.write_all(b"ping").await.unwrap();
        let mut ping = [0; 4];
        origin.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        origin.write_all(b"pong").await.unwrap();
        upgraded.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"pong");
    }

    #[tokio::test]
    async fn an_idle_connection_the_origin_closed_is_not_reusable() {
        let (conn, origin) = pair().await;
        assert!(conn.is_reusable());
        drop(origin);
        // Readable once the origin's close arrives.
        conn.io.readable().await.unwrap();
        assert!(!conn.is_reusable());
    }
}
