//! Following configuration refreshes: a service whose configuration comes from a config
//! server reads it again when a [`RefreshRequested`] for it arrives on the bus, and applies it
//! through the live-reload path (clients, routes and sections that follow the configuration
//! change without a restart). A refresh that cannot read the configuration keeps the last good
//! one and says why.

use std::sync::Arc;

use super::Mesh;
use crate::{
    bus::{Event, EventType, Subscription, SubscriptionConfig},
    config::{ConfigServerSettings, RefreshRequested},
    error::BoxError,
};

impl Mesh {
    /// Subscribes the instance `instance` to refreshes, when `config_server.url` is set: a
    /// queue of its own (every instance hears every refresh), living as long as it serves.
    pub(super) async fn follow_refresh(&self, instance: &str) -> Option<Subscription> {
        let server: ConfigServerSettings =
            self.config().snapshot().section("config_server").ok()?;
        server.url.as_ref()?;
        let bus = match self.bus().await {
            Ok(bus) => bus,
            Err(error) => {
                tracing::warn!(%error, "no bus: configuration refreshes will not reach this service");
                return None;
            }
        };
        let service = self.name().to_string();
        let mut subscription = SubscriptionConfig::new(
            service.as_str(),
            format!("config-refresh.{instance}"),
            [RefreshRequested::TYPE],
        );
        subscription.transient = true;
        subscription.max_attempts = 1;
        subscription.concurrency = 1;
        let config = self.config().clone();
        let instance = instance.to_owned();
        let handler = move |event: Event| {
            let (config, service, instance) = (config.clone(), service.clone(), instance.clone());
            async move {
                let request: RefreshRequested = event.data()?;
                if !request.is_for(&service, &instance) {
                    return Ok::<(), BoxError>(());
                }
                match config.reload().await {
                    Ok(changed) => tracing::info!(
                        changed,
                        version = ?request.version,
                        "configuration refreshed"
                    ),
                    Err(error) => tracing::warn!(
                        %error,
                        version = ?request.version,
                        "configuration refresh failed: the last good configuration stays"
                    ),
                }
                Ok(())
            }
        };
        match bus.subscribe(subscription, Arc::new(handler)).await {
            Ok(subscription) => Some(subscription),
            Err(error) => {
                tracing::warn!(%error, "configuration refreshes will not reach this service");
                None
            }
        }
    }
}
