//! The one error type of mesh and the one mapping of error kinds to HTTP status codes.
//!
//! Every layer fails with a small, downcastable leaf error ([`Elapsed`], [`CircuitOpen`],
//! [`BulkheadFull`], [`RateLimited`], …) boxed into a [`BoxError`], as tower layers do.
//! [`MeshError::from_boxed`] walks such an error and classifies it, so whatever a stack returns
//! becomes one [`MeshError`] with a [`ErrorKind`] and an HTTP status.
//!
//! [`Elapsed`]: crate::resilience::timeout::Elapsed
//! [`CircuitOpen`]: crate::resilience::circuit_breaker::CircuitOpen
//! [`BulkheadFull`]: crate::resilience::bulkhead::BulkheadFull
//! [`RateLimited`]: crate::resilience::rate_limit::RateLimited

use std::{borrow::Cow, error::Error as StdError, fmt, io, time::Duration};

use bytes::Bytes;
use http::StatusCode;

use crate::discovery::NoInstances;
use crate::resilience::{
    bulkhead::BulkheadFull,
    circuit_breaker::CircuitOpen,
    rate_limit::{MissingKey, RateLimited, StoreUnavailable},
    timeout::{Elapsed, InvalidDeadline},
};

/// A type-erased error, as tower layers return them.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, independent of which layer noticed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call ran out of time (its own timeout or a propagated deadline).
    Timeout,
    /// A circuit breaker refused the call without trying it.
    CircuitOpen,
    /// A bulkhead had no free slot within its maximum wait.
    BulkheadFull,
    /// A rate limiter refused the call.
    RateLimited,
    /// Discovery knows no healthy instance of the service.
    NoInstances,
    /// A dependency the call needs (such as the rate limiter's store) is unavailable.
    Unavailable,
    /// The caller presented no valid credentials.
    Unauthorized,
    /// The caller's credentials do not allow the call.
    Forbidden,
    /// The upstream answered with an error status.
    Upstream,
    /// The connection to the upstream failed.
    Transport,
    /// The configuration is invalid.
    Config,
    /// The request is malformed.
    BadRequest,
    /// What the request names does not exist.
    NotFound,
    /// Anything else: a bug or an unclassified failure.
    Internal,
}

/// The error of every mesh operation: a [`kind`](Self::kind), a message and an optional source.
#[derive(Debug)]
pub struct MeshError {
    kind: ErrorKind,
    message: String,
    upstream_status: Option<StatusCode>,
    upstream_body: Option<Bytes>,
    code: Option<Cow<'static, str>>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

/// A configuration value failed validation; `field` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// The HTTP status a response carrying this kind of error has.
    ///
    /// ```
    /// use mesh_core::error::ErrorKind;
    /// assert_eq!(ErrorKind::RateLimited.status().as_u16(), 429);
    /// assert_eq!(ErrorKind::Timeout.status().as_u16(), 504);
    /// ```
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::CircuitOpen | Self::BulkheadFull | Self::NoInstances | Self::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Upstream | Self::Transport => StatusCode::BAD_GATEWAY,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Config | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the call failed for want of a healthy upstream — an open circuit, a timeout,
    /// no connection, no instance, a full bulkhead, an unavailable dependency — rather than
    /// because of the request: what a fallback answers.
    ///
    /// ```
    /// use mesh_core::error::ErrorKind;
    /// assert!(ErrorKind::CircuitOpen.is_outage());
    /// assert!(!ErrorKind::BadRequest.is_outage());
    /// ```
    pub const fn is_outage(self) -> bool {
        matches!(
            self,
            Self::CircuitOpen
                | Self::Timeout
                | Self::Transport
                | Self::NoInstances
                | Self::BulkheadFull
                | Self::Unavailable
        )
    }

    /// The stable snake_case name used in JSON error bodies and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::BulkheadFull => "bulkhead_full",
            Self::RateLimited => "rate_limited",
            Self::NoInstances => "no_instances",
            Self::Unavailable => "unavailable",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Upstream => "upstream",
            Self::Transport => "transport",
            Self::Config => "config",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl MeshError ===

impl MeshError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            upstream_status: None,
            upstream_body: None,
            code: None,
            retry_after: None,
            source: None,
        }
    }

    /// An [`ErrorKind::Upstream`] error keeping the upstream's status.
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            upstream_status: Some(status),
            ..Self::new(ErrorKind::Upstream, message)
        }
    }

    /// A `413` for a request body over `limit` bytes: the same answer wherever the limit is
    /// found to be passed (before the handler, or as a streamed body grows past it).
    ///
    /// ```
    /// use mesh_core::error::MeshError;
    /// let error = MeshError::payload_too_large(1024);
    /// assert_eq!(error.status().as_u16(), 413);
    /// assert_eq!(error.to_json(None)["error"]["kind"], "payload_too_large");
    /// ```
    pub fn payload_too_large(limit: usize) -> Self {
        Self::custom(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// An application's own error: answered with `status` and `code` as the body's `kind`, so
    /// a caller can tell it apart ([`upstream_code`](Self::upstream_code)). The error's
    /// [`kind`](Self::kind) follows the status (404 → `NotFound`, 409 and other 4xx →
    /// `BadRequest`, 5xx → `Internal`, …).
    ///
    /// ```
    /// use http::StatusCode;
    /// use mesh_core::error::{ErrorKind, MeshError};
    /// let error = MeshError::custom(StatusCode::CONFLICT, "out_of_stock", "sku-1 is sold out");
    /// assert_eq!(error.status(), StatusCode::CONFLICT);
    /// assert_eq!(error.to_json(None)["error"]["kind"], "out_of_stock");
    /// assert_eq!(error.kind(), ErrorKind::BadRequest);
    /// ```
    pub fn custom(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        let kind = match status.as_u16() {
            400 | 405..=428 | 430..=499 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            502 => ErrorKind::Upstream,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        };
        Self {
            upstream_status: Some(status),
            code: Some(code.into()),
            ..Self::new(kind, message)
        }
    }

    /// The `kind` an upstream's JSON error body named (its own code for
    /// [`custom`](Self::custom) errors), when it sent one.
    pub fn upstream_code(&self) -> Option<String> {
        let body = self.upstream_body.as_ref()?;
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value["error"]["kind"].as_str().map(str::to_owned)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Keeps the body the upstream answered with.
    pub fn with_upstream_body(mut self, body: Bytes) -> Self {
        self.upstream_body = Some(body);
        self
    }

    /// The body the upstream answered with, for upstream errors that kept it.
    pub fn upstream_body(&self) -> Option<&Bytes> {
        self.upstream_body.as_ref()
    }

    /// Attaches how long the caller should wait before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status to answer with: the upstream's own status for upstream errors, otherwise
    /// the status of the kind.
    pub fn status(&self) -> StatusCode {
        self.upstream_status.unwrap_or(self.kind.status())
    }

    /// How long the caller should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The JSON error body of the wire contract:
    /// `{"error": {"kind": "...", "message": "...", "trace_id": "..."}}`.
    ///
    /// ```
    /// use mesh_core::error::{ErrorKind, MeshError};
    /// let body = MeshError::new(ErrorKind::BadRequest, "missing sku").to_json(Some("4bf92f35"));
    /// assert_eq!(body["error"]["kind"], "bad_request");
    /// assert_eq!(body["error"]["trace_id"], "4bf92f35");
    /// ```
    pub fn to_json(&self, trace_id: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "kind": self.code.as_deref().unwrap_or(self.kind.as_str()),
                "message": self.message,
                "trace_id": trace_id,
            }
        })
    }

    /// Classifies any error a stack returned. Known leaf errors anywhere in the `source()` chain
    /// decide the kind; I/O errors are transport errors; anything else is internal.
    ///
    /// ```
    /// use mesh_core::error::{BoxError, ErrorKind, MeshError};
    /// let err: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
    /// assert_eq!(MeshError::from_boxed(err).kind(), ErrorKind::Transport);
    /// ```
    pub fn from_boxed(error: BoxError) -> Self {
        let error = match error.downcast::<MeshError>() {
            Ok(mesh) => return *mesh,
            Err(error) => error,
        };
        let mut classified = None;
        let mut cause: Option<&(dyn StdError + 'static)> = Some(error.as_ref());
        while let Some(err) = cause {
            if let Some(mesh) = classify(err) {
                classified = Some(mesh);
                break;
            }
            cause = err.source();
        }
        let mut mesh =
            classified.unwrap_or_else(|| MeshError::new(ErrorKind::Internal, error.to_string()));
        mesh.source = Some(error);
        mesh
    }
}

/// What a caught panic said (its `&str` or `String` payload), for logs and failure reasons.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The kind [`MeshError::from_boxed`] would give `error`, without consuming it.
#[cfg(feature = "runtime")]
pub(crate) fn kind_of(error: &(dyn StdError + 'static)) -> ErrorKind {
    let mut cause = Some(error);
    while let Some(err) = cause {
        if let Some(mesh) = classify(err) {
            return mesh.kind;
        }
        cause = err.source();
    }
    ErrorKind::Internal
}

/// Recognises one error of the chain, without looking at its sources.
fn classify(err: &(dyn StdError + 'static)) -> Option<MeshError> {
    let message = err.to_string();
    let kind = if let Some(mesh) = err.downcast_ref::<MeshError>() {
        let mut copy = MeshError::new(mesh.kind, mesh.message.clone());
        copy.upstream_status = mesh.upstream_status;
        copy.upstream_body = mesh.upstream_body.clone();
        copy.code = mesh.code.clone();
        copy.retry_after = mesh.retry_after;
        return Some(copy);
    } else if let Some(limited) = err.downcast_ref::<RateLimited>() {
        return Some(
            MeshError::new(ErrorKind::RateLimited, message)
                .with_retry_after(limited.decision().retry_after()),
        );
    } else if err.is::<Elapsed>() {
        ErrorKind::Timeout
    } else if err.is::<CircuitOpen>() {
        ErrorKind::CircuitOpen
    } else if err.is::<BulkheadFull>() {
        ErrorKind::BulkheadFull
    } else if err.is::<NoInstances>() {
        ErrorKind::NoInstances
    } else if err.is::<StoreUnavailable>() {
        ErrorKind::Unavailable
    } else if err.is::<MissingKey>() {
        ErrorKind::Forbidden
    } else if err.is::<InvalidDeadline>() {
        ErrorKind::BadRequest
    } else if err.is::<ConfigError>() {
        ErrorKind::Config
    } else if err.is::<io::Error>() {
        ErrorKind::Transport
    } else {
        return None;
    };
    Some(MeshError::new(kind, message))
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl StdError for MeshError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

macro_rules! from_leaf {
    ($($leaf:ty),* $(,)?) => {$(
        impl From<$leaf> for MeshError {
            fn from(error: $leaf) -> Self {
                MeshError::from_boxed(Box::new(error))
            }
        }
    )*};
}

from_leaf!(
    Elapsed,
    InvalidDeadline,
    CircuitOpen,
    BulkheadFull,
    RateLimited,
    MissingKey,
    StoreUnavailable,
    NoInstances,
    ConfigError,
    io::Error,
);

// === impl ConfigError ===

impl ConfigError {
    /// A validation failure of `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending field.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

/// Fails validation of `field` unless `ok` holds.
pub(crate) fn ensure(ok: bool, field: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_design_status() {
        let expected = [
            (ErrorKind::Timeout, 504),
            (ErrorKind::CircuitOpen, 503),
            (ErrorKind::BulkheadFull, 503),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::NoInstances, 503),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Unauthorized, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::Upstream, 502),
            (ErrorKind::Transport, 502),
            (ErrorKind::Config, 500),
            (ErrorKind::BadRequest, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in expected {
            assert_eq!(kind.status().as_u16(), status, "{kind}");
        }
    }

    #[test]
    fn leaf_errors_are_found_through_wrappers() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapper(#[source] BulkheadFull);

        let err = MeshError::from_boxed(Box::new(Wrapper(BulkheadFull::new())));
        assert_eq!(err.kind(), ErrorKind::BulkheadFull);
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.source().is_some(), "the original error is kept");
    }

    #[test]
    fn a_boxed_mesh_error_comes_back_unchanged() {
        let original = MeshError::upstream(StatusCode::CONFLICT, "sku taken");
        let back = MeshError::from_boxed(Box::new(original));
        assert_eq!(back.kind(), ErrorKind::Upstream);
        assert_eq!(back.status(), StatusCode::CONFLICT);
        assert_eq!(back.message(), "sku taken");
    }

    #[test]
    fn unknown_errors_are_internal() {
        let err = MeshError::from_boxed("boom".into());
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = ConfigError::new("max_attempts", "must be at least 1");
        assert_eq!(err.field(), "max_attempts");
        assert_eq!(MeshError::from(err).kind(), ErrorKind::Config);
    }
}
