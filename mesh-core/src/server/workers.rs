//! Serving on worker threads, as nginx's workers: each thread runs its own single-threaded
//! runtime and accepts on its own listener bound to the same address (`SO_REUSEPORT`), so a
//! connection lives on one thread from accept to close, with no work stealing and no
//! cross-thread wake-ups on the request path.

use std::{io, net::SocketAddr, sync::Arc, thread, time::Duration};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::{ServerSettings, connections, connections::Served};
use crate::error::{ErrorKind, MeshError};

/// Binds `server.threads` listeners to `server.address` and serves `app` on a thread each until
/// `stopped` completes; then every worker drains gracefully. The returned task ends when every
/// worker has; aborting it stops the workers at once, closing their connections.
pub(crate) fn spawn(
    settings: &ServerSettings,
    served: Served,
    tls: Option<Arc<ServerConfig>>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<io::Result<()>>), MeshError> {
    let (address, threads, idle_timeout) =
        (settings.address, settings.threads, settings.idle_timeout);
    let bind_error = |e: io::Error| {
        MeshError::new(ErrorKind::Config, format!("binding {address}: {e}")).with_source(e)
    };
    // The first listener picks the port when the address asks for any; the others share it.
    let first = bind(address).map_err(bind_error)?;
    let local_addr = first.local_addr().map_err(bind_error)?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(bind(local_addr).map_err(bind_error)?);
    }
    let (drain, draining) = watch::channel(false);
    let mut aborts = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for (index, listener) in listeners.into_iter().enumerate() {
        let (abort, aborted) = oneshot::channel::<()>();
        let (done, finish) = oneshot::channel();
        let (served, tls, draining) = (served.clone(), tls.clone(), draining.clone());
        thread::Builder::new()
            .name(format!("mesh-worker-{index}"))
            .spawn(move || {
                let result = run(listener, served, idle_timeout, tls, draining, aborted);
                let _ = done.send(result);
            })
            .map_err(|e| MeshError::new(ErrorKind::Internal, format!("starting a worker: {e}")))?;
        aborts.push(abort);
        finished.push(finish);
    }
    let task = tokio::spawn(async move {
        // Dropped when this task ends or is aborted: workers still running stop at once.
        let _aborts = aborts;
        stopped.await;
        let _ = drain.send(true);
        for finish in finished {
            finish.await.unwrap_or(Ok(()))?;
        }
        Ok(())
    });
    Ok((local_addr, task))
}

/// A listener on `address` that other listeners may share.
fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(1024)?.into_std()
}

/// One worker: its runtime, its listener, its connections.
fn run(
    listener: std::net::TcpListener,
    served: Served,
    idle_timeout: Duration,
    tls: Option<Arc<ServerConfig>>,
    mut draining: watch::Receiver<bool>,
    aborted: oneshot::Receiver<()>,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let drained = async move {
            let _ = draining.wait_for(|drain| *drain).await;
        };
        let serve = connections::serve(listener, served, idle_timeout, tls, drained);
        tokio::select! {
            served = serve => served,
            _ = aborted => Ok(()),
        }
    })
}
