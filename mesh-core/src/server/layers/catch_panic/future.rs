use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use crate::{
    error::{ErrorKind, MeshError, panic_message},
    server::layers::answer::{AnswerBody, error_answer},
};

type Panic = Box<dyn Any + Send + 'static>;

pin_project_lite::pin_project! {
    /// The response future of [`CatchPanic`](super::CatchPanic).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        grpc: bool,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Running { #[pin] future: F },
        Panicked { panic: Option<Panic> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn running(future: F, grpc: bool) -> Self {
        Self {
            state: State::Running { future },
            grpc,
        }
    }

    pub(super) fn panicked(panic: Panic, grpc: bool) -> Self {
        Self {
            state: State::Panicked { panic: Some(panic) },
            grpc,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: AnswerBody,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let panic = match this.state.project() {
            StateProj::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(polled) => return polled,
                    Err(panic) => panic,
                }
            }
            StateProj::Panicked { panic } => panic.take().expect("polled after completion"),
        };
        tracing::error!(panic = %panic_message(panic.as_ref()), "handler panicked");
        let error = MeshError::new(ErrorKind::Internal, "the handler failed");
        Poll::Ready(Ok(error_answer(&error, *this.grpc)))
    }
}
