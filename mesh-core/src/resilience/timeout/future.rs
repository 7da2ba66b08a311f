use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use metrics::Counter;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{Elapsed, InvalidDeadline};
use crate::error::BoxError;

pin_project! {
    /// The response future of [`Timeout`](super::Timeout) and [`HonorDeadline`](super::HonorDeadline).
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
        Running {
            #[pin]
            inner: F,
            // Armed on the first poll that finds the call pending: calls that finish at once
            // never touch the timer wheel.
            #[pin]
            sleep: Option<Sleep>,
            deadline: Option<Instant>,
            budget: Duration,
            expired: Counter,
        },
        Invalid {
            error: Option<InvalidDeadline>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        deadline: Option<Instant>,
        budget: Duration,
        expired: Counter,
    ) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: None,
                deadline,
                budget,
                expired,
            },
        }
    }

    pub(crate) fn invalid(error: InvalidDeadline) -> Self {
        Self {
            state: State::Invalid { error: Some(error) },
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
            StateProj::Invalid { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
            StateProj::Running {
                inner,
                mut sleep,
                deadline,
                budget,
                expired,
            } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let Some(deadline) = deadline.take() {
                    sleep.set(Some(sleep_until(deadline)));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                    tracing::debug!(budget = ?budget, "deadline reached");
                    expired.increment(1);
                    return Poll::Ready(Err(Elapsed::new(*budget).into()));
                }
                Poll::Pending
            }
        }
    }
}
