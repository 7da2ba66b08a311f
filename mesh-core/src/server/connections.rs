//! The server's connections: accepted here, served by mesh's own HTTP/1.1 path for the common
//! request and by hyper for everything else.
//!
//! Most requests a service or the gateway gets are plain HTTP/1.1 keep-alive requests with no
//! body or a small one. Those are read here: the head is parsed with `httparse` into an
//! uninitialised field array and its header values are slices of the bytes read; the answer's
//! head is encoded into one reused buffer and written with its body's first bytes. No
//! dispatcher, no per-connection task besides the connection's own, no shutdown watcher polled
//! per request.
//!
//! Anything else goes to hyper on the same connection, starting with the request at hand (its
//! bytes are handed over unread): HTTP/2 (prior knowledge), HTTP/1.0, an upgrade or
//! `CONNECT`, `Expect`, a chunked body or one larger than 64 KiB, a head with more than 64
//! fields or larger than the server's head limit
//! (`server.max_head_bytes`, which hyper is held to as well), and a head that does not parse.
//! hyper answers those as it always has (`400`, `431` for a head over the limit, upgrades,
//! streaming bodies).
//! TLS connections are hyper's from the end of their handshake (HTTP/2 or HTTP/1.1 by ALPN).

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo, response::IntoResponse};
use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version, header};
use http_body::Body as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tower::{Service, ServiceExt};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::{
    layers::stack::App,
    relay::{Relayed, Relaying},
    tls,
};
use crate::context::Tls;
use crate::http1::{
    Limits, RawAnswer, Rewind,
    encode::{encode_answer_head, end_head, framing_field, status_line, write_framed_body},
    fields::field_tokens,
    framing::answer_framing,
    request::{Buffered, Parsed, build_request, scan_request},
};

/// The smallest head limit hyper takes.
const MIN_HEAD_BYTES: usize = 8 * 1024;
/// Room the read buffer keeps for the next read.
const READ_CHUNK: usize = 8 * 1024;

/// Accepts connections on `listener` and serves `app` on each until `drained` completes; then
/// stops accepting, lets every connection finish the request it is serving, and returns once
/// they have all closed.
///
/// A connection on which no request has come in whole for `idle_timeout` (idle between
/// requests, or sending its head or body too slowly) is closed, within twice that time; an
/// HTTP/2 one on which no request began is shut down gracefully; a request being handled or
/// answered is not held to it.
pub(crate) async fn serve(
    listener: TcpListener,
    served: Served,
    idle_timeout: Duration,
    tls: Option<Arc<ServerConfig>>,
    drained: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = tls.map(TlsAcceptor::from);
    let (drain, draining) = watch::channel(false);
    let mut drained = std::pin::pin!(drained);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut drained => break,
        };
        // Answers go out whole; nothing is gained by holding a small one back.
        let _ = stream.set_nodelay(true);
        let (served, draining) = (served.clone(), draining.clone());
        match &tls {
            None => {
                let idle = Idle::new(idle_timeout);
                tokio::spawn(connection(stream, peer, served, idle, draining));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Some(stream) = tls::handshake(acceptor, stream, peer).await {
                        let io = TokioIo::new(stream);
                        let idle = Idle::new(idle_timeout);
                        let limits = served.limits;
                        hyper_serves(io, peer, true, served.app, limits, idle, draining).await;
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = drain.send(true);
    // Every connection holds a receiver: they have all ended when none is left.
    drop(draining);
    drain.closed().await;
    Ok(())
}

/// After a failed `accept`: a connection the peer reset before it was taken is no reason to
/// pause; running out of file descriptors (or memory) is, for a moment, as hyper's and axum's
/// accept loops do.
async fn accept_failed(error: io::Error) {
    if !matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        tracing::warn!(%error, "accepting a connection");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a server serves: the application in the server layers, and the relay offered each
/// request read here before it, if any.
#[derive(Clone)]
pub(crate) struct Served {
    pub(crate) app: App,
    pub(crate) relay: Option<Arc<Relaying>>,
    /// How large a request may be, here and in hyper (the body limit is the layers' and the
    /// relay's to apply).
    pub(crate) limits: Limits,
}

/// One connection: requests read here while they are plain, then hyper for the rest.
async fn connection(
    mut io: TcpStream,
    peer: SocketAddr,
    served: Served,
    idle: Idle,
    mut draining: watch::Receiver<bool>,
) {
    let Served {
        mut app,
        relay,
        limits,
    } = served;
    let max_head_bytes = limits.head_bytes.max(MIN_HEAD_BYTES);
    let mut read = BytesMut::with_capacity(READ_CHUNK);
    let mut write = Vec::new();
    let mut spans = Vec::new();
    let mut idle = std::pin::pin!(idle);
    loop {
        let scanned = loop {
            if !read.is_empty() {
                match scan_request(&read, &mut spans, max_head_bytes) {
                    Parsed::Request(scanned) => break Some(scanned),
                    // A body is waited for only when small (the head is bounded too).
                    Parsed::AwaitingBody => {}
                    Parsed::Incomplete if read.len() < max_head_bytes => {}
                    Parsed::Incomplete | Parsed::Elsewhere => break None,
                    Parsed::Refused => {
                        let refusal = crate::error::MeshError::new(
                            crate::error::ErrorKind::BadRequest,
                            "the request head has a line ended by a bare LF",
                        );
                        let refusal = refusal.into_response();
                        let _ = write_response(&mut io, &mut write, refusal, false, true).await;
                        let _ = io.shutdown().await;
                        return;
                    }
                }
            }
            if read.capacity() - read.len() < READ_CHUNK / 4 {
                read.reserve(READ_CHUNK);
            }
            let filled = tokio::select! {
                biased;
                filled = io.read_buf(&mut read) => filled,
                // Between requests, a drain closes the connection.
                _ = draining.wait_for(|drain| *drain), if read.is_empty() => return,
                expired = idle.as_mut().expired() => {
                    if expired {
                        return;
                    }
                    continue;
                }
            };
            match filled {
                // Closed, or closed within a head: nothing to answer.
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let relayed = match (&scanned, &relay) {
            (Some(scanned), Some(relay)) => scanned
                .raw(&read, &spans, peer)
                .and_then(|request| relay.offer(&request)),
            _ => None,
        };
        let (close, written) = match (scanned, relayed) {
            (Some(scanned), Some(relayed)) => {
                read.advance(scanned.length());
                let head = scanned.method == Method::HEAD;
                let answer = relayed.await;
                let close = !scanned.keep_alive || *draining.borrow();
                let (close, written) = match answer {
                    Relayed::Raw(answer) => (
                        close,
                        write_raw_answer(&mut io, &mut write, answer, head, close).await,
                    ),
                    Relayed::Typed(response) => {
                        let close = close || asks_to_close(response.headers());
                        let written =
                            write_response(&mut io, &mut write, response, head, close).await;
                        (close, written)
                    }
                };
                idle.as_mut().served();
                (close, written)
            }
            (scanned, _) => {
                let Some(Buffered {
                    mut request,
                    keep_alive,
                }) = scanned.and_then(|scanned| build_request(&mut read, &spans, scanned))
                else {
                    // hyper takes the connection, the bytes already read first, and the idle
                    // timer with its count.
                    let io = TokioIo::new(Rewind::new(io, read.freeze()));
                    let idle = idle.as_mut().take_over();
                    return hyper_serves(io, peer, false, app, limits, idle, draining).await;
                };
                let head = request.method() == Method::HEAD;
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = match app.ready().await {
                    Ok(ready) => ready.call(request).await,
                    Err(never) => match never {},
                };
                let response = response.unwrap_or_else(|never: Infallible| match never {});
                let close = !keep_alive || *draining.borrow() || asks_to_close(response.headers());
                let written = write_response(&mut io, &mut write, response, head, close).await;
                idle.as_mut().served();
                (close, written)
            }
        };
        if close || written.is_err() {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// Serves the rest of the connection with hyper (HTTP/1 or HTTP/2, upgrades included). A
/// connection on which no request has begun for the idle timeout is shut down gracefully:
/// HTTP/2 says `GOAWAY` and lets its open streams finish, HTTP/1 finishes the request it is
/// serving.
async fn hyper_serves<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    app: App,
    limits: Limits,
    idle: Idle,
    mut draining: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let idle_timeout = idle.timeout;
    let served = idle.served.clone();
    let app = app.map_request(move |request: Request<hyper::body::Incoming>| {
        served.fetch_add(1, Ordering::Relaxed);
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        if tls {
            request.extensions_mut().insert(Tls);
        }
        request
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/2 WebSockets need the extended CONNECT protocol. A peer is pinged once per idle
    // period and dropped when it does not answer within another: one that stopped reading
    // would otherwise hold its connection and its open streams for ever.
    let max_head_bytes = limits.head_bytes.max(MIN_HEAD_BYTES);
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_head_bytes).unwrap_or(u32::MAX))
        .enable_connect_protocol()
        .timer(TokioTimer::new())
        .keep_alive_interval(idle_timeout)
        .keep_alive_timeout(idle_timeout);
    // The same bound on a slow or silent client, as hyper has it: each head within the time.
    // A head over the limit is answered `431`: hyper's read buffer holds no more.
    builder
        .http1()
        .max_buf_size(max_head_bytes)
        .max_headers(limits.fields)
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let app = HostRequired(app);
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let mut idle = std::pin::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::trace!(%error, "connection ended");
                }
                return;
            }
            _ = draining.wait_for(|drain| *drain), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            expired = idle.as_mut().expired(), if !closing => {
                if expired {
                    tracing::trace!(%peer, "idle connection shut down");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Refuses an HTTP/1.1 request without exactly one `Host` field with `400` (RFC 9112 §3.2),
/// closing its connection, before the service sees it: two servers that picked different
/// `Host`s would route one request two ways.
#[derive(Clone)]
struct HostRequired<S>(S);

impl<S, B> Service<Request<B>> for HostRequired<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response<Body>, Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let hosts = request.headers().get_all(header::HOST).iter().count();
        if request.version() == Version::HTTP_11 && hosts != 1 {
            let mut refusal = crate::error::MeshError::new(
                crate::error::ErrorKind::BadRequest,
                "an HTTP/1.1 request needs exactly one Host field",
            )
            .into_response();
            refusal
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return futures_util::future::Either::Left(std::future::ready(Ok(refusal)));
        }
        futures_util::future::Either::Right(self.0.call(request))
    }
}

pin_project_lite::pin_project! {
    /// A connection's idle timer. Requests are counted, not timed: when the timer fires, a
    /// connection that served a request since the last firing (answered one here, began one
    /// under hyper) gets another period, and one that did not is idle. A request costs an
    /// increment, not a clock read or a timer reset.
    struct Idle {
        #[pin]
        timer: tokio::time::Sleep,
        timeout: Duration,
        // Shared with the service hyper calls, which counts the requests it begins.
        served: Arc<AtomicU64>,
        seen: u64,
    }
}

impl Idle {
    fn new(timeout: Duration) -> Self {
        Self {
            timer: tokio::time::sleep(timeout),
            timeout,
            served: Arc::default(),
            seen: 0,
        }
    }

    /// Notes a request answered.
    fn served(self: std::pin::Pin<&mut Self>) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// The timer as it stands, for hyper to go on with when it takes the connection over.
    fn take_over(self: std::pin::Pin<&mut Self>) -> Self {
        let this = self.project();
        Self {
            timer: tokio::time::sleep_until(this.timer.deadline()),
            timeout: *this.timeout,
            served: this.served.clone(),
            seen: *this.seen,
        }
    }

    /// Completes when the timer fires: `true` when no request was served since the last
    /// firing (the connection is idle), `false` when one was (the timer is armed again).
    async fn expired(mut self: std::pin::Pin<&mut Self>) -> bool {
        self.as_mut().project().timer.await;
        let this = self.project();
        let served = this.served.load(Ordering::Relaxed);
        if served == *this.seen {
            return true;
        }
        *this.seen = served;
        this.timer
            .reset(tokio::time::Instant::now() + *this.timeout);
        false
    }
}

/// Whether the service's answer asks for the connection to close after it.
fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        field_tokens(value.as_bytes()).any(|token| token.eq_ignore_ascii_case(b"close"))
    })
}

/// Writes `response`; an error leaves the connection unusable.
async fn write_response(
    io: &mut TcpStream,
    write: &mut Vec<u8>,
    response: Response<Body>,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let framing = answer_framing(parts.status, head_request, &body);
    write.clear();
    encode_answer_head(write, &parts, framing, close, body.size_hint().exact());
    write_framed_body(io, write, &mut body, framing).await
}

/// Writes a relayed answer: its status, its fields, then the framing its body has, `Date`
/// unless it has one and `Connection: close` when `close`; an error leaves the connection
/// unusable.
async fn write_raw_answer(
    io: &mut TcpStream,
    write: &mut Vec<u8>,
    answer: RawAnswer,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let RawAnswer {
        status,
        fields,
        dated,
        mut body,
        ..
    } = answer;
    let framing = answer_framing(status, head_request, &body);
    write.clear();
    status_line(write, status);
    write.extend_from_slice(&fields);
    framing_field(write, framing);
    end_head(write, dated, close);
    write_framed_body(io, write, &mut body, framing).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{Router, routing::get};
    use bytes::Bytes;
    use tokio::{sync::Notify, task::JoinHandle};
    use tower::util::BoxCloneSyncService;

    use http::StatusCode;

    use super::*;
    use crate::http1::{
        RawRequest,
        request::{MAX_BUFFERED_BODY, MAX_HEADERS},
    };

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        served: JoinHandle<io::Result<()>>,
        /// Told when a `/held` request is in its handler.
        entered: Arc<Notify>,
        /// Releases the answer of `/held`.
        release: Arc<Notify>,
    }

    /// Serves a few routes: `/hello`, `/echo` (the body back), `/stream` (chunks of unknown
    /// total size), `/held` (answers once released).
    async fn server() -> Server {
        server_idle_after(Duration::from_secs(60)).await
    }

    async fn server_idle_after(idle_timeout: Duration) -> Server {
        serve_with(idle_timeout, None).await
    }

    async fn serve_with(idle_timeout: Duration, relay: Option<Arc<Relaying>>) -> Server {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (enter, held) = (entered.clone(), release.clone());
        let router = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/echo",
                axum::routing::post(|body: Bytes| async move { body }),
            )
            .route(
                "/stream",
                get(|| async {
                    let chunks =
                        ["one ", "two"].map(|chunk| Ok::<_, Infallible>(Bytes::from(chunk)));
                    Body::from_stream(futures_util::stream::iter(chunks))
                }),
            )
            .route(
                "/held",
                get(move || async move {
                    enter.notify_one();
                    held.notified().await;
                    "released"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            Served {
                app: BoxCloneSyncService::new(router),
                relay,
                limits: Limits::REQUEST,
            },
            idle_timeout,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            served,
            entered,
            release,
        }
    }

    /// Writes `requests` on one connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, requests: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(requests).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    /// The answers in `text`, each as its head's lines (without `date`) and its body.
    fn answers(text: &str) -> Vec<(Vec<&str>, &str)> {
        let mut rest = text;
        let mut answers = Vec::new();
        while let Some((head, after)) = rest.split_once("\r\n\r\n") {
            let lines: Vec<&str> = head
                .split("\r\n")
                .filter(|line| !line.starts_with("date: "))
                .collect();
            let length = lines
                .iter()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |length| length.parse().unwrap());
            answers.push((lines, &after[..length]));
            rest = &after[length..];
        }
        answers
    }

    #[tokio::test]
    async fn requests_on_one_connection_are_answered_in_order() {
        let server = server().await;
        let text = exchange(
            server.addr,
            b"GET /hello HTTP/1.1\r\nhost: a\r\n\r\n\
              POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nworld\
              GET /missing HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(text.contains("\r\ndate: "), "{text}");
        let answers = answers(&text);
        assert_eq!(answers.len(), 3, "{text}");
        assert_eq!(answers[0].0[0], "HTTP/1.1 200 OK");
        assert!(answers[0].0.contains(&"content-length: 5"));
        assert_eq!(answers[0].1, "hello");
        assert_eq!(answers[1].1, "world");
        assert_eq!(answers[2].0[0], "HTTP/1.1 404 Not Found");
        assert!(answers[2].0.contains(&"connection: close"));
    }

    #[tokio::test]
    async fn a_body_that_arrives_after_its_head_is_waited_for() {
        let server = server().await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 11\r\n\r\nhello")
            .await
            .unwrap();
        tokio::task::yield_now().await;
        stream.write_all(b" again").await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answers(&answer)[0].1, "hello again");
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_is_chunked_and_a_head_answer_has_none() {
        let server = server().await;
        let text = exchange(
            server.addr,
            b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n\
              HEAD /hello HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        let (chunked, head) = text.split_once("0\r\n\r\n").unwrap();
        assert!(chunked.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            chunked.ends_with("\r\n\r\n4\r\none \r\n3\r\ntwo\r\n"),
            "{text}"
        );
        // The length a GET would get, and nothing after the head.
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    /// A head of `length` bytes, whose fields hyper or mesh's own path reads (`many`: more
    /// fields than the own path reads).
    fn head_of(length: usize, many: bool) -> String {
        let start = "GET /hello HTTP/1.1\r\nhost: a\r\nconnection: close\r\n";
        let fields: String = if many {
            (0..MAX_HEADERS + 1)
                .map(|i| format!("x-f{i:03}: 0\r\n"))
                .collect()
        } else {
            String::new()
        };
        let filler = length - start.len() - fields.len() - "x-long: \r\n\r\n".len();
        let head = format!("{start}{fields}x-long: {}\r\n\r\n", "a".repeat(filler));
        assert_eq!(head.len(), length);
        head
    }

    #[tokio::test]
    async fn heads_over_the_limit_get_431_on_either_path() {
        let server = server().await;
        for many in [false, true] {
            let within = head_of(Limits::REQUEST.head_bytes - 1024, many);
            let within = exchange(server.addr, within.as_bytes()).await;
            assert!(
                within.starts_with("HTTP/1.1 200 OK\r\n"),
                "{many}: {within}"
            );
            let over = head_of(Limits::REQUEST.head_bytes + 1024, many);
            let over = exchange(server.addr, over.as_bytes()).await;
            assert!(
                over.starts_with("HTTP/1.1 431 "),
                "{many}: {}",
                &over[..over.len().min(200)]
            );
        }
    }

    #[tokio::test]
    async fn a_request_with_more_fields_than_the_limit_gets_431() {
        let server = server().await;
        let head = |count: usize| {
            let fields: String = (0..count).map(|i| format!("x-f{i:03}: 0\r\n")).collect();
            format!("GET /hello HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{fields}\r\n")
        };
        // `host` and `connection` count: the limit's worth of fields in all is served.
        let within = exchange(server.addr, head(Limits::REQUEST.fields - 2).as_bytes()).await;
        assert!(within.starts_with("HTTP/1.1 200 OK\r\n"), "{within}");
        let over = exchange(server.addr, head(Limits::REQUEST.fields).as_bytes()).await;
        assert!(over.starts_with("HTTP/1.1 431 "), "{over}");
    }

    #[tokio::test]
    async fn what_is_not_read_here_is_served_by_hyper() {
        let server = server().await;
        // A chunked body, HTTP/1.0, a head with more fields than are read here, a body over
        // the bound.
        let chunked = exchange(
            server.addr,
            b"POST /echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(chunked.ends_with("hello"), "{chunked}");
        let old = exchange(server.addr, b"GET /hello HTTP/1.0\r\n\r\n").await;
        assert!(
            old.starts_with("HTTP/1.0 200 OK\r\n") && old.ends_with("hello"),
            "{old}"
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x-field-{i}: {i}\r\n"))
            .collect();
        let many = format!("GET /hello HTTP/1.1\r\nhost: a\r\n{many}connection: close\r\n\r\n");
        let many = exchange(server.addr, many.as_bytes()).await;
        assert!(
            many.starts_with("HTTP/1.1 200 OK\r\n") && many.ends_with("hello"),
            "{many}"
        );
        let large = "b".repeat(MAX_BUFFERED_BODY + 1);
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{large}",
            large.len()
        );
        let echoed = exchange(server.addr, request.as_bytes()).await;
        assert!(echoed.ends_with(&large), "{}", &echoed[..200]);
    }

    /// Takes the requests under `/relay`, noting every request offered (method, target, and
    /// the trace ID it was offered in): `/relay/raw` is answered as relayed bytes, the rest
    /// with a response carrying the body.
    #[derive(Default)]
    struct Noting {
        offered: std::sync::Mutex<Vec<String>>,
    }

    impl crate::server::Relay for Arc<Noting> {
        fn relay(&self, request: &RawRequest<'_>) -> Option<crate::server::RelayFuture> {
            let trace = crate::observe::TraceContext::current().map(|c| c.trace_id());
            self.offered.lock().unwrap().push(format!(
                "{} {} {}",
                request.method(),
                request.target(),
                trace.unwrap_or_default()
            ));
            if !request.path().starts_with("/relay") {
                return None;
            }
            let answer = if request.path() == "/relay/raw" {
                let fields = format!(
                    "x-relayed: {}\r\n",
                    request.value("x-mark").map_or(0, <[u8]>::len)
                );
                Relayed::Raw(RawAnswer {
                    status: StatusCode::NON_AUTHORITATIVE_INFORMATION,
                    fields: fields.into_bytes(),
                    dated: false,
                    body: crate::http1::AnswerBody::empty(),
                    route: Some("relayed".into()),
                })
            } else {
                Relayed::Typed(Response::new(Body::from(request.body().to_vec())))
            };
            Some(Box::pin(std::future::ready(answer)))
        }
    }

    #[tokio::test]
    async fn a_relay_answers_what_it_takes_and_the_service_the_rest() {
        let noting = Arc::new(Noting::default());
        let relaying = Relaying {
            relay: Arc::new(noting.clone()),
            series: Arc::new(crate::observe::ServerSeries::new("relayed".into())),
            body_limit: 16,
            relayed: metrics::Counter::noop(),
        };
        let server = serve_with(Duration::from_secs(60), Some(Arc::new(relaying))).await;
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let requests = format!(
            "GET /relay/raw?q=1 HTTP/1.1\r\nhost: a\r\nx-mark: abc\r\ntraceparent: {trace}\r\n\r\n\
             POST /relay/typed HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
             GET /hello HTTP/1.1\r\nhost: a\r\n\r\n\
             GET /health HTTP/1.1\r\nhost: a\r\n\r\n\
             GET /relay/typed HTTP/1.1\r\nhost: a\r\nmesh-timeout: 1S\r\n\r\n\
             POST /relay/typed HTTP/1.1\r\nhost: a\r\ncontent-length: 17\r\n\r\nseventeen bytes!!\
             HEAD /relay/raw HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        );
        let text = exchange(server.addr, requests.as_bytes()).await;
        let answers = answers(&text);
        assert_eq!(answers.len(), 7, "{text}");
        assert_eq!(
            answers[0].0,
            [
                "HTTP/1.1 203 Non Authoritative Information",
                "x-relayed: 3",
                "content-length: 0"
            ]
        );
        assert_eq!(
            (answers[1].0[0], answers[1].1),
            ("HTTP/1.1 200 OK", "hello")
        );
        assert_eq!(
            (answers[2].0[0], answers[2].1),
            ("HTTP/1.1 200 OK", "hello")
        );
        // Not offered: the runtime's endpoints, a deadline, a body over the limit. The test's
        // router has none of those routes.
        for answer in &answers[3..6] {
            assert_eq!(answer.0[0], "HTTP/1.1 404 Not Found", "{text}");
        }
        assert_eq!(
            answers[6].0,
            [
                "HTTP/1.1 203 Non Authoritative Information",
                "x-relayed: 0",
                "connection: close"
            ],
            "no body, no framing for HEAD; the close is the server's"
        );
        let offered = noting.offered.lock().unwrap().clone();
        assert_eq!(offered.len(), 4, "{offered:?}");
        assert_eq!(
            offered[0],
            "GET /relay/raw?q=1 4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(offered[1].starts_with("POST /relay/typed "));
        assert!(offered[2].starts_with("GET /hello "));
        assert!(offered[3].starts_with("HEAD /relay/raw "));
        // A request without a trace context is offered in a new trace.
        assert_eq!(offered[2].len(), "GET /hello ".len() + 32, "{offered:?}");
    }

    #[tokio::test]
    async fn a_malformed_or_huge_head_gets_hyper_s_answer() {
        let server = server().await;
        let malformed = exchange(server.addr, b"GET /hello HTTP/1.1\r\nbad header\r\n\r\n").await;
        assert!(malformed.starts_with("HTTP/1.1 400 "), "{malformed}");
        let fields: String = (0..200).map(|n| format!("x-field-{n}: {n}\r\n")).collect();
        let many = format!("GET /hello HTTP/1.1\r\nhost: a\r\n{fields}\r\n");
        let many = exchange(server.addr, many.as_bytes()).await;
        assert!(many.starts_with("HTTP/1.1 431 "), "{many}");
        // A length that is not plain digits is not guessed at: hyper refuses it.
        for length in ["+5", "5 5", "5, 6"] {
            let request =
                format!("POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: {length}\r\n\r\nhello");
            let answer = exchange(server.addr, request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{length}: {answer}");
        }
    }

    #[tokio::test]
    async fn a_drain_closes_idle_connections_and_lets_answers_finish() {
        let mut server = server().await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /hello HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0; 1024];
        let read = idle.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..read]).ends_with("hello"));
        let mut busy = TcpStream::connect(server.addr).await.unwrap();
        busy.write_all(b"GET /held HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        // The held request is in the handler before the drain starts.
        server.entered.notified().await;
        server.stop.take().unwrap().send(()).unwrap();
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "the idle connection is closed without an answer"
        );
        assert!(
            !server.served.is_finished(),
            "an answer is still on its way"
        );
        server.release.notify_one();
        let mut answer = String::new();
        busy.read_to_string(&mut answer).await.unwrap();
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("released"), "{answer}");
        server.served.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_whole_request_for_the_idle_timeout_is_closed() {
        let idle = Duration::from_secs(10);
        let server = server_idle_after(idle).await;
        // Served once, then silent.
        let mut quiet = TcpStream::connect(server.addr).await.unwrap();
        quiet
            .write_all(b"GET /hello HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0; 1024];
        let read = quiet.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..read]).ends_with("hello"));
        let answered = tokio::time::Instant::now();
        // A head that never ends.
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /hello HTTP/1.1\r\nhost:")
            .await
            .unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(3 * idle, quiet.read_to_end(&mut rest))
            .await
            .expect("the quiet connection is closed")
            .unwrap();
        assert!(rest.is_empty());
        let waited = answered.elapsed();
        assert!(
            waited >= idle && waited <= 2 * idle,
            "closed after {waited:?}"
        );
        tokio::time::timeout(3 * idle, slow.read_to_end(&mut rest))
            .await
            .expect("the slow connection is closed")
            .unwrap();
        assert!(rest.is_empty(), "no answer to half a head");
        assert!(answered.elapsed() <= 2 * idle);
    }

    /// HTTP/2 (here prior knowledge on plain TCP; TLS connections are served the same way):
    /// open while requests keep coming, shut down once none has for the idle timeout.
    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_without_a_request_for_the_idle_timeout_is_shut_down() {
        let idle = Duration::from_secs(10);
        let server = server_idle_after(idle).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        // Small frames go out at once: the kernel's own delays do not wait on the paused clock.
        stream.set_nodelay(true).unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let get = || {
            Request::get("http://a/hello")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap()
        };
        // A request every 6 s for a minute: never a whole period without one.
        for _ in 0..10 {
            sender.ready().await.unwrap();
            let response = sender.send_request(get()).await.unwrap();
            assert_eq!(response.version(), Version::HTTP_2);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
            assert_eq!(body.to_bytes(), "hello");
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        assert!(!connection.is_finished(), "a busy connection stays open");
        let quiet_since = tokio::time::Instant::now();
        tokio::time::timeout(3 * idle, connection)
            .await
            .expect("the idle connection is shut down")
            .unwrap()
            .unwrap();
        let waited = quiet_since.elapsed();
        assert!(waited <= 2 * idle, "shut down after {waited:?}");
        assert!(sender.send_request(get()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_peer_that_stops_answering_is_dropped_even_with_a_stream_open() {
        let idle = Duration::from_secs(10);
        let server = server_idle_after(idle).await;
        let mut peer = TcpStream::connect(server.addr).await.unwrap();
        peer.set_nodelay(true).unwrap();
        // The preface, empty settings, and `GET /held` on stream 1 (HPACK: `:method GET`,
        // `:scheme http`, `:path /held`, `:authority a`); then nothing, not even a ping's ACK.
        let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let headers = [
            0x82, 0x86, 0x44, 5, b'/', b'h', b'e', b'l', b'd', 0x41, 1, b'a',
        ];
        frames.extend_from_slice(&[0, 0, headers.len() as u8, 1, 0x05, 0, 0, 0, 1]);
        frames.extend_from_slice(&headers);
        peer.write_all(&frames).await.unwrap();
        server.entered.notified().await;
        // The held stream keeps the connection from being idle; the unanswered pings end it.
        let mut read = Vec::new();
        let closed = tokio::time::timeout(6 * idle, peer.read_to_end(&mut read)).await;
        assert!(closed.is_ok(), "the silent peer's connection is closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_keeps_sending_requests_stays_open() {
        let idle = Duration::from_secs(10);
        let server = server_idle_after(idle).await;
        let mut busy = TcpStream::connect(server.addr).await.unwrap();
        let mut answer = [0; 1024];
        // A request every 6 s for a minute: never a whole period without one.
        for _ in 0..10 {
            busy.write_all(b"GET /hello HTTP/1.1\r\nhost: a\r\n\r\n")
                .await
                .unwrap();
            let read = busy.read(&mut answer).await.unwrap();
            assert!(String::from_utf8_lossy(&answer[..read]).ends_with("hello"));
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
}
