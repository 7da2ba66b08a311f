use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::error::BoxError;

/// A request body after the attempt to buffer it for replay.
pub(super) enum Replay<B> {
    /// The whole body, replayable.
    Buffered(Bytes),
    /// Too large (or carrying trailers): what was read, followed by the rest, sent once.
    Streaming(Prefixed<B>),
}

pin_project! {
    /// A body whose first bytes (and possibly trailers) were already read.
    pub(super) struct Prefixed<B> {
        prefix: Option<Bytes>,
        trailers: Option<HeaderMap>,
        #[pin]
        rest: B,
    }
}

/// Reads `body` into memory if it fits in `cap` bytes.
pub(super) async fn buffer<B>(body: B, cap: usize) -> Result<Replay<Pin<Box<B>>>, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut read = BytesMut::new();
    let streaming = |read: BytesMut, trailers, rest| {
        Replay::Streaming(Prefixed {
            prefix: Some(read.freeze()),
            trailers,
            rest,
        })
    };
    if body.size_hint().lower() > cap as u64 {
        return Ok(streaming(read, None, body));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(data) => {
                read.extend_from_slice(&data);
                if read.len() > cap {
                    return Ok(streaming(read, None, body));
                }
            }
            Err(frame) => {
                let trailers = frame.into_trailers().ok();
                return Ok(streaming(read, trailers, body));
            }
        }
    }
    Ok(Replay::Buffered(read.freeze()))
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take().filter(|p| !p.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        this.rest
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.trailers.is_none()
            && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + prefix);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + use<> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn small_bodies_are_buffered_whole() {
        match buffer(chunks(&["ab", "cd"]), 4).await.unwrap() {
            Replay::Buffered(bytes) => assert_eq!(bytes, "abcd"),
            Replay::Streaming(_) => panic!("a body within the cap must be buffered"),
        }
    }

    #[tokio::test]
    async fn large_bodies_stream_through_unchanged() {
        let replay = buffer(chunks(&["ab", "cd", "ef"]), 3).await.unwrap();
        let Replay::Streaming(body) = replay else {
            panic!("a body over the cap must not be buffered");
        };
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn bodies_announcing_a_large_size_are_not_read() {
        let replay = buffer(Full::new(Bytes::from_static(b"0123456789")), 4)
            .await
            .unwrap();
        let Replay::Streaming(body) = replay else {
            panic!("a body known to exceed the cap must not be buffered");
        };
        assert_eq!(body.prefix.as_deref(), Some(&b""[..]));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123456789");
    }
}
