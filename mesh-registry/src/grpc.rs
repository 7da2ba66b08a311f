//! The gRPC watch stream (`mesh.registry.v1.Registry/Watch`): a snapshot with its revision,
//! then every change in order; a watcher resumes from the last revision it saw.

use std::{sync::Arc, time::Duration};

use mesh_core::{
    discovery::{Instance as Found, ServiceId},
    registry::model::{Action as Done, Cursor, Registration, WatchAnswer},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::registry::Registry;

/// The code generated from `proto/registry.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod proto {
    tonic::include_proto!("mesh.registry.v1");
}

use proto::{Action, Change, Instance, Snapshot, WatchEvent, WatchRequest, watch_event::Kind};

/// How long one wait for changes lasts before the stream checks its watcher is still there.
const WAIT: Duration = Duration::from_secs(30);
/// Messages buffered per watcher before the registry waits for it to read.
const BUFFER: usize = 256;

/// The gRPC service, to mount with [`proto::registry_server::RegistryServer`].
#[derive(Debug, Clone)]
pub struct WatchService {
    registry: Arc<Registry>,
}

impl WatchService {
    /// The watch service of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The service ready to route: `RegistryServer` around this.
    pub fn into_server(self) -> proto::registry_server::RegistryServer<Self> {
        proto::registry_server::RegistryServer::new(self)
    }
}

#[tonic::async_trait]
impl proto::registry_server::Registry for WatchService {
    type WatchStream = ReceiverStream<Result<WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let WatchRequest {
            since_revision,
            service,
            epoch,
        } = request.into_inner();
        let service = (!service.is_empty()).then(|| ServiceId::new(&service));
        let (sender, receiver) = mpsc::channel(BUFFER);
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let mut cursor = (since_revision != 0).then_some(Cursor {
                epoch,
                revision: since_revision,
            });
            loop {
                let answer = tokio::select! {
                    answer = registry.watch(cursor, WAIT) => answer,
                    () = sender.closed() => return,
                };
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(error) => {
                        let _ = sender
                            .send(Err(Status::unavailable(error.to_string())))
                            .await;
                        return;
                    }
                };
                cursor = answer.cursor(cursor);
                for message in messages(answer, service.as_ref()) {
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// The stream messages for one answer (none while the registry warms up: the watcher keeps
/// what it holds).
fn messages(answer: WatchAnswer, service: Option<&ServiceId>) -> Vec<WatchEvent> {
    let wanted = |registration: &Registration| service.is_none_or(|s| registration.service() == s);
    match answer {
        WatchAnswer::Snapshot(snapshot) => {
            let instances = snapshot
                .registrations
                .iter()
                .filter(|r| wanted(r))
                .map(|r| instance(r.visible_instance()))
                .collect();
            vec![WatchEvent {
                revision: snapshot.revision,
                epoch: snapshot.epoch,
                kind: Some(Kind::Snapshot(Snapshot { instances })),
            }]
        }
        WatchAnswer::Changes { epoch, events, .. } => events
            .into_iter()
            .filter(|e| wanted(&e.registration))
            .map(|event| WatchEvent {
                revision: event.revision,
                epoch,
                kind: Some(Kind::Change(Change {
                    action: match event.action {
                        Done::Added => Action::Added,
                        Done::Modified => Action::Modified,
                        Done::Deleted => Action::Deleted,
                    } as i32,
                    instance: Some(instance(event.registration.visible_instance())),
                })),
            })
            .collect(),
        WatchAnswer::Warming { .. } => Vec::new(),
    }
}

fn instance(found: Found) -> Instance {
    Instance {
        id: found.id,
        service: found.service.to_string(),
        host: found.host,
        port: u32::from(found.port),
        secure: found.secure,
        zone: found.zone.unwrap_or_default(),
        weight: found.weight,
        metadata: found.metadata.into_iter().collect(),
        status: found.status.as_str().to_string(),
    }
}
