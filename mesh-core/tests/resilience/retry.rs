//! Retry: classification, backoff, budget, replay and deadlines.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use mesh_core::{
    BoxBody,
    error::BoxError,
    resilience::{
        retry::{Idempotent, NotSent, RetryBudgetConfig, RetryConfig, RetryLayer},
        timeout::Deadline,
    },
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::support::{body, status, text};

/// What the upstream saw: arrival time and body of each attempt.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

/// An upstream answering attempt `n` with `script[n]` (the last entry repeats).
fn upstream(
    script: Vec<Result<u16, io::ErrorKind>>,
) -> (
    impl tower::Service<Request<BoxBody>, Response = Response<()>, Error = BoxError, Future = impl Send>
    + Clone
    + Send
    + 'static,
    Seen,
) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let service = service_fn(move |request: Request<BoxBody>| {
        let log = log.clone();
        let script = script.clone();
        async move {
            let body = text(request.into_body()).await;
            let attempt = {
                let mut log = log.lock().unwrap();
                log.push((Instant::now(), body));
                log.len() - 1
            };
            match script[attempt.min(script.len() - 1)] {
                Ok(code) => Ok(status(code)),
                Err(kind) => Err(io::Error::from(kind).into()),
            }
        }
    });
    (service, seen)
}

fn config() -> RetryConfig {
    RetryConfig::default()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(100))
        .multiplier(2.0)
        .max_backoff(Duration::from_secs(1))
        .jitter(false)
}

fn get(body_text: &'static str) -> Request<BoxBody> {
    Request::builder()
        .method(Method::GET)
        .uri("/inventory/42")
        .body(body(body_text))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_gateway_errors_with_exponential_backoff_and_replays_the_body() {
    let (upstream, seen) = upstream(vec![Ok(503), Ok(502), Ok(200)]);
    let service = RetryLayer::new("test", config()).layer(upstream);
    let started = Instant::now();

    let response = service.oneshot(get("payload")).await.unwrap();

    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    let offsets: Vec<_> = seen.iter().map(|(at, _)| *at - started).collect();
    assert_eq!(
        offsets,
        [0, 100, 300].map(Duration::from_millis),
        "backoff doubles from 100 ms"
    );
    assert!(seen.iter().all(|(_, body)| body == "payload"));
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_response() {
    let (upstream, seen) = upstream(vec![Ok(503)]);
    let service = RetryLayer::new("test", config()).layer(upstream);
    let response = service.oneshot(get("")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried() {
    let (upstream, seen) = upstream(vec![Err(io::ErrorKind::ConnectionRefused), Ok(200)]);
    let service = RetryLayer::new("test", config()).layer(upstream);
    assert_eq!(service.oneshot(get("")).await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_500_are_not_retried() {
    for code in [400, 404, 500] {
        let (upstream, seen) = upstream(vec![Ok(code), Ok(200)]);
        let service = RetryLayer::new("test", config()).layer(upstream);
        assert_eq!(service.oneshot(get("")).await.unwrap().status(), code);
        assert_eq!(seen.lock().unwrap().len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_methods_are_sent_once_unless_the_route_allows() {
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .body(body("order"))
            .unwrap()
    };
    let (upstream_a, seen) = upstream(vec![Ok(503), Ok(200)]);
    let service = RetryLayer::new("test", config()).layer(upstream_a);
    assert_eq!(service.oneshot(post()).await.unwrap().status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 1);

    let (upstream_b, seen) = upstream(vec![Ok(503), Ok(200)]);
    let service = RetryLayer::new("test", config()).layer(upstream_b);
    let mut request = post();
    request.extensions_mut().insert(Idempotent);
    assert_eq!(service.oneshot(request).await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);

    let (upstream_c, seen) = upstream(vec![Ok(503), Ok(200)]);
    let layer = RetryLayer::new("test", config().retry_non_idempotent(true));
    assert_eq!(
        layer
            .layer(upstream_c)
            .oneshot(post())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A POST whose first attempt was never sent (its connection refused) goes again with its
/// body; one that may have been written (a reset after sending) does not.
#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_that_was_never_sent_is_retried() {
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .body(body("order"))
            .unwrap()
    };
    let failing_once = |not_sent: bool| {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let service = service_fn(move |request: Request<BoxBody>| {
            let log = log.clone();
            async move {
                let body = text(request.into_body()).await;
                let attempt = {
                    let mut log = log.lock().unwrap();
                    log.push((Instant::now(), body));
                    log.len()
                };
                if attempt > 1 {
                    return Ok(status(200));
                }
                let io = io::Error::from(io::ErrorKind::ConnectionRefused);
                let error: BoxError = if not_sent {
                    Box::new(NotSent::new(io))
                } else {
                    Box::new(io)
                };
                Err(error)
            }
        });
        (service, seen)
    };
    let (refused, seen) = failing_once(true);
    let service = RetryLayer::new("test", config()).layer(refused);
    assert_eq!(service.oneshot(post()).await.unwrap().status(), 200);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1, "order", "the body goes again");
    }

    let (reset, seen) = failing_once(false);
    let service = RetryLayer::new("test", config()).layer(reset);
    assert!(service.oneshot(post()).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1, "maybe written: sent once");
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_replay_cap_are_streamed_once_and_never_retried() {
    let (upstream, seen) = upstream(vec![Ok(503), Ok(200)]);
    let service = RetryLayer::new("test", config().max_replay_body_bytes(4)).layer(upstream);
    let chunks: Vec<Result<_, BoxError>> = ["big ", "body ", "here"]
        .into_iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    let streaming = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
    let request = Request::builder().uri("/upload").body(streaming).unwrap();

    assert_eq!(service.oneshot(request).await.unwrap().status(), 503);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "big body here", "the body arrives whole");
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retries_from_amplifying_an_outage() {
    let (upstream, seen) = upstream(vec![Ok(503)]);
    let budget = RetryBudgetConfig::default()
        .ttl(Duration::from_secs(1))
        .min_retries_per_second(2)
        .percent_can_retry(0.0);
    let service = RetryLayer::new("test", config().budget(budget)).layer(upstream);
    for _ in 0..10 {
        let response = service.clone().oneshot(get("")).await.unwrap();
        assert_eq!(response.status(), 503);
    }
    // Ten requests, and only the two retries the budget's floor allows in its window.
    assert_eq!(seen.lock().unwrap().len(), 12);
}

#[tokio::test(start_paused = true)]
async fn the_budget_grows_with_traffic() {
    let (upstream, seen) = upstream(vec![Ok(503)]);
    let budget = RetryBudgetConfig::default()
        .min_retries_per_second(0)
        .percent_can_retry(0.5);
    let service = RetryLayer::new("test", config().max_attempts(2).budget(budget)).layer(upstream);
    for _ in 0..10 {
        service.clone().oneshot(get("")).await.unwrap();
    }
    // Each request earns half a retry: every second request may be retried.
    assert_eq!(seen.lock().unwrap().len(), 15);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_past_the_deadline() {
    let (upstream, seen) = upstream(vec![Ok(503)]);
    let service = RetryLayer::new("test", config().max_attempts(5)).layer(upstream);
    let mut request = get("");
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(250)));
    let started = Instant::now();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    // Attempts at 0 and 100 ms; the next would start at 300 ms, past the 250 ms deadline.
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_of_an_outer_timeout_stops_retries() {
    use mesh_core::resilience::timeout::{TimeoutConfig, TimeoutLayer};

    let (upstream, seen) = upstream(vec![Ok(503)]);
    let service = tower::ServiceBuilder::new()
        .layer(TimeoutLayer::new(
            "test",
            TimeoutConfig::default().timeout(Duration::from_millis(250)),
        ))
        .layer(RetryLayer::new("test", config().max_attempts(5)))
        .service(upstream);
    let response = service.oneshot(get("")).await.unwrap();
    assert_eq!(response.status(), 503, "the last answer, not a timeout");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_custom_policy_decides_what_is_retried() {
    let (upstream, seen) = upstream(vec![Ok(409), Ok(200)]);
    let policy = |result: &Result<Response<()>, BoxError>| matches!(result, Ok(response) if response.status() == 409);
    let layer = RetryLayer::with_classifier("test", config(), policy).unwrap();
    assert_eq!(
        layer
            .layer(upstream)
            .oneshot(get(""))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_service_that_is_send_but_not_sync_makes_send_futures_and_is_retried() {
    let (upstream, seen) = upstream(vec![Ok(503), Ok(200)]);
    // `BoxCloneService` is `Send` but not `Sync`.
    let upstream = tower::util::BoxCloneService::new(upstream);
    let mut service = RetryLayer::new("test", config()).layer(upstream);
    let ready = ServiceExt::<Request<BoxBody>>::ready(&mut service);
    let call = ready.await.unwrap().call(get(""));
    let response = tokio::spawn(call).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn invalid_configs_name_the_field() {
    let error = RetryLayer::try_new("test", config().multiplier(0.5)).unwrap_err();
    assert_eq!(error.field(), "multiplier");
    let error = RetryLayer::try_new(
        "test",
        config().budget(RetryBudgetConfig::default().ttl(Duration::from_secs(600))),
    )
    .unwrap_err();
    assert_eq!(error.field(), "budget.ttl");
}
