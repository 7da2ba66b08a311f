//! The latest summary each instance reported with its renewal, for the dashboard.
//!
//! Summaries live in this replica's memory only: they are a view of the last few seconds, not
//! state to share. An entry is recorded only after its instance's renewal succeeds, dropped
//! when the instance registers again, cancels or is evicted here, and forgotten once it is
//! older than the longest lease (an instance another replica evicted), so the map holds at
//! most the instances that renewed within one lease.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use mesh_core::{discovery::ServiceId, registry::summary::InstanceSummary};
use tokio::sync::watch;

/// A summary and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// What the instance reported.
    pub summary: Arc<InstanceSummary>,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The latest summary of each instance, with a signal that moves whenever one arrives.
#[derive(Debug)]
pub struct Summaries {
    latest: Mutex<HashMap<(ServiceId, String), Reported>>,
    arrivals: watch::Sender<u64>,
}

impl Default for Summaries {
    fn default() -> Self {
        Self {
            latest: Mutex::default(),
            arrivals: watch::channel(0).0,
        }
    }
}

impl Summaries {
    /// Keeps `summary` as the latest of `service`'s instance `id`.
    pub fn record(&self, service: &ServiceId, id: &str, summary: InstanceSummary, at_ms: u64) {
        let reported = Reported {
            summary: Arc::new(summary),
            at_ms,
        };
        self.lock()
            .insert((service.clone(), id.to_owned()), reported);
        self.arrivals.send_modify(|count| *count += 1);
    }

    /// The latest summary of `service`'s instance `id`.
    pub fn get(&self, service: &ServiceId, id: &str) -> Option<Reported> {
        self.lock().get(&(service.clone(), id.to_owned())).cloned()
    }

    /// Forgets the summary of `service`'s instance `id`.
    pub fn remove(&self, service: &ServiceId, id: &str) {
        self.lock().remove(&(service.clone(), id.to_owned()));
    }

    /// Forgets the summaries that arrived before `cutoff_ms`.
    pub fn forget_before(&self, cutoff_ms: u64) {
        self.lock()
            .retain(|_, reported| reported.at_ms >= cutoff_ms);
    }

    /// How many summaries have arrived.
    pub fn arrival_count(&self) -> u64 {
        *self.arrivals.borrow()
    }

    /// A receiver that sees a change whenever a summary arrives.
    pub fn arrivals(&self) -> watch::Receiver<u64> {
        self.arrivals.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ServiceId, String), Reported>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_per_instance_and_signals_each_arrival() {
        let summaries = Summaries::default();
        let mut arrivals = summaries.arrivals();
        let orders = ServiceId::new("orders");
        let busy = InstanceSummary {
            requests_per_second: 9.0,
            ..InstanceSummary::default()
        };
        summaries.record(&orders, "a", InstanceSummary::default(), 1);
        summaries.record(&orders, "a", busy.clone(), 2);
        summaries.record(&orders, "b", InstanceSummary::default(), 3);
        assert!(arrivals.has_changed().unwrap());
        assert_eq!(*arrivals.borrow_and_update(), 3);
        let latest = summaries.get(&orders, "a").unwrap();
        assert_eq!((*latest.summary).clone(), busy);
        assert_eq!(latest.at_ms, 2);
        summaries.remove(&orders, "a");
        assert!(summaries.get(&orders, "a").is_none());
        assert!(summaries.get(&orders, "b").is_some());
        summaries.forget_before(4);
        assert!(
            summaries.get(&orders, "b").is_none(),
            "older than the cutoff"
        );
    }
}
