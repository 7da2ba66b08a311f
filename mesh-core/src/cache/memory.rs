use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

use bytes::Bytes;
use metrics::Counter;
use tokio::time::Instant;

use super::{CacheFuture, CacheStore};

/// Entries in this process, at most `max_entries`: past the bound, expired entries go first,
/// then the oldest written (counted as `mesh_cache_evictions_total{cache, reason="size"}`).
/// TTLs follow tokio's clock, so tests can move it.
#[derive(Debug)]
pub struct MemoryCacheStore {
    max_entries: usize,
    state: Mutex<State>,
    evicted: Counter,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were written, with the write they name: a key written again
    /// is queued again, and its older place is skipped when reached.
    order: VecDeque<(String, u64)>,
    writes: u64,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Instant,
    write: u64,
}

impl MemoryCacheStore {
    /// A store for the cache `name` holding at most `max_entries` (at least one).
    pub fn new(name: &str, max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            state: Mutex::default(),
            evicted: metrics::counter!(
                "mesh_cache_evictions_total",
                "cache" => name.to_owned(),
                "reason" => "size",
            ),
        }
    }

    /// How many entries it holds, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Makes room for one entry more: expired entries first, then the oldest written.
    fn make_room(&mut self, max_entries: usize, now: Instant, evicted: &Counter) {
        if self.entries.len() < max_entries {
            return;
        }
        self.entries.retain(|_, entry| entry.expires > now);
        self.order
            .retain(|(key, write)| self.entries.get(key).is_some_and(|e| e.write == *write));
        while self.entries.len() >= max_entries {
            let Some((key, write)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.write == write)
            {
                self.entries.remove(&key);
                evicted.increment(1);
            }
        }
    }
}

impl CacheStore for MemoryCacheStore {
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<Bytes>> {
        let now = Instant::now();
        let value = self
            .lock()
            .entries
            .get(key)
            .filter(|entry| entry.expires > now)
            .map(|entry| entry.value.clone());
        Box::pin(std::future::ready(Ok(value)))
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> CacheFuture<'a, ()> {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.entries.contains_key(key) {
            state.make_room(self.max_entries, now, &self.evicted);
        }
        state.writes += 1;
        let write = state.writes;
        state.order.push_back((key.to_owned(), write));
        state.entries.insert(
            key.to_owned(),
            Entry {
                value,
                // A TTL past any instant (`Duration::MAX`, "forever") is a century.
                expires: now
                    .checked_add(ttl)
                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
                write,
            },
        );
        // Keys written again leave stale places behind: compact once they dominate.
        if state.order.len() > 2 * self.max_entries {
            let State { entries, order, .. } = &mut *state;
            order.retain(|(key, write)| entries.get(key).is_some_and(|e| e.write == *write));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, key: &'a str) -> CacheFuture<'a, bool> {
        let removed = self.lock().entries.remove(key).is_some();
        Box::pin(std::future::ready(Ok(removed)))
    }
}
