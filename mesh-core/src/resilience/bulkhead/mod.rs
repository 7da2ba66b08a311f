//! Limits the calls in flight, with a bounded wait for a free slot.
//!
//! [`Bulkhead`] admits at most `max_concurrent_calls` at once across every clone of the
//! layer's service. A call arriving when all slots are taken waits up to `max_wait_duration`
//! for one, then fails with [`BulkheadFull`]. The slot belongs to the response future, so a
//! finished, failed, cancelled or dropped call always gives it back. Slots are counted with
//! atomics (no lock shared by concurrent calls); a slot freed while calls wait goes to whoever
//! asks first, so the order is not strictly first come, first served.

mod config;
mod error;
mod future;
mod layer;
mod service;
mod slots;

pub use self::{
    config::BulkheadConfig, error::BulkheadFull, future::ResponseFuture, layer::BulkheadLayer,
    service::Bulkhead,
};
