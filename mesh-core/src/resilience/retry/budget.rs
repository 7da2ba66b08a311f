use std::{
    sync::atomic::{AtomicIsize, AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// Slots the budget's time to live is divided into: deposits expire one slot at a time.
const SLOTS: u64 = 10;

/// Finagle's retry budget, lock-free: every request deposits a fraction of a retry, every
/// retry withdraws a whole one, and deposits expire after the time to live; a reserve of
/// `min_per_second × ttl` retries is always there.
///
/// Deposits go into one of ten slots by the time they were made; a slot is emptied when the
/// window comes round to it again. The caller passes the time in, so a request that already
/// read the clock does not read it again. A deposit racing the turn of a window may be lost,
/// which errs towards fewer retries.
#[derive(Debug)]
pub(super) struct RetryBudget {
    slots: Box<[AtomicIsize]>,
    /// The window (time since `origin` divided by the slot length) the slots were last
    /// turned to.
    window: AtomicU64,
    origin: Instant,
    slot_nanos: u64,
    reserve: isize,
    deposit_amount: isize,
    withdraw_amount: isize,
}

impl RetryBudget {
    /// A budget whose deposits live `ttl`, with `min_per_second` retries always allowed and
    /// `percent_can_retry` of a retry earned per request (as tower's and Finagle's budgets).
    pub(super) fn new(ttl: Duration, min_per_second: u32, percent_can_retry: f32) -> Self {
        // Whole numbers: a request deposits `deposit_amount`, a retry costs `withdraw_amount`.
        let (deposit_amount, withdraw_amount) = if percent_can_retry == 0.0 {
            (0, 1)
        } else if percent_can_retry <= 1.0 {
            (1, (1.0 / percent_can_retry) as isize)
        } else {
            (1000, (1000.0 / percent_can_retry) as isize)
        };
        let reserve = (min_per_second as isize)
            .saturating_mul(ttl.as_secs() as isize)
            .saturating_mul(withdraw_amount);
        Self {
            slots: (0..SLOTS).map(|_| AtomicIsize::new(0)).collect(),
            window: AtomicU64::new(0),
            origin: Instant::now(),
            slot_nanos: (ttl.as_nanos() as u64 / SLOTS).max(1),
            reserve,
            deposit_amount,
            withdraw_amount,
        }
    }

    /// Records a request made at `now`.
    pub(super) fn deposit(&self, now: Instant) {
        self.slot(now)
            .fetch_add(self.deposit_amount, Ordering::Relaxed);
    }

    /// Takes one retry at `now` if the budget holds one.
    pub(super) fn withdraw(&self, now: Instant) -> bool {
        let slot = self.slot(now);
        let balance = self
            .slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(self.reserve, isize::saturating_add);
        if balance < self.withdraw_amount {
            return false;
        }
        slot.fetch_sub(self.withdraw_amount, Ordering::Relaxed);
        true
    }

    /// The slot of `now`, after emptying the slots whose deposits have expired since the last
    /// turn.
    fn slot(&self, now: Instant) -> &AtomicIsize {
        let window =
            (now.saturating_duration_since(self.origin).as_nanos() as u64) / self.slot_nanos;
        let last = self.window.load(Ordering::Relaxed);
        if window > last
            && self
                .window
                .compare_exchange(last, window, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // The winner of the turn empties every slot that came round again (all of them
            // after a silence of a whole time to live).
            for passed in (last + 1..=window).take(SLOTS as usize) {
                self.slots[(passed % SLOTS) as usize].store(0, Ordering::Relaxed);
            }
        }
        &self.slots[(window % SLOTS) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(budget: &RetryBudget, millis: u64) -> Instant {
        budget.origin + Duration::from_millis(millis)
    }

    #[test]
    fn the_reserve_allows_min_per_second_times_ttl_retries() {
        let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.2);
        let now = at(&budget, 0);
        let granted = (0..20).filter(|_| budget.withdraw(now)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn deposits_earn_their_share_of_retries() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
        let now = at(&budget, 0);
        for _ in 0..50 {
            budget.deposit(now);
        }
        let granted = (0..20).filter(|_| budget.withdraw(now)).count();
        assert_eq!(granted, 10, "50 requests at 20% earn 10 retries");
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
        for _ in 0..10 {
            budget.deposit(at(&budget, 0));
        }
        assert!(budget.withdraw(at(&budget, 9_000)), "still inside the ttl");
        assert!(
            !budget.withdraw(at(&budget, 10_500)),
            "every deposit expired after the ttl"
        );
    }

    #[test]
    fn expiry_is_per_slot() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        budget.deposit(at(&budget, 0));
        budget.deposit(at(&budget, 5_000));
        let later = at(&budget, 10_200);
        assert!(budget.withdraw(later), "the 5 s deposit lives on");
        assert!(!budget.withdraw(later), "the 0 s deposit expired");
    }

    #[test]
    fn a_zero_percent_budget_grants_only_the_reserve() {
        let budget = RetryBudget::new(Duration::from_secs(1), 2, 0.0);
        let now = at(&budget, 0);
        for _ in 0..1000 {
            budget.deposit(now);
        }
        let granted = (0..10).filter(|_| budget.withdraw(now)).count();
        assert_eq!(granted, 2);
    }
}
