//! Faults under steady load, and what the gateway's callers see. Each scenario sends 16
//! concurrent streams of requests through an `lb://` route for a few seconds, on real
//! sockets, while instances, the registry or the Redis connection are killed, hung or
//! restarted; it prints what it observed (requests, errors by status, when the last error
//! came) and asserts what a caller may see.

use std::{
    any::Any,
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, routing::any};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh_core::{
    Mesh, config::MeshConfig, discovery::Instance, registry::RegistryClient, runtime::Running,
};
use mesh_gateway::{Gateway, GatewayConfig};
use mesh_registry::{LeaseRequest, Registry, RegistryConfig};
use mesh_testkit::Process;
use serde_json::json;
use tokio::{net::TcpListener, time::Instant};

/// Concurrent streams of requests: the load every scenario runs under.
const STREAMS: usize = 16;

/// How an instance finds its registry.
#[derive(Clone)]
enum Registered {
    /// A registry in this process (renewing every 5 s).
    Embedded(Arc<Registry>),
    /// A registry over HTTP at this URL, renewing every second.
    Remote(String),
    /// Not registered by its runtime.
    Not,
}

impl Registered {
    async fn mesh(&self, name: &str) -> Mesh {
        let config = match self {
            Self::Embedded(_) => json!({}),
            Self::Remote(url) => json!({"registry": {
                "url": url, "renewal_interval": "1s", "lease_duration": "3s"
            }}),
            Self::Not => json!({"registry": {"register": false}}),
        };
        let mut builder = Mesh::builder(name).config(MeshConfig::from_value(name, config));
        if let Self::Embedded(registry) = self {
            builder = builder.registry(registry.clone());
        }
        builder.build().await.unwrap()
    }
}

/// An instance of `work` answering its `name` after `delay`.
async fn serve_work(name: &'static str, delay: Duration, registered: &Registered) -> Running {
    let router = Router::new().route(
        "/work",
        any(move || async move {
            tokio::time::sleep(delay).await;
            name
        }),
    );
    registered
        .mesh("work")
        .await
        .server(router)
        .start()
        .await
        .unwrap()
}

/// An instance of `work` in a process of its own.
fn work_process(name: &'static str, delay: Duration, registered: Registered) -> Process {
    Process::spawn(move || async move {
        let running = serve_work(name, delay, &registered).await;
        (running.local_addr(), Box::new(running) as Box<dyn Any>)
    })
}

/// A gateway serving `yaml`'s routes as the binary does (relay path on), finding services
/// through `registry` or the registry at `registry_url`.
async fn gateway(yaml: &str, registered: &Registered) -> Running {
    let name = format!("mesh-gateway-chaos-{}", nanos());
    let config = match registered {
        Registered::Remote(url) => json!({"registry": {"url": url, "register": false}}),
        _ => json!({"registry": {"register": false}}),
    };
    let mut builder =
        Mesh::builder(name.as_str()).config(MeshConfig::from_value(name.as_str(), config));
    if let Registered::Embedded(registry) = registered {
        builder = builder.registry(registry.clone());
    }
    let mesh = builder.build().await.unwrap();
    let gateway = Gateway::new(GatewayConfig::from_yaml(yaml).unwrap(), &mesh).unwrap();
    mesh.server(gateway.clone())
        .relay(gateway)
        .start()
        .await
        .unwrap()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The `work` route: public, through the registry.
fn work_route(extra: &str) -> String {
    format!(
        "routes:\n  - id: work-{}\n    uri: lb://work\n    predicates: [Path=/work]\n    auth: public\n{extra}",
        nanos()
    )
}

/// Waits until `registry` lists `count` instances.
async fn until_listed(registry: &Registry, count: usize) {
    for _ in 0..500 {
        if registry.snapshot().await.unwrap().registrations.len() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} instances never registered");
}

/// One answered (or failed) request.
#[derive(Debug, Clone)]
struct Outcome {
    /// When it was sent, from the start of the load.
    at: Duration,
    /// How long it took.
    took: Duration,
    /// The status; 0 when the gateway could not be reached.
    status: u16,
    /// The answer's body.
    body: String,
}

/// [`STREAMS`] concurrent streams of `method /work` to `addr`, until stopped.
struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    streams: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, method: Method) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let streams = (0..STREAMS)
            .map(|_| {
                let (client, method) = (client.clone(), method.clone());
                let (stop, outcomes) = (stop.clone(), outcomes.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let request = http::Request::builder()
                            .method(method.clone())
                            .uri(format!("http://{addr}/work"))
                            .body(Full::new(Bytes::from_static(b"{}")))
                            .unwrap();
                        let sent = Instant::now();
                        let (status, body) = match client.request(request).await {
                            Ok(answer) => {
                                let status = answer.status().as_u16();
                                let body = answer.into_body().collect().await;
                                let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                                (status, String::from_utf8_lossy(&body).into_owned())
                            }
                            Err(error) => (0, error.to_string()),
                        };
                        outcomes.lock().unwrap().push(Outcome {
                            at: sent - started,
                            took: sent.elapsed(),
                            status,
                            body,
                        });
                    }
                })
            })
            .collect();
        Self {
            started,
            stop,
            outcomes,
            streams,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the load and prints what it saw under `scenario`.
    async fn finish(self, scenario: &str) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.streams {
            stream.await.unwrap();
        }
        let outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        let seen = Seen(outcomes);
        seen.print(scenario);
        seen
    }
}

/// What the load saw.
struct Seen(Vec<Outcome>);

impl Seen {
    fn errors(&self) -> impl Iterator<Item = &Outcome> {
        self.0.iter().filter(|o| o.status == 0 || o.status >= 500)
    }

    fn between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Outcome> {
        self.0.iter().filter(move |o| o.at >= from && o.at < to)
    }

    fn print(&self, scenario: &str) {
        let mut statuses = BTreeMap::new();
        for outcome in &self.0 {
            *statuses.entry(outcome.status).or_insert(0usize) += 1;
        }
        let last_error = self.errors().map(|o| o.at).max();
        let mut samples: Vec<_> = self.errors().map(|o| o.body.as_str()).collect();
        samples.dedup();
        samples.truncate(3);
        println!(
            "chaos: {scenario}: {} requests, statuses {statuses:?}, last error at {last_error:?}, errors such as {samples:?}",
            self.0.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_get_load_costs_no_request() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let registered = Registered::Embedded(registry.clone());
    let mut instances: Vec<_> = ["one", "two", "three"]
        .into_iter()
        .map(|name| work_process(name, Duration::from_millis(1), registered.clone()))
        .collect();
    until_listed(&registry, 3).await;
    let gateway = gateway(&work_route(""), &registered).await;

    let load = Load::start(gateway.local_addr(), Method::GET);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = load.elapsed();
    instances.remove(0).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = load.finish("GET, one of three instances killed").await;

    assert_eq!(seen.errors().count(), 0, "no GET may fail");
    assert!(
        seen.between(Duration::ZERO, killed_at)
            .any(|o| o.body == "one")
    );
    assert!(
        seen.between(killed_at + Duration::from_millis(500), Duration::MAX)
            .count()
            > 100,
        "the two left carry the load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_post_load_fails_only_what_was_written_to_it() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let registered = Registered::Embedded(registry.clone());
    // Slow enough that requests are in flight on the instance when it dies.
    let mut instances: Vec<_> = ["one", "two", "three"]
        .into_iter()
        .map(|name| work_process(name, Duration::from_millis(20), registered.clone()))
        .collect();
    until_listed(&registry, 3).await;
    let gateway = gateway(&work_route(""), &registered).await;

    let load = Load::start(gateway.local_addr(), Method::POST);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = load.elapsed();
    instances.remove(0).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = load.finish("POST, one of three instances killed").await;

    // A POST is never sent twice: those written to the instance before it died fail, at
    // most one per stream; every POST sent later reaches an instance alive.
    let failed = seen.errors().count();
    assert!(failed <= STREAMS, "{failed} POSTs failed");
    assert_eq!(
        seen.errors()
            .filter(|o| o.at > killed_at + Duration::from_millis(100))
            .count(),
        0,
        "POSTs sent after the death reach the instances alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_instance_is_ejected_within_a_few_timeouts() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let registered = Registered::Embedded(registry.clone());
    let _instances: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| work_process(name, Duration::from_millis(1), registered.clone()))
        .collect();
    // Accepts connections and reads nothing, answers nothing: a stopped process.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    registry
        .register(
            Instance::new("work", "127.0.0.1", hung_addr.port()),
            LeaseRequest::default(),
            None,
        )
        .await
        .unwrap();
    until_listed(&registry, 3).await;
    let timeout = Duration::from_millis(200);
    let gateway = gateway(&work_route("    timeout: 200ms\n"), &registered).await;

    let load = Load::start(gateway.local_addr(), Method::GET);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = load.finish("GET, one of three instances hung").await;

    let timed_out = seen.errors().count();
    let last = seen.errors().map(|o| o.at).max().unwrap_or_default();
    println!("chaos: hung instance: {timed_out} timed out, the last sent at {last:?}");
    assert!(
        seen.errors().all(|o| o.status == 504),
        "only timeouts, no other failure"
    );
    assert!(
        last < timeout * 5,
        "ejected within a few timeouts, no later waves: last timeout sent at {last:?}"
    );
}

/// The registry as a process of its own on `port` (0 for any), warming up for `warmup` when
/// it starts empty.
fn registry_process(port: u16, warmup: Duration) -> Process {
    Process::spawn(move || async move {
        let registry = Arc::new(Registry::new(RegistryConfig {
            warmup,
            ..RegistryConfig::default()
        }));
        let eviction = registry.spawn_eviction();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(mesh_registry::serve(
            listener,
            registry,
            std::future::pending(),
        ));
        (addr, Box::new(eviction) as Box<dyn Any>)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_empty_under_load_costs_no_request_and_forgets_the_dead() {
    let warmup = Duration::from_millis(1500);
    let registry = registry_process(0, warmup);
    let port = registry.addr.port();
    let url = format!("http://127.0.0.1:{port}");
    let registered = Registered::Remote(url.clone());
    let _alive: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| work_process(name, Duration::from_millis(1), registered.clone()))
        .collect();
    // "three" serves throughout but its registration stops while the registry is down: the
    // registry that comes back never hears of it, so no pool may keep it.
    let three = serve_work("three", Duration::from_millis(1), &Registered::Not).await;
    let client = RegistryClient::new(&url).unwrap();
    let renewing = client
        .keep_registered(
            Instance::new("work", "127.0.0.1", three.local_addr().port()),
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    let discovery = client.discover("work").await;
    for _ in 0..500 {
        if discovery.snapshot().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(discovery.snapshot().len(), 3);
    let gateway = gateway(&work_route(""), &registered).await;

    let load = Load::start(gateway.local_addr(), Method::GET);
    tokio::time::sleep(Duration::from_secs(1)).await;
    registry.kill();
    drop(renewing);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted_at = load.elapsed();
    let _registry = registry_process(port, warmup);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = load
        .finish("GET, registry killed and restarted empty")
        .await;

    assert_eq!(seen.errors().count(), 0, "no request may fail");
    assert!(
        seen.between(Duration::ZERO, restarted_at)
            .any(|o| o.body == "three")
    );
    let forgotten = restarted_at + warmup + Duration::from_millis(500);
    let late: Vec<_> = seen
        .between(forgotten, Duration::MAX)
        .filter(|o| o.body == "three")
        .collect();
    assert!(
        late.is_empty(),
        "{} requests reached the unregistered instance after the warm-up",
        late.len()
    );
    drop(three);
}

#[cfg(feature = "redis")]
mod redis_down {
    use super::*;

    /// A TCP proxy in front of Redis whose link can be cut (every connection dropped, new
    /// ones closed at once) and restored: Redis going away as its clients see it, without
    /// stopping the Redis other tests share.
    struct Cuttable {
        addr: SocketAddr,
        cut: tokio::sync::watch::Sender<bool>,
    }

    impl Cuttable {
        async fn to(upstream: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let cut = tokio::sync::watch::Sender::new(false);
            let watching = cut.clone();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut cut = watching.subscribe();
                    if *cut.borrow() {
                        continue;
                    }
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut redis) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut socket, &mut redis) => {}
                            _ = cut.wait_for(|cut| *cut) => {}
                        }
                    });
                }
            });
            Self { addr, cut }
        }

        fn set_cut(&self, cut: bool) {
            self.cut.send_replace(cut);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_gone_under_rate_limited_load_costs_no_wait_and_limiting_resumes() {
        let Ok(url) = std::env::var("MESH_TEST_REDIS_URL") else {
            eprintln!("skipped: MESH_TEST_REDIS_URL is not set");
            return;
        };
        let upstream = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let proxy = Cuttable::to(upstream).await;
        let registry = Arc::new(Registry::new(RegistryConfig::default()));
        let registered = Registered::Embedded(registry.clone());
        let _instance = work_process("one", Duration::ZERO, registered.clone());
        until_listed(&registry, 1).await;
        let route = work_route(&format!(
            "    rate_limit: {{ replenish_rate: 100, burst_capacity: 100, key: global }}\nredis:\n  url: redis://{}\n",
            proxy.addr
        ));
        let gateway = gateway(&route, &registered).await;

        let load = Load::start(gateway.local_addr(), Method::GET);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cut_at = load.elapsed();
        proxy.set_cut(true);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restored_at = load.elapsed();
        proxy.set_cut(false);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let seen = load
            .finish("GET, rate limited, Redis cut then restored")
            .await;

        let limited = |from: Duration, to: Duration| {
            seen.between(from, to).filter(|o| o.status == 429).count()
        };
        assert!(
            limited(Duration::ZERO, cut_at) > 0,
            "Redis limits the route"
        );
        // Cut: after the first failures the failure policy (allow) decides at once.
        let settled = cut_at + Duration::from_millis(300);
        let during: Vec<_> = seen.between(settled, restored_at).collect();
        let mut took: Vec<_> = during.iter().map(|o| o.took).collect();
        took.sort();
        let median = took.get(took.len() / 2).copied().unwrap_or_default();
        println!(
            "chaos: Redis cut: {} requests decided without it, median {median:?}",
            during.len()
        );
        assert!(during.iter().all(|o| o.status == 200), "the policy allows");
        assert!(
            took.iter()
                .filter(|t| **t >= Duration::from_millis(50))
                .count()
                * 20
                < took.len(),
            "no request waits for the store's timeout once it is known down: {took:?}"
        );
        assert_eq!(seen.errors().count(), 0);
        // Restored: the store is asked again within its probe interval, and limits.
        assert!(
            limited(restored_at + Duration::from_millis(1500), Duration::MAX) > 0,
            "limiting resumes when Redis returns"
        );
    }
}
