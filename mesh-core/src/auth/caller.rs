//! The verified caller of the request being served, for the code that serves it and for the
//! calls it makes on the caller's behalf.

use std::{future::Future, sync::Arc};

use tokio::task::futures::TaskLocalFuture;

use super::Identity;
use crate::error::{ErrorKind, MeshError};

tokio::task_local! {
    static CURRENT: Caller;
}

/// Who the request being served comes from: the identity its bearer token proved, and the
/// token itself. Token verification (`server.auth`, [`JwtAuthLayer`]) makes it current while
/// the request is served, so a handler — a `#[mesh::service]` method among them — reads it
/// with [`Caller::current`], and a `MeshClient` call made meanwhile carries the token to the
/// next service (`clients.<service>.token_relay`), as Spring Cloud's `TokenRelay` does.
///
/// ```
/// use mesh_core::auth::Caller;
///
/// // Outside a verified request there is none, and a role check refuses.
/// assert!(Caller::current().is_none());
/// assert_eq!(Caller::require_role("admin").unwrap_err().status(), 401);
/// ```
///
/// [`JwtAuthLayer`]: crate::server::layers::JwtAuthLayer
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified identity.
    pub identity: Arc<Identity>,
    /// The bearer token it was verified from.
    pub token: Arc<str>,
}

impl Caller {
    /// The caller of the request being served, if its token was verified.
    pub fn current() -> Option<Caller> {
        CURRENT.try_with(Caller::clone).ok()
    }

    /// The current caller's identity, when it has `role`: `401` without a verified caller,
    /// `403` without the role.
    pub fn require_role(role: &str) -> Result<Arc<Identity>, MeshError> {
        let caller = Self::current()
            .ok_or_else(|| MeshError::new(ErrorKind::Unauthorized, "a bearer token is required"))?;
        if !caller.identity.has_role(role) {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                format!("the `{role}` role is required"),
            ));
        }
        Ok(caller.identity)
    }

    /// The current caller's identity: `401` without one.
    pub fn require() -> Result<Arc<Identity>, MeshError> {
        Self::current()
            .map(|caller| caller.identity)
            .ok_or_else(|| MeshError::new(ErrorKind::Unauthorized, "a bearer token is required"))
    }

    /// Runs `future` with this caller current.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Caller, F> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this caller current.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}
