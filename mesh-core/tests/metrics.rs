//! The layers report through the `metrics` crate: what a Prometheus exporter would scrape.

use std::time::Duration;

use http::{Request, Response};
use mesh_core::{
    error::BoxError,
    resilience::{
        bulkhead::{BulkheadConfig, BulkheadLayer},
        circuit_breaker::{Breaker, CircuitBreakerConfig, Outcome},
        rate_limit::{RateLimitConfig, RateLimitLayer},
    },
};
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use tower::{Layer, ServiceExt, service_fn};

/// The value of the metric `name` whose labels include every pair of `labels`.
fn value<'a>(
    snapshot: &'a [(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, ..)| {
            key.kind() == kind
                && key.key().name() == name
                && labels.iter().all(|(k, v)| {
                    key.key()
                        .labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                })
        })
        .map(|(.., value)| value)
}

#[test]
fn breaker_bulkhead_and_limiter_report_what_they_did() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let breaker =
                Breaker::new("payment", CircuitBreakerConfig::open_after_failures(2)).unwrap();
            for _ in 0..2 {
                breaker.try_acquire().unwrap().record(Outcome::Failure);
            }
            assert!(breaker.try_acquire().is_err());

            let ok = service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
            let limited = RateLimitLayer::new(
                "orders",
                RateLimitConfig::default()
                    .replenish_rate(1)
                    .burst_capacity(1),
            )
            .layer(ok);
            assert!(limited.clone().oneshot(Request::new(())).await.is_ok());
            assert!(limited.oneshot(Request::new(())).await.is_err());

            let slow = service_fn(|_: ()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>(())
            });
            let bulkhead =
                BulkheadLayer::new("search", BulkheadConfig::default().max_concurrent_calls(1))
                    .layer(slow);
            let first = tokio::spawn(bulkhead.clone().oneshot(()));
            tokio::task::yield_now().await;
            assert!(bulkhead.oneshot(()).await.is_err());
            first.await.unwrap().unwrap();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter =
        |name: &str, labels: &[(&str, &str)]| value(&snapshot, MetricKind::Counter, name, labels);
    let gauge =
        |name: &str, labels: &[(&str, &str)]| value(&snapshot, MetricKind::Gauge, name, labels);

    assert_eq!(
        counter(
            "mesh_circuit_breaker_transitions_total",
            &[("name", "payment"), ("from", "CLOSED"), ("to", "OPEN")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counter(
            "mesh_circuit_breaker_calls_total",
            &[("name", "payment"), ("kind", "failed")]
        ),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        counter(
            "mesh_circuit_breaker_calls_total",
            &[("name", "payment"), ("kind", "not_permitted")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        gauge(
            "mesh_circuit_breaker_state",
            &[("name", "payment"), ("state", "OPEN")]
        ),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    assert_eq!(
        counter("mesh_rate_limit_rejected_total", &[("name", "orders")]),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        counter("mesh_bulkhead_rejected_total", &[("name", "search")]),
        Some(&DebugValue::Counter(1))
    );
}
