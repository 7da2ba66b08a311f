//! The live dashboard over a real socket: the page and its assets, the view, the event stream
//! that follows renewals and their summaries, the bounds on a summary, the read credentials,
//! and a shutdown that ends the streams.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh_core::{
    discovery::{Instance, ServiceId},
    registry::{
        RegistryClient,
        summary::{BreakerSummary, InstanceSummary, MAX_BREAKERS},
    },
    resilience::circuit_breaker::State,
};
use mesh_registry::{AuthConfig, Registry, RegistryConfig, User};
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

type Http = Client<HttpConnector, Full<Bytes>>;

struct Server {
    base: String,
    http: Http,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

async fn start(config: RegistryConfig) -> Server {
    let registry = Arc::new(Registry::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(mesh_registry::serve(listener, registry, async move {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{addr}"),
        http: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(stop),
        served,
    }
}

impl Server {
    async fn get(&self, path: &str, authorization: Option<&str>) -> http::Response<Bytes> {
        let mut request = Request::get(format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let answer = self
            .http
            .request(request.body(Full::default()).unwrap())
            .await
            .unwrap();
        let (parts, body) = answer.into_parts();
        http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }

    async fn renew(&self, path: &str, body: String) -> StatusCode {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::from(body))
            .unwrap();
        self.http.request(request).await.unwrap().status()
    }

    /// Follows `/dashboard/events`.
    async fn events(&self) -> Events {
        let request = Request::get(format!("{}/dashboard/events", self.base))
            .body(Full::default())
            .unwrap();
        let answer = self.http.request(request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "an event stream"
        );
        Events {
            body: answer.into_body(),
            buffer: String::new(),
        }
    }
}

/// A server-sent event stream, read one event at a time.
struct Events {
    body: hyper::body::Incoming,
    buffer: String,
}

impl Events {
    /// The next event's name and data; `None` when the stream ends.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, data));
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")?
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next `view` event's JSON.
    async fn view(&mut self) -> Value {
        let (name, data) = self.next().await.expect("the stream goes on");
        assert_eq!(name, "view", "{data}");
        serde_json::from_str(&data).unwrap()
    }

    /// Views until one satisfies `wanted`.
    async fn view_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let view = self.view().await;
            if wanted(&view) {
                return view;
            }
        }
    }
}

fn instance(service: &str, port: u16) -> Instance {
    let mut instance = Instance::new(service, "127.0.0.1", port);
    instance.id = format!("127.0.0.1:{service}:{port}");
    instance.metadata.insert("version".into(), "1.4.0".into());
    instance
}

fn payment_open() -> InstanceSummary {
    InstanceSummary {
        requests_per_second: 12.5,
        error_rate: 0.2,
        mean_latency_ms: 3.25,
        breakers: vec![BreakerSummary {
            name: "payment-service".into(),
            state: State::Open,
            failure_rate: 1.0,
        }],
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let server = start(RegistryConfig::default()).await;
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/page.js", "text/javascript"),
        ("/dashboard/page.css", "text/css"),
    ] {
        let answer = server.get(path, None).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let content_type = answer.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let policy = answer.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }
    let page = server.get("/dashboard", None).await;
    let page = std::str::from_utf8(page.body()).unwrap();
    assert!(page.contains("/dashboard/page.js") && page.contains("/dashboard/page.css"));
    let script = server.get("/dashboard/page.js", None).await;
    let script = std::str::from_utf8(script.body()).unwrap();
    assert!(script.contains("/dashboard/events"));
    assert!(
        !script.contains("innerHTML"),
        "registrants' data is written as text"
    );
}

#[tokio::test]
async fn the_stream_shows_instances_and_follows_their_summaries() {
    let server = start(RegistryConfig::default()).await;
    let client = RegistryClient::new(&server.base).unwrap();
    let orders = instance("order-service", 5000);
    client
        .register(&orders, Duration::from_secs(5), Duration::from_secs(15))
        .await
        .unwrap();

    let mut events = server.events().await;
    let first = events.view().await;
    assert_eq!(first["instances"], 1);
    assert_eq!(first["self_preservation"], false);
    let shown = &first["services"][0];
    assert_eq!(shown["name"], "order-service");
    let row = &shown["instances"][0];
    assert_eq!(row["id"], "127.0.0.1:order-service:5000");
    assert_eq!(row["status"], "UP");
    assert_eq!(row["version"], "1.4.0");
    assert!(row["summary"].is_null(), "no summary before a renewal");

    // A renewal that carries a summary shows up on the open stream.
    let service = ServiceId::new("order-service");
    assert!(
        client
            .renew_with_summary(&service, &orders.id, &payment_open())
            .await
            .unwrap()
    );
    let view = events
        .view_where(|view| !view["services"][0]["instances"][0]["summary"].is_null())
        .await;
    let summary = &view["services"][0]["instances"][0]["summary"];
    assert_eq!(summary["requests_per_second"], 12.5);
    assert_eq!(summary["error_rate"], 0.2);
    assert_eq!(summary["mean_latency_ms"], 3.25);
    assert_eq!(summary["breakers"][0]["name"], "payment-service");
    assert_eq!(summary["breakers"][0]["state"], "OPEN");

    // A new instance and a deregistration move the view too.
    let stock = instance("stock-service", 5001);
    client
        .register(&stock, Duration::from_secs(5), Duration::from_secs(15))
        .await
        .unwrap();
    let view = events.view_where(|view| view["instances"] == 2).await;
    assert_eq!(view["services"][1]["name"], "stock-service");
    client.deregister(&service, &orders.id).await.unwrap();
    let view = events.view_where(|view| view["instances"] == 1).await;
    assert_eq!(view["services"][0]["name"], "stock-service");

    // The one-shot view agrees.
    let answer = server.get("/dashboard/view", None).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let once: Value = serde_json::from_slice(answer.body()).unwrap();
    assert_eq!(once["instances"], 1);
}

#[tokio::test]
async fn a_summary_out_of_bounds_is_refused_and_not_kept() {
    let server = start(RegistryConfig::default()).await;
    let client = RegistryClient::new(&server.base).unwrap();
    let orders = instance("order-service", 5000);
    client
        .register(&orders, Duration::from_secs(5), Duration::from_secs(15))
        .await
        .unwrap();
    let path = format!(
        "/v1/services/order-service/instances/{}/heartbeat",
        orders.id
    );
    let mut too_many = payment_open();
    too_many.breakers = (0..=MAX_BREAKERS)
        .map(|i| BreakerSummary {
            name: format!("service-{i}"),
            state: State::Closed,
            failure_rate: 0.0,
        })
        .collect();
    let too_many = serde_json::to_string(&too_many).unwrap();
    assert_eq!(server.renew(&path, too_many).await, StatusCode::BAD_REQUEST);
    let huge = format!(
        r#"{{"requests_per_second":1,"error_rate":0,"mean_latency_ms":0,"breakers":[{{"name":"{}","state":"OPEN","failure_rate":1}}]}}"#,
        "x".repeat(10_000)
    );
    assert_eq!(
        server.renew(&path, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let not_a_summary = r#"{"requests_per_second":"many"}"#.to_owned();
    assert_eq!(
        server.renew(&path, not_a_summary).await,
        StatusCode::BAD_REQUEST
    );
    let view = server.get("/dashboard/view", None).await;
    let view: Value = serde_json::from_slice(view.body()).unwrap();
    assert!(view["services"][0]["instances"][0]["summary"].is_null());
    // Each refused summary still renewed the lease, as does a renewal without a body.
    assert_eq!(server.renew(&path, String::new()).await, StatusCode::OK);
    let metrics = server.get("/metrics", None).await;
    let metrics = std::str::from_utf8(metrics.body()).unwrap();
    assert!(
        metrics.contains("mesh_registry_renewals_total 4"),
        "{metrics}"
    );
    // An unknown instance is told to register, whatever its summary.
    let unknown = "/v1/services/order-service/instances/gone/heartbeat";
    assert_eq!(
        server.renew(unknown, "{}".into()).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn event_streams_are_bounded() {
    let server = start(RegistryConfig::default()).await;
    let mut open = Vec::new();
    for _ in 0..64 {
        let mut events = server.events().await;
        events.view().await;
        open.push(events);
    }
    let refused = server.get("/dashboard/events", None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(error["error"]["kind"], "too_many_streams");
    // A viewer that leaves gives its place back once its stream has written twice more (an
    // idle stream writes a comment every 2 s).
    drop(open.pop());
    let mut again = None;
    for _ in 0..2000 {
        let request = Request::get(format!("{}/dashboard/events", server.base))
            .body(Full::default())
            .unwrap();
        let answer = server.http.request(request).await.unwrap();
        if answer.status() == StatusCode::OK {
            again = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a place opened once a viewer left");
}

#[tokio::test]
async fn protected_reads_protect_the_dashboard() {
    let config = RegistryConfig {
        auth: AuthConfig {
            users: vec![User::new("viewer", "viewer-pw")],
            protect_reads: true,
            ..AuthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let server = start(config).await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "viewer:viewer-pw"
        )
    );
    for path in [
        "/dashboard",
        "/dashboard/page.js",
        "/dashboard/view",
        "/dashboard/events",
    ] {
        let refused = server.get(path, None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(refused.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    for path in ["/dashboard", "/dashboard/view"] {
        let answer = server.get(path, Some(&basic)).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_shutdown_ends_open_streams() {
    let mut server = start(RegistryConfig::default()).await;
    let mut events = server.events().await;
    events.view().await;
    server.stop.take().unwrap().send(()).unwrap();
    assert!(events.next().await.is_none(), "the stream ends");
    tokio::time::timeout(Duration::from_secs(10), &mut server.served)
        .await
        .expect("the server stops with a stream open")
        .unwrap()
        .unwrap();
}
