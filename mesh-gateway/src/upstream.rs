//! Connections to a fixed upstream (`uri: http://host:port`): HTTP/1.1 connections of hyper's
//! `client::conn`, kept idle per thread.
//!
//! A request takes an idle connection of the thread it runs on (the most recently used first),
//! or opens one; the connection goes back to that thread's idle list when the response's body
//! has been read to its end. On the gateway's serving threads (one single-threaded runtime
//! each) the request path therefore takes no lock and wakes no other thread: the connection's
//! own task runs beside the request's. A request that a reused connection could not send (the
//! upstream closed it while idle) is sent again on a new connection; a request that was sent is
//! never sent twice. Idle connections close when the upstream closes them (its keep-alive
//! timeout) or when the thread's list is full.

use std::{
    cell::RefCell,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header, uri::Authority};
use http_body::{Body, Frame, SizeHint};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use mesh_core::{
    BoxBody,
    error::{ErrorKind, MeshError},
};
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

/// Idle connections each thread keeps per upstream; more are closed when given back.
const MAX_IDLE_PER_THREAD: usize = 256;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type Sender = http1::SendRequest<BoxBody>;

/// One fixed upstream and its idle connections.
#[derive(Debug)]
pub(crate) struct FixedUpstream {
    authority: Authority,
    host: HeaderValue,
    idle: ThreadLocal<RefCell<Vec<Sender>>>,
}

impl FixedUpstream {
    /// The upstream at `authority` (`host:port`).
    pub(crate) fn new(authority: Authority) -> Arc<Self> {
        let host = HeaderValue::from_str(authority.as_str())
            .expect("an authority is a valid header value");
        Arc::new(Self {
            authority,
            host,
            idle: ThreadLocal::new(),
        })
    }

    /// Sends `request` (its URI in origin form, `/path?query`) with the upstream's `Host`.
    /// The response's body gives its connection back when read to the end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<BoxBody>,
    ) -> Result<Response<UpstreamBody>, MeshError> {
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(self.failed(error));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let keep = response.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                    return Ok(response.map(|body| UpstreamBody {
                        body,
                        checkin: keep.then(|| Checkin {
                            sender,
                            upstream: self.clone(),
                        }),
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: a closed idle connection; the request goes on a new one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(self.failed(error.into_error())),
                },
            }
        }
    }

    /// This thread's most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Gives a connection whose last response has ended back to this thread's idle list.
    fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.get_or_default().borrow_mut();
        if idle.len() < MAX_IDLE_PER_THREAD {
            idle.push(sender);
        }
    }

    /// Opens a connection; its task runs on the current runtime until either side closes it.
    async fn connect(&self) -> Result<Sender, MeshError> {
        let port = self.authority.port_u16().unwrap_or(80);
        let connect = async {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((self.authority.host(), port))
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
                    format!("connecting to {}: {error}", self.authority),
                )
                .with_source(error));
            }
            Err(_) => {
                return Err(MeshError::new(
                    ErrorKind::Transport,
                    format!("connecting to {}: timed out", self.authority),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| self.failed(error))?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(upstream = %authority, %error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn failed(&self, error: hyper::Error) -> MeshError {
        MeshError::new(
            ErrorKind::Transport,
            format!("upstream {}: {error}", self.authority),
        )
        .with_source(error)
    }
}

/// A connection to give back once its response has ended.
struct Checkin {
    sender: Sender,
    upstream: Arc<FixedUpstream>,
}

/// An upstream response's body; read to its end, it gives its connection back for the next
/// request. Dropped before its end, the connection closes (HTTP/1.1 cannot skip the rest).
pub(crate) struct UpstreamBody {
    body: Incoming,
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(Checkin { sender, upstream }) = self.checkin.take() {
            upstream.checkin(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.body.is_end_stream() => self.release(),
            Some(Err(_)) => self.checkin = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
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

    /// An upstream that answers `ok` and counts the connections it accepted.
    async fn upstream(after: After) -> (Arc<FixedUpstream>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
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
        (FixedUpstream::new(authority), accepted)
    }

    fn get() -> Request<BoxBody> {
        Request::get("/")
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    async fn body(response: Response<UpstreamBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_serves_request_after_request() {
        let (upstream, accepted) = upstream(After::KeepAlive).await;
        for _ in 0..5 {
            let response = upstream.send(get()).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_without_an_error() {
        let (upstream, accepted) = upstream(After::Close).await;
        for _ in 0..5 {
            let response = upstream.send(get()).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_give_its_connection_back() {
        let (stalling, accepted) = upstream(After::Stall).await;
        let mut response = stalling.send(get()).await.unwrap();
        let first = response.body_mut().frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ok");
        drop(response);
        // The next request cannot wait behind the rest of the first body: a new connection.
        let response = stalling.send(get()).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(response);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        match FixedUpstream::new(authority).send(get()).await {
            Err(error) => assert_eq!(error.kind(), ErrorKind::Transport),
            Ok(response) => panic!("answered {}", response.status()),
        }
    }
}
