//! A connection with bytes put back in front of it.

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// A connection whose first bytes were read already and are put back in front: after `101
/// Switching Protocols`, the bytes the upstream sent after its answer; on a connection handed
/// from mesh's own HTTP/1.1 path to hyper, the request read so far.
pub struct Rewind {
    io: TcpStream,
    read_ahead: Bytes,
}

impl Rewind {
    /// `io`, whose next bytes are `read_ahead` (read from it already).
    pub(crate) fn new(io: TcpStream, read_ahead: Bytes) -> Self {
        Self { io, read_ahead }
    }
}

impl AsyncRead for Rewind {
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

impl AsyncWrite for Rewind {
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

impl fmt::Debug for Rewind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewind")
            .field("peer", &self.io.peer_addr().ok())
            .finish_non_exhaustive()
    }
}
