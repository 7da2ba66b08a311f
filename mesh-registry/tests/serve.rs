//! The registry server's connections: requests answered, a trickled head not waited on past
//! the idle limit, and a shutdown that returns once the connections are gone.

use std::{sync::Arc, time::Duration};

use mesh_registry::{IDLE_TIMEOUT, Registry, RegistryConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

#[tokio::test]
async fn connections_are_answered_bounded_and_drained() {
    let registry = Arc::new(Registry::new(RegistryConfig::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(mesh_registry::serve(listener, registry, async {
        let _ = stopped.await;
    }));

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /v1/services HTTP/1.1\r\nhost: registry\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0; 12];
    client.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/services HTTP/1.1\r\nhost: reg")
        .await
        .unwrap();
    // Virtual time from here: the idle limit passes without waiting for it.
    tokio::time::pause();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IDLE_TIMEOUT * 3, slow.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "a head that never ends is closed within the idle limit, unanswered: {read:?} {rest:?}"
    );
    tokio::time::resume();

    drop(client);
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), served).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the server returns after a shutdown: {finished:?}"
    );
}
