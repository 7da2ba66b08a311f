use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::time::{Sleep, sleep};
use tower::Service;

use super::{
    ResponseFuture,
    layer::Shared,
    slots::{Slot, Slots},
};
use crate::error::BoxError;

type Acquire = Pin<Box<dyn Future<Output = Slot> + Send + Sync>>;

/// Admits a bounded number of concurrent calls.
///
/// `poll_ready` reserves a slot (waiting up to `max_wait_duration`), then waits for the inner
/// service; `call` hands the slot to the response future. When no slot frees up in time,
/// `poll_ready` still reports ready and the call fails at once with
/// [`BulkheadFull`](super::BulkheadFull), so callers shed load instead of queueing.
///
/// # Clone
///
/// A clone shares the slots but starts without a reservation of its own.
pub struct Bulkhead<S> {
    inner: S,
    shared: Arc<Shared>,
    state: Reservation,
}

enum Reservation {
    None,
    Waiting {
        acquire: Acquire,
        timer: Pin<Box<Sleep>>,
    },
    Held(Slot),
    Rejected,
}

impl<S> Bulkhead<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            state: Reservation::None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Drives the reservation until a slot is held or the call is rejected.
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            self.state = match std::mem::replace(&mut self.state, Reservation::None) {
                Reservation::None => match self.shared.slots.try_take() {
                    Some(slot) => Reservation::Held(slot),
                    None if self.shared.config.max_wait_duration.is_zero() => self.reject(),
                    None => Reservation::Waiting {
                        acquire: Box::pin(Slots::take(self.shared.slots.clone())),
                        timer: Box::pin(sleep(self.shared.config.max_wait_duration)),
                    },
                },
                Reservation::Waiting {
                    mut acquire,
                    mut timer,
                } => match acquire.as_mut().poll(cx) {
                    Poll::Ready(slot) => Reservation::Held(slot),
                    // Dropping the acquire future leaves the queue, so no slot is parked here.
                    Poll::Pending if timer.as_mut().poll(cx).is_ready() => self.reject(),
                    Poll::Pending => {
                        self.state = Reservation::Waiting { acquire, timer };
                        return Poll::Pending;
                    }
                },
                done @ (Reservation::Held(_) | Reservation::Rejected) => {
                    self.state = done;
                    return Poll::Ready(());
                }
            };
        }
    }

    fn reject(&self) -> Reservation {
        tracing::debug!(bulkhead = %self.shared.name, "bulkhead full, call rejected");
        self.shared.rejected.increment(1);
        Reservation::Rejected
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.poll_reserve(cx));
        match self.state {
            Reservation::Rejected => Poll::Ready(Ok(())),
            _ => self.inner.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, Reservation::None) {
            Reservation::Held(permit) => ResponseFuture::admitted(self.inner.call(request), permit),
            Reservation::Rejected => ResponseFuture::rejected(),
            Reservation::None | Reservation::Waiting { .. } => {
                panic!("poll_ready must be called first")
            }
        }
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("reserved", &matches!(self.state, Reservation::Held(_)))
            .finish()
    }
}
