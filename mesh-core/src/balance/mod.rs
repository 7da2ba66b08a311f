//! Load balancing over discovered instances, with outlier ejection.
//!
//! [`Balance`] picks one `UP` instance of a [`Discovery`](crate::discovery::Discovery) for each
//! request, points the request's URI at it, and calls the inner service (an HTTP client with a
//! connection pool per authority). Strategies ([`Strategy`]):
//!
//! - **power of two choices over peak-EWMA latency** (the default, as linkerd): two random
//!   instances, the one with the lower `latency × (in-flight + 1)` wins; the latency estimate
//!   jumps up with every slow response and decays back (10 s);
//! - **round robin**, **weighted** random (by [`Instance::weight`](crate::discovery::Instance)),
//!   and **consistent hashing** by a request header (sticky sessions, cache affinity).
//!
//! **Outlier ejection** (as Envoy): an instance that fails `consecutive_failures` times in a row
//! leaves the pool for `base_ejection_time × times ejected`, at most `max_ejection_time`, and
//! never more than `max_ejection_percent` of the pool is out at once. Failures are errors and
//! 5xx responses; refusals by local layers do not count.

mod affinity;
mod config;
mod endpoint;
mod layer;
mod ring;
mod service;

pub use self::{
    affinity::Affinity,
    config::{BalanceConfig, EjectionConfig, Strategy},
    layer::BalanceLayer,
    service::{Balance, ResponseFuture, Target},
};
/// The error of a call that found no instance (defined with discovery, whose answer it is).
pub use crate::discovery::NoInstances;
