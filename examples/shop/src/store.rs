//! The services' data: a keyed table behind a small interface, so a database can take the
//! in-memory one's place without the services changing. In memory here.

use std::{collections::BTreeMap, sync::RwLock};

/// Rows of `V` by key, in memory.
#[derive(Debug)]
pub struct Table<V> {
    rows: RwLock<BTreeMap<String, V>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            rows: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<V: Clone> Table<V> {
    /// The row under `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.read().get(key).cloned()
    }

    /// Puts `value` under `key`, replacing what was there.
    pub fn put(&self, key: &str, value: V) {
        self.write().insert(key.to_owned(), value);
    }

    /// Puts `value` under `key` unless a row is there; whether it was put.
    pub fn insert_new(&self, key: &str, value: V) -> bool {
        let mut rows = self.write();
        if rows.contains_key(key) {
            return false;
        }
        rows.insert(key.to_owned(), value);
        true
    }

    /// Every row, by key.
    pub fn values(&self) -> Vec<V> {
        self.read().values().cloned().collect()
    }

    /// Runs `change` on the whole table at once (a transaction, in memory).
    pub fn transact<R>(&self, change: impl FnOnce(&mut BTreeMap<String, V>) -> R) -> R {
        change(&mut self.write())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, V>> {
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, V>> {
        self.rows.write().unwrap_or_else(|e| e.into_inner())
    }
}
