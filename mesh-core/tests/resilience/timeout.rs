//! Timeout and deadline propagation.

use std::time::Duration;

use http::Request;
use mesh_core::error::{ErrorKind, MeshError};
use mesh_core::resilience::timeout::{
    Deadline, Elapsed, HonorDeadlineLayer, InvalidDeadline, TIMEOUT_HEADER, TimeoutConfig,
    TimeoutLayer, decode_timeout,
};
use tokio::time::{Instant, sleep};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

use super::support::is;

fn layer(ms: u64) -> TimeoutLayer {
    TimeoutLayer::new(
        "test",
        TimeoutConfig::default().timeout(Duration::from_millis(ms)),
    )
}

#[tokio::test(start_paused = true)]
async fn a_call_slower_than_the_timeout_fails_with_elapsed() {
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, (), _>(layer(100));
    assert_ready_ok!(service.poll_ready());
    let mut response = tokio_test::task::spawn(service.call(Request::new(())));
    let _request = handle.next_request().await.unwrap();
    assert_pending!(response.poll());

    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(response.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let error = assert_ready_err!(response.poll());
    assert!(is::<Elapsed>(&error));
    assert_eq!(MeshError::from_boxed(error).kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_bound_future_has_the_layers_deadline_and_error() {
    let layer = layer(100);
    let budget = decode_timeout(layer.budget_header().unwrap().as_bytes()).unwrap();
    assert_eq!(budget, Duration::from_millis(100));
    let quick = layer.bound(async {
        sleep(Duration::from_millis(99)).await;
        Ok::<_, MeshError>(Deadline::current().map(Deadline::remaining))
    });
    assert_eq!(quick.await.unwrap(), Some(Duration::from_millis(1)));
    let slow = layer.bound(async {
        sleep(Duration::from_millis(101)).await;
        Ok::<_, MeshError>(())
    });
    let error = slow.await.unwrap_err();
    assert!(is::<Elapsed>(&error));
    let quiet = TimeoutLayer::new("quiet", TimeoutConfig::default().propagate(false));
    assert!(quiet.budget_header().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_call_within_the_timeout_returns_its_response() {
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, &str, _>(layer(100));
    assert_ready_ok!(service.poll_ready());
    let mut response = tokio_test::task::spawn(service.call(Request::new(())));
    let (_, send) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(50)).await;
    send.send_response("ok");
    assert_eq!(assert_ready_ok!(response.poll()), "ok");
}

#[tokio::test(start_paused = true)]
async fn the_budget_travels_in_a_header_and_is_current_behind_the_layer() {
    let inner = service_fn(|request: Request<()>| async move {
        let header = decode_timeout(request.headers()[TIMEOUT_HEADER].as_bytes()).unwrap();
        let current = Deadline::current().map(Deadline::remaining);
        Ok::<_, std::convert::Infallible>((header, current))
    });
    let (header, current) = layer(800)
        .layer(inner)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(header, Duration::from_millis(800));
    assert_eq!(current, Some(Duration::from_millis(800)));
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_on_the_request_wins_over_the_timeout() {
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, (), _>(layer(800));
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(30)));
    assert_ready_ok!(service.poll_ready());
    let mut response = tokio_test::task::spawn(service.call(request));
    let (seen, _send) = handle.next_request().await.unwrap();
    let budget = decode_timeout(seen.headers()[TIMEOUT_HEADER].as_bytes()).unwrap();
    assert_eq!(budget, Duration::from_millis(30));
    tokio::time::advance(Duration::from_millis(30)).await;
    assert!(is::<Elapsed>(&assert_ready_err!(response.poll())));
}

#[tokio::test(start_paused = true)]
async fn propagation_can_be_switched_off() {
    let layer = TimeoutLayer::new("test", TimeoutConfig::default().propagate(false));
    let (mut service, mut handle) = mock::spawn_layer::<Request<()>, (), _>(layer);
    assert_ready_ok!(service.poll_ready());
    let _response = service.call(Request::new(()));
    let (request, _) = handle.next_request().await.unwrap();
    assert!(request.headers().get(TIMEOUT_HEADER).is_none());
}

#[tokio::test(start_paused = true)]
async fn the_server_side_fails_work_past_the_callers_budget() {
    let handler = service_fn(|_: Request<()>| async {
        sleep(Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>("done")
    });
    let server = HonorDeadlineLayer::new().layer(handler);
    let request = Request::builder()
        .header(TIMEOUT_HEADER, "100m")
        .body(())
        .unwrap();
    let started = Instant::now();
    let error = server.oneshot(request).await.unwrap_err();
    assert!(is::<Elapsed>(&error));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn calls_made_by_a_handler_inherit_its_deadline() {
    // The downstream client: a timeout layer with a generous timeout of its own.
    let (downstream, mut downstream_handle) = mock::pair::<Request<()>, ()>();
    let client = layer(10_000).layer(downstream);
    let handler = service_fn(move |_: Request<()>| {
        let client = client.clone();
        async move {
            assert!(
                Deadline::current().is_some(),
                "the handler sees the deadline"
            );
            client.oneshot(Request::new(())).await
        }
    });
    let server = HonorDeadlineLayer::new().layer(handler);
    let request = Request::builder()
        .header("grpc-timeout", "250m")
        .body(())
        .unwrap();
    let call = tokio::spawn(server.oneshot(request));
    let (forwarded, _send) = downstream_handle.next_request().await.unwrap();
    let budget = decode_timeout(forwarded.headers()[TIMEOUT_HEADER].as_bytes()).unwrap();
    assert_eq!(budget, Duration::from_millis(250), "the budget cascades");
    let error = call.await.unwrap().unwrap_err();
    assert!(is::<Elapsed>(&error));
}

#[tokio::test]
async fn a_malformed_budget_is_a_bad_request() {
    let handler = service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(()) });
    let server = HonorDeadlineLayer::new().layer(handler);
    let request = Request::builder()
        .header(TIMEOUT_HEADER, "soon")
        .body(())
        .unwrap();
    let error = server.oneshot(request).await.unwrap_err();
    assert!(is::<InvalidDeadline>(&error));
    assert_eq!(MeshError::from_boxed(error).status().as_u16(), 400);
}

#[tokio::test(start_paused = true)]
async fn the_server_caps_what_a_caller_may_grant() {
    let handler = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Deadline::current().unwrap().remaining())
    });
    let server = HonorDeadlineLayer::new()
        .max_budget(Duration::from_secs(2))
        .layer(handler);
    let request = Request::builder()
        .header(TIMEOUT_HEADER, "9H")
        .body(())
        .unwrap();
    assert_eq!(
        server.oneshot(request).await.unwrap(),
        Duration::from_secs(2)
    );
}

#[test]
fn an_invalid_config_names_the_field() {
    let error = TimeoutLayer::try_new("test", TimeoutConfig::default().timeout(Duration::ZERO))
        .unwrap_err();
    assert_eq!(error.field(), "timeout");
}
