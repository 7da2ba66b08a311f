use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::SeqCst},
};

use tokio::sync::Notify;

/// The bulkhead's slots: a counter taken and given back with one atomic operation each, so
/// concurrent calls on several threads share no lock. Callers allowed to wait park on a
/// [`Notify`] that a freed slot wakes, only while someone is waiting.
///
/// A slot freed while callers wait goes to whoever asks first, a waiter or a new arrival:
/// the order is not strictly first come, first served.
#[derive(Debug)]
pub(super) struct Slots {
    max: usize,
    used: AtomicUsize,
    waiting: AtomicUsize,
    freed: Notify,
}

/// One taken slot; dropping it gives the slot back.
#[derive(Debug)]
pub(super) struct Slot(Arc<Slots>);

impl Slots {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Slots free right now.
    pub(super) fn available(&self) -> usize {
        self.max.saturating_sub(self.used.load(SeqCst))
    }

    /// A slot if one is free.
    pub(super) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(SeqCst, SeqCst, |used| (used < self.max).then_some(used + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// A slot, waiting as long as it takes (the caller bounds the wait). Dropping the future
    /// leaves the queue.
    pub(super) async fn take(self: Arc<Self>) -> Slot {
        /// Counts this caller among the waiters until it stops waiting, however it stops.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        self.waiting.fetch_add(1, SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            if let Some(slot) = self.try_take() {
                return slot;
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking again, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return slot;
            }
            freed.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.0;
        slots.used.fetch_sub(1, SeqCst);
        // A waiter counted after this load looks at `used` after the decrement above.
        if slots.waiting.load(SeqCst) > 0 {
            slots.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_maximum_and_given_back_on_drop() {
        let slots = Arc::new(Slots::new(2));
        let first = slots.try_take().unwrap();
        let _second = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.available(), 0);
        drop(first);
        assert_eq!(slots.available(), 1);
        assert!(slots.try_take().is_some());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_next_freed_slot() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.try_take().unwrap();
        let waiter = tokio::spawn(slots.clone().take());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let slot = waiter.await.unwrap();
        assert_eq!(slots.available(), 0);
        drop(slot);
        assert_eq!(slots.available(), 1);
        assert_eq!(slots.waiting.load(SeqCst), 0);
    }

    #[tokio::test]
    async fn many_threads_never_exceed_the_maximum() {
        let slots = Arc::new(Slots::new(3));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (slots, peak) = (slots.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(slot) = slots.try_take() {
                            peak.fetch_max(slots.max - slots.available(), SeqCst);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.join().unwrap();
        }
        assert!(peak.load(SeqCst) <= 3);
        assert_eq!(slots.available(), 3);
    }
}
