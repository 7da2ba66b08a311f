//! Discovery through DNS: the addresses a name resolves to, re-resolved on an interval.
//!
//! This is the Kubernetes headless-service path: `inventory.shop.svc.cluster.local` resolves to
//! one A/AAAA record per ready pod, so re-resolving follows scale-ups, scale-downs and restarts
//! without a registry. With the `dns-srv` feature, `resolve_srv` reads SRV records
//! (`_http._tcp.inventory.shop.svc.cluster.local`), which also carry each target's port and
//! weight.

use std::{future::Future, time::Duration};

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
    poll(service.clone(), interval, move || {
        let (service, host) = (service.clone(), host.clone());
        async move {
            let addresses = lookup_host((host.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            Ok(addresses
                .map(|address| {
                    let mut instance =
                        Instance::new(service.clone(), address.ip().to_string(), port);
                    instance.id = address.to_string();
                    instance
                })
                .collect())
        }
    })
    .await
}

/// Resolves the SRV records of `name` every `interval` (through the system's resolver
/// configuration) and publishes one instance per address of each target, with the record's
/// port and weight. Only the lowest priority present is used, as RFC 2782 asks; the others
/// are fallbacks a later resolution picks up if the first group disappears.
#[cfg(feature = "dns-srv")]
pub async fn resolve_srv(
    service: impl Into<ServiceId>,
    name: impl Into<String>,
    interval: Duration,
) -> Result<Discovery, crate::error::MeshError> {
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .and_then(|builder| builder.build())
        .map_err(|e| {
            crate::error::MeshError::new(
                crate::error::ErrorKind::Config,
                format!("DNS resolver: {e}"),
            )
        })?;
    Ok(resolve_srv_with(resolver, service, name, interval).await)
}

/// [`resolve_srv`] with a resolver of your own (custom name servers, say).
#[cfg(feature = "dns-srv")]
pub async fn resolve_srv_with(
    resolver: hickory_resolver::TokioResolver,
    service: impl Into<ServiceId>,
    name: impl Into<String>,
    interval: Duration,
) -> Discovery {
    let service = service.into();
    let name = name.into();
    let resolver = std::sync::Arc::new(resolver);
    poll(service.clone(), interval, move || {
        let (service, name, resolver) = (service.clone(), name.clone(), resolver.clone());
        async move { srv_instances(&resolver, &service, &name).await }
    })
    .await
}

/// The instances behind the lowest-priority SRV records of `name`.
#[cfg(feature = "dns-srv")]
async fn srv_instances(
    resolver: &hickory_resolver::TokioResolver,
    service: &ServiceId,
    name: &str,
) -> Result<Vec<Instance>, String> {
    use hickory_resolver::proto::rr::RData;

    let lookup = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
    let records: Vec<_> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        .collect();
    let first = records.iter().map(|srv| srv.priority).min();
    let mut instances = Vec::new();
    for srv in records.iter().filter(|srv| Some(srv.priority) == first) {
        let target = srv.target.to_utf8();
        let target = target.trim_end_matches('.');
        let addresses = resolver
            .lookup_ip(format!("{target}."))
            .await
            .map_err(|e| e.to_string())?;
        for ip in addresses.iter() {
            let mut instance = Instance::new(service.clone(), ip.to_string(), srv.port);
            instance.id = format!("{ip}:{}", srv.port);
            instance.weight = u32::from(srv.weight.max(1));
            instance.metadata.insert("dns.target".into(), target.into());
            instances.push(instance);
        }
    }
    Ok(instances)
}

/// Publishes what `lookup` finds now and every `interval`, keeping the last set when a lookup
/// fails, until no discovery follows any more.
async fn poll<F, Fut>(service: ServiceId, interval: Duration, lookup: F) -> Discovery
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Instance>, String>> + Send,
{
    let (publisher, discovery) = Discovery::new(service.clone());
    refresh(&publisher, &service, &lookup).await;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        while publisher.is_followed() {
            ticks.tick().await;
            refresh(&publisher, &service, &lookup).await;
        }
    });
    discovery
}

async fn refresh<F, Fut>(publisher: &Publisher, service: &ServiceId, lookup: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<Instance>, String>>,
{
    match lookup().await {
        Ok(mut instances) => {
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            instances.dedup_by(|a, b| a.id == b.id);
            publisher.publish(instances);
        }
        Err(error) => {
            tracing::warn!(%service, %error, "DNS resolution failed, keeping the last known instances");
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
