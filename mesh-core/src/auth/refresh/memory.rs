//! Refresh tokens in this process's memory: for one instance of an auth service, and tests.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{RefreshRecord, RefreshStore, StoreFuture, Taken};

/// Most records kept; past it, expired ones are dropped first, then the oldest.
const MAX_RECORDS: usize = 1 << 20;

/// Refresh tokens in memory, bounded; see [`RefreshStore`].
#[derive(Debug, Default)]
pub struct MemoryRefreshStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// By token hash: the record, whether it was used, when it goes.
    tokens: HashMap<String, (RefreshRecord, bool, Instant)>,
    /// Revoked families, until when.
    revoked: HashMap<String, Instant>,
}

impl MemoryRefreshStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Drops what expired; when still full, the records closest to expiring.
    fn make_room(&mut self) {
        if self.tokens.len() < MAX_RECORDS {
            return;
        }
        let now = Instant::now();
        self.tokens.retain(|_, (_, _, until)| *until > now);
        self.revoked.retain(|_, until| *until > now);
        while self.tokens.len() >= MAX_RECORDS {
            let Some(first) = self
                .tokens
                .iter()
                .min_by_key(|(_, (_, _, until))| *until)
                .map(|(hash, _)| hash.clone())
            else {
                break;
            };
            self.tokens.remove(&first);
        }
    }
}

impl RefreshStore for MemoryRefreshStore {
    fn insert<'a>(
        &'a self,
        hash: &'a str,
        record: &'a RefreshRecord,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let mut state = self.state();
        state.make_room();
        state.tokens.insert(
            hash.to_owned(),
            (record.clone(), false, Instant::now() + ttl),
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn take<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Taken> {
        let mut state = self.state();
        let taken = match state.tokens.get_mut(hash) {
            Some((record, used, until)) if *until > Instant::now() => {
                let was_used = std::mem::replace(used, true);
                if was_used {
                    Taken::Used(record.clone())
                } else {
                    Taken::Fresh(record.clone())
                }
            }
            _ => Taken::Unknown,
        };
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn get<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<RefreshRecord>> {
        let record = self
            .state()
            .tokens
            .get(hash)
            .filter(|(_, _, until)| *until > Instant::now())
            .map(|(record, _, _)| record.clone());
        Box::pin(std::future::ready(Ok(record)))
    }

    fn revoke<'a>(&'a self, family: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        self.state()
            .revoked
            .insert(family.to_owned(), Instant::now() + ttl);
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_revoked<'a>(&'a self, family: &'a str) -> StoreFuture<'a, bool> {
        let revoked = self
            .state()
            .revoked
            .get(family)
            .is_some_and(|until| *until > Instant::now());
        Box::pin(std::future::ready(Ok(revoked)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_behaviour_suite() {
        super::super::suite::behaviour_suite(Arc::new(MemoryRefreshStore::new())).await;
    }
}
