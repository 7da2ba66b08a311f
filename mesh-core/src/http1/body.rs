//! Reading an answer's body off its connection, and giving the connection back once it is
//! read to its end.

use std::{
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use super::{conn::Conn, framing::Framing};
use crate::error::BoxError;

/// The most bytes a chunk's size line or one trailer line may take.
const MAX_LINE_BYTES: usize = 4 * 1024;

/// Where connections go back once an answer read off them has ended: a pool.
pub(crate) trait Recycle: Send + Sync {
    /// Takes back `conn`, whose last answer was read whole, under `key` (its origin).
    fn recycle(&self, key: &str, conn: Conn);
}

/// Reading an answer's body off its connection.
pub(crate) struct BodyReader {
    conn: Conn,
    state: BodyState,
}

/// Where the reader is in an answer's body (RFC 9112 §6.3 for the framing, §7.1 for chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// A `Content-Length` body with this many bytes still to come; `Done` at zero.
    Length(u64),
    /// A body that ends when the connection does (an answer with neither length nor chunks).
    UntilClose,
    /// Before a chunk-size line (`1a;ext=v\r\n`): to `ChunkData`, or `Trailers` for the
    /// last chunk (size 0).
    ChunkSize,
    /// Inside a chunk with this many bytes still to come; `ChunkEnd` at zero.
    ChunkData(u64),
    /// The CRLF that closes a chunk's data: back to `ChunkSize`. Anything else is malformed.
    ChunkEnd,
    /// Trailer lines after the last chunk, read past up to the empty line: then `Done`.
    Trailers,
    /// The body has ended; the connection may carry the next answer.
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
                    // A length body ends with its last byte; a chunk's data is followed by
                    // its CRLF.
                    self.state = match self.state {
                        BodyState::Length(_) if left == 0 => BodyState::Done,
                        BodyState::Length(_) => BodyState::Length(left),
                        _ if left == 0 => BodyState::ChunkEnd,
                        _ => BodyState::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                // Everything read belongs to the body; only the connection's end ends it.
                BodyState::UntilClose if !read.is_empty() => {
                    return Poll::Ready(Some(Ok(read.split().freeze())));
                }
                // A size line (extensions ignored): a size of 0 is the last chunk, followed by
                // trailers. An over-long or unparsable line (a size that overflows u64 too)
                // is refused rather than waited on.
                BodyState::ChunkSize if !read.is_empty() => {
                    match httparse::parse_chunk_size(read) {
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
                    }
                }
                // The data must be followed by exactly CRLF, or the chunk's size lied.
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
            // The state needs more bytes than are buffered: read more. The connection's end
            // ends an until-close body and cuts short any other.
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

/// An answer's body read off its connection; read to its end, it gives the connection back
/// (to its pool) for the next request. Dropped before its end, the connection closes
/// (HTTP/1.1 cannot skip the rest).
pub struct AnswerBody {
    /// Gone once released or failed; `None` from the start for an empty body.
    reader: Option<BodyReader>,
    recycle: Option<(Arc<str>, Arc<dyn Recycle>)>,
}

impl AnswerBody {
    /// A body with nothing to read.
    pub(crate) fn empty() -> Self {
        Self {
            reader: None,
            recycle: None,
        }
    }

    /// The body of an answer framed as `framing`, read off `conn`, which goes back to
    /// `recycle` under `key` once the body is read to its end (when given: a connection that
    /// may carry another request).
    pub(crate) fn new(
        conn: Conn,
        framing: Framing,
        recycle: Option<(Arc<str>, Arc<dyn Recycle>)>,
    ) -> Self {
        Self {
            reader: Some(BodyReader::new(conn, framing)),
            recycle,
        }
    }

    /// Whether its connection goes back to a pool.
    pub(crate) fn is_pooled(&self) -> bool {
        self.recycle.is_some()
    }

    /// Gives the connection back if the body has been read to its end.
    fn release(&mut self) {
        if self.reader.as_ref().is_some_and(BodyReader::is_done)
            && let (Some(reader), Some((key, pool))) = (self.reader.take(), self.recycle.take())
        {
            pool.recycle(&key, reader.into_conn());
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(reader) = &mut self.reader else {
            return Poll::Ready(None);
        };
        match ready!(reader.poll_data(cx)) {
            Some(Ok(data)) => {
                self.release();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => {
                self.release();
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                // A broken body leaves its connection unusable: it closes.
                self.reader = None;
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.as_ref().is_none_or(BodyReader::is_done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.as_ref().map_or(Some(0), BodyReader::remaining) {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerBody")
            .field("pooled", &self.is_pooled())
            .finish_non_exhaustive()
    }
}
