//! Configuration errors of the gateway.

use mesh_core::error::{ErrorKind, MeshError};

/// A configuration error.
pub(crate) fn invalid(message: impl Into<String>) -> MeshError {
    MeshError::new(ErrorKind::Config, message)
}
