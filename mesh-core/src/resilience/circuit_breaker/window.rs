use std::collections::VecDeque;

use tokio::time::Instant;

/// Call counts aggregated over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) calls: u32,
    pub(super) failed: u32,
    pub(super) slow: u32,
}

impl Totals {
    pub(super) fn failure_rate(self) -> f64 {
        rate(self.failed, self.calls)
    }

    pub(super) fn slow_call_rate(self) -> f64 {
        rate(self.slow, self.calls)
    }
}

fn rate(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) * 100.0 / f64::from(whole)
    }
}

/// A sliding window of call outcomes.
#[derive(Debug)]
pub(super) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

/// The last `size` calls, with running totals.
#[derive(Debug)]
pub(super) struct CountWindow {
    size: usize,
    calls: VecDeque<(bool, bool)>,
    totals: Totals,
}

/// One-second buckets covering the last `buckets.len()` seconds.
#[derive(Debug)]
pub(super) struct TimeWindow {
    origin: Instant,
    buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    totals: Totals,
}

impl Window {
    pub(super) fn record(&mut self, now: Instant, failed: bool, slow: bool) {
        match self {
            Self::Count(window) => window.record(failed, slow),
            Self::Time(window) => window.record(now, failed, slow),
        }
    }

    pub(super) fn totals(&self, now: Instant) -> Totals {
        match self {
            Self::Count(window) => window.totals,
            Self::Time(window) => window.totals(now),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Self::Count(window) => {
                window.calls.clear();
                window.totals = Totals::default();
            }
            Self::Time(window) => window.buckets.fill(Bucket::default()),
        }
    }
}

impl CountWindow {
    pub(super) fn new(size: u32) -> Self {
        let size = size as usize;
        Self {
            size,
            calls: VecDeque::with_capacity(size.min(1024)),
            totals: Totals::default(),
        }
    }

    pub(super) fn totals(&self) -> Totals {
        self.totals
    }

    pub(super) fn record(&mut self, failed: bool, slow: bool) {
        if self.calls.len() == self.size
            && let Some((old_failed, old_slow)) = self.calls.pop_front()
        {
            self.totals.calls -= 1;
            self.totals.failed -= u32::from(old_failed);
            self.totals.slow -= u32::from(old_slow);
        }
        self.calls.push_back((failed, slow));
        self.totals.calls += 1;
        self.totals.failed += u32::from(failed);
        self.totals.slow += u32::from(slow);
    }
}

impl TimeWindow {
    pub(super) fn new(seconds: u32, origin: Instant) -> Self {
        Self {
            origin,
            buckets: vec![Bucket::default(); seconds as usize],
        }
    }

    /// Seconds since the origin, counted from 1 so a zeroed bucket is never current.
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() + 1
    }

    fn record(&mut self, now: Instant, failed: bool, slow: bool) {
        let second = self.second(now);
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(second % len) as usize];
        if bucket.second != second {
            *bucket = Bucket {
                second,
                totals: Totals::default(),
            };
        }
        bucket.totals.calls += 1;
        bucket.totals.failed += u32::from(failed);
        bucket.totals.slow += u32::from(slow);
    }

    fn totals(&self, now: Instant) -> Totals {
        let second = self.second(now);
        let len = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.second != 0 && b.second + len > second)
            .fold(Totals::default(), |acc, b| Totals {
                calls: acc.calls + b.totals.calls,
                failed: acc.failed + b.totals.failed,
                slow: acc.slow + b.totals.slow,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn count_window_keeps_the_last_calls() {
        let mut window = Window::Count(CountWindow::new(3));
        let now = Instant::now();
        for failed in [true, true, false, false] {
            window.record(now, failed, false);
        }
        let totals = window.totals(now);
        assert_eq!((totals.calls, totals.failed), (3, 1));
        assert!((totals.failure_rate() - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn time_window_forgets_calls_older_than_its_size() {
        let origin = Instant::now();
        let mut window = Window::Time(TimeWindow::new(2, origin));
        window.record(origin, true, true);
        window.record(origin + Duration::from_millis(1500), false, false);
        let at = |ms| origin + Duration::from_millis(ms);
        assert_eq!(window.totals(at(1900)).calls, 2);
        assert_eq!(
            window.totals(at(2100)).calls,
            1,
            "the first second has left the window"
        );
        assert_eq!(window.totals(at(3100)).calls, 0);
        window.record(at(3100), true, false);
        assert_eq!(window.totals(at(3100)).failed, 1);
    }
}
