//! Observability: W3C trace-context propagation, Prometheus metrics, health checks, and logs
//! for ELK ([`logging`]).
//!
//! A server extracts the caller's `traceparent` (or starts a trace) and makes it the
//! [current](TraceContext::current) context of the handler's task; every call the handler
//! makes through a `MeshClient` carries a child of it, so one
//! trace ID follows a request across services and into logs and error bodies.

mod baggage;
#[cfg(feature = "otlp")]
pub mod export;
#[cfg(feature = "runtime")]
pub mod health;
#[cfg(feature = "runtime")]
pub mod logging;
#[cfg(feature = "runtime")]
pub mod prometheus;
mod series;
pub(crate) mod span;
mod trace;

#[cfg(feature = "runtime")]
pub(crate) use self::series::{ServerSeries, Totals};
pub use self::{
    baggage::{BAGGAGE, Baggage},
    series::StatusCounters,
    trace::{TRACEPARENT, TraceContext},
};

/// The route a response answered, as the server's RED metrics label it. The server sets it
/// from the router's matched path; a handler that routes by itself (a gateway, say) sets its
/// own in the response's extensions. Responses without one count as `unmatched`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub std::sync::Arc<str>);

/// Something that happened while a request was answered — a fallback answering for a failed
/// upstream, say — for the request's span to record as an event. A handler sets it in its
/// response's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopEvent {
    /// The event's name (`fallback`).
    pub name: &'static str,
    /// What it was about (the failure the fallback answered).
    pub detail: String,
}

/// A request method as a metric label or span name: the standard methods, `OTHER` for the
/// rest (so a client cannot grow the set of series).
pub fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// A status code as a metric label, without allocating for the common ones (and by class,
/// such as `4xx`, for the rare).
pub fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => match code / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}
