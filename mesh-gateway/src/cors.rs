//! CORS, answered at the edge: preflights never reach a service, and answers to allowed
//! origins carry the policy's fields.

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use mesh_core::error::{ErrorKind, MeshError};

use crate::{config::CorsConfig, error::invalid};

/// A checked CORS policy.
#[derive(Debug)]
pub(crate) struct Cors(CorsConfig);

/// How a field goes on an answer: in place of any the answer has, or beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    Replace,
    Append,
}

impl Cors {
    /// The policy of `config`; credentials cannot be allowed for every origin.
    pub(crate) fn new(config: CorsConfig) -> Result<Self, MeshError> {
        if config.allow_credentials && config.allowed_origins.iter().any(|o| o == "*") {
            return Err(invalid(
                "cors: credentials cannot be allowed for every origin (`*`); list the origins",
            ));
        }
        Ok(Self(config))
    }

    /// Answers a CORS preflight: allowed → 204 with the policy, refused → 403; `None` for a
    /// request that is no preflight.
    pub(crate) fn preflight(&self, request: &Request) -> Option<Response> {
        let cors = &self.0;
        let headers = request.headers();
        if request.method() != http::Method::OPTIONS
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let method_allowed = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                cors.allowed_methods
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(m))
            });
        if !self.origin_allowed(origin) || !method_allowed {
            return Some(
                MeshError::new(ErrorKind::Forbidden, "CORS: origin or method not allowed")
                    .into_response(),
            );
        }
        let mut response = http::StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        self.allow(origin, out);
        let join = |items: &[String]| HeaderValue::try_from(items.join(", ")).ok();
        if let Some(methods) = join(&cors.allowed_methods) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(allowed) = join(&cors.allowed_headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(cors.max_age.as_secs()),
        );
        Some(response)
    }

    /// Whether the policy names `origin` itself (`*` does not count).
    pub(crate) fn origin_listed(&self, origin: &HeaderValue) -> bool {
        self.0
            .allowed_origins
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes())
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        self.0
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.as_bytes() == origin.as_bytes())
    }

    /// Adds `Access-Control-Allow-Origin` (and credentials) for an allowed origin.
    pub(crate) fn allow(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        self.fields(origin, |name, value, put| match put {
            Put::Replace => {
                headers.insert(name, value);
            }
            Put::Append => {
                headers.append(name, value);
            }
        });
    }

    /// Gives `put` the fields an answer gets for `origin` when it is allowed:
    /// `Access-Control-Allow-Origin` and, with credentials, `-Allow-Credentials` (each in place
    /// of the upstream's), and `Vary: Origin` (beside the upstream's).
    pub(crate) fn fields(
        &self,
        origin: &HeaderValue,
        mut put: impl FnMut(HeaderName, HeaderValue, Put),
    ) {
        if !self.origin_allowed(origin) {
            return;
        }
        put(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            origin.clone(),
            Put::Replace,
        );
        put(
            header::VARY,
            HeaderValue::from_static("Origin"),
            Put::Append,
        );
        if self.0.allow_credentials {
            let credentials = HeaderValue::from_static("true");
            put(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                credentials,
                Put::Replace,
            );
        }
    }
}
