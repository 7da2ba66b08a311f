use std::sync::Arc;

use tower::Layer;

use super::{JwtAuth, Policy};
use crate::auth::{AuthSettings, JwtVerifier};

/// Wraps a service in [`JwtAuth`].
#[derive(Debug, Clone)]
pub struct JwtAuthLayer {
    policy: Arc<Policy>,
}

impl JwtAuthLayer {
    /// Tokens verified by `verifier`, required on every path but the runtime's endpoints.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self::with_public(verifier, Vec::new())
    }

    /// `pattern` needs no token: an exact path, with `{name}` segments matching any one
    /// segment, or ending in `/**` to match everything below (see
    /// [`AuthSettings::public`]).
    pub fn public(self, pattern: impl Into<String>) -> Self {
        let mut public = self.policy.public.public.clone();
        public.push(pattern.into());
        Self::with_public(self.policy.verifier.clone(), public)
    }

    /// Tokens verified by `verifier`, except on the `public` path patterns.
    pub(crate) fn with_public(verifier: JwtVerifier, public: Vec<String>) -> Self {
        Self {
            policy: Arc::new(Policy {
                verifier,
                public: AuthSettings {
                    public,
                    ..AuthSettings::default()
                },
            }),
        }
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            policy: self.policy.clone(),
        }
    }
}
