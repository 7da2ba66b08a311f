use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use super::{BulkheadFull, slots::Slot};
use crate::error::BoxError;

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead). It holds the call's slot, so
    /// dropping it (a cancelled call) frees the slot.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Admitted { #[pin] inner: F, permit: Option<Slot> },
        Rejected,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn admitted(inner: F, permit: Slot) -> Self {
        Self {
            state: State::Admitted {
                inner,
                permit: Some(permit),
            },
        }
    }

    pub(super) fn rejected() -> Self {
        Self {
            state: State::Rejected,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected => Poll::Ready(Err(BulkheadFull::new().into())),
            StateProj::Admitted { inner, permit } => {
                let result = std::task::ready!(inner.poll(cx));
                // Free the slot as soon as the call is done, not when the future is dropped.
                permit.take();
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}
