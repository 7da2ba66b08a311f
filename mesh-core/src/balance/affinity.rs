//! Requests that must reach the same instance as the ones before them: a session held in one
//! instance's memory (Socket.IO's polling transport), a cache warmed per key.

use super::ring::hash;

/// A request extension that keeps every request with the same key on one instance, whatever
/// the balancing strategy. The instance is chosen by rendezvous hashing over the instances'
/// IDs: a key moves only when its instance leaves (or is ejected), and then to the next in its
/// own order, so the other keys stay where they are.
///
/// ```
/// use mesh_core::balance::Affinity;
///
/// let session = Affinity::of(b"Lbo0hOfuNe1vOoNpAAAB");
/// assert_eq!(session, Affinity::of(b"Lbo0hOfuNe1vOoNpAAAB"));
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(session);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Affinity(u64);

impl Affinity {
    /// The affinity of `key`.
    pub fn of(key: &[u8]) -> Self {
        Self(hash(key))
    }

    /// How much `instance` (its ID) is worth to this key: the highest-scoring candidate wins.
    pub(super) fn score(self, instance: &str) -> u64 {
        let mut bytes = Vec::with_capacity(8 + instance.len());
        bytes.extend_from_slice(&self.0.to_le_bytes());
        bytes.extend_from_slice(instance.as_bytes());
        hash(&bytes)
    }
}
