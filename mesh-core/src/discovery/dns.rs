//! Discovery through DNS: the addresses a name resolves to, re-resolved on an interval.
//!
//! This is the Kubernetes headless-service path: `inventory.shop.svc.cluster.local` resolves to
//! one A/AAAA record per ready pod, so re-resolving follows scale-ups, scale-downs and restarts
//! without a registry.

use std::time::Duration;

use tokio::net::lookup_host;

use super::{Discovery, Instance, Publisher, ServiceId};

/// Resolves `host` every `interval` and publishes one instance per address, on `port`.
///
/// The first resolution happens before this returns, so the discovery starts populated when
/// the name resolves. A failed resolution keeps the last known set (a DNS hiccup must not empty
/// a healthy pool). The task stops once every clone of the returned discovery is dropped.
///
/// ```no_run
/// # async fn run() {
/// use std::time::Duration;
/// let inventory = mesh_core::discovery::dns::resolve(
///     "inventory",
///     "inventory.shop.svc.cluster.local",
///     8080,
///     Duration::from_secs(5),
/// )
/// .await;
/// # }
/// ```
pub async fn resolve(
    service: impl Into<ServiceId>,
    host: impl Into<String>,
    port: u16,
    interval: Duration,
) -> Discovery {
    let service = service.into();
    let host = host.into();
    let (publisher, discovery) = Discovery::new(service.clone());
    refresh(&publisher, &service, &host, port).await;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        while publisher.is_followed() {
            ticks.tick().await;
            refresh(&publisher, &service, &host, port).await;
        }
    });
    discovery
}

async fn refresh(publisher: &Publisher, service: &ServiceId, host: &str, port: u16) {
    match lookup_host((host, port)).await {
        Ok(addresses) => {
            let mut instances: Vec<Instance> = addresses
                .map(|address| {
                    let mut instance =
                        Instance::new(service.clone(), address.ip().to_string(), port);
                    instance.id = address.to_string();
                    instance
                })
                .collect();
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            instances.dedup_by(|a, b| a.id == b.id);
            publisher.publish(instances);
        }
        Err(error) => {
            tracing::warn!(%service, host, %error, "DNS resolution failed, keeping the last known instances");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_loopback_instances() {
        let discovery = resolve("local", "localhost", 8080, Duration::from_secs(60)).await;
        let instances = discovery.snapshot();
        assert!(!instances.is_empty());
        assert!(instances.iter().all(|i| i.port == 8080 && i.is_up()));
        assert!(
            instances
                .iter()
                .all(|i| i.host == "127.0.0.1" || i.host == "::1"),
            "{instances:?}"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_gives_an_empty_set() {
        let discovery = resolve(
            "nowhere",
            "does-not-exist.invalid",
            80,
            Duration::from_secs(60),
        )
        .await;
        assert!(discovery.snapshot().is_empty());
    }
}
