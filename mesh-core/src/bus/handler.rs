use std::{future::Future, pin::Pin};

use super::Event;
use crate::error::BoxError;

/// What a subscription runs for each event. Any `Fn(Event) -> impl Future<Output =
/// Result<(), BoxError>>` is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Handles one event; an error (or a panic) asks for a retry.
    fn handle(&self, event: Event) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn handle(&self, event: Event) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
        Box::pin(self(event))
    }
}
