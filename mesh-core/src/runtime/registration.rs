//! The service's own registration: made at start, retried in the background while the
//! registry cannot be reached, removed first on shutdown.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Mutex, task::JoinHandle};

use crate::{
    discovery::Instance,
    error::MeshError,
    registry::{Registered, RegistryApi, Report, keep_registered_reporting},
};

/// The first delay before registering again, doubling up to `MAX_RETRY_DELAY`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A registration, possibly still being retried.
#[derive(Debug)]
pub(super) struct Registration {
    instance: Instance,
    registered: Arc<Mutex<Option<Registered>>>,
    retrying: Option<JoinHandle<()>>,
}

impl Registration {
    /// Registers `instance`, sending what `report` answers with each renewal. When the
    /// registry does not answer, a service still starts (as a Eureka client does) and registers
    /// as soon as the registry is back.
    pub(super) async fn start(
        registry: Arc<dyn RegistryApi>,
        instance: Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
        report: Report,
    ) -> Self {
        let register = {
            let instance = instance.clone();
            move || {
                keep_registered_reporting(
                    registry.clone(),
                    instance.clone(),
                    renewal_interval,
                    lease_duration,
                    Some(report.clone()),
                )
            }
        };
        let registered = Arc::new(Mutex::new(None));
        let retrying = match register().await {
            Ok(done) => {
                *registered.lock().await = Some(done);
                None
            }
            Err(error) => {
                tracing::warn!(%error, instance = %instance.id, "registration failed; retrying in the background");
                let slot = registered.clone();
                Some(tokio::spawn(async move {
                    let mut delay = FIRST_RETRY_DELAY;
                    loop {
                        tokio::time::sleep(delay).await;
                        match register().await {
                            Ok(done) => {
                                tracing::info!(instance = %done.instance().id, "registered");
                                *slot.lock().await = Some(done);
                                return;
                            }
                            Err(error) => {
                                tracing::warn!(%error, ?delay, "registration failed");
                                delay = (delay * 2).min(MAX_RETRY_DELAY);
                            }
                        }
                    }
                }))
            }
        };
        Self {
            instance,
            registered,
            retrying,
        }
    }

    /// The instance this service registers as.
    pub(super) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Whether the registry has accepted the instance.
    pub(super) async fn is_registered(&self) -> bool {
        self.registered.lock().await.is_some()
    }

    /// Stops retrying and deregisters, if registered.
    pub(super) async fn deregister(mut self) -> Result<(), MeshError> {
        if let Some(retrying) = self.retrying.take() {
            retrying.abort();
        }
        match self.registered.lock().await.take() {
            Some(registered) => registered.deregister().await,
            None => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(retrying) = self.retrying.take() {
            retrying.abort();
        }
    }
}
