//! Helpers shared by the resilience tests.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mesh_core::{BoxBody, error::BoxError};

/// A replayable body holding `text`.
pub(crate) fn body(text: &'static str) -> BoxBody {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty response with `status`.
pub(crate) fn status(code: u16) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

/// Reads a whole body into a string.
pub(crate) async fn text(body: BoxBody) -> String {
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The boxed error of a failed call, for downcasting.
pub(crate) fn is<E: std::error::Error + 'static>(error: &BoxError) -> bool {
    error.is::<E>()
}
