//! Wall-clock time that follows tokio's clock.

use std::time::{SystemTime, UNIX_EPOCH};

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
        let elapsed = self.origin.elapsed();
        self.origin_micros + elapsed.as_secs() * 1_000_000 + u64::from(elapsed.subsec_micros())
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        self.now_micros() / 1000
    }
}
