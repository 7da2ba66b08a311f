//! W3C trace context: the `traceparent` that ties a request's hops into one trace.

use std::{fmt, future::Future};

use http::{HeaderName, HeaderValue, Request};
use tokio::task::futures::TaskLocalFuture;

/// The W3C trace-context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context: which trace a hop belongs to and which span is its parent.
///
/// ```
/// use mesh_core::observe::TraceContext;
///
/// let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.span_id(), parent.span_id());
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: 0x01,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }

    /// Reads a `traceparent` value; `None` when malformed (the hop then starts a new trace).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four parts; later versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
            return None;
        }
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !(lower_hex(version) && lower_hex(trace_id) && lower_hex(span_id) && lower_hex(flags)) {
            return None;
        }
        let context = Self {
            trace_id: u128::from_str_radix(trace_id, 16).ok()?,
            span_id: u64::from_str_radix(span_id, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (context.trace_id != 0 && context.span_id != 0).then_some(context)
    }

    /// The context a request carries in its `traceparent` header.
    pub fn from_request<B>(request: &Request<B>) -> Option<Self> {
        request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// The trace ID, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        let mut digits = [0; 32];
        hex(&mut digits, self.trace_id);
        ascii(&digits)
    }

    /// The span ID, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        let mut digits = [0; 16];
        hex(&mut digits, u128::from(self.span_id));
        ascii(&digits)
    }

    /// Whether the trace is sampled.
    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The same context, sampled or not as a sampler decided.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn with_sampled(self, sampled: bool) -> Self {
        Self {
            flags: (self.flags & !0x01) | u8::from(sampled),
            ..self
        }
    }

    /// The trace ID, span ID and flags as numbers.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn raw(&self) -> (u128, u64, u8) {
        (self.trace_id, self.span_id, self.flags)
    }

    /// The `traceparent` header value.
    pub fn to_header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.to_header_bytes())
            .expect("hex digits and dashes are a valid header")
    }

    /// The `traceparent` header value as bytes, for a head written as bytes.
    pub fn to_header_bytes(&self) -> [u8; 55] {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex(&mut buf[3..35], self.trace_id);
        hex(&mut buf[36..52], u128::from(self.span_id));
        hex(&mut buf[53..55], u128::from(self.flags));
        buf
    }

    /// The context of the request this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|context| *context).ok()
    }

    /// Runs `f` with this context as the task's current one.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// Runs `future` with this context as the task's current one.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Self, F> {
        CURRENT.scope(self, future)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The hex digits `hex` wrote, as a string.
fn ascii(digits: &[u8]) -> String {
    String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
}

/// Writes the low `out.len()` hex digits of `value` into `out`, lowercase, zero-padded.
fn hex(out: &mut [u8], value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(out.len().is_multiple_of(2) && out.len() <= 32);
    // Two digits per byte, from the value's last `out.len() / 2` bytes: no 128-bit shifts.
    let bytes = value.to_be_bytes();
    let bytes = &bytes[bytes.len() - out.len() / 2..];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_header() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(value).unwrap();
        assert_eq!(context.to_string(), value);
        assert_eq!(context.to_header(), value);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(context.is_sampled());
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_zero_padded_lowercase_hex() {
        let header = "00-0bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).unwrap();
        assert_eq!(context.trace_id(), "0bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id(), "00f067aa0ba902b7");
        assert_eq!(context.to_header(), header);
    }

    #[tokio::test]
    async fn is_current_inside_its_scope_only() {
        let context = TraceContext::root();
        assert_eq!(TraceContext::current(), None);
        let seen = context.scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(context));
    }
}
