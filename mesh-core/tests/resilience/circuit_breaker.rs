//! The circuit breaker through its tower layer.

use std::time::Duration;

use http::{Request, Response};
use mesh_core::{
    error::{BoxError, ErrorKind, MeshError},
    resilience::circuit_breaker::{
        Breaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, FallbackLayer, Outcome,
        ServerErrorsAreFailures, SlidingWindowType, State, StateTransition,
    },
};
use tokio_test::assert_ready_ok;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

use super::support::{is, status};

type Handle = mock::Handle<&'static str, &'static str>;

/// Calls the service once, failing the call at the mock when `fail`.
async fn call<S>(
    service: &mut mock::Spawn<S>,
    handle: &mut Handle,
    fail: bool,
) -> Result<&'static str, BoxError>
where
    S: tower::Service<&'static str, Response = &'static str, Error = BoxError>,
{
    assert_ready_ok!(service.poll_ready());
    let response = service.call("pay");
    if let Ok(Some((_, send))) =
        tokio::time::timeout(Duration::from_millis(1), handle.next_request()).await
    {
        if fail {
            send.send_error("payment gateway down");
        } else {
            send.send_response("paid");
        }
    }
    response.await
}

#[tokio::test(start_paused = true)]
async fn five_payment_failures_open_the_circuit_and_calls_then_fail_fast() {
    let layer = CircuitBreakerLayer::new("payment", CircuitBreakerConfig::open_after_failures(5));
    let breaker = layer.breaker().clone();
    let (mut service, mut handle) = mock::spawn_layer(layer);

    for _ in 0..4 {
        assert!(call(&mut service, &mut handle, true).await.is_err());
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "four failures are not enough"
    );
    assert!(call(&mut service, &mut handle, true).await.is_err());
    assert_eq!(breaker.state(), State::Open);

    assert_ready_ok!(service.poll_ready());
    let error = service.call("pay").await.unwrap_err();
    assert!(is::<CircuitOpen>(&error));
    assert!(
        tokio::time::timeout(Duration::from_millis(1), handle.next_request())
            .await
            .is_err(),
        "an open circuit never reaches the upstream"
    );
    assert_eq!(MeshError::from_boxed(error).kind(), ErrorKind::CircuitOpen);
}

#[tokio::test(start_paused = true)]
async fn successes_interleaved_with_failures_keep_the_circuit_closed() {
    let layer = CircuitBreakerLayer::new("payment", CircuitBreakerConfig::open_after_failures(3));
    let breaker = layer.breaker().clone();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    for fail in [true, true, false, true, true, false] {
        let _ = call(&mut service, &mut handle, fail).await;
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn after_the_wait_a_trial_call_closes_or_reopens_the_circuit() {
    let config = CircuitBreakerConfig::open_after_failures(2)
        .wait_duration_in_open_state(Duration::from_secs(10));
    let layer = CircuitBreakerLayer::new("payment", config);
    let breaker = layer.breaker().clone();
    let mut events = breaker.subscribe();
    let (mut service, mut handle) = mock::spawn_layer(layer);

    for _ in 0..2 {
        let _ = call(&mut service, &mut handle, true).await;
    }
    assert_eq!(breaker.state(), State::Open);

    // Automatic transition: the timer moves the breaker, no call needed.
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);

    // The trial fails: open again.
    assert!(call(&mut service, &mut handle, true).await.is_err());
    assert_eq!(breaker.state(), State::Open);

    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        call(&mut service, &mut handle, false).await.unwrap(),
        "paid"
    );
    assert_eq!(breaker.state(), State::Closed);

    let mut seen = Vec::new();
    while let Ok(StateTransition { from, to }) = events.try_recv() {
        seen.push((from, to));
    }
    use State::*;
    assert_eq!(
        seen,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_automatic_transition_the_first_call_after_the_wait_is_the_trial() {
    let config = CircuitBreakerConfig::open_after_failures(1)
        .wait_duration_in_open_state(Duration::from_secs(5))
        .automatic_transition_from_open_to_half_open_enabled(false);
    let breaker = Breaker::new("stock", config).unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(breaker.state(), State::Open, "nothing moved it yet");
    let trial = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(
        breaker.try_acquire().is_err(),
        "only one trial call is permitted"
    );
    trial.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_call_frees_its_slot() {
    let config = CircuitBreakerConfig::open_after_failures(1)
        .wait_duration_in_open_state(Duration::from_secs(1))
        .automatic_transition_from_open_to_half_open_enabled(false);
    let breaker = Breaker::new("stock", config).unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    tokio::time::advance(Duration::from_secs(1)).await;
    let trial = breaker.try_acquire().unwrap();
    drop(trial);
    let retry = breaker.try_acquire().expect("the slot came back");
    retry.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_circuit() {
    let config = CircuitBreakerConfig::default()
        .sliding_window_size(4)
        .minimum_number_of_calls(4)
        .slow_call_duration_threshold(Duration::from_millis(500))
        .slow_call_rate_threshold(50.0);
    let breaker = Breaker::new("search", config).unwrap();
    for slow in [false, true, false, true] {
        let permit = breaker.try_acquire().unwrap();
        if slow {
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Open);
    let metrics = breaker.metrics();
    assert_eq!(
        (metrics.calls, metrics.slow_calls),
        (4, 2),
        "the window that opened it stays readable"
    );
    assert_eq!(metrics.slow_call_rate, 50.0);
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_needs_the_minimum_number_of_calls() {
    let config = CircuitBreakerConfig::default()
        .sliding_window_size(10)
        .minimum_number_of_calls(4)
        .failure_rate_threshold(50.0);
    let breaker = Breaker::new("orders", config).unwrap();
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls, metrics.failed_calls), (3, 2));
    assert_eq!(
        breaker.state(),
        State::Closed,
        "66% failures, but only 3 calls"
    );
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Open, "50% of 4 calls");
}

#[tokio::test(start_paused = true)]
async fn a_time_based_window_forgets_old_failures() {
    let config = CircuitBreakerConfig::default()
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_size(10)
        .minimum_number_of_calls(3)
        .failure_rate_threshold(100.0);
    let breaker = Breaker::new("orders", config).unwrap();
    for _ in 0..2 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the first two left the window"
    );
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_do_not_count() {
    let breaker = Breaker::new("orders", CircuitBreakerConfig::open_after_failures(2)).unwrap();
    for _ in 0..5 {
        breaker.try_acquire().unwrap().record(Outcome::Ignored);
    }
    assert_eq!(breaker.metrics().calls, 0);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn disabled_and_forced_open_are_set_by_hand() {
    let breaker = Breaker::new("orders", CircuitBreakerConfig::open_after_failures(1)).unwrap();
    breaker.transition_to_disabled();
    for _ in 0..3 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(
        breaker.state(),
        State::Disabled,
        "a disabled breaker never opens"
    );

    breaker.transition_to_forced_open();
    tokio::time::advance(Duration::from_secs(3600)).await;
    let refused = breaker.try_acquire().unwrap_err();
    assert_eq!(
        refused.state(),
        State::ForcedOpen,
        "forced open does not time out"
    );

    breaker.transition_to_closed();
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn server_errors_can_count_as_failures() {
    let upstream = service_fn(|_: Request<()>| async { Ok::<_, BoxError>(status(500)) });
    let layer = CircuitBreakerLayer::new("inventory", CircuitBreakerConfig::open_after_failures(2))
        .with_classifier(ServerErrorsAreFailures);
    let breaker = layer.breaker().clone();
    let service = layer.layer(upstream);
    for _ in 0..2 {
        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 500);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_while_the_circuit_is_open() {
    let upstream =
        service_fn(|_: &'static str| async { Err::<Response<&str>, BoxError>("down".into()) });
    let layer = CircuitBreakerLayer::new("payment", CircuitBreakerConfig::open_after_failures(1));
    let breaker = layer.breaker().clone();
    let service = ServiceBuilder::new()
        .layer(FallbackLayer::new(|error: BoxError| async move {
            if error.is::<CircuitOpen>() {
                Ok(Response::new("payment queued for later"))
            } else {
                Err(error)
            }
        }))
        .layer(layer)
        .service(upstream);

    let first = service.clone().oneshot("pay").await.unwrap_err();
    assert_eq!(
        first.to_string(),
        "down",
        "other errors pass through the fallback"
    );
    assert_eq!(breaker.state(), State::Open);
    let answered = service.oneshot("pay").await.unwrap();
    assert_eq!(*answered.body(), "payment queued for later");
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_keeps_the_inner_readiness() {
    let layer = CircuitBreakerLayer::new("payment", CircuitBreakerConfig::open_after_failures(1));
    let breaker = layer.breaker().clone();
    breaker.transition_to_forced_open();
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(layer);
    handle.allow(1);
    assert_ready_ok!(service.poll_ready());
    assert!(is::<CircuitOpen>(&service.call("pay").await.unwrap_err()));

    breaker.transition_to_closed();
    // The inner service admits one call only: it is still reserved after the refusal.
    assert_ready_ok!(service.poll_ready());
    let response = service.call("pay");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response("paid");
    assert_eq!(response.await.unwrap(), "paid");
}

#[test]
fn invalid_configs_name_the_field() {
    let error =
        Breaker::new("x", CircuitBreakerConfig::default().sliding_window_size(0)).unwrap_err();
    assert_eq!(error.field(), "sliding_window_size");
}

#[tokio::test(start_paused = true)]
async fn refusals_by_inner_layers_do_not_count_against_the_upstream() {
    use mesh_core::resilience::bulkhead::{BulkheadConfig, BulkheadLayer};

    let breaker_layer =
        CircuitBreakerLayer::new("inventory", CircuitBreakerConfig::open_after_failures(1));
    let breaker = breaker_layer.breaker().clone();
    let bulkhead = BulkheadLayer::new(
        "inventory",
        BulkheadConfig::default().max_concurrent_calls(1),
    );
    let (mock, mut handle) = mock::pair::<&'static str, &'static str>();
    let service = ServiceBuilder::new()
        .layer(breaker_layer)
        .layer(bulkhead)
        .service(mock);

    let first = tokio::spawn(service.clone().oneshot("a"));
    let (_, send) = handle.next_request().await.unwrap();
    let refused = service.clone().oneshot("b").await.unwrap_err();
    assert!(is::<mesh_core::resilience::bulkhead::BulkheadFull>(
        &refused
    ));
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a full bulkhead is not an upstream failure"
    );
    send.send_response("A");
    first.await.unwrap().unwrap();
    assert_eq!(breaker.metrics().calls, 1);
}
