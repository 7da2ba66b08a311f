//! Answers rendered once per revision and shared: concurrent readers of the catalogue get one
//! [`Bytes`] between them instead of a rendering each.
//!
//! Like Eureka's response cache, but never stale: an answer is served only while the store's
//! revision is the one it was rendered at, and every change makes a new revision. Lease
//! timestamps inside an answer (Eureka's `lastRenewalTimestamp`) are those of its revision;
//! renewals do not change the revision.

use std::{collections::HashMap, future::Future, sync::Mutex};

use bytes::Bytes;

use crate::eureka::Format;

/// How many answers one revision keeps (per-application answers are keyed by name; past this
/// they are rendered for each reader instead of kept).
const MAX_ENTRIES: usize = 256;

/// An answer that can be shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// `GET /eureka/apps`.
    EurekaApps(Format),
    /// `GET /eureka/apps/delta`; its stamp is the second it was rendered in, as its window
    /// moves with time.
    EurekaDelta(Format),
    /// `GET /eureka/apps/{APP}`.
    EurekaApp(Format, String),
    /// `GET /v1/services`.
    NativeServices,
    /// `GET /v1/services/{service}`.
    NativeService(String),
    /// `GET /v1/watch?since=0`: the whole registry.
    WatchSnapshot,
}

/// The answers of the current revision.
#[derive(Debug, Default)]
pub(crate) struct Renderings {
    current: Mutex<Current>,
    /// One rendering at a time: readers missing the same answer wait for the first to
    /// render it rather than each building a copy.
    rendering: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Current {
    revision: u64,
    answers: HashMap<Key, (u64, Bytes)>,
}

impl Renderings {
    /// The answer for `key` at `revision` (stamped `stamp`), rendered by `render` — which
    /// returns the revision it rendered at and the answer — only if no reader has yet.
    pub(crate) async fn get_or_render<F, Fut, E>(
        &self,
        revision: u64,
        key: Key,
        stamp: u64,
        render: F,
    ) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(u64, Bytes), E>>,
    {
        if let Some(found) = self.find(revision, &key, stamp) {
            return Ok(found);
        }
        let _rendering = self.rendering.lock().await;
        if let Some(found) = self.find(revision, &key, stamp) {
            return Ok(found);
        }
        let (rendered_at, answer) = render().await?;
        let mut current = self.lock();
        if rendered_at > current.revision {
            // A new revision: every older answer goes.
            current.revision = rendered_at;
            current.answers.clear();
        }
        if rendered_at == current.revision
            && (current.answers.len() < MAX_ENTRIES || current.answers.contains_key(&key))
        {
            current.answers.insert(key, (stamp, answer.clone()));
        }
        Ok(answer)
    }

    fn find(&self, revision: u64, key: &Key, stamp: u64) -> Option<Bytes> {
        let current = self.lock();
        if current.revision != revision {
            return None;
        }
        current
            .answers
            .get(key)
            .filter(|(at, _)| *at == stamp)
            .map(|(_, answer)| answer.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A rendered answer as shared bytes, without spare capacity held for as long as it is shared.
pub(crate) fn into_bytes(mut text: Vec<u8>) -> Bytes {
    text.shrink_to_fit();
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn one_rendering_per_revision_and_a_new_revision_renders_again() {
        let renderings = Arc::new(Renderings::default());
        let renders = Arc::new(AtomicUsize::new(0));
        let mut readers = Vec::new();
        for _ in 0..16 {
            let renderings = renderings.clone();
            let renders = renders.clone();
            readers.push(tokio::spawn(async move {
                renderings
                    .get_or_render(1, Key::NativeServices, 0, || async {
                        renders.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, StoreError>((1, Bytes::from_static(b"one")))
                    })
                    .await
                    .unwrap()
            }));
        }
        for reader in readers {
            assert_eq!(reader.await.unwrap(), "one");
        }
        assert_eq!(
            renders.load(Ordering::SeqCst),
            1,
            "readers share one rendering"
        );

        let two = renderings
            .get_or_render(2, Key::NativeServices, 0, || async {
                renders.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StoreError>((2, Bytes::from_static(b"two")))
            })
            .await
            .unwrap();
        assert_eq!(
            two, "two",
            "a new revision is never answered from the old one"
        );
        assert_eq!(renders.load(Ordering::SeqCst), 2);

        let stamped = renderings
            .get_or_render(2, Key::NativeServices, 7, || async {
                Ok::<_, StoreError>((2, Bytes::from_static(b"later")))
            })
            .await
            .unwrap();
        assert_eq!(stamped, "later", "another stamp renders again");
    }
}
