use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::{DashMap, mapref::entry::Entry};
use foldhash::fast::RandomState;

use super::{Quota, RateLimitStore, StoreError, StoreFuture, gcra::decide};

/// Keys held before new ones are refused (a store error, so the failure policy applies).
const DEFAULT_MAX_KEYS: usize = 100_000;
/// Every this many new keys, keys whose bucket is full again are swept.
const SWEEP_EVERY: u64 = 4096;

/// The in-process rate-limit store: one theoretical arrival time per key in a dashmap.
/// Keys whose bucket has refilled are swept as new keys arrive, and the number of keys is
/// bounded, so hostile key material cannot grow it without limit. Keys are hashed with a
/// per-process random seed (foldhash), several times faster than SipHash on short keys.
#[derive(Debug)]
pub struct LocalStore {
    tats: DashMap<Box<str>, u64, RandomState>,
    inserts: AtomicU64,
    max_keys: usize,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalStore {
    /// An empty store holding at most 100 000 keys.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// An empty store holding at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            tats: DashMap::with_hasher(RandomState::default()),
            inserts: AtomicU64::new(0),
            max_keys,
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// Forgets keys whose bucket is full again: they behave exactly like unknown keys.
    fn sweep(&self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
    }

    fn decide(
        &self,
        key: &str,
        quota: Quota,
        requested: u32,
        now: u64,
    ) -> Result<super::Decision, StoreError> {
        if let Some(mut tat) = self.tats.get_mut(key) {
            let (decision, new_tat) = decide(Some(*tat), now, quota, requested);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return Ok(decision);
        }
        // Only a new key grows the map, so only new keys count towards a sweep.
        let inserts = self.inserts.fetch_add(1, Ordering::Relaxed);
        if inserts % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        if self.tats.len() >= self.max_keys {
            self.sweep(now);
            if self.tats.len() >= self.max_keys {
                return Err(StoreError::new("local rate-limit store is full"));
            }
        }
        Ok(match self.tats.entry(key.into()) {
            Entry::Occupied(mut entry) => {
                let (decision, new_tat) = decide(Some(*entry.get()), now, quota, requested);
                if let Some(new_tat) = new_tat {
                    entry.insert(new_tat);
                }
                decision
            }
            Entry::Vacant(entry) => {
                let (decision, new_tat) = decide(None, now, quota, requested);
                if let Some(new_tat) = new_tat {
                    entry.insert(new_tat);
                }
                decision
            }
        })
    }
}

impl RateLimitStore for LocalStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        requested: u32,
        now_micros: u64,
    ) -> StoreFuture<'a> {
        StoreFuture::ready(self.decide(key, quota, requested, now_micros))
    }
}
