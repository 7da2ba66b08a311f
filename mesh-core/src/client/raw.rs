//! Calls relayed from their bytes through a client's whole stack: a proxy (the gateway's relay
//! path) hands over the header fields it passes on already encoded and gets the answer's head
//! as bytes, while every layer — metrics, timeout, retry, breaker, balancing — decides as it
//! does for any call. Only the ends differ: the request carries its encoded fields and its body
//! as a [`RawCall`] extension, the transport writes them after the request line, `Host` and the
//! fields the layers set, and hands the [`RawAnswer`] back beside an empty response that has its
//! status (all the layers look at).

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use super::pool::{Http1Pool, ResponseBody};
use crate::{
    BoxBody,
    balance::Affinity,
    error::{BoxError, ErrorKind, MeshError},
    http1::RawAnswer,
};

/// Picks the answer fields a relay drops (by the answer's status and the field's name).
pub type DropField = dyn Fn(StatusCode, &[u8]) -> bool + Send + Sync;

/// What a relayed request is besides its method and target: the header fields passed on, each
/// `name: value\r\n` — without `Host`, framing fields, or the fields the stack's layers set
/// (`traceparent`, `mesh-timeout`) — its body, and which answer fields to drop. Cloned for
/// each attempt, it shares its bytes.
#[derive(Clone)]
pub struct RawCall {
    fields: Bytes,
    body: Bytes,
    drop: Arc<DropField>,
    affinity: Option<Affinity>,
}

impl RawCall {
    /// `fields` as encoded, `body`, and the answer fields `drop` picks to be dropped.
    pub fn new(fields: impl Into<Bytes>, body: impl Into<Bytes>, drop: Arc<DropField>) -> Self {
        Self {
            fields: fields.into(),
            body: body.into(),
            drop,
            affinity: None,
        }
    }

    /// Sends the call to the instance `affinity` keeps its key on (see [`Affinity`]).
    pub fn with_affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = Some(affinity);
        self
    }

    /// The affinity the call was given.
    pub(crate) fn affinity(&self) -> Option<Affinity> {
        self.affinity
    }
}

impl fmt::Debug for RawCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCall")
            .field("fields", &self.fields.len())
            .field("body", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Where the transport leaves a relayed call's answer for the caller, past the layers.
#[derive(Clone, Default)]
struct Answered(Arc<Mutex<Option<RawAnswer>>>);

/// Sends a request carrying `raw` over `pool`, to the instance the balancer put in its URI:
/// the answer rides on an empty response with its status.
pub(crate) fn send(
    pool: &Arc<Http1Pool>,
    request: Request<BoxBody>,
    raw: RawCall,
) -> Result<
    impl Future<Output = Result<Response<ResponseBody>, BoxError>> + Send + 'static,
    MeshError,
> {
    let (parts, _) = request.into_parts();
    let Some(authority) = parts.uri.authority() else {
        return Err(MeshError::new(
            ErrorKind::Internal,
            "a relayed call reached the transport without an instance",
        ));
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let drop = raw.drop.clone();
    let exchange = pool.relay(
        authority,
        &parts.method,
        &raw.body,
        &mut |out, host| {
            out.extend_from_slice(parts.method.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(target.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
            for (name, value) in &parts.headers {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&raw.fields);
        },
        move |status, name| drop(status, name),
    )?;
    Ok(async move {
        let answer = exchange.await?;
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = answer.status;
        response
            .extensions_mut()
            .insert(Answered(Arc::new(Mutex::new(Some(answer)))));
        Ok(response)
    })
}

/// The answer a relayed call's response carries.
pub(crate) fn answer(mut response: Response<ResponseBody>) -> Result<RawAnswer, MeshError> {
    response
        .extensions_mut()
        .remove::<Answered>()
        .and_then(|answered| answered.0.lock().ok()?.take())
        .ok_or_else(|| {
            MeshError::new(
                ErrorKind::Internal,
                "a relayed call was answered without its raw answer",
            )
        })
}
