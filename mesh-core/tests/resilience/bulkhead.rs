//! Bulkhead: bounded concurrency, bounded waiting, no leaked slots.

use std::time::Duration;

use mesh_core::{
    error::{ErrorKind, MeshError},
    resilience::bulkhead::{BulkheadConfig, BulkheadFull, BulkheadLayer},
};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::support::is;

fn layer(max: usize, wait_ms: u64) -> BulkheadLayer {
    BulkheadLayer::new(
        "test",
        BulkheadConfig::default()
            .max_concurrent_calls(max)
            .max_wait_duration(Duration::from_millis(wait_ms)),
    )
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_the_limit_are_rejected_at_once() {
    let layer = layer(2, 0);
    let (mock, mut handle) = mock::pair::<&str, &str>();
    let service = layer.layer(mock);

    let first = tokio::spawn(service.clone().oneshot("a"));
    let second = tokio::spawn(service.clone().oneshot("b"));
    let (_, first_send) = handle.next_request().await.unwrap();
    let (_, second_send) = handle.next_request().await.unwrap();
    assert_eq!(layer.available_slots(), 0);

    let error = service.clone().oneshot("c").await.unwrap_err();
    assert!(is::<BulkheadFull>(&error));
    assert_eq!(MeshError::from_boxed(error).kind(), ErrorKind::BulkheadFull);

    first_send.send_response("A");
    second_send.send_response("B");
    assert_eq!(first.await.unwrap().unwrap(), "A");
    assert_eq!(second.await.unwrap().unwrap(), "B");
    assert_eq!(
        layer.available_slots(),
        2,
        "finished calls free their slots"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_gets_the_slot_a_finished_call_frees() {
    let layer = layer(1, 100);
    let (mock, mut handle) = mock::pair::<&str, &str>();
    let service = layer.layer(mock);

    let first = tokio::spawn(service.clone().oneshot("a"));
    let (_, first_send) = handle.next_request().await.unwrap();
    let mut waiting = mock::Spawn::new(service.clone());
    assert_pending!(waiting.poll_ready(), "waits for a slot");

    tokio::time::advance(Duration::from_millis(50)).await;
    first_send.send_response("A");
    first.await.unwrap().unwrap();
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll_ready());
    let response = waiting.call("b");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response("B");
    assert_eq!(response.await.unwrap(), "B");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_waits_too_long_is_rejected() {
    let layer = layer(1, 100);
    let (mock, mut handle) = mock::pair::<&str, &str>();
    let service = layer.layer(mock);
    let _first = tokio::spawn(service.clone().oneshot("a"));
    let _request = handle.next_request().await.unwrap();

    let mut waiting = mock::Spawn::new(service.clone());
    assert_pending!(waiting.poll_ready());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_ready_ok!(waiting.poll_ready(), "ready to fail fast");
    assert!(is::<BulkheadFull>(&waiting.call("b").await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_dropped_calls_never_leak_a_slot() {
    let layer = layer(3, 1_000);
    let (mock, mut handle) = mock::pair::<&str, &str>();
    let service = layer.layer(mock);

    // In-flight calls whose tasks are aborted.
    let mut in_flight = Vec::new();
    let mut unanswered = Vec::new();
    for _ in 0..3 {
        in_flight.push(tokio::spawn(service.clone().oneshot("slow")));
        unanswered.push(handle.next_request().await.unwrap());
    }
    assert_eq!(layer.available_slots(), 0);
    // A waiter, cancelled while queued.
    let waiter = tokio::spawn(service.clone().oneshot("queued"));
    tokio::task::yield_now().await;
    waiter.abort();
    for call in in_flight {
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
    }
    let _ = waiter.await;
    assert_eq!(layer.available_slots(), 3);

    // A service that reserved a slot in poll_ready and was dropped before calling.
    let mut reserved = service.clone();
    std::future::poll_fn(|cx| reserved.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(layer.available_slots(), 2);
    drop(reserved);
    assert_eq!(layer.available_slots(), 3);

    // A response future dropped before completion.
    let mut caller = service.clone();
    std::future::poll_fn(|cx| caller.poll_ready(cx))
        .await
        .unwrap();
    let response = caller.call("dropped");
    drop(response);
    assert_eq!(layer.available_slots(), 3);
}

#[tokio::test(start_paused = true)]
async fn clones_start_without_a_reservation() {
    let layer = layer(1, 0);
    let (mock, _handle) = mock::pair::<&str, &str>();
    let mut service = layer.layer(mock);
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let mut clone = service.clone();
    assert_eq!(layer.available_slots(), 0);
    std::future::poll_fn(|cx| clone.poll_ready(cx))
        .await
        .unwrap();
    assert!(is::<BulkheadFull>(&clone.call("x").await.unwrap_err()));
}

#[test]
fn invalid_configs_name_the_field() {
    let error =
        BulkheadLayer::try_new("x", BulkheadConfig::default().max_concurrent_calls(0)).unwrap_err();
    assert_eq!(error.field(), "max_concurrent_calls");
}
