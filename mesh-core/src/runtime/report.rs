//! The summary a service sends with each renewal: how it answered since the last one, and the
//! state of its clients' circuit breakers.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    observe::{ServerSeries, Totals},
    registry::{
        Report,
        summary::{BreakerSummary, InstanceSummary, MAX_BREAKERS, MAX_NAME_BYTES},
    },
    resilience::circuit_breaker::{Breaker, BreakerSet, State},
};

/// A report of the answers counted in `series` and of the breakers in `breakers`.
pub(super) fn reporter(series: Arc<ServerSeries>, breakers: Arc<BreakerSet>) -> Report {
    let last = Mutex::new((Instant::now(), series.totals()));
    Arc::new(move || {
        let now = Instant::now();
        let totals = series.totals();
        let (then, before) = std::mem::replace(
            &mut *last.lock().unwrap_or_else(|e| e.into_inner()),
            (now, totals),
        );
        summarize(before, totals, now - then, &breakers.breakers())
    })
}

/// The summary of the answers between `before` and `after`, `elapsed` apart, and of
/// `breakers`: one entry per name (the one in the most telling state when clients share a
/// name), at most [`MAX_BREAKERS`], those refusing calls first.
fn summarize(
    before: Totals,
    after: Totals,
    elapsed: Duration,
    breakers: &[Breaker],
) -> InstanceSummary {
    let answers = after.answers.saturating_sub(before.answers);
    let errors = after.server_errors.saturating_sub(before.server_errors);
    let micros = after.micros.saturating_sub(before.micros);
    let per_answer = |value: u64, scale: f64| {
        if answers == 0 {
            0.0
        } else {
            value as f64 / answers as f64 / scale
        }
    };
    let seconds = elapsed.as_secs_f64();
    let mut named: BTreeMap<&str, BreakerSummary> = BTreeMap::new();
    for breaker in breakers {
        let name = breaker.name();
        if name.len() > MAX_NAME_BYTES {
            continue;
        }
        let metrics = breaker.metrics();
        let summary = BreakerSummary {
            name: name.to_owned(),
            state: metrics.state,
            failure_rate: (metrics.failure_rate / 100.0).clamp(0.0, 1.0),
        };
        match named.get(name) {
            Some(known) if severity(known.state) >= severity(summary.state) => {}
            _ => {
                named.insert(name, summary);
            }
        }
    }
    // Past the bound, the breakers refusing calls are the ones kept.
    let mut breakers: Vec<BreakerSummary> = named.into_values().collect();
    breakers.sort_by_key(|breaker| std::cmp::Reverse(severity(breaker.state)));
    breakers.truncate(MAX_BREAKERS);
    InstanceSummary {
        requests_per_second: if seconds > 0.0 {
            answers as f64 / seconds
        } else {
            0.0
        },
        // Two counters read one after the other can be a moment apart.
        error_rate: per_answer(errors, 1.0).min(1.0),
        mean_latency_ms: per_answer(micros, 1000.0),
        breakers,
    }
}

/// How much a state tells an operator: refusing calls first.
fn severity(state: State) -> u8 {
    match state {
        State::Open | State::ForcedOpen => 3,
        State::HalfOpen => 2,
        State::Closed => 1,
        State::Disabled => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::circuit_breaker::{CircuitBreakerConfig, Outcome};

    fn breaker(name: &str) -> Breaker {
        Breaker::new(name, CircuitBreakerConfig::open_after_failures(2)).unwrap()
    }

    #[test]
    fn rates_are_per_second_and_per_answer_between_two_reports() {
        let before = Totals {
            answers: 100,
            server_errors: 5,
            micros: 50_000,
        };
        let after = Totals {
            answers: 300,
            server_errors: 55,
            micros: 450_000,
        };
        let summary = summarize(before, after, Duration::from_secs(4), &[]);
        assert_eq!(summary.requests_per_second, 50.0);
        assert_eq!(summary.error_rate, 0.25);
        assert_eq!(summary.mean_latency_ms, 2.0);
        let idle = summarize(after, after, Duration::from_secs(4), &[]);
        assert_eq!(
            (
                idle.requests_per_second,
                idle.error_rate,
                idle.mean_latency_ms
            ),
            (0.0, 0.0, 0.0)
        );
        assert!(summary.validate().is_ok() && idle.validate().is_ok());
    }

    #[tokio::test]
    async fn breakers_are_named_once_in_their_most_telling_state_and_bounded() {
        let closed = breaker("payment-service");
        let open = breaker("payment-service");
        for _ in 0..2 {
            open.try_acquire().unwrap().record(Outcome::Failure);
        }
        // Past the bound by name order, and still kept: it refuses calls.
        let open_late = breaker("zz-last-service");
        for _ in 0..2 {
            open_late.try_acquire().unwrap().record(Outcome::Failure);
        }
        let many: Vec<Breaker> = (0..MAX_BREAKERS + 5)
            .map(|i| breaker(&format!("service-{i:02}")))
            .collect();
        let mut all = vec![closed, open];
        all.extend(many);
        all.push(open_late);
        let summary = summarize(Totals::default(), Totals::default(), Duration::ZERO, &all);
        assert_eq!(summary.breakers.len(), MAX_BREAKERS);
        let payment = summary
            .breakers
            .iter()
            .find(|b| b.name == "payment-service")
            .expect("an open breaker is kept");
        assert_eq!(payment.state, State::Open);
        assert_eq!(payment.failure_rate, 1.0);
        assert!(summary.breakers.iter().any(|b| b.name == "zz-last-service"));
        assert!(summary.validate().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reporter_reports_the_answers_since_its_last_report() {
        let series = Arc::new(ServerSeries::new("orders".into()));
        let set = Arc::new(BreakerSet::default());
        let report = reporter(series.clone(), set.clone());
        series.tally(200, Duration::from_millis(1));
        series.tally(500, Duration::from_millis(3));
        tokio::time::advance(Duration::from_secs(2)).await;
        let first = report();
        assert_eq!(first.requests_per_second, 1.0);
        assert_eq!(first.error_rate, 0.5);
        assert_eq!(first.mean_latency_ms, 2.0);
        let payment = breaker("payment-service");
        set.track(&payment);
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = report();
        assert_eq!(second.requests_per_second, 0.0);
        assert_eq!(second.breakers.len(), 1);
        assert_eq!(second.breakers[0].state, State::Closed);
    }
}
