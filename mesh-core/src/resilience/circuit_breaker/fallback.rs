use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::BoxError;

/// Answers with a fallback when the inner service fails, as Resilience4j's `fallbackMethod`.
///
/// The fallback receives the error and returns a future of the response; it may inspect the
/// error (say, answer only for [`CircuitOpen`](super::CircuitOpen)) and return it unchanged
/// otherwise.
///
/// ```
/// use mesh_core::error::BoxError;
/// use mesh_core::resilience::circuit_breaker::{CircuitOpen, FallbackLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let payment = tower::service_fn(|_: ()| async { Err::<&str, BoxError>("gateway down".into()) });
/// let service = ServiceBuilder::new()
///     .layer(FallbackLayer::new(|_error: BoxError| async { Ok("payment queued") }))
///     .service(payment);
/// assert_eq!(service.oneshot(()).await.unwrap(), "payment queued");
/// # let _ = std::marker::PhantomData::<CircuitOpen>;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Fallback<S, F> {
    inner: S,
    fallback: F,
}

/// Applies [`Fallback`] to a service.
#[derive(Debug, Clone)]
pub struct FallbackLayer<F> {
    fallback: F,
}

impl<F> FallbackLayer<F> {
    /// Answers failed calls with `fallback(error)`.
    pub const fn new(fallback: F) -> Self {
        Self { fallback }
    }
}

impl<S, F: Clone> Layer<S> for FallbackLayer<F> {
    type Service = Fallback<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            fallback: self.fallback.clone(),
        }
    }
}

impl<S, F, Req, Fut> Service<Req> for Fallback<S, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: FnMut(BoxError) -> Fut + Clone,
    Fut: Future<Output = Result<S::Response, BoxError>>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FallbackFuture<S::Future, F, Fut>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        FallbackFuture {
            state: FallbackState::Primary {
                inner: self.inner.call(request),
                fallback: Some(self.fallback.clone()),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Fallback`].
    #[derive(Debug)]
    pub struct FallbackFuture<F, G, Fut> {
        #[pin]
        state: FallbackState<F, G, Fut>,
    }
}

pin_project! {
    #[project = FallbackProj]
    #[derive(Debug)]
    enum FallbackState<F, G, Fut> {
        Primary { #[pin] inner: F, fallback: Option<G> },
        Fallback { #[pin] future: Fut },
    }
}

impl<F, G, Fut, T, E> Future for FallbackFuture<F, G, Fut>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    G: FnMut(BoxError) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FallbackProj::Primary { inner, fallback } => match ready!(inner.poll(cx)) {
                    Ok(response) => return Poll::Ready(Ok(response)),
                    Err(error) => {
                        let mut fallback = fallback.take().expect("polled after completion");
                        let error = error.into();
                        tracing::debug!(%error, "answering with the fallback");
                        let future = fallback(error);
                        this.state.set(FallbackState::Fallback { future });
                    }
                },
                FallbackProj::Fallback { future } => return future.poll(cx),
            }
        }
    }
}
