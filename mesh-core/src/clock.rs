//! Wall-clock time that follows tokio's clock, and the one clock reading a call's layers share.

use std::{
    cell::Cell,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::time::Instant;

/// Wall-clock time read as its value at creation plus tokio's elapsed time.
///
/// Timestamps shared between processes (rate-limit buckets in Redis, registry leases) need wall
/// time, and tests need to move that time with `tokio::time::pause` and `advance`: this clock
/// does both. Replicas agree on "now" as closely as their system clocks do.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_micros: u64,
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock anchored at the current system time.
    pub fn new() -> Self {
        let origin_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        Self {
            origin_micros,
            origin: Instant::now(),
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn now_micros(&self) -> u64 {
        self.micros_at(Instant::now())
    }

    /// Microseconds since the Unix epoch at `instant` (the origin's time for an earlier one).
    pub fn micros_at(&self, instant: Instant) -> u64 {
        let elapsed = instant.saturating_duration_since(self.origin);
        self.origin_micros + elapsed.as_secs() * 1_000_000 + u64::from(elapsed.subsec_micros())
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        self.now_micros() / 1000
    }
}

thread_local! {
    /// The start of the call being made on this thread, while a layer's `call` runs.
    static CALL_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `call` with the instant the call being made on this thread started.
///
/// A stack of layers makes one call inside another within a single synchronous
/// `Service::call`: the outermost layer that asks reads the clock, and every layer it calls
/// while it runs gets the same reading instead of reading the clock again (a clock read costs
/// more than the rest of some layers). Outside `call`, each use reads the clock.
pub(crate) fn call_started<R>(call: impl FnOnce(Instant) -> R) -> R {
    /// Forgets the instant when the outermost call returns or unwinds.
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            CALL_STARTED.set(None);
        }
    }
    if let Some(started) = CALL_STARTED.get() {
        return call(started);
    }
    let started = Instant::now();
    CALL_STARTED.set(Some(started));
    let _forget = Forget;
    call(started)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn nested_calls_share_the_outermost_reading_and_later_calls_read_again() {
        let (outer, inner, clock_moved_to) = call_started(|outer| {
            let mut now = Instant::now();
            while now == outer {
                now = Instant::now();
            }
            (outer, call_started(|inner| inner), now)
        });
        assert_eq!(inner, outer, "the inner layer reuses the outer reading");
        assert!(call_started(|later| later) >= clock_moved_to);
    }

    #[test]
    fn a_panicking_call_does_not_leave_its_reading_behind() {
        let first = std::panic::catch_unwind(|| call_started(|_| panic!("call failed")));
        assert!(first.is_err());
        assert_eq!(CALL_STARTED.get(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn micros_follow_tokio_time() {
        let clock = Clock::new();
        let before = clock.now_micros();
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(clock.now_micros() - before, 3_000);
        assert_eq!(clock.micros_at(Instant::now()), clock.now_micros());
    }
}
