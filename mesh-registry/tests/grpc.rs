//! The gRPC watch stream on a real socket: snapshot, ordered changes, filtering and resume.

use std::{sync::Arc, time::Duration};

use mesh_core::discovery::{Instance, ServiceId};
use mesh_registry::{
    LeaseRequest, Registry, RegistryConfig,
    api::router,
    grpc::proto::{
        Action, WatchEvent, WatchRequest, registry_client::RegistryClient, watch_event::Kind,
    },
    store::MemoryStore,
};
use tokio::net::TcpListener;
use tonic::Streaming;

async fn serve(registry: Arc<Registry>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(registry)).await });
    format!("http://{addr}")
}

async fn next(stream: &mut Streaming<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5 s")
        .unwrap()
        .expect("the stream stays open")
}

fn change(event: &WatchEvent) -> (u64, Action, String) {
    match &event.kind {
        Some(Kind::Change(change)) => (
            event.revision,
            Action::try_from(change.action).unwrap(),
            change.instance.as_ref().unwrap().id.clone(),
        ),
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn watch(url: &str, since: u64, epoch: u64, service: &str) -> Streaming<WatchEvent> {
    let mut client = RegistryClient::connect(url.to_string()).await.unwrap();
    let request = WatchRequest {
        since_revision: since,
        service: service.into(),
        epoch,
    };
    client.watch(request).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_changes_in_order_and_a_resume_from_the_last_revision() {
    // No warm-up: a watcher of another epoch is answered at once.
    let registry = Arc::new(Registry::new(RegistryConfig {
        warmup: Duration::ZERO,
        ..RegistryConfig::default()
    }));
    let url = serve(registry.clone()).await;
    let register = |service: &str, host: &str| {
        let registry = registry.clone();
        let instance = Instance::new(service, host, 8080);
        async move {
            registry
                .register(instance, LeaseRequest::default(), None)
                .await
                .unwrap()
        }
    };
    register("inventory", "10.0.0.1").await;

    let mut stream = watch(&url, 0, 0, "inventory").await;
    let first = next(&mut stream).await;
    assert_eq!(first.revision, 1);
    assert_eq!(first.epoch, registry.epoch());
    let Some(Kind::Snapshot(snapshot)) = &first.kind else {
        panic!("a watch from 0 starts with a snapshot");
    };
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(snapshot.instances[0].status, "UP");

    register("orders", "10.0.0.2").await;
    register("inventory", "10.0.0.3").await;
    let added = change(&next(&mut stream).await);
    assert_eq!(
        added,
        (3, Action::Added, "10.0.0.3:inventory:8080".into()),
        "orders is filtered out"
    );

    // Disconnect; a change happens meanwhile; resume from revision 3.
    drop(stream);
    registry
        .cancel(&ServiceId::new("inventory"), "10.0.0.1:inventory:8080")
        .await
        .unwrap();
    let mut resumed = watch(&url, 3, first.epoch, "inventory").await;
    let missed = change(&next(&mut resumed).await);
    assert_eq!(
        missed,
        (4, Action::Deleted, "10.0.0.1:inventory:8080".into())
    );
    // A watcher of another registry's history starts again from a snapshot.
    let mut stranger = watch(&url, 3, first.epoch + 1, "inventory").await;
    let Some(Kind::Snapshot(snapshot)) = next(&mut stranger).await.kind else {
        panic!("another epoch's revision 3 is not this one");
    };
    assert_eq!(snapshot.instances.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_the_log_gets_a_snapshot() {
    let registry = Arc::new(Registry::with_store(
        RegistryConfig::default(),
        Arc::new(MemoryStore::with_log_size(2)),
    ));
    for n in 1..=4 {
        registry
            .register(
                Instance::new("inventory", format!("10.0.0.{n}"), 8080),
                LeaseRequest::default(),
                None,
            )
            .await
            .unwrap();
    }
    let url = serve(registry).await;
    let mut stream = watch(&url, 1, 0, "").await;
    let event = next(&mut stream).await;
    assert_eq!(event.revision, 4);
    let Some(Kind::Snapshot(snapshot)) = event.kind else {
        panic!("revision 1 is no longer in the log");
    };
    assert_eq!(snapshot.instances.len(), 4);
}
