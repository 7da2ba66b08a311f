//! W3C baggage: the `baggage` a request arrives with (`tenant=acme,plan=gold`), current while
//! it is served and sent along with every call and event made for it, so values the edge or
//! the first service sets reach the last consumer.

use std::{future::Future, sync::Arc};

use http::{HeaderName, HeaderValue, Request};
use tokio::task::futures::TaskLocalFuture;

/// The W3C baggage header.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The longest baggage carried on (the W3C limit); a longer one is dropped, not cut.
const MAX_BYTES: usize = 8192;

tokio::task_local! {
    static CURRENT: Option<Baggage>;
}

/// A request's W3C baggage, as it arrived: carried on unchanged.
///
/// ```
/// use mesh_core::observe::Baggage;
///
/// let baggage = Baggage::parse(b"tenant=acme,plan=gold").unwrap();
/// assert_eq!(baggage.as_str(), "tenant=acme,plan=gold");
/// assert!(Baggage::parse(b"tenant=\x01").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baggage(Arc<str>);

impl Baggage {
    /// Reads a `baggage` value: visible ASCII and spaces, at most 8192 bytes; `None`
    /// otherwise (it is then not carried on).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let visible = text
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
        (visible && !text.is_empty() && text.len() <= MAX_BYTES).then(|| Self(text.into()))
    }

    /// The baggage `request` carries.
    pub fn from_request<B>(request: &Request<B>) -> Option<Self> {
        Self::parse(request.headers().get(BAGGAGE)?.as_bytes())
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header value.
    pub fn to_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("checked as visible ASCII")
    }

    /// The baggage of the request or event this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok().flatten()
    }

    /// Runs `future` with `baggage` current.
    pub(crate) fn scope<F: Future>(
        baggage: Option<Self>,
        future: F,
    ) -> TaskLocalFuture<Option<Self>, F> {
        CURRENT.scope(baggage, future)
    }

    /// Runs `f` with `baggage` current.
    pub(crate) fn sync_scope<R>(baggage: Option<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(baggage, f)
    }
}
