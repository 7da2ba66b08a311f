//! Verified tokens, remembered until they expire so a repeated token skips the signature
//! check.

use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use mesh_core::auth::Identity;

/// A bounded in-memory cache of verified tokens.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: DashMap<String, (Identity, u64)>,
    capacity: usize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::new(),
            capacity,
        }
    }

    /// The identity of a token verified before and not expired since.
    pub(crate) fn get(&self, token: &str) -> Option<Identity> {
        let hit = self.entries.get(token).map(|e| e.value().clone())?;
        if hit.1 > now() {
            return Some(hit.0);
        }
        self.entries.remove(token);
        None
    }

    /// Remembers a verified token until its `exp`. When full, expired entries go first; if
    /// none has expired the token is simply not remembered.
    pub(crate) fn put(&self, token: &str, identity: &Identity) {
        let Some(exp) = identity.claims.get("exp").and_then(|e| e.as_u64()) else {
            return;
        };
        if self.entries.len() >= self.capacity {
            let now = now();
            self.entries.retain(|_, (_, exp)| *exp > now);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries
            .insert(token.to_owned(), (identity.clone(), exp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(exp: u64) -> Identity {
        Identity {
            subject: "alice".into(),
            roles: vec![],
            claims: [("exp".to_owned(), serde_json::json!(exp))].into(),
        }
    }

    #[test]
    fn remembers_until_expiry_and_within_capacity() {
        let cache = TokenCache::new(2);
        cache.put("a", &identity(now() + 60));
        cache.put("b", &identity(now() - 1));
        assert_eq!(cache.get("a").unwrap().subject, "alice");
        assert!(cache.get("b").is_none(), "expired");
        cache.put("c", &identity(now() + 60));
        cache.put("d", &identity(now() + 60));
        assert!(
            cache.get("d").is_none(),
            "full of live tokens: not remembered"
        );
        assert!(cache.get("c").is_some());
    }
}
