//! The request body type the client stack speaks.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::error::BoxError;

/// A type-erased request body: what layers that must replay or rewrite a body hand downstream.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;
