//! Per-call timeouts with deadline propagation.
//!
//! [`Timeout`] bounds a call by its own timeout and by any deadline the request already carries
//! (a [`Deadline`] extension, or the deadline of the request being served on this task). It
//! writes the remaining budget into the [`TIMEOUT_HEADER`] in gRPC's relative format
//! (`250m` is 250 ms), so the next hop knows how long it has, and makes the deadline current
//! while the layers behind it run, so a retry never starts past it. [`HonorDeadline`] is the server
//! side: it reads that header, fails the request once the budget is spent, and makes the
//! deadline current for the handler's task, so every call the handler makes inherits it and
//! cancellation cascades down the call tree.

mod config;
mod deadline;
mod error;
mod future;
mod header;
mod layer;
mod service;

pub use self::{
    config::TimeoutConfig,
    deadline::Deadline,
    error::{Elapsed, InvalidDeadline},
    future::ResponseFuture,
    header::{GRPC_TIMEOUT_HEADER, TIMEOUT_HEADER, decode_timeout, encode_timeout},
    layer::{HonorDeadlineLayer, TimeoutLayer},
    service::{HonorDeadline, Timeout},
};
