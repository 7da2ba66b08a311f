//! gRPC with mesh: a tonic service served by `Mesh::server` and called by service ID through
//! `Mesh::grpc_channel`, and the public server layers around a plain tonic server.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use jsonwebtoken::{EncodingKey, Header, encode};
use mesh::{
    auth::{JwtConfig, JwtVerifier},
    observe::TraceContext,
    server::{
        Application,
        layers::{CatchPanicLayer, JwtAuthLayer, RequestMetricsLayer, ServerTraceLayer},
    },
};
use tonic::{Code, service::Routes, transport::Endpoint};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
    server::health_reporter,
};
use tower::{Service, ServiceBuilder};

const SECRET: &str = "a shared secret of thirty-two bytes";

/// The health service, reporting `serving` as SERVING (any other name is NOT_FOUND).
async fn health(serving: &str) -> Routes {
    let (reporter, service) = health_reporter();
    reporter
        .set_service_status(serving, ServingStatus::Serving)
        .await;
    Routes::new(service)
}

/// An instance of `stock`, configured by `config`, serving the health service that knows
/// `serving`, registered in `registry`.
async fn serve_stock(
    registry: &std::sync::Arc<mesh_registry::Registry>,
    serving: &str,
    config: serde_json::Value,
) -> mesh::runtime::Running {
    let mesh = support::mesh("stock", registry, config).await;
    mesh.server(Application::grpc(health(serving).await))
        .start()
        .await
        .unwrap()
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn a_tonic_service_is_called_by_service_id_and_each_call_is_balanced() {
    let registry = support::registry();
    // Two instances of `stock`: each knows one name, so an answer says which one served it.
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        instances.push(serve_stock(&registry, name, serde_json::json!({})).await);
    }
    let caller = support::mesh("caller", &registry, serde_json::json!({})).await;
    let mut stock = HealthClient::new(caller.grpc_channel("stock"));

    let (mut by_a, mut by_b) = (0, 0);
    for _ in 0..40 {
        match stock.check(check("a")).await {
            Ok(answer) => {
                assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
                by_a += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                by_b += 1;
            }
        }
    }
    assert!(by_a > 0 && by_b > 0, "a: {by_a}, b: {by_b}");

    // Counted under the method's path, beside the runtime's endpoints.
    let (_, metrics) = support::get(instances[0].local_addr(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("mesh_server_requests_total")
                && line.contains(r#"route="/grpc.health.v1.Health/Check""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_service_served_by_the_runtime_answers_grpc_errors_as_grpc_statuses() {
    let registry = support::registry();
    let config = serde_json::json!({"server": {"auth": {"jwt": {"secret": SECRET}}}});
    let running = serve_stock(&registry, "a", config).await;
    let mut stock = HealthClient::new(connect(running.local_addr()).await);
    let refused = stock.check(check("a")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

async fn connect(addr: SocketAddr) -> tonic::transport::Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn token() -> String {
    let claims = serde_json::json!({"sub": "ada", "exp": 4_000_000_000u64});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Adds a valid bearer token to each call.
fn bearer() -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", token()).parse().unwrap();
    move |mut request| {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        Ok(request)
    }
}

/// Panics when a call carries `x-panic` (a handler's bug); notes the trace context each
/// call is served in.
#[derive(Clone)]
struct PanicOnDemand<S> {
    inner: S,
    seen: Arc<Mutex<Vec<TraceContext>>>,
}

impl<S, B> Service<http::Request<B>> for PanicOnDemand<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        self.seen.lock().unwrap().extend(TraceContext::current());
        assert!(!request.headers().contains_key("x-panic"), "a bug");
        self.inner.call(request)
    }
}

/// The calls `mesh_server_requests_total` counted for `route` while `run` ran.
fn requests_counted(route: &str, run: impl AsyncFnOnce()) -> u64 {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A runtime of one thread inside the local recorder: every task it polls records there.
    metrics::with_local_recorder(&recorder, || runtime.block_on(run()));
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key().name() == "mesh_server_requests_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "route" && l.value() == route)
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("a counter, not {other:?}"),
        })
        .sum()
}

#[test]
fn the_server_layers_guard_a_plain_tonic_server() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let parent = TraceContext::root();
    let counted = requests_counted("/grpc.health.v1.Health/Check", async || {
        let verifier = JwtVerifier::new(JwtConfig::with_secret(SECRET)).unwrap();
        let noted = seen.clone();
        let layers = ServiceBuilder::new()
            .layer(RequestMetricsLayer::new("stock"))
            .layer(ServerTraceLayer::new("stock"))
            .layer(CatchPanicLayer::new())
            .layer(JwtAuthLayer::new(verifier))
            .layer(tower::layer::layer_fn(move |inner| PanicOnDemand {
                inner,
                seen: noted.clone(),
            }));
        let (reporter, service) = health_reporter();
        reporter
            .set_service_status("a", ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(layers)
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = connect(addr).await;

        let mut anonymous = HealthClient::new(channel.clone());
        let refused = anonymous.check(check("a")).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

        // Served in the trace its `traceparent` names, as a child span.
        let mut signed_in = HealthClient::with_interceptor(channel, bearer());
        let mut request = tonic::Request::new(check("a"));
        request
            .metadata_mut()
            .insert("traceparent", parent.to_string().parse().unwrap());
        let answer = signed_in.check(request).await.unwrap().into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32);

        // A panic is an INTERNAL status, and the server goes on.
        let mut request = tonic::Request::new(check("a"));
        request
            .metadata_mut()
            .insert("x-panic", "1".parse().unwrap());
        let failed = signed_in.check(request).await.unwrap_err();
        assert_eq!(failed.code(), Code::Internal, "{failed:?}");
        assert!(signed_in.check(check("a")).await.is_ok());
    });
    // The anonymous call stopped at the JWT layer; the other three reached the service.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].trace_id(), parent.trace_id());
    assert_ne!(
        seen[0].span_id(),
        parent.span_id(),
        "the server's span is a child"
    );
    assert_ne!(
        seen[1].trace_id(),
        parent.trace_id(),
        "a call without one starts a trace"
    );
    // Every call is counted under its gRPC method, the refused and the failed too.
    assert_eq!(counted, 4);
}

/// An HTTP/2 connection over TLS (ALPN `h2`) to `addr`, as a tower service for tonic.
async fn h2_over_tls(
    addr: SocketAddr,
) -> impl Service<
    http::Request<tonic::body::Body>,
    Response = http::Response<tonic::body::Body>,
    Error = hyper::Error,
    Future: Send,
> + Clone {
    use tokio_rustls::rustls::pki_types::ServerName;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = support::tls_connector(b"h2")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    tower::service_fn(move |mut request: http::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        // HTTP/2 over TLS names the scheme and authority.
        *request.uri_mut() = format!("https://localhost{}", request.uri().path())
            .parse()
            .unwrap();
        async move {
            let answer = sender.send_request(request).await?;
            Ok(answer.map(tonic::body::Body::new))
        }
    })
}

#[tokio::test]
async fn a_tonic_service_is_served_over_tls_behind_the_server_layers() {
    let registry = support::registry();
    let config = serde_json::json!({
        "server": {
            "tls": {"cert": support::TLS_CERT, "key": support::TLS_KEY},
            "auth": {"jwt": {"secret": SECRET}},
        },
    });
    let running = serve_stock(&registry, "a", config).await;
    let channel = h2_over_tls(running.local_addr()).await;

    let refused = HealthClient::new(channel.clone())
        .check(check("a"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let mut signed_in = HealthClient::with_interceptor(channel, bearer());
    let answer = signed_in.check(check("a")).await.unwrap().into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
}
