//! The answers the layers give on their own (a refused token, a caught panic): the JSON
//! error body for HTTP, a trailers-only status for gRPC.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};

use crate::{
    error::{ErrorKind, MeshError},
    observe::TraceContext,
};

/// A response body the server layers can answer with themselves.
///
/// Implemented for axum's body, `http_body_util::Full<Bytes>`, and (with the `grpc` feature)
/// tonic's body; implement it for another body to put the layers around a service of it.
pub trait AnswerBody: Sized {
    /// A body of `bytes` (empty for a gRPC answer, whose status is in its headers).
    fn from_bytes(bytes: Bytes) -> Self;
}

impl AnswerBody for axum::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::from(bytes)
    }
}

impl AnswerBody for http_body_util::Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

#[cfg(feature = "grpc")]
impl AnswerBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Self::empty();
        }
        Self::new(http_body_util::Full::new(bytes))
    }
}

/// Whether `request` is a gRPC call (`content-type: application/grpc…`), to be answered with
/// a gRPC status rather than an HTTP error.
pub(crate) fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// `error` as an answer: for a gRPC call, `200` with `grpc-status` and `grpc-message` in the
/// headers (a trailers-only response); otherwise the error's status with the JSON error body,
/// the current trace ID and `Retry-After` when known.
pub(crate) fn error_answer<B: AnswerBody>(error: &MeshError, grpc: bool) -> http::Response<B> {
    if grpc {
        let mut response = http::Response::new(B::from_bytes(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(grpc_code(error.kind())));
        if let Ok(message) = HeaderValue::try_from(percent_encode(error.message())) {
            headers.insert("grpc-message", message);
        }
        return response;
    }
    let trace_id = TraceContext::current().map(|c| c.trace_id());
    let body = serde_json::to_vec(&error.to_json(trace_id.as_deref())).unwrap_or_default();
    let mut response = http::Response::new(B::from_bytes(body.into()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = error.retry_after() {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The gRPC status code of an error kind (gRPC's `statuscodes.md`).
pub(crate) const fn grpc_code(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::BadRequest | ErrorKind::Config => 3, // INVALID_ARGUMENT
        ErrorKind::Timeout => 4,                        // DEADLINE_EXCEEDED
        ErrorKind::NotFound => 5,                       // NOT_FOUND
        ErrorKind::Forbidden => 7,                      // PERMISSION_DENIED
        ErrorKind::RateLimited | ErrorKind::BulkheadFull => 8, // RESOURCE_EXHAUSTED
        ErrorKind::Internal | ErrorKind::Upstream => 13, // INTERNAL
        ErrorKind::CircuitOpen
        | ErrorKind::NoInstances
        | ErrorKind::Unavailable
        | ErrorKind::Transport => 14, // UNAVAILABLE
        ErrorKind::Unauthorized => 16,                  // UNAUTHENTICATED
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2: "Percent-Encoded").
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The error body of the wire contract, with the kind's status, the current trace ID and
/// `Retry-After` when known.
impl IntoResponse for MeshError {
    fn into_response(self) -> Response {
        error_answer(&self, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_call_is_answered_with_its_status_in_the_headers() {
        let error = MeshError::new(ErrorKind::Unauthorized, "no token, née absent");
        let answer: http::Response<axum::body::Body> = error_answer(&error, true);
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["grpc-status"], "16");
        assert_eq!(
            answer.headers()["grpc-message"],
            "no token, n%C3%A9e absent"
        );
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/grpc");
    }

    #[test]
    fn an_http_call_is_answered_with_the_json_error_body() {
        let error = MeshError::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(std::time::Duration::from_millis(1500));
        let answer: http::Response<axum::body::Body> = error_answer(&error, false);
        assert_eq!(answer.status(), 429);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "2");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
    }
}
