use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;

use super::{Instance, ServiceId};

/// A change to the set of instances, keyed by instance id: tower's own
/// [`Change`](tower::discover::Change), so [`Changes`] is a [`tower::discover::Discover`] once
/// each instance is mapped to a service. An insert replaces an instance with the same id.
pub type Change = tower::discover::Change<String, Instance>;

/// The live set of one service's instances. Cheap to clone; every clone sees the same set.
#[derive(Clone)]
pub struct Discovery {
    service: ServiceId,
    snapshot: watch::Receiver<Arc<[Instance]>>,
}

/// The writing side of a [`Discovery`]: sources publish complete sets through it.
#[derive(Debug)]
pub struct Publisher {
    sender: watch::Sender<Arc<[Instance]>>,
}

impl Discovery {
    /// A discovery for `service` fed by the returned publisher.
    pub fn new(service: impl Into<ServiceId>) -> (Publisher, Self) {
        let (sender, snapshot) = watch::channel(Arc::from(Vec::new()));
        let discovery = Self {
            service: service.into(),
            snapshot,
        };
        (Publisher { sender }, discovery)
    }

    /// A discovery that always holds `instances`.
    ///
    /// ```
    /// use mesh_core::discovery::{Discovery, Instance};
    /// let discovery = Discovery::fixed("inventory", vec![Instance::new("inventory", "10.0.0.1", 8080)]);
    /// assert_eq!(discovery.snapshot().len(), 1);
    /// ```
    pub fn fixed(service: impl Into<ServiceId>, instances: Vec<Instance>) -> Self {
        let (publisher, discovery) = Self::new(service);
        publisher.publish(instances);
        // Dropping the publisher freezes the set: the receiver keeps the last value.
        discovery
    }

    /// The service this discovery follows.
    pub fn service(&self) -> &ServiceId {
        &self.service
    }

    /// The instances right now, every status included.
    pub fn snapshot(&self) -> Arc<[Instance]> {
        self.snapshot.borrow().clone()
    }

    /// Whether `set` is the current set (the same allocation [`snapshot`](Self::snapshot)
    /// returns), without taking a reference to it.
    pub(crate) fn is_current(&self, set: &Arc<[Instance]>) -> bool {
        Arc::ptr_eq(&self.snapshot.borrow(), set)
    }

    /// Waits until the set changes (or its source ends, returning `false`).
    pub async fn changed(&mut self) -> bool {
        self.snapshot.changed().await.is_ok()
    }

    /// The differences between successive sets, starting with an insert for every current
    /// instance: a `TryStream` of tower [`Change`]s that never fails, so mapping each inserted
    /// instance to a service gives a `Discover` for tower's balancers.
    pub fn changes(&self) -> Changes {
        Changes::new(self.snapshot.clone())
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("service", &self.service)
            .field("instances", &self.snapshot.borrow().len())
            .finish()
    }
}

impl Publisher {
    /// Replaces the set of instances.
    pub fn publish(&self, instances: Vec<Instance>) {
        self.sender.send_replace(instances.into());
    }

    /// Whether any [`Discovery`] still follows this publisher.
    pub fn is_followed(&self) -> bool {
        !self.sender.is_closed()
    }
}

type Set = Arc<[Instance]>;

/// The next set, with the receiver to wait for the one after it.
type NextSet = Option<(Set, watch::Receiver<Set>)>;

/// A stream of [`Change`]s, computed by diffing successive sets.
///
/// ```
/// use futures_util::TryStreamExt;
/// use mesh_core::discovery::{Discovery, Instance};
/// use tower::discover::Change;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let discovery = Discovery::fixed("inventory", vec![Instance::new("inventory", "10.0.0.1", 8080)]);
/// // Map each instance to a service (here, its authority) to feed a tower balancer.
/// let mut endpoints = discovery.changes().map_ok(|change| match change {
///     Change::Insert(id, instance) => Change::Insert(id, instance.authority()),
///     Change::Remove(id) => Change::Remove(id),
/// });
/// let first = endpoints.try_next().await.unwrap();
/// assert!(matches!(first, Some(Change::Insert(_, authority)) if authority == "10.0.0.1:8080"));
/// # }
/// ```
pub struct Changes {
    known: HashMap<String, Instance>,
    pending: std::collections::VecDeque<Change>,
    next: ReusableBoxFuture<'static, NextSet>,
}

impl Changes {
    fn new(mut snapshot: watch::Receiver<Arc<[Instance]>>) -> Self {
        let current = snapshot.borrow_and_update().clone();
        let mut changes = Self {
            known: HashMap::new(),
            pending: Default::default(),
            next: ReusableBoxFuture::new(next_set(snapshot)),
        };
        changes.diff(&current);
        changes
    }

    fn diff(&mut self, current: &[Instance]) {
        let mut seen = HashMap::with_capacity(current.len());
        for instance in current {
            seen.insert(instance.id.clone(), instance.clone());
            if self.known.get(&instance.id) != Some(instance) {
                self.pending
                    .push_back(Change::Insert(instance.id.clone(), instance.clone()));
            }
        }
        for id in self.known.keys() {
            if !seen.contains_key(id) {
                self.pending.push_back(Change::Remove(id.clone()));
            }
        }
        self.known = seen;
    }
}

async fn next_set(mut snapshot: watch::Receiver<Set>) -> NextSet {
    snapshot.changed().await.ok()?;
    let current = snapshot.borrow_and_update().clone();
    Some((current, snapshot))
}

impl Stream for Changes {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match std::task::ready!(self.next.poll(cx)) {
                Some((current, snapshot)) => {
                    self.next.set(next_set(snapshot));
                    self.diff(&current);
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn changes_are_the_differences_between_sets() {
        let a = Instance::new("inventory", "10.0.0.1", 8080);
        let b = Instance::new("inventory", "10.0.0.2", 8080);
        let (publisher, discovery) = Discovery::new("inventory");
        publisher.publish(vec![a.clone()]);
        let mut changes = discovery.changes().map(Result::unwrap);
        let is_insert = |change: Option<Change>, id: &str, instance: &Instance| matches!(change, Some(Change::Insert(k, v)) if k == id && &v == instance);
        assert!(is_insert(changes.next().await, &a.id, &a));

        publisher.publish(vec![a.clone(), b.clone()]);
        assert!(is_insert(changes.next().await, &b.id, &b));

        let mut down = a.clone();
        down.status = super::super::InstanceStatus::Down;
        publisher.publish(vec![down.clone()]);
        let mut next_two = vec![changes.next().await.unwrap(), changes.next().await.unwrap()];
        next_two.sort_by_key(|c| matches!(c, Change::Remove(_)));
        assert!(is_insert(Some(next_two.remove(0)), &a.id, &down));
        assert!(matches!(next_two.remove(0), Change::Remove(id) if id == b.id));

        drop(publisher);
        assert!(
            changes.next().await.is_none(),
            "the stream ends with its source"
        );
    }
}
