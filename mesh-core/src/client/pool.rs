//! HTTP/1.1 connections kept idle per thread and origin, each driven by the request that
//! uses it.
//!
//! A request takes an idle connection to its origin from the thread it runs on (the most
//! recently used first), or opens one; the request's own task writes it and reads the answer
//! (`client::http1`), so the request path takes no lock, hands nothing to another task and wakes
//! no other thread. The connection goes back to that thread's idle list when the response's
//! body has been read to its end. A connection that closed while idle is found so when taken
//! and left; an idempotent request without a body that got no answer on a reused connection
//! (the origin closed it as the request went out) is sent again on a new one; any other request
//! is never sent twice. Idle connections close when the thread's list is full; past 64 origins,
//! a thread forgets those with no open idle connection. An answer's `Connection` and
//! `Keep-Alive` fields speak of the connection and are the pool's: they are not in the
//! response's header map, but for a `101`'s, whose caller takes the connection over.
//!
//! ```no_run
//! # async fn run() -> Result<(), mesh_core::error::MeshError> {
//! use mesh_core::{BoxBody, client::pool::Http1Pool};
//!
//! let pool = Http1Pool::new();
//! let request = http::Request::get("http://127.0.0.1:9000/health")
//!     .body(BoxBody::default())
//!     .expect("a valid request");
//! let response = pool.send(request).await?;
//! assert!(response.status().is_success());
//! # Ok(()) }
//! ```

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use foldhash::fast::RandomState;
use http::{
    HeaderValue, Method, Request, Response, StatusCode, Uri, header,
    uri::{Authority, PathAndQuery},
};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use crate::http1::{
    AnswerBody, RawAnswer, Rewind,
    body::Recycle,
    conn::{Conn, Failure, Head, RawHead},
    fields::sends_empty_length,
    framing::Framing,
};
use crate::{
    BoxBody,
    error::{BoxError, ErrorKind, MeshError},
    resilience::retry::NotSent,
};

/// Idle connections each thread keeps per origin; more are closed when given back.
const MAX_IDLE_PER_THREAD: usize = 256;
/// Origins each thread remembers before forgetting those without an open idle connection.
const MAX_ORIGINS_PER_THREAD: usize = 64;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/1.1 connections to any number of origins, kept idle per thread.
///
/// Share one pool (it is used through an `Arc`) among everything that calls the same origins.
#[derive(Default)]
pub struct Http1Pool {
    idle: ThreadLocal<RefCell<HashMap<Arc<str>, Origin, RandomState>>>,
}

/// One thread's idle connections to one origin.
struct Origin {
    /// The origin as a map key, shared with the calls in flight that give connections back.
    key: Arc<str>,
    host: HeaderValue,
    idle: Vec<Conn>,
}

impl Http1Pool {
    /// An empty pool.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sends `request` to the origin its URI names (`http://host:port/path`), with that origin
    /// as `Host` and the URI in origin form (`/path?query`). The response's body gives its
    /// connection back when read to the end; a `101` answer carries its switched connection
    /// (take it with [`OnSwitch::on`]). An HTTP status is a response; a request that got none
    /// (refused, reset, closed, an unreadable answer) is an [`ErrorKind::Transport`] error.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<BoxBody>,
    ) -> Result<Response<ResponseBody>, MeshError> {
        let (mut parts, body) = request.into_parts();
        let Some(authority) = parts.uri.authority().cloned() else {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                format!("`{}` names no host to send the request to", parts.uri),
            ));
        };
        if parts.uri.scheme().is_some() {
            // Origin form, reusing the parsed path and query.
            let path = std::mem::take(&mut parts.uri).into_parts().path_and_query;
            parts.uri = Uri::from(path.unwrap_or_else(|| PathAndQuery::from_static("/")));
        }
        self.send_to(&authority, Request::from_parts(parts, body))
            .await
    }

    /// Sends `request` (its URI in origin form, `/path?query`) to `authority`, with that origin
    /// as `Host`; otherwise as [`send`](Self::send).
    pub async fn send_to(
        self: &Arc<Self>,
        authority: &Authority,
        request: Request<BoxBody>,
    ) -> Result<Response<ResponseBody>, MeshError> {
        let (mut parts, body) = request.into_parts();
        // Sent again only when nothing of it can have been acted on twice.
        let replayable = body.is_end_stream() && is_idempotent(&parts.method);
        let mut body = Some(body);
        loop {
            let (key, host, checked_out) = self.checkout(authority)?;
            parts.headers.insert(header::HOST, host);
            let (mut conn, reused) = match checked_out {
                Some(conn) => (conn, true),
                // Boxed: the cold path stays out of every call's future.
                None => (Box::pin(connect(authority)).await?, false),
            };
            let body = body.take().unwrap_or_default();
            let answered = match conn.write_request(&parts, body).await {
                Ok(()) => conn.read_head(&parts.method).await,
                // An upstream may answer before it has read the whole request, and close.
                Err(Failure::Unanswered(error)) => {
                    match conn.read_early_answer(&parts.method).await {
                        Some(head) => Ok(head),
                        None => Err(Failure::Unanswered(error)),
                    }
                }
                Err(failure) => Err(failure),
            };
            return match answered {
                Ok(mut head) => {
                    // The request's extension map, emptied, becomes the answer's: a caller that
                    // labels the answer (a proxy, for its metrics) allocates no second map.
                    parts.extensions.clear();
                    *head.response.extensions_mut() = std::mem::take(&mut parts.extensions);
                    Ok(self.respond(head, conn, key))
                }
                Err(Failure::Unanswered(_)) if reused && replayable => continue,
                Err(Failure::Unanswered(error)) => Err(failed(authority, error.into())),
                Err(Failure::Body(error)) => Err(body_failed(error)),
                Err(Failure::Failed(error)) => Err(failed(authority, error)),
            };
        }
    }

    /// Relays a request given as bytes to `authority`, for a proxy that passes requests on
    /// without building them (a server's relay). `encode` writes the request
    /// line and the header fields (each ending in `\r\n`, with no framing field) into the
    /// buffer it is given, its second argument being the origin's `Host`; it runs before this
    /// returns. The body's `Content-Length`, the empty line and `body` follow. The answer's
    /// fields come as [`RawAnswer::fields`] says, but for those `drop` picks. Connections and
    /// failures are as [`send`](Self::send)'s: an idempotent request without a body that got
    /// no answer on a reused connection goes again on another.
    pub fn relay<D>(
        self: &Arc<Self>,
        authority: &Authority,
        method: &Method,
        body: &[u8],
        encode: &mut dyn FnMut(&mut Vec<u8>, &[u8]),
        drop: D,
    ) -> Result<impl Future<Output = Result<RawAnswer, MeshError>> + Send + use<D>, MeshError>
    where
        D: Fn(StatusCode, &[u8]) -> bool + Send + Sync + 'static,
    {
        let replayable = body.is_empty() && is_idempotent(method);
        let (key, host, mut checked_out) = self.checkout(authority)?;
        // The connection's own buffer when there is one: no allocation for the request.
        let mut request = checked_out
            .as_mut()
            .map(|conn| std::mem::take(&mut conn.write))
            .unwrap_or_default();
        request.clear();
        encode(&mut request, host.as_bytes());
        if !body.is_empty() || sends_empty_length(method) {
            request.extend_from_slice(b"content-length: ");
            request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let (pool, authority, method) = (self.clone(), authority.clone(), method.clone());
        Ok(async move {
            let mut key = key;
            let mut fields = Vec::with_capacity(256);
            loop {
                let (mut conn, reused) = match checked_out.take() {
                    Some(conn) => (conn, true),
                    None => (Box::pin(connect(&authority)).await?, false),
                };
                let answered = match conn.write_all(&request).await {
                    Ok(()) => conn.read_raw_head(&method, &mut fields, &drop).await,
                    // An upstream may answer before it has read the whole request, and close.
                    Err(Failure::Unanswered(error)) => {
                        match conn.read_raw_head(&method, &mut fields, &drop).await {
                            Ok(head) => Ok(RawHead {
                                keep_alive: false,
                                ..head
                            }),
                            Err(_) => Err(Failure::Unanswered(error)),
                        }
                    }
                    Err(failure) => Err(failure),
                };
                let head = match answered {
                    Ok(head) if head.framing == Framing::Switched => {
                        return Err(MeshError::new(
                            ErrorKind::Upstream,
                            "the upstream switched protocols for a request that did not ask to",
                        ));
                    }
                    Ok(head) => head,
                    Err(Failure::Unanswered(_)) if reused && replayable => {
                        fields.clear();
                        let (again, _, idle) = pool.checkout(&authority)?;
                        (key, checked_out) = (again, idle);
                        continue;
                    }
                    Err(Failure::Unanswered(error)) => {
                        return Err(failed(&authority, error.into()));
                    }
                    Err(Failure::Body(error)) => return Err(body_failed(error)),
                    Err(Failure::Failed(error)) => return Err(failed(&authority, error)),
                };
                conn.write = request;
                return Ok(RawAnswer {
                    status: head.status,
                    fields,
                    dated: head.dated,
                    body: pool.body(head.framing, head.keep_alive, conn, key),
                    route: None,
                });
            }
        })
    }

    /// The response to `head`, its body read from `conn`.
    fn respond(self: &Arc<Self>, head: Head, conn: Conn, key: Arc<str>) -> Response<ResponseBody> {
        let Head {
            response,
            framing,
            keep_alive,
        } = head;
        if framing == Framing::Switched {
            let mut response = response.map(|()| ResponseBody::empty());
            let upgraded = OnSwitch::new(conn.into_rewind());
            response.extensions_mut().insert(upgraded);
            return response;
        }
        response.map(|()| ResponseBody::from(self.body(framing, keep_alive, conn, key)))
    }

    /// A body framed by `framing`, read from `conn`, which goes back to the pool at its end
    /// when it can carry another request.
    fn body(
        self: &Arc<Self>,
        framing: Framing,
        keep_alive: bool,
        conn: Conn,
        key: Arc<str>,
    ) -> AnswerBody {
        if framing == Framing::Empty {
            if keep_alive {
                self.checkin(&key, conn);
            }
            return AnswerBody::empty();
        }
        let pool: Arc<dyn Recycle> = self.clone();
        AnswerBody::new(conn, framing, keep_alive.then_some((key, pool)))
    }

    /// Takes this thread's most recently used idle connection to `authority` that is still
    /// open, if any; also returns the origin's key and its `Host` value.
    fn checkout(
        &self,
        authority: &Authority,
    ) -> Result<(Arc<str>, HeaderValue, Option<Conn>), MeshError> {
        let mut origins = self.idle.get_or_default().borrow_mut();
        let origin = match origins.get_mut(authority.as_str()) {
            Some(origin) => origin,
            None => {
                if origins.len() >= MAX_ORIGINS_PER_THREAD {
                    // Instances come and go: an origin with no open idle connection is
                    // forgotten, so the map does not grow with every address ever called.
                    origins.retain(|_, origin| {
                        origin.idle.retain(Conn::is_reusable);
                        !origin.idle.is_empty()
                    });
                }
                let host = HeaderValue::from_str(authority.as_str()).map_err(|e| {
                    MeshError::new(ErrorKind::BadRequest, format!("host `{authority}`: {e}"))
                })?;
                let key: Arc<str> = authority.as_str().into();
                origins.entry(key.clone()).or_insert(Origin {
                    key,
                    host,
                    idle: Vec::new(),
                })
            }
        };
        let mut conn = None;
        while let Some(idle) = origin.idle.pop() {
            if idle.is_reusable() {
                conn = Some(idle);
                break;
            }
        }
        Ok((origin.key.clone(), origin.host.clone(), conn))
    }

    /// Origins this thread remembers.
    #[cfg(test)]
    fn origins_here(&self) -> usize {
        self.idle.get().map_or(0, |origins| origins.borrow().len())
    }

    /// Gives a connection whose last response has ended back to this thread's idle list.
    fn checkin(&self, key: &str, conn: Conn) {
        let mut origins = self.idle.get_or_default().borrow_mut();
        if let Some(origin) = origins.get_mut(key)
            && origin.idle.len() < MAX_IDLE_PER_THREAD
        {
            origin.idle.push(conn);
        }
    }
}

impl Recycle for Http1Pool {
    fn recycle(&self, key: &str, conn: Conn) {
        self.checkin(key, conn);
    }
}

impl fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http1Pool").finish_non_exhaustive()
    }
}

/// Methods that mean the same sent twice (RFC 9110, section 9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Opens a connection to `authority`.
async fn connect(authority: &Authority) -> Result<Conn, MeshError> {
    let port = authority.port_u16().unwrap_or(80);
    let connect = async {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((authority.host(), port))
            .await?
            .collect();
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host name resolves to no address",
        );
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(last)
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            return Err(MeshError::new(
                ErrorKind::Transport,
                format!("connecting to {authority}: {error}"),
            )
            .with_source(NotSent::new(error)));
        }
        Err(_) => {
            return Err(MeshError::new(
                ErrorKind::Transport,
                format!("connecting to {authority}: timed out"),
            )
            .with_source(NotSent::new("the connection was not opened in time")));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn::new(stream))
}

/// The error of a request whose own body failed on its way: `413` when it passed the body
/// limit, `400` when it could not be read (broken chunk framing, a length it did not keep).
fn body_failed(error: BoxError) -> MeshError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(err) = cause {
        if err.is::<http_body_util::LengthLimitError>() {
            return MeshError::custom(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is too large: {err}"),
            );
        }
        cause = err.source();
    }
    MeshError::new(
        ErrorKind::BadRequest,
        format!("the request body could not be read: {error}"),
    )
    .with_source(error)
}

fn failed(authority: &Authority, error: BoxError) -> MeshError {
    let message = format!("{authority}: {error}");
    MeshError::new(ErrorKind::Transport, message).with_source(error)
}

/// Where a `101` answer's connection waits to be taken, in the answer's extensions.
#[derive(Clone, Default)]
pub struct OnSwitch(Arc<Mutex<Option<Rewind>>>);

impl OnSwitch {
    pub(crate) fn new(switched: Rewind) -> Self {
        Self(Arc::new(Mutex::new(Some(switched))))
    }

    /// The switched connection of a `101` answer; `None` for any other answer, or once taken.
    pub fn on<B>(response: &mut Response<B>) -> Option<Rewind> {
        response.extensions_mut().remove::<Self>()?.take()
    }

    fn take(&self) -> Option<Rewind> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl fmt::Debug for OnSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnSwitch").finish_non_exhaustive()
    }
}

/// A response's body: an HTTP/1.1 answer's, read off a pooled connection that goes back to
/// the pool once the body is read to its end (dropped before, the connection closes: HTTP/1.1
/// cannot skip the rest), or an HTTP/2 stream's.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Http1(AnswerBody),
    Http2(Incoming),
}

impl ResponseBody {
    /// A body that belongs to no pooled connection (an HTTP/2 stream, say).
    pub(crate) fn unpooled(body: Incoming) -> Self {
        Self {
            kind: Kind::Http2(body),
        }
    }

    pub(crate) fn empty() -> Self {
        Self::from(AnswerBody::empty())
    }
}

impl From<AnswerBody> for ResponseBody {
    fn from(body: AnswerBody) -> Self {
        Self {
            kind: Kind::Http1(body),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Http1(body) => Pin::new(body).poll_frame(cx),
            Kind::Http2(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Http1(body) => body.is_end_stream(),
            Kind::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Http1(body) => body.size_hint(),
            Kind::Http2(body) => body.size_hint(),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pooled = matches!(&self.kind, Kind::Http1(body) if body.is_pooled());
        f.debug_struct("ResponseBody")
            .field("pooled", &pooled)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// How the test upstream treats a connection after its first answer.
    #[derive(Clone, Copy)]
    enum After {
        /// Answers every request on it.
        KeepAlive,
        /// Closes it, as an upstream's keep-alive timeout would.
        Close,
        /// Promises ten bytes of body, sends two and waits.
        Stall,
    }

    /// An origin that answers `ok` and counts the connections it accepted; returns its URL.
    async fn origin(after: After) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        if !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            continue;
                        }
                        seen.clear();
                        let answer: &[u8] = match after {
                            After::Stall => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok",
                            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        };
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        match after {
                            After::KeepAlive => {}
                            After::Close => return,
                            After::Stall => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn get(url: &str) -> Request<BoxBody> {
        Request::get(url)
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    async fn body(response: Response<ResponseBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_serves_request_after_request() {
        let (url, accepted) = origin(After::KeepAlive).await;
        let pool = Http1Pool::new();
        for _ in 0..5 {
            let response = pool.send(get(&url)).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_without_an_error() {
        let (url, accepted) = origin(After::Close).await;
        let pool = Http1Pool::new();
        for _ in 0..5 {
            let response = pool.send(get(&url)).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_give_its_connection_back() {
        let (url, accepted) = origin(After::Stall).await;
        let pool = Http1Pool::new();
        let mut response = pool.send(get(&url)).await.unwrap();
        let first = response.body_mut().frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ok");
        drop(response);
        // The next request cannot wait behind the rest of the first body: a new connection.
        let response = pool.send(get(&url)).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(response);
    }

    #[tokio::test]
    async fn each_origin_has_its_own_connections_and_host() {
        let (first, first_accepted) = origin(After::KeepAlive).await;
        let (second, second_accepted) = origin(After::KeepAlive).await;
        let pool = Http1Pool::new();
        for _ in 0..3 {
            for url in [&first, &second] {
                let response = pool.send(get(url)).await.unwrap();
                assert_eq!(body(response).await, "ok");
            }
        }
        assert_eq!(first_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(second_accepted.load(Ordering::SeqCst), 1);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let echo_host = axum::Router::new().route(
            "/where",
            axum::routing::get(|headers: http::HeaderMap| async move {
                format!("{:?}", headers.get(header::HOST))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, echo_host).await });
        let response = pool
            .send(get(&format!("http://{address}/where")))
            .await
            .unwrap();
        assert_eq!(body(response).await, format!("Some(\"{address}\")"));
    }

    #[tokio::test]
    async fn origins_without_open_connections_are_forgotten() {
        let pool = Http1Pool::new();
        for _ in 0..MAX_ORIGINS_PER_THREAD + 8 {
            let (url, _) = origin(After::Close).await;
            let response = pool.send(get(&url)).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        let remembered = pool.origins_here();
        assert!(
            remembered <= MAX_ORIGINS_PER_THREAD,
            "{remembered} origins remembered"
        );
    }

    /// An origin that answers the first request on its first connection, then takes the second
    /// one and closes without answering (as a crash would); it answers everything else. Returns
    /// its URL and the first line of each request it took.
    async fn origin_dropping_second_request() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = taken.clone();
        tokio::spawn(async move {
            for connection in 0.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    for request in 0.. {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        log.lock()
                            .unwrap()
                            .push(text.lines().next().unwrap().to_owned());
                        if connection == 0 && request == 1 {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, taken)
    }

    /// Relays `method /target` with `body` to the origin at `url`.
    async fn relay(
        pool: &Arc<Http1Pool>,
        url: &str,
        method: Method,
        body: &[u8],
    ) -> Result<RawAnswer, MeshError> {
        let authority: Authority = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let mut encode = |out: &mut Vec<u8>, host: &[u8]| {
            out.extend_from_slice(format!("{method} /relayed HTTP/1.1\r\nhost: ").as_bytes());
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\nx-mark: 1\r\n");
        };
        let drop = |_: StatusCode, name: &[u8]| name.eq_ignore_ascii_case(b"x-dropped");
        pool.relay(&authority, &method, body, &mut encode, drop)
            .unwrap()
            .await
    }

    #[tokio::test]
    async fn a_relayed_request_goes_as_encoded_and_its_answer_comes_as_fields() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (seen, mut requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let head = text.starts_with("HEAD");
                seen.send(text).unwrap();
                let answer: &[u8] = if head {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
                } else {
                    b"HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                      x-dropped: 1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nx-kept: yes\r\n\
                      Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                };
                stream.write_all(answer).await.unwrap();
            }
        });
        let pool = Http1Pool::new();
        let url = format!("http://{address}/");
        let mut answer = relay(&pool, &url, Method::POST, b"hello").await.unwrap();
        assert_eq!(
            requests.recv().await.unwrap(),
            format!(
                "POST /relayed HTTP/1.1\r\nhost: {address}\r\nx-mark: 1\r\ncontent-length: 5\r\n\r\nhello"
            )
        );
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(
            String::from_utf8(answer.fields.clone()).unwrap(),
            "Date: Tue, 01 Dec 2026 00:00:00 GMT\r\nx-kept: yes\r\n",
            "no connection field, no framing, none dropped"
        );
        assert!(answer.dated);
        let data = answer
            .body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(data, "abc");
        assert!(answer.body.frame().await.is_none());
        drop(answer);

        // The same connection again (the upstream takes one); `HEAD` keeps its length.
        let answer = relay(&pool, &url, Method::HEAD, b"").await.unwrap();
        assert!(requests.recv().await.unwrap().starts_with("HEAD /relayed "));
        assert_eq!(answer.fields, b"content-length: 5\r\n");
        assert!(answer.body.is_end_stream());
    }

    /// Relays as [`relay`] does and reads the answer's body to its end, so that its connection
    /// goes back to the pool.
    async fn relayed(
        pool: &Arc<Http1Pool>,
        url: &str,
        method: Method,
        body: &[u8],
    ) -> Result<Bytes, MeshError> {
        let answer = relay(pool, url, method, body).await?;
        Ok(answer.body.collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn a_relayed_idempotent_request_is_sent_again_and_any_other_is_not() {
        let (url, taken) = origin_dropping_second_request().await;
        let pool = Http1Pool::new();
        assert_eq!(relayed(&pool, &url, Method::GET, b"").await.unwrap(), "ok");
        let again = relayed(&pool, &url, Method::GET, b"").await;
        assert_eq!(again.unwrap(), "ok", "answered on a new connection");
        assert_eq!(
            *taken.lock().unwrap(),
            [
                "GET /relayed HTTP/1.1",
                "GET /relayed HTTP/1.1",
                "GET /relayed HTTP/1.1"
            ]
        );
        let (url, taken) = origin_dropping_second_request().await;
        relayed(&pool, &url, Method::GET, b"").await.unwrap();
        let error = relayed(&pool, &url, Method::POST, b"pay")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Transport);
        assert_eq!(
            *taken.lock().unwrap(),
            ["GET /relayed HTTP/1.1", "POST /relayed HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn a_request_that_may_have_been_acted_on_is_never_sent_twice() {
        let (url, taken) = origin_dropping_second_request().await;
        let pool = Http1Pool::new();
        assert_eq!(body(pool.send(get(&url)).await.unwrap()).await, "ok");
        let post = Request::post(&url)
            .body(
                http_body_util::Full::new(Bytes::from_static(b"pay"))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        match pool.send(post).await {
            Err(error) => assert_eq!(error.kind(), ErrorKind::Transport),
            Ok(response) => panic!("answered {}", response.status()),
        }
        assert_eq!(
            *taken.lock().unwrap(),
            ["GET / HTTP/1.1", "POST / HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn an_idempotent_request_without_an_answer_on_a_reused_connection_goes_once_more() {
        let (url, taken) = origin_dropping_second_request().await;
        let pool = Http1Pool::new();
        for _ in 0..2 {
            assert_eq!(body(pool.send(get(&url)).await.unwrap()).await, "ok");
        }
        assert_eq!(taken.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_is_the_response() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/upload", listener.local_addr().unwrap());
        let upstream = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                head.extend_from_slice(&buffer[..read]);
            }
            socket
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo long")
                .await
                .unwrap();
            // Closed with the body unread: the client's writes fail.
        });
        // Far more than the socket buffers on both sides hold.
        let large = Bytes::from(vec![b'x'; 64 << 20]);
        let post = Request::post(&url)
            .body(
                http_body_util::Full::new(large)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let pool = Http1Pool::new();
        let response = pool.send(post).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body(response).await, "too long");
        upstream.await.unwrap();
        // The connection did not carry the whole request, so it is not kept.
        let idle: usize = pool.idle.get().map_or(0, |origins| {
            origins
                .borrow()
                .values()
                .map(|origin| origin.idle.len())
                .sum()
        });
        assert_eq!(idle, 0);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        match Http1Pool::new().send(get(&url)).await {
            Err(error) => assert_eq!(error.kind(), ErrorKind::Transport),
            Ok(response) => panic!("answered {}", response.status()),
        }
    }
}
