use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Wall-clock microseconds that advance with tokio's clock, so paused-time tests drive the
/// limiter and replicas sharing Redis agree on "now" as closely as their clocks do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    origin_micros: u64,
    origin: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let origin_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        Self {
            origin_micros,
            origin: Instant::now(),
        }
    }

    pub(super) fn now_micros(&self) -> u64 {
        self.origin_micros + self.origin.elapsed().as_micros() as u64
    }
}
