//! Service discovery: which instances of a service exist, and how they change.
//!
//! A [`Discovery`] is a live view of one service's [`Instance`]s: a cheap snapshot for the
//! balancer on every request ([`Discovery::snapshot`]) and a stream of [`Change`]s for code that
//! wants the differences — the `Discover` shape tower's balancers consume. Sources publish into
//! it: a fixed list ([`Discovery::fixed`]), DNS re-resolved on an interval (the Kubernetes
//! headless-service path, [`dns`]), or the registry's watch.

mod error;
mod instance;
mod source;

pub mod dns;

pub use self::{
    error::NoInstances,
    instance::{Instance, InstanceStatus, ServiceId},
    source::{Change, Changes, Discovery, Publisher},
};
