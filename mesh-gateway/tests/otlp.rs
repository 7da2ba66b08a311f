//! One request's trace exported over OTLP: through the gateway's `lb://` route to the orders
//! service, its call to the stock service, the event it publishes and the notifier that
//! handles it — every span received by an in-process OTLP collector (tonic's trace service)
//! with one trace ID, each parented by the hop before it, named and attributed after
//! OpenTelemetry's HTTP and messaging conventions; the caller's W3C baggage reaches every hop.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use mesh_core::{
    Mesh,
    bus::{Event, EventType, SubscriptionConfig},
    observe::{Baggage, TraceContext},
    runtime::Running,
};
use mesh_gateway::{Gateway, GatewayConfig};
use mesh_registry::{Registry, RegistryConfig};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A span as the collector received it, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self.span.attributes.iter().find(|kv| kv.key == key)?;
        match value.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.clone()),
            Value::IntValue(number) => Some(number.to_string()),
            other => Some(format!("{other:?}")),
        }
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP collector keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

impl TraceService for Collector {
    fn export<'a, 'b>(
        &'a self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status>>
                + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let mut received = self.0.lock().unwrap();
            for resource in request.into_inner().resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(name) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        received.push(Received {
                            service: service.clone(),
                            span,
                        });
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        })
    }
}

async fn collector() -> (SocketAddr, Collector) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, collector)
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
}

impl EventType for OrderPlaced {
    const TYPE: &'static str = "order.placed";
}

/// A service named `name` exporting to `collector`, on the bus `bus`.
async fn mesh(name: &str, registry: &Arc<Registry>, collector: SocketAddr, bus: &str) -> Mesh {
    let config = json!({
        "observe": {"otlp": {"endpoint": format!("http://{collector}")}},
        "bus": {"url": bus},
        "registry": {"register": name != "gateway"},
    });
    mesh_testkit::mesh(name, registry.clone(), config).await
}

/// `GET path` at `addr` with `fields`; the status and body.
async fn fetch(addr: SocketAddr, path: &str, fields: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head =
        format!("GET {path} HTTP/1.1\r\nhost: shop.test\r\n{fields}connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_from_the_edge_to_the_last_consumer() {
    let (collector_addr, collector) = collector().await;
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let bus = format!("memory://otlp-{}", std::process::id());

    let stock = mesh("stock", &registry, collector_addr, &bus).await;
    let stock = stock
        .server(Router::new().route(
            "/stock/{sku}",
            get(|| async {
                Baggage::current()
                    .map(|b| b.as_str().to_owned())
                    .unwrap_or_default()
            }),
        ))
        .start()
        .await
        .unwrap();

    let orders = mesh("orders", &registry, collector_addr, &bus).await;
    let (client, publisher) = (orders.client("stock"), orders.bus().await.unwrap());
    let orders = orders
        .server(Router::new().route(
            "/orders/{id}",
            get(move || {
                let (client, publisher) = (client.clone(), publisher.clone());
                async move {
                    let request = http::Request::get("/stock/tea")
                        .body(Default::default())
                        .unwrap();
                    let answer = client.send(request).await.unwrap();
                    let status = answer.status().as_u16();
                    let body = http_body_util::BodyExt::collect(answer.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let event = Event::new(
                        "orders",
                        &OrderPlaced {
                            order: "o-1".into(),
                        },
                    )
                    .unwrap();
                    publisher.publish(event).await.unwrap();
                    let baggage = String::from_utf8_lossy(&body);
                    format!("stock answered {status} with {baggage}")
                }
            }),
        ))
        .start()
        .await
        .unwrap();

    let notifier = mesh("notifier", &registry, collector_addr, &bus).await;
    let (handled, mut told) = tokio::sync::mpsc::unbounded_channel();
    let _subscription = notifier
        .bus()
        .await
        .unwrap()
        .subscribe(
            SubscriptionConfig::new("notifier", "orders", ["order.*"]),
            Arc::new(move |_: Event| {
                let trace = TraceContext::current().map(|c| c.trace_id());
                let baggage = Baggage::current().map(|b| b.as_str().to_owned());
                handled.send((trace, baggage)).ok();
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();

    let routes = GatewayConfig::from_yaml(
        "routes:\n  - id: orders\n    uri: lb://orders\n    predicates: [Path=/orders/**]\n    auth: public\n",
    )
    .unwrap();
    let edge = mesh("gateway", &registry, collector_addr, &bus).await;
    let gateway = Gateway::new(routes, &edge).unwrap();
    let gateway = edge
        .server(gateway.clone())
        .relay(gateway)
        .start()
        .await
        .unwrap();

    // The caller's trace: every hop continues it.
    let caller = TraceContext::root();
    let fields = format!("traceparent: {caller}\r\nbaggage: tenant=acme,plan=gold\r\n");
    let (status, body) = fetch(gateway.local_addr(), "/orders/o-1", &fields).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "stock answered 200 with tenant=acme,plan=gold")
    );
    let (trace, baggage) = tokio::time::timeout(Duration::from_secs(10), told.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace.as_deref(), Some(caller.trace_id().as_str()));
    assert_eq!(baggage.as_deref(), Some("tenant=acme,plan=gold"));

    // A graceful shutdown exports what each service queued.
    let services: Vec<Running> = vec![gateway, orders, stock];
    for service in services {
        service.shutdown().await.unwrap();
    }
    drop(_subscription);
    mesh_core::observe::export::shutdown().await;

    let spans = collector.0.lock().unwrap().clone();
    let trace: Vec<&Received> = spans
        .iter()
        .filter(|s| s.trace_id() == caller.trace_id())
        .collect();
    let find = |service: &str, kind: i32| {
        let found: Vec<&&Received> = trace
            .iter()
            .filter(|s| s.service == service && s.span.kind == kind)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {service} span of kind {kind}: {trace:#?}"
        );
        (*found[0]).clone()
    };
    // Span kinds as OTLP numbers them.
    let (server, client, producer, consumer) = (2, 3, 4, 5);
    let edge = find("gateway", server);
    let order = find("orders", server);
    let call = find("orders", client);
    let stock = find("stock", server);
    let publish = find("orders", producer);
    let process = find("notifier", consumer);

    // Each hop's parent is the hop before it; the edge's is the caller's span.
    assert_eq!(edge.parent_id(), caller.span_id());
    // A request the gateway relays from its bytes makes no call span of its own: the
    // upstream's span is the edge's child. One it serves through its client is a client span.
    let forwarded = trace
        .iter()
        .find(|s| s.service == "gateway" && s.span.kind == client);
    match forwarded {
        Some(forwarded) => {
            assert_eq!(forwarded.parent_id(), edge.span_id());
            assert_eq!(
                forwarded.attribute("server.address").as_deref(),
                Some("orders")
            );
            assert_eq!(order.parent_id(), forwarded.span_id());
        }
        None => assert_eq!(order.parent_id(), edge.span_id()),
    }
    assert_eq!(call.parent_id(), order.span_id());
    assert_eq!(stock.parent_id(), call.span_id());
    assert_eq!(publish.parent_id(), order.span_id());
    assert_eq!(process.parent_id(), publish.span_id());

    // Names and attributes after the semantic conventions.
    assert_eq!(edge.span.name, "GET orders");
    assert_eq!(edge.attribute("http.route").as_deref(), Some("orders"));
    assert_eq!(order.span.name, "GET /orders/{id}");
    assert_eq!(
        order.attribute("http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(order.attribute("url.path").as_deref(), Some("/orders/o-1"));
    assert_eq!(
        order.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(call.span.name, "GET");
    assert_eq!(call.attribute("server.address").as_deref(), Some("stock"));
    assert_eq!(
        call.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        stock.attribute("http.route").as_deref(),
        Some("/stock/{sku}")
    );
    assert_eq!(publish.span.name, "publish order.placed");
    assert_eq!(
        publish.attribute("messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        publish.attribute("messaging.system").as_deref(),
        Some("mesh_memory")
    );
    assert_eq!(process.span.name, "process order.placed");
    assert_eq!(
        process.attribute("messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        process
            .attribute("messaging.consumer.group.name")
            .as_deref(),
        Some("notifier.orders")
    );
    // Exactly these spans make the request's trace: none twice, none of another hop.
    let services: HashMap<&str, usize> = trace.iter().fold(HashMap::new(), |mut seen, s| {
        *seen.entry(s.service.as_str()).or_default() += 1;
        seen
    });
    let expected = 6 + usize::from(forwarded.is_some());
    assert_eq!(services.values().sum::<usize>(), expected, "{services:?}");
}
