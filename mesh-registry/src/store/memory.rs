use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use mesh_core::discovery::{InstanceStatus, ServiceId};
use tokio::sync::watch;

use super::{SharedSnapshot, Store, StoreFuture};
use crate::model::{Action, Event, Registration, Snapshot};

/// Changes kept for watchers to resume from.
const DEFAULT_LOG_SIZE: usize = 10_000;

/// The in-process store: a sorted map behind one lock (registry writes are renewals and rare
/// changes, not the data path) and a bounded change log. A registration is held once, shared
/// by the map, the log entry of its last change and any snapshot being rendered; a renewal
/// copies it only while one of those still holds the old version.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    revisions: watch::Sender<u64>,
    log_size: usize,
    epoch: u64,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    registrations: BTreeMap<(ServiceId, String), Arc<Registration>>,
    log: VecDeque<Logged>,
    /// Renewals per second, oldest first, for the last `RENEWAL_HISTORY_SECS`.
    renewals: VecDeque<(u64, u64)>,
}

/// One change in the log: an [`Event`] whose registration is shared.
#[derive(Debug)]
struct Logged {
    revision: u64,
    at_ms: u64,
    action: Action,
    registration: Arc<Registration>,
}

impl Logged {
    fn event(&self) -> Event {
        Event {
            revision: self.revision,
            at_ms: self.at_ms,
            action: self.action,
            registration: Registration::clone(&self.registration),
        }
    }
}

/// How long renewal counts are kept (longer than any self-preservation window in use).
const RENEWAL_HISTORY_SECS: u64 = 3600;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store keeping the last 10 000 changes.
    pub fn new() -> Self {
        Self::with_log_size(DEFAULT_LOG_SIZE)
    }

    /// An empty store keeping the last `log_size` changes.
    pub fn with_log_size(log_size: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            revisions: watch::Sender::new(0),
            log_size: log_size.max(1),
            epoch: super::new_epoch(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a change, logs it and tells watchers.
    fn record(
        &self,
        state: &mut State,
        action: Action,
        registration: Arc<Registration>,
        at_ms: u64,
    ) -> Event {
        state.revision += 1;
        let logged = Logged {
            revision: state.revision,
            at_ms,
            action,
            registration,
        };
        let event = logged.event();
        state.log.push_back(logged);
        if state.log.len() > self.log_size {
            state.log.pop_front();
        }
        self.revisions.send_replace(state.revision);
        event
    }
}

fn key(service: &ServiceId, id: &str) -> (ServiceId, String) {
    (service.clone(), id.to_string())
}

impl Store for MemoryStore {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn put(&self, registration: Registration) -> StoreFuture<'_, Event> {
        let mut state = self.state();
        let key = key(registration.service(), &registration.instance.id);
        let at = registration.last_updated_ms;
        let registration = Arc::new(registration);
        let action = match state.registrations.insert(key, registration.clone()) {
            Some(_) => Action::Modified,
            None => Action::Added,
        };
        let event = self.record(&mut state, action, registration, at);
        Box::pin(std::future::ready(Ok(event)))
    }

    fn get<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Registration>> {
        let found = self
            .state()
            .registrations
            .get(&key(service, id))
            .map(|registration| Registration::clone(registration));
        Box::pin(std::future::ready(Ok(found)))
    }

    fn renew<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, bool> {
        let mut state = self.state();
        let renewed = match state.registrations.get_mut(&key(service, id)) {
            Some(registration) => {
                Arc::make_mut(registration).lease.last_renewal_ms = now_ms;
                true
            }
            None => false,
        };
        if renewed {
            let second = now_ms / 1000;
            match state.renewals.back_mut() {
                Some((last, count)) if *last == second => *count += 1,
                _ => state.renewals.push_back((second, 1)),
            }
            while state
                .renewals
                .front()
                .is_some_and(|(s, _)| s + RENEWAL_HISTORY_SECS <= second)
            {
                state.renewals.pop_front();
            }
        }
        Box::pin(std::future::ready(Ok(renewed)))
    }

    fn renewals_since(&self, since_ms: u64, _now_ms: u64) -> StoreFuture<'_, u64> {
        let since = since_ms / 1000;
        let count = self
            .state()
            .renewals
            .iter()
            .filter(|(second, _)| *second >= since)
            .map(|(_, count)| count)
            .sum();
        Box::pin(std::future::ready(Ok(count)))
    }

    fn remove<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>> {
        let mut state = self.state();
        let event = state
            .registrations
            .remove(&key(service, id))
            .map(|registration| self.record(&mut state, Action::Deleted, registration, now_ms));
        Box::pin(std::future::ready(Ok(event)))
    }

    fn set_override<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        status: Option<InstanceStatus>,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>> {
        let mut state = self.state();
        let changed = state
            .registrations
            .get_mut(&key(service, id))
            .map(|registration| {
                let changed = Arc::make_mut(registration);
                changed.overridden_status = status;
                changed.last_updated_ms = now_ms;
                registration.clone()
            });
        let event = changed
            .map(|registration| self.record(&mut state, Action::Modified, registration, now_ms));
        Box::pin(std::future::ready(Ok(event)))
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        let state = self.state();
        let snapshot = Snapshot {
            epoch: self.epoch,
            revision: state.revision,
            registrations: state
                .registrations
                .values()
                .map(|registration| Registration::clone(registration))
                .collect(),
        };
        Box::pin(std::future::ready(Ok(snapshot)))
    }

    fn shared_snapshot(&self) -> StoreFuture<'_, SharedSnapshot> {
        let state = self.state();
        let snapshot = SharedSnapshot {
            epoch: self.epoch,
            revision: state.revision,
            registrations: state.registrations.values().cloned().collect(),
        };
        Box::pin(std::future::ready(Ok(snapshot)))
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        let len = self.state().registrations.len();
        Box::pin(std::future::ready(Ok(len)))
    }

    fn events_since(&self, revision: u64) -> StoreFuture<'_, Option<Vec<Event>>> {
        let state = self.state();
        let oldest = state.log.front().map_or(state.revision + 1, |e| e.revision);
        let events = if revision >= state.revision {
            Some(Vec::new())
        } else if revision + 1 < oldest {
            None
        } else {
            Some(
                state
                    .log
                    .iter()
                    .filter(|e| e.revision > revision)
                    .map(Logged::event)
                    .collect(),
            )
        };
        Box::pin(std::future::ready(Ok(events)))
    }

    fn recent(&self, since_ms: u64) -> StoreFuture<'_, Vec<Event>> {
        let state = self.state();
        let events = state
            .log
            .iter()
            .filter(|e| e.at_ms >= since_ms)
            .map(Logged::event)
            .collect();
        Box::pin(std::future::ready(Ok(events)))
    }

    fn revisions(&self) -> watch::Receiver<u64> {
        self.revisions.subscribe()
    }
}
