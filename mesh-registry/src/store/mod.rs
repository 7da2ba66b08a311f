//! Where registrations live: one trait, an in-memory backend (the embedded default) and, with
//! the `redis` feature, a Redis backend that several registry replicas share.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::{future::Future, pin::Pin, sync::Arc};

use mesh_core::discovery::{InstanceStatus, ServiceId};
use tokio::sync::watch;

pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
use crate::model::{Event, Registration, Snapshot};

/// The future a store answers with.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store failed (a backend's connection, say).
#[derive(Debug, thiserror::Error)]
#[error("registry store failed: {0}")]
pub struct StoreError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

/// A new random epoch (never 0, which stands for "unknown" in a watcher's cursor).
pub(crate) fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // The standard library seeds every `RandomState` from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish().max(1)
}

/// Every registration at one revision, shared with the store where it can be: what the
/// registry renders its catalogue answers from without copying the catalogue first.
#[derive(Debug, Clone)]
pub struct SharedSnapshot {
    /// The epoch of the store the snapshot comes from.
    pub epoch: u64,
    /// The revision the snapshot reflects.
    pub revision: u64,
    /// Every registration, ordered by service then instance id.
    pub registrations: Vec<Arc<Registration>>,
}

/// The registry's storage. Every change gets the next revision and is kept in a bounded log,
/// so watchers can resume from the revision they last saw.
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// The store's epoch: chosen at random when the store starts empty, kept while it holds
    /// its revisions, so a watcher's revision is only ever compared with revisions of the same
    /// history.
    fn epoch(&self) -> u64;

    /// Adds or replaces a registration (its `last_updated_ms` is the time of the change).
    fn put(&self, registration: Registration) -> StoreFuture<'_, Event>;

    /// One registration, if known.
    fn get<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Registration>>;

    /// Renews a lease at `now_ms` and counts the renewal; `false` when the instance is unknown.
    fn renew<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, bool>;

    /// Renewals counted from `since_ms` to `now_ms` (at one-second granularity), across every
    /// replica sharing the store: what self-preservation compares with the expected rate.
    fn renewals_since(&self, since_ms: u64, now_ms: u64) -> StoreFuture<'_, u64>;

    /// Removes a registration at `now_ms`; `None` when it was unknown.
    fn remove<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>>;

    /// Sets or clears the status override at `now_ms`; `None` when the instance is unknown.
    fn set_override<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        status: Option<InstanceStatus>,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>>;

    /// Every registration at the current revision.
    fn snapshot(&self) -> StoreFuture<'_, Snapshot>;

    /// Every registration at the current revision, shared rather than copied where the store
    /// can (the in-memory store does); by default a [`snapshot`](Self::snapshot).
    fn shared_snapshot(&self) -> StoreFuture<'_, SharedSnapshot> {
        Box::pin(async move {
            let snapshot = self.snapshot().await?;
            Ok(SharedSnapshot {
                epoch: snapshot.epoch,
                revision: snapshot.revision,
                registrations: snapshot.registrations.into_iter().map(Arc::new).collect(),
            })
        })
    }

    /// How many registrations the store holds.
    fn count(&self) -> StoreFuture<'_, usize>;

    /// The changes after `revision`, oldest first; `None` when the log no longer reaches back
    /// that far (the caller needs a snapshot).
    fn events_since(&self, revision: u64) -> StoreFuture<'_, Option<Vec<Event>>>;

    /// The changes made at or after `since_ms` that the log still holds, oldest first.
    fn recent(&self, since_ms: u64) -> StoreFuture<'_, Vec<Event>>;

    /// The current revision, updated as changes happen.
    fn revisions(&self) -> watch::Receiver<u64>;

    /// The current revision, read now: what a reader checks its cached answer against before
    /// taking a snapshot. By default the last one [`revisions`](Self::revisions) announced.
    fn revision(&self) -> StoreFuture<'_, u64> {
        let revision = *self.revisions().borrow();
        Box::pin(std::future::ready(Ok(revision)))
    }
}
